"""Imports every objective module so each registers its name."""
from distill.objectives import ce, kd, lwf, prd, supcon  # noqa: F401
