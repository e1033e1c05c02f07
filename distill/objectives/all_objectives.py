"""Imports every objective module so each registers its name."""
from distill.objectives import ce, dino, kd, lwf, nd, prd, supcon, trg  # noqa: F401
