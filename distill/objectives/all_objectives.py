"""Imports every objective module so each registers its name."""
from distill.objectives import (at, ce, crd, dcd, dino, dkd, dss, fitnet, itc,  # noqa: F401
                                itm, kd, lwf, nd, prd, qcrd, rkd, score_kd, supcon, trg)
