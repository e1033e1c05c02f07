"""Lightning's view of an objective: a callback that passes on the objective's hooks."""
from __future__ import annotations

from lightning.pytorch.callbacks import Callback

from distill.objectives.base import CALLBACK_HOOKS, Objective


class ObjectiveHooks(Callback):
    """The Lightning callback of one objective: every hook is the objective's own, its state is
    not. The objective is a submodule of the LightningModule, so its parameters and buffers are
    already in the checkpoint's ``state_dict``; as a callback of its own, Lightning would save
    them a second time under ``callbacks``."""

    def __init__(self, objective: Objective):
        self.objective = objective

    @property
    def state_key(self) -> str:
        return self.objective.state_key


def _passed_on(name: str):
    def hook(self, *args, **kwargs):
        return getattr(self.objective, name)(*args, **kwargs)
    hook.__name__ = name
    return hook


for _name in CALLBACK_HOOKS:
    setattr(ObjectiveHooks, _name, _passed_on(_name))
