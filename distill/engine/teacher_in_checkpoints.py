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


def _storage(t: torch.Tensor) -> tuple:
    return t.data_ptr(), t.dtype, tuple(t.shape), tuple(t.stride())


def leave_out(checkpoint: dict, teacher, teacher_digest: str) -> None:
    """Drop the teacher's tensors from a checkpoint being saved, under whatever names the module
    holds them (an objective that keeps the teacher as a submodule holds them twice); keep their
    digest and, per name left out, the teacher's own name of the tensor."""
    own = {_storage(t): name for name, t in teacher.state_dict().items()}
    state = checkpoint["state_dict"]
    left = {name: own[_storage(t)] for name, t in state.items()
            if isinstance(t, torch.Tensor) and _storage(t) in own}
    for name in left:
        del state[name]
    checkpoint["teacher_digest"] = teacher_digest
    checkpoint["teacher_tensors"] = left


def put_back(checkpoint: dict, teacher, teacher_digest: str | None, path) -> None:
    """Before the checkpoint read from ``path`` is loaded: the rebuilt teacher's tensors under the
    names they were left out from, when the teacher's digest (made when it was built from its
    files) is the recorded one."""
    recorded = checkpoint.get("teacher_digest")
    if recorded is None:  # written with the teacher inside (or without a teacher)
        return
    left = checkpoint.get("teacher_tensors")
    own = teacher.state_dict() if from_files(teacher) else {}
    if (teacher_digest != recorded or not isinstance(left, dict)
            or not all(isinstance(v, str) and v in own for v in left.values())):
        raise UserError(f"checkpoint {str(path)!r} was trained against other teacher weights "
                        f"than the teacher it now has (its checkpoint file or its stage "
                        f"changed); put those weights back, or delete the run's folder to train "
                        f"it afresh", key="teacher")
    checkpoint["state_dict"].update({name: own[source] for name, source in left.items()})
