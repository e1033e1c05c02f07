"""Imports every objective module so each registers its name."""
from distill.objectives import (ce, dcd, dino, dss, itc, itm, kd, lwf, nd, prd,  # noqa: F401
                                qcrd, score_kd, supcon, trg)
