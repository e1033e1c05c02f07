"""A teacher whose weights come from files (a frozen teacher, an ensemble's members) stays out of
the run's checkpoints: the run rebuilds it from those files, so each epoch's checkpoint holds the
student's state alone (a resnet32x4 teacher is 30 MB of every resnet8x4 checkpoint; the DCD
teacher 58 MB of 192). A digest of the teacher's tensors stands in for them, so a run resumed
against other teacher weights is refused instead of quietly mixing two teachers."""
from __future__ import annotations

import hashlib

import torch

from distill.errors import UserError

PREFIX = "teacher."


def from_files(teacher) -> bool:
    """Whether ``teacher`` (a role, or None) is rebuilt from files and never changes in a run."""
    return teacher is not None and not teacher.trainable and teacher.weights in ("given",
                                                                                  "members")


def digest(state: dict[str, torch.Tensor]) -> str:
    """sha256 of the names, dtypes, shapes and bytes of a state dict's tensors."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def leave_out(checkpoint: dict, teacher_digest: str) -> None:
    """Drop the teacher's tensors from a checkpoint being saved; keep their digest."""
    state = checkpoint["state_dict"]
    for name in [n for n in state if n.startswith(PREFIX)]:
        del state[name]
    checkpoint["teacher_digest"] = teacher_digest


def put_back(checkpoint: dict, teacher, teacher_digest, path) -> None:
    """Before the checkpoint read from ``path`` is loaded: the rebuilt teacher's tensors in place
    of those left out, when its digest is the recorded one (``teacher_digest``: computes the
    rebuilt one)."""
    recorded = checkpoint.get("teacher_digest")
    if recorded is None:  # written with the teacher inside (or without a teacher)
        return
    if not from_files(teacher) or teacher_digest() != recorded:
        raise UserError(f"checkpoint {str(path)!r} was trained against other teacher weights "
                        f"than the teacher it now has (its checkpoint file or its stage "
                        f"changed); put those weights back, or delete the run's folder to train "
                        f"it afresh", key="teacher")
    checkpoint["state_dict"].update({PREFIX + name: value
                                     for name, value in teacher.state_dict().items()})
