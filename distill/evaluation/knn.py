"""k-nearest-neighbour accuracy on frozen features (Sarnthein et al. 2023 use k = 20, as DINO).

Each test sample takes the k training samples of highest cosine similarity to it and the class most
of them carry (majority vote; a tie goes to the tied class with the larger summed similarity).
Deterministic.
"""
from typing import Literal  # evaluated annotations: the registry makes them the schema

import torch
import torch.nn.functional as F

from distill.evaluation.features import SOURCES, pick_device, probe_sets
from distill.registry import evaluators


@torch.no_grad()
def knn_accuracy(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor,
                 test_y: torch.Tensor, num_classes: int, k: int = 20, chunk: int = 1024) -> float:
    """Test accuracy (%) of the cosine-similarity k-NN majority vote."""
    train_x, test_x = F.normalize(train_x, dim=1), F.normalize(test_x, dim=1)
    k = min(k, len(train_x))
    correct = 0
    for start in range(0, len(test_x), chunk):
        sims, nearest = (test_x[start:start + chunk] @ train_x.T).topk(k, dim=1)
        labels = train_y[nearest]
        votes = torch.zeros(len(labels), num_classes, device=labels.device)
        votes.scatter_add_(1, labels, torch.ones_like(sims))
        summed = torch.zeros_like(votes).scatter_add_(1, labels, sims)
        # a summed similarity lies in [-k, k]; scaled below 1/2 it only breaks ties in the count
        predicted = (votes + summed / (2 * k + 1)).argmax(dim=1)
        correct += (predicted == test_y[start:start + chunk]).sum().item()
    return correct / len(test_x) * 100


@evaluators.register("knn")
def knn(k: int = 20, of: list[Literal["student", "teacher", "raw"]] = list(SOURCES),
        device: str = "auto"):
    """k-NN accuracy (%) with cosine similarity and majority vote: knn_student, knn_teacher,
    knn_raw."""

    def evaluate(module, data) -> dict[str, float]:
        sets = probe_sets(module, data, of, pick_device(device, module))
        return {f"knn_{source}": knn_accuracy(*arrays, data.num_classes, k)
                for source, arrays in sets.items()}

    return evaluate
