"""Imports every objective module so each registers its name."""
from distill.objectives import (at, ce, dcd, dino, dkd, dss, fitnet, itc, itm,  # noqa: F401
                                kd, lwf, nd, prd, qcrd, rkd, score_kd, supcon, trg)
