"""Linear probe: how linearly decodable the classes are from frozen features (Sarnthein et al.
2023 report it for the teacher, the student and the raw input).

Recipe (fixed, deterministic): standardise each feature dimension with the training features' mean
and standard deviation (constant dimensions become 0); fit multinomial logistic regression
``min_{W,b} mean_i CE(W x_i + b, y_i) + weight_decay / 2 * |W|^2`` full-batch with L-BFGS (strong
Wolfe line search, history 20) for at most ``steps`` iterations from zero weights; report test
accuracy (%).
No randomness is involved: the same features give the same number.
"""
from typing import Literal  # evaluated annotations: the registry makes them the schema

import torch
import torch.nn.functional as F

from distill.evaluation.features import SOURCES, pick_device, probe_sets
from distill.registry import evaluators


def standardise(train: torch.Tensor, test: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(x - mean) / std with the training set's statistics; zero-variance dimensions map to 0."""
    mean, std = train.mean(dim=0), train.std(dim=0)
    std = torch.where(std > 1e-8, std, torch.ones_like(std))
    return (train - mean) / std, (test - mean) / std


def linear_probe_accuracy(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor,
                          test_y: torch.Tensor, num_classes: int, steps: int = 100,
                          weight_decay: float = 1e-4) -> float:
    """Test accuracy (%) of L2-regularised logistic regression fitted on standardised features."""
    train_x, test_x = standardise(train_x, test_x)
    weight = torch.zeros(num_classes, train_x.shape[1], device=train_x.device, requires_grad=True)
    bias = torch.zeros(num_classes, device=train_x.device, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], lr=1, max_iter=steps, history_size=20,
                                  line_search_fn="strong_wolfe", tolerance_grad=1e-9,
                                  tolerance_change=1e-12)

    def closure():
        optimizer.zero_grad()
        loss = F.cross_entropy(F.linear(train_x, weight, bias), train_y) \
            + weight_decay / 2 * weight.square().sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    with torch.no_grad():
        predicted = F.linear(test_x, weight, bias).argmax(dim=1)
    return (predicted == test_y).sum().item() / len(test_y) * 100


@evaluators.register("linear_probe")
def linear_probe(steps: int = 100, weight_decay: float = 1e-4,
                 of: list[Literal["student", "teacher", "raw"]] = list(SOURCES),
                 device: str = "auto"):
    """Linear-probe accuracy (%) on standardised frozen features: probe_student, probe_teacher,
    probe_raw (full-batch L-BFGS logistic regression, at most ``steps`` iterations, L2
    ``weight_decay``)."""

    def evaluate(module, data) -> dict[str, float]:
        sets = probe_sets(module, data, of, pick_device(device, module))
        return {f"probe_{source}": linear_probe_accuracy(*arrays, data.num_classes, steps,
                                                         weight_decay)
                for source, arrays in sets.items()}

    return evaluate
