"""Datasets: embedded (mnist1d, digits) and torchvision sets read from a local root."""
from distill.data import (digit_captions, embedded, karpathy, rationales,  # noqa: F401
                         vision)  # (registration)
from distill.data.base import DataModule, Splits

__all__ = ["DataModule", "Splits"]
