"""Optimisers and learning-rate schedules by name; schedules step once per epoch."""
from __future__ import annotations

import math

import torch

from distill.registry import optimizers, schedules


@optimizers.register("sgd")
def sgd(params, lr: float = 0.05, momentum: float = 0.9, weight_decay: float = 5e-4,
        nesterov: bool = False):
    """SGD with momentum (the CIFAR KD protocol: lr 0.05, momentum 0.9, wd 5e-4)."""
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay,
                           nesterov=nesterov)


@optimizers.register("adam")
def adam(params, lr: float = 1e-3, weight_decay: float = 0.0, betas: tuple[float, float] = (0.9, 0.999)):
    """Adam (Kingma & Ba 2015)."""
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, betas=betas)


@optimizers.register("adamw")
def adamw(params, lr: float = 1e-3, weight_decay: float = 0.01,
          betas: tuple[float, float] = (0.9, 0.999)):
    """AdamW, decoupled weight decay (Loshchilov & Hutter 2019)."""
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, betas=betas)


@schedules.register("none")
def constant(optimizer, epochs: int):
    """Constant learning rate."""
    return None


@schedules.register("cosine")
def cosine(optimizer, epochs: int, warmup_epochs: int = 0, min_lr: float = 0.0):
    """Linear warm-up for ``warmup_epochs``, then cosine decay to ``min_lr`` at the last epoch."""
    base = [g["lr"] for g in optimizer.param_groups]

    def factor(epoch: int, lr0: float) -> float:
        if epoch < warmup_epochs:
            return (epoch + 1) / (warmup_epochs + 1)
        progress = (epoch - warmup_epochs) / max(1, epochs - warmup_epochs)
        return (min_lr + (lr0 - min_lr) * 0.5 * (1 + math.cos(math.pi * progress))) / lr0

    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, [lambda e, lr0=lr0: factor(e, lr0) for lr0 in base])


@schedules.register("multistep")
def multistep(optimizer, epochs: int, milestones: list[int] = [150, 180, 210], gamma: float = 0.1):
    """Multiply the learning rate by ``gamma`` at each milestone epoch (CIFAR KD: 150/180/210)."""
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=gamma)
