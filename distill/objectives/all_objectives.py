"""Imports every objective module so each registers its name."""
from distill.objectives import (ce, dcd, dino, itc, itm, kd, lwf, nd, prd, score_kd,  # noqa: F401
                                supcon, trg)
