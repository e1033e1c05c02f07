"""What every dataset provides, and the one data module that serves them all.

A registered dataset returns :class:`Splits`; :class:`DataModule` adds batching, a data order that
depends only on (seed, epoch) so a resumed run sees the same batches, the sample index with every
batch (for cached teacher outputs and class-means), and optional subsets of the train and test
sets (class-imbalanced profiles, continual-learning tasks), and augmented views of each training item
when the experiment asks for them.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from distill.data.views import WithViews
from distill.task_kinds import Classification, TaskKind


@dataclass
class Splits:
    """A dataset's train and test sets. Items are ``(x, y)``; targets are the labels as tensors."""

    train: Dataset
    test: Dataset
    train_targets: torch.Tensor
    test_targets: torch.Tensor
    num_classes: int
    input_shape: tuple
    augmented: bool = False  # True when the train transform is random (no teacher-output cache)
    kind: TaskKind = field(default_factory=Classification)  # what the batches and metrics are
    vocab_size: int | None = None  # text: the tokenizer's vocabulary (retrieval, generation)
    text_length: int | None = None  # text: tokens per caption or sequence


class Indexed(Dataset):
    """Items ``(x, y, i)``: ``i`` is the position in the full underlying set, for any subset."""

    def __init__(self, data: Dataset, indices: torch.Tensor | None = None):
        self.data = data
        self.indices = indices

    def __len__(self):
        return len(self.indices) if self.indices is not None else len(self.data)

    def __getitem__(self, k):
        i = int(self.indices[k]) if self.indices is not None else k
        x, y = self.data[i]
        return x, y, i


class EpochSampler(Sampler[int]):
    """A random order that is a function of (seed, epoch) alone, not of any global RNG state."""

    def __init__(self, size: int, seed: int):
        self.size, self.seed, self.epoch = size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(torch.randperm(self.size, generator=g).tolist())

    def __len__(self):
        return self.size


class DataModule(L.LightningDataModule):
    """Loaders over :class:`Splits`, optionally restricted to ``train_index`` / ``test_index``."""

    def __init__(self, splits: Splits, batch_size: int = 128, num_workers: int = 0, seed: int = 0,
                 eval_batch_size: int | None = None, train_index: torch.Tensor | None = None,
                 test_index: torch.Tensor | None = None, views: tuple | None = None):
        super().__init__()
        self.splits = splits
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or max(batch_size, 256)
        self.num_workers = num_workers
        self.seed = seed
        self.train_set = Indexed(splits.train, train_index)
        self.test_set = Indexed(splits.test, test_index)
        self.views = views  # (transform, count) or None

    @property
    def has_views(self) -> bool:
        return self.views is not None

    @property
    def kind(self) -> TaskKind:
        return self.splits.kind

    @property
    def num_classes(self) -> int:
        return self.splits.num_classes

    @property
    def input_shape(self) -> tuple:
        return self.splits.input_shape

    def train_targets(self) -> torch.Tensor:
        t = self.splits.train_targets
        return t if self.train_set.indices is None else t[self.train_set.indices]

    def _loader(self, data, batch_size, sampler=None):
        # a loader's own generator: starting an iteration then draws nothing from torch's global
        # one, which dropout and augmentations use and checkpoints restore
        return DataLoader(data, batch_size=batch_size, sampler=sampler,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0,
                          generator=torch.Generator().manual_seed(self.seed))

    def train_dataloader(self):
        data = self.train_set if self.views is None else WithViews(self.train_set, *self.views)
        return self._loader(data, self.batch_size, EpochSampler(len(self.train_set), self.seed))

    def train_eval_dataloader(self):
        """The train set in order, for passes that read it without training (class-means, probes)."""
        return self._loader(self.train_set, self.eval_batch_size)

    def val_dataloader(self):
        return self._loader(self.test_set, self.eval_batch_size)

    def test_dataloader(self):
        return self.val_dataloader()
