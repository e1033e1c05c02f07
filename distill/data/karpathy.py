"""Flickr30K and MS-COCO image-text retrieval on the Karpathy splits: the split file
(``dataset_flickr30k.json`` / ``dataset_coco.json``: ``images`` with ``filename`` (COCO also
``filepath``), ``split`` (train / restval / val / test) and ``sentences`` with ``raw`` text) and
the folder of images. Images are read when an item is, resized (shorter side) and centre-cropped
to ``image_size``, normalised with ImageNet's statistics; captions go through the offline
word-level tokenizer built from the training captions. Relevance is the image: a caption is
relevant to its own image only. Everything is checked when the set is built: a missing split
file, images missing from the folder, entries without captions or file name."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import torch
from pydantic import Field
from torch.utils.data import Dataset

from distill.data.base import Splits
from distill.data.declared import stand_in
from distill.data.pairs import ImageSet, PairSet, make_tokenizer
from distill.data.vision import IMAGENET_MEAN, IMAGENET_STD
from distill.errors import UserError, shorten
from distill.registry import datasets


class ImageFiles(Dataset):
    """Image files read on demand: ``files[i]`` -> 3 x size x size float tensor."""

    def __init__(self, files: list[Path], size: int):
        from torchvision.transforms import v2

        self.files = files
        self.transform = v2.Compose([v2.Resize(size), v2.CenterCrop(size),
                                     v2.ToDtype(torch.float32, scale=True),
                                     v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)])

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        from torchvision.io import ImageReadMode, decode_image

        try:
            image = decode_image(str(self.files[int(i)]), mode=ImageReadMode.RGB)
        except RuntimeError:
            raise UserError(f"{shorten(str(self.files[int(i)]))} cannot be read as an image; "
                            f"replace it or remove its entry from the split file",
                            key="data.root") from None
        return self.transform(image)


def read_split_file(path: Path) -> list[dict]:
    """The split file's image entries, each checked for a file name and captions."""
    if not path.is_file():
        raise UserError(f"split file {path} does not exist; set data.root to the folder holding "
                        f"it and the images, or data.split_file to its path", key="data.split_file")
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))["images"]
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise UserError(f"{path} is not a Karpathy split file (a JSON object with \"images\"): "
                        f"{type(e).__name__}", key="data.split_file") from None
    for n, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("filename"), str):
            raise UserError(f"{path}: entry {n} has no \"filename\"", key="data.split_file")
        sentences = entry.get("sentences")
        if not sentences or not all(isinstance(s, dict) and isinstance(s.get("raw"), str)
                                    for s in sentences):
            raise UserError(f"{path}: entry {n} ({entry['filename'][:60]}) has no captions "
                            f"(\"sentences\" with \"raw\" text)", key="data.split_file")
    return entries


def karpathy_splits(root: str, split_file: str, image_size: int, captions_per_image: int,
                    train_splits: list[str], test_split: str, text_length: int,
                    tokenizer: str) -> Splits:
    from distill.task_kinds.retrieval import Retrieval

    root_path = Path(root)
    entries = read_split_file(Path(split_file) if Path(split_file).is_absolute()
                              else root_path / split_file)
    images_dir = root_path / "images" if (root_path / "images").is_dir() else root_path
    files = [images_dir / e.get("filepath", "") / e["filename"] for e in entries]
    outside = next((f for f in files
                    if not f.resolve().is_relative_to(images_dir.resolve())), None)
    if outside is not None:
        raise UserError(f"an entry's image {shorten(str(outside))} lies outside {images_dir}; "
                        f"file names in a split file stay under the image folder",
                        key="data.split_file")
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise UserError(f"{len(missing)} of the split file's {len(files)} images are missing under "
                        f"{images_dir} (e.g. {missing[0].name}); every entry needs its image",
                        key="data.root")
    train = [i for i, e in enumerate(entries) if e.get("split") in train_splits]
    test = [i for i, e in enumerate(entries) if e.get("split") == test_split]
    for name, part in (("training", train), ("test", test)):
        if not part:
            raise UserError(f"the split file has no {name} images (splits {train_splits} / "
                            f"{test_split!r})", key="data.split_file")
    captions = [[s["raw"] for s in e["sentences"][:captions_per_image]] for e in entries]
    tokenizer = make_tokenizer(tokenizer, [c for i in train for c in captions[i]], text_length)

    def part(index):
        texts = [c for i in index for c in captions[i]]
        image_of = torch.tensor([k for k, i in enumerate(index) for _ in captions[i]])
        return ImageFiles([files[i] for i in index], image_size), tokenizer(texts), image_of

    tr_images, tr_tokens, tr_image_of = part(train)
    te_images, te_tokens, te_image_of = part(test)
    te_keys = torch.arange(len(test))
    return Splits(PairSet(tr_images, tr_tokens, tr_image_of, tr_image_of),
                  ImageSet(te_images, te_keys), tr_image_of, te_keys,
                  num_classes=len(train), input_shape=(3, image_size, image_size),
                  kind=Retrieval(te_tokens, te_image_of), vocab_size=tokenizer.vocab_size,
                  text_length=tokenizer.length)


STAND_IN_VOCABULARY = 1000  # words, when the captions that decide it are not there


def declared_pairs(image_size: int = 224, text_length: int = 32, captions_per_image: int = 5,
                   **_) -> tuple[Splits, str]:
    """Retrieval splits of 4 random images of ``image_size`` with their captions of random
    tokens, for ``validate --without-data``."""
    from distill.task_kinds.retrieval import Retrieval

    generator = torch.Generator().manual_seed(0)
    images = torch.randn(4, 3, image_size, image_size, generator=generator)
    image_of = torch.arange(4).repeat_interleave(captions_per_image)
    tokens = torch.randint(2, STAND_IN_VOCABULARY, (len(image_of), text_length),
                           generator=generator)
    keys = torch.arange(4)
    splits = Splits(PairSet(images, tokens, image_of, image_of), ImageSet(images, keys), image_of,
                    keys, num_classes=4, input_shape=(3, image_size, image_size),
                    kind=Retrieval(tokens, image_of), vocab_size=STAND_IN_VOCABULARY,
                    text_length=text_length)
    return splits, (f"images 3x{image_size}x{image_size}, captions of {text_length} tokens, "
                    f"a stand-in vocabulary of {STAND_IN_VOCABULARY} words")


Size = Annotated[int, Field(ge=8, le=1024)]
Count = Annotated[int, Field(ge=1, le=100)]
Words = Annotated[int, Field(ge=4, le=512)]


@datasets.register("flickr30k")
def flickr30k(root: str = "data/flickr30k", split_file: str = "dataset_flickr30k.json",
              image_size: Size = 224, captions_per_image: Count = 5,
              train_splits: list[str] = ("train",), test_split: str = "test",
              text_length: Words = 32, tokenizer: str = "words") -> Splits:
    """Flickr30K, Karpathy split (29k / 1k / 1k images, 5 captions each): the split file and the
    images under ``root`` (or ``root/images``); retrieval. ``tokenizer``: ``words`` (built in) or a
    local Hugging Face folder."""
    return karpathy_splits(root, split_file, image_size, captions_per_image, list(train_splits),
                           test_split, text_length, tokenizer)


stand_in("flickr30k")(declared_pairs)
stand_in("coco")(declared_pairs)


@datasets.register("coco")
def coco(root: str = "data/coco", split_file: str = "dataset_coco.json",
         image_size: Size = 224, captions_per_image: Count = 5,
         train_splits: list[str] = ("train", "restval"), test_split: str = "test",
         text_length: Words = 32, tokenizer: str = "words") -> Splits:
    """MS-COCO, Karpathy split (113k / 5k / 5k images; ``filepath`` per entry): the split file
    and the images under ``root``; retrieval. ``tokenizer``: ``words`` or a local Hugging Face
    folder."""
    return karpathy_splits(root, split_file, image_size, captions_per_image, list(train_splits),
                           test_split, text_length, tokenizer)
