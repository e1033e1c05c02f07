"""What every dataset provides, and the one data module that serves them all.

A registered dataset returns :class:`Splits`; :class:`DataModule` adds batching, a data order that
depends only on (seed, epoch) so a resumed run sees the same batches, the sample index with every
batch (for cached teacher outputs and class-means), and optional subsets of the train and test
sets (class-imbalanced profiles, continual-learning tasks). Training batches are augmented on the
training device, after transfer: the dataset's own augmentation and the views the experiment asks
for, each sample's a function of (seed, epoch, index) alone (:mod:`distill.data.views`), so
they are the same in any worker count and on any resume.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from torch.utils.data import DataLoader, Dataset, Sampler, TensorDataset, default_collate

from distill.data.batch_groups import BatchGroup, BatchGroups, group_size
from distill.data.sample_draws import SampleDraws
from distill.errors import UserError
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
    augmented: bool = False  # True when training inputs change between epochs (set by augment)
    kind: TaskKind = field(default_factory=Classification)  # what the batches and metrics are
    vocab_size: int | None = None  # text: the tokenizer's vocabulary (retrieval, generation)
    text_length: int | None = None  # text: tokens per caption or sequence
    augment: Callable | None = None  # the training batches' augmentation (x, draws, stream)

    def __post_init__(self):
        self.augmented = self.augmented or self.augment is not None


class Indexed(Dataset):
    """Items ``(x, y, i)``: ``i`` is the position in the full underlying set, for any subset. A
    key is a position or ``(epoch, position)`` (from :class:`EpochSampler`); a dataset that draws
    per item (``drawn_item(i, draws)``, e.g. image folders' crops of decoded files) gets the
    draws of (seed, epoch, i)."""

    def __init__(self, data: Dataset, indices: torch.Tensor | None = None, seed: int = 0):
        self.data = data
        self.indices = indices
        self.seed = seed

    def __len__(self):
        return len(self.indices) if self.indices is not None else len(self.data)

    def __getitem__(self, key):
        epoch, k = key if isinstance(key, tuple) else (None, key)
        i = int(self.indices[k]) if self.indices is not None else k
        if epoch is not None and hasattr(self.data, "drawn_item"):
            x, y = self.data.drawn_item(i, SampleDraws(self.seed, epoch, torch.tensor([i])))
        else:
            x, y = self.data[i]
        return x, y, i

    def __getitems__(self, keys: list) -> tuple:
        """A batch ``(x, y, i)`` at once (the loader's batched fetch, passed on by
        :func:`fetched`): one indexing of the tensors for sets held as tensors (:func:`rows`),
        else the items one by one, collated."""
        positions = [key[1] if isinstance(key, tuple) else key for key in keys]
        where = torch.tensor(positions, dtype=torch.long)
        where = where if self.indices is None else self.indices[where]
        fetched = rows(self.data, where)
        if fetched is None:
            return tuple(default_collate([self[key] for key in keys]))
        return (*fetched, where)


def fetched(batch: tuple) -> tuple:
    """The loader's ``collate_fn`` for :class:`Indexed`, whose ``__getitems__`` returns the batch
    already formed (no split into items and stacking again)."""
    return batch


def rows(data: Dataset, where: torch.Tensor) -> tuple[torch.Tensor, ...] | None:
    """The items ``where`` of a set held as tensors, as one tensor per field (None for others):
    a ``TensorDataset``, or a set with ``rows(where)``."""
    if isinstance(data, TensorDataset):
        return tuple(t[where] for t in data.tensors)
    if hasattr(data, "rows"):
        return data.rows(where)
    return None


class EpochSampler(Sampler):
    """A random order that is a function of (seed, epoch) alone, not of any global RNG state;
    it yields ``(epoch, position)`` keys, so that items drawn per item know their epoch in any
    worker. The epoch is the ``clock``'s when it tells one (the trainer's: Lightning iterates the
    loader of a fit's first epoch before it calls ``set_epoch``, and loader workers draw indices
    as soon as it does), else the last ``set_epoch``."""

    def __init__(self, size: int, seed: int, clock: Callable[[], int | None] | None = None,
                 rank: int = 0, world: int = 1):
        self.size, self.seed, self.epoch, self.clock = size, seed, 0, clock
        self.rank, self.world = rank, world

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        now = self.clock() if self.clock is not None else None
        epoch = self.epoch if now is None else now
        g = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        order = torch.randperm(self.size, generator=g).tolist()
        if self.world > 1:  # every process the same number of samples, the first ones again
            total = len(self) * self.world
            order = (order * -(-total // self.size))[:total][self.rank::self.world]
        return iter([(epoch, k) for k in order])

    def __len__(self):
        """With several processes (``world``, this one ``rank``) each takes every world-th
        sample of the order, so the k-th batches of all of them are together the k-th batch of
        one process with world times their batch size."""
        return -(-self.size // self.world)


class DataModule:
    """Loaders over :class:`Splits`, optionally restricted to ``train_index`` / ``test_index``.
    Lightning's data module is :class:`~distill.engine.lightning_data.LightningData`, this class
    with Lightning's base; ``distill validate`` builds this one, without importing Lightning."""

    trainer = None  # the Trainer that fits with it (Lightning sets it)

    def __init__(self, splits: Splits, batch_size: int = 128, num_workers: int = 0, seed: int = 0,
                 eval_batch_size: int | None = None, train_index: torch.Tensor | None = None,
                 test_index: torch.Tensor | None = None, views: tuple | None = None):
        super().__init__()
        self.splits = splits
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or max(batch_size, 256)
        self.num_workers = num_workers
        self.seed = seed
        self.train_set = Indexed(splits.train, train_index, seed)
        self.test_set = Indexed(splits.test, test_index, seed)
        self.views = views  # (augmentation, count) or None
        self.channels_last = False  # image batches in NHWC memory order (``channels_last:``)
        # bytes of training batches a Lightning step may take (set by the engine, which takes
        # them one optimiser step each), and of test batches a validation step; 0: one a step
        self.group_budget = 0

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
        return DataLoader(data, batch_size=batch_size, sampler=sampler, collate_fn=fetched,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0,
                          generator=torch.Generator().manual_seed(self.seed))

    def _rank_world(self) -> tuple[int, int]:
        return getattr(self.trainer, "global_rank", 0), getattr(self.trainer, "world_size", 1)

    def train_dataloader(self):
        rank, world = self._rank_world()
        loader = self._loader(self.train_set, self.batch_size,
                              EpochSampler(len(self.train_set), self.seed, self.epoch_now, rank,
                                           world))
        return self._in_groups(loader, self.train_set, self.batch_size)

    def _in_groups(self, loader, data, batch_size: int):
        """``loader`` of ``data`` in groups of the batches that fit ``group_budget`` (0: one at
        a time)."""
        size = group_size(data[0], batch_size, self.group_budget) if self.group_budget else 1
        return BatchGroups(loader, size) if size > 1 else loader

    def epoch_now(self) -> int | None:
        """The epoch the attached trainer starts or runs, as Lightning gives it to ``set_epoch``
        (None outside a fit): on resume its ``current_epoch`` still reads the last finished one
        when the loader is first iterated."""
        trainer = self.trainer
        return None if trainer is None else trainer.fit_loop.epoch_progress.current.processed

    def training_batch(self, batch, epoch: int, views: bool = True):
        """A training batch ``(x, y, i)`` as training reads it: x augmented by the dataset's
        augmentation (stream 0) and, with views, ``(x, y, i, views)``, views B x count x ...
        (stream k + 1 for view k), every sample's from (seed, epoch, i)."""
        if self.splits.augment is None and (self.views is None or not views):
            return batch
        x, y, index = batch[:3]
        draws = SampleDraws(self.seed, epoch, index)
        if self.splits.augment is not None:
            x = self.splits.augment(x, draws, 0)
        if self.views is None or not views:
            return (x, y, index, *batch[3:])
        augment, count = self.views
        views = torch.stack([augment(x, draws, k + 1) for k in range(count)], dim=1)
        return (x, y, index, views)

    def epoch_inputs(self, epoch: int, device, convert: Callable = lambda batch: batch):
        """The inputs of training ``epoch`` as training forms them, pairs (x, index): the same
        batches in the same order, converted (``convert``: the precision's, before transfer),
        augmented (no views) and in the same memory format."""
        loader = DataLoader(self.train_set, batch_size=self.batch_size, collate_fn=fetched,
                            sampler=EpochSampler(len(self.train_set), self.seed, lambda: epoch),
                            generator=torch.Generator())  # draws nothing from the global one
        for batch in loader:
            batch = [t.to(device) for t in convert(batch)[:3]]
            x, _, index = self.training_batch(batch, epoch, views=False)[:3]
            yield self.in_memory_format(x), index

    def in_memory_format(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last and x.dim() == 4:
            return x.contiguous(memory_format=torch.channels_last)
        return x

    def on_after_batch_transfer(self, batch, dataloader_idx):
        if isinstance(batch, BatchGroup):
            return BatchGroup(self.on_after_batch_transfer(b, dataloader_idx) for b in batch)
        if self.trainer is not None and self.trainer.training:
            batch = self.training_batch(batch, self.epoch_now())
        if not self.channels_last or not isinstance(batch[0], torch.Tensor):
            return batch
        return (self.in_memory_format(batch[0]), *batch[1:])

    def train_eval_dataloader(self):
        """The train set in order, for passes that read it without training (class-means, probes)."""
        return self._loader(self.train_set, self.eval_batch_size)

    def val_dataloader(self):
        """The test set; with several processes each measures every world-th sample (the
        metrics add their counts up), unless the task kind measures over the whole set."""
        rank, world = self._rank_world()
        shard = world > 1 and self.kind.shards_validation
        if shard and len(self.test_set) < world:  # the same in every process: all stop here
            raise UserError(f"the test set has {len(self.test_set)} sample(s), fewer than the "
                            f"{world} processes that share it (a process with none would leave "
                            f"the others waiting); give at most {len(self.test_set)} processes or "
                            f"a larger test set", key="trainer.devices")
        return self._in_groups(self._loader(self.test_set, self.eval_batch_size,
                                            range(rank, len(self.test_set), world) if shard
                                            else None), self.test_set, self.eval_batch_size)

    def test_dataloader(self):
        """The whole test set, in every process (evaluators after training)."""
        return self._loader(self.test_set, self.eval_batch_size)
