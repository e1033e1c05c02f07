"""Lightning's checkpoints written atomically (:mod:`distill.atomic_write`) and read with
``torch.load(..., weights_only=True)``."""
from __future__ import annotations

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from distill.atomic_write import atomic_save
from distill.errors import UserError


class SafeCheckpointIO(TorchCheckpointIO):
    def save_checkpoint(self, checkpoint, path, storage_options=None):
        atomic_save(checkpoint, path)

    def load_checkpoint(self, path, map_location=None, weights_only=None):
        try:
            return torch.load(path, map_location=map_location or "cpu", weights_only=True)
        except Exception as e:
            raise UserError(f"checkpoint {str(path)!r} cannot be read ({type(e).__name__}: "
                            f"{str(e).splitlines()[0][:120]}); delete it to start that run afresh")\
                from None
