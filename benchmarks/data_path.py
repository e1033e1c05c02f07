"""The CIFAR data path of one training step (a batch of 64 images, one torch thread): torchvision's
per-image pipeline (random crop after padding by 4, flip, to float, normalise; what the loader did
before augmentation moved to the batch) against the loader's batch (fetched at once, normalised)
cropped and flipped as one batch, and that batch crop and flip alone.

    .venv/bin/python benchmarks/data_path.py [--repeats 200]

Prints milliseconds per batch (median of 5 rounds) and the ratio. Run by hand, results in the
README; never part of the tests.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from torch.utils.data import default_collate  # noqa: E402

from distill.data.base import Indexed  # noqa: E402
from distill.data.sample_draws import SampleDraws  # noqa: E402
from distill.data.vision import ArrayImages  # noqa: E402
from distill.data.views import crop_flip  # noqa: E402

MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


def per_batch_ms(work, repeats: int) -> float:
    rounds = []
    for _ in range(5):
        started = time.perf_counter()
        for k in range(repeats):
            work(k)
        rounds.append((time.perf_counter() - started) / repeats * 1000)
    return statistics.median(rounds)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--repeats", type=int, default=200)
    args = p.parse_args()
    from torchvision.transforms import v2

    torch.set_num_threads(1)
    images = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0))
    index = torch.arange(64)
    mean, std = torch.tensor(MEAN).view(3, 1, 1), torch.tensor(STD).view(3, 1, 1)
    per_image = v2.Compose([v2.RandomCrop(32, padding=4), v2.RandomHorizontalFlip(),
                            v2.ToDtype(torch.float32, scale=True), v2.Normalize(MEAN, STD)])
    augment = crop_flip(4, fill=-mean.flatten() / std.flatten())
    normalised = torch.stack([(im.float() / 255 - mean) / std for im in images])

    def torchvision_items(k):  # the loader before: item by item, then collated
        default_collate([(per_image(im), 0, i) for i, im in enumerate(images)])

    train = Indexed(ArrayImages(images, torch.zeros(64, dtype=torch.long), MEAN, STD))
    keys = [(0, k) for k in range(64)]

    def loader_batch(k):
        x, _, i = train.__getitems__(keys)  # what the loader does: the batch at once
        augment(x, SampleDraws(0, k, i), 0)

    def batch_only(k):
        augment(normalised, SampleDraws(0, k, index), 0)

    before = per_batch_ms(torchvision_items, args.repeats // 4)
    now = per_batch_ms(loader_batch, args.repeats)
    alone = per_batch_ms(batch_only, args.repeats)
    print(f"CIFAR batch of 64, 1 thread, torch {torch.__version__}:")
    print(f"  torchvision per image (crop, flip, float, normalise)  {before:7.2f} ms"
          f"   (items collated)")
    print(f"  the loader's batch, then crop and flip of the batch   {now:7.2f} ms"
          f"   ({before / now:.1f}x faster)")
    print(f"  crop and flip of the batch alone                      {alone:7.2f} ms")


if __name__ == "__main__":
    main()
