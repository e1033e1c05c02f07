"""Imports every objective module so each registers its name."""
from distill.objectives import (ce, dcd, dino, dkd, dss, itc, itm, kd, lwf, nd,  # noqa: F401
                                prd, qcrd, rkd, score_kd, supcon, trg)
