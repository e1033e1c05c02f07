"""Digit captions: an embedded image-text retrieval set built from scikit-learn's 1797 real 8x8
digits, with captions that describe each image finely enough that retrieval is not classification.

From the pixels of each image: the digit, its stroke weight (total ink: thin / medium / bold, the
dataset's tertiles), its slant (the ink's second moments: leaning left / upright / leaning right,
tertiles) and its size (the ink's bounding box: small / large, median). Each image gets
``captions_per_image`` captions, each from another template with its own synonyms ("a bold seven
leaning right, drawn large", "number 7 in heavy strokes, slanted to the right, big"), so the words
differ while the content is the same. Relevance is content: a caption is relevant to every image
with the same four attributes (180 possible contents), not only to its own image. The train/test
split is the ``digits`` dataset's (stratified, seeded).
"""
from __future__ import annotations

from typing import Annotated

import numpy as np
import torch
from pydantic import Field

from distill.data.base import Splits
from distill.data.pairs import ImageSet, PairSet, WordTokenizer
from distill.registry import datasets

DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
WEIGHT = [["thin", "light", "fine"], ["medium", "regular", "normal"], ["bold", "heavy", "thick"]]
SLANT = [["leaning left", "slanted to the left", "tilted left"],
         ["upright", "standing straight", "not slanted"],
         ["leaning right", "slanted to the right", "tilted right"]]
SIZE = [["small", "compact", "tiny"], ["large", "big", "wide"]]
TEMPLATES = [
    "a {weight} {digit} {slant}, drawn {size}",
    "the digit {number} written with {weight} strokes, {slant}, {size}",
    "{size} handwritten {digit} with {weight} lines, {slant}",
    "number {number} in {weight} ink, {slant}, {size}",
    "{slant} {digit} drawn {size} with a {weight} pen",
]


def attributes(images: np.ndarray) -> np.ndarray:
    """N x 3 integer attributes of N x 8 x 8 images in [0, 1]: weight (0-2), slant (0-2), size
    (0-1), cut at the tertiles / median of these images."""
    ink = images.reshape(len(images), -1).sum(1)
    rows, cols = np.mgrid[0:8, 0:8]
    mass = images.sum((1, 2)) + 1e-8
    cy = (images * rows).sum((1, 2)) / mass
    cx = (images * cols).sum((1, 2)) / mass
    dy, dx = rows[None] - cy[:, None, None], cols[None] - cx[:, None, None]
    # x drift per unit of height: ink further right higher up is a right slant
    slope = -(images * dx * dy).sum((1, 2)) / ((images * dy * dy).sum((1, 2)) + 1e-8)
    on = images > 0.3
    height = np.array([np.ptp(np.nonzero(m)[0]) + 1 if m.any() else 0 for m in on])
    width = np.array([np.ptp(np.nonzero(m)[1]) + 1 if m.any() else 0 for m in on])
    area = height * width

    def tertile(v):
        return np.digitize(v, np.quantile(v, [1 / 3, 2 / 3]))

    return np.stack([tertile(ink), tertile(slope), (area > np.median(area)).astype(int)], 1)


def describe(digit: int, attrs, template: int, rng: np.random.Generator) -> str:
    weight, slant, size = attrs
    pick = lambda options: options[rng.integers(len(options))]  # noqa: E731
    return TEMPLATES[template].format(digit=DIGITS[digit], number=digit, weight=pick(WEIGHT[weight]),
                                      slant=pick(SLANT[slant]), size=pick(SIZE[size]))


def content_key(digit: int, attrs) -> int:
    weight, slant, size = attrs
    return ((digit * 3 + weight) * 3 + slant) * 2 + size


@datasets.register("digit_captions")
def digit_captions(captions_per_image: Annotated[int, Field(ge=1, le=len(TEMPLATES))] = 5,
                   test_fraction: Annotated[float, Field(ge=0.01, le=0.9)] = 0.2,
                   seed: Annotated[int, Field(ge=0, le=2 ** 32 - 1)] = 0) -> Splits:
    """Digit captions: scikit-learn digits with generated captions of digit, stroke weight, slant
    and size; several differently worded captions per image; relevance by content (retrieval)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    from distill.task_kinds.retrieval import Retrieval

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32).reshape(-1, 8, 8)
    attrs = attributes(x)
    keys = np.array([content_key(d, a) for d, a in zip(y, attrs)])
    rng = np.random.default_rng(seed)
    captions = [[describe(int(d), a, t, rng) for t in range(captions_per_image)]
                for d, a in zip(y, attrs)]
    train, test = train_test_split(np.arange(len(x)), test_size=test_fraction, random_state=seed,
                                   stratify=y)
    tokenizer = WordTokenizer([c for i in train for c in captions[i]], length=12)
    images = torch.as_tensor(x).unsqueeze(1)

    def part(index):
        texts = [c for i in index for c in captions[i]]
        image_of = torch.arange(len(index)).repeat_interleave(captions_per_image)
        return images[index], tokenizer(texts), image_of, torch.as_tensor(keys[index])

    tr_images, tr_tokens, tr_image_of, tr_keys = part(train)
    te_images, te_tokens, te_image_of, te_keys = part(test)
    return Splits(PairSet(tr_images, tr_tokens, tr_image_of, tr_keys[tr_image_of]),
                  ImageSet(te_images, te_keys), tr_keys[tr_image_of], te_keys,
                  num_classes=int(keys.max()) + 1, input_shape=(1, 8, 8),
                  kind=Retrieval(te_tokens, te_keys[te_image_of]),
                  vocab_size=tokenizer.vocab_size, text_length=tokenizer.length)
