"""Image datasets read from a local root: CIFAR-10/100, MNIST, Fashion-MNIST and ImageFolder trees.

CIFAR is read from its python-version batch files by a restricted unpickler (the files are pickles;
only numpy array reconstruction is allowed), torchvision only downloads it. MNIST-like sets are read
by torchvision. Their images stay uint8 in memory and are normalised per item; CIFAR's training
augmentation (crop and flip) acts on the batch (:mod:`distill.data.views`). Image folders decode
and crop per item with ``torchvision.transforms.v2``.
"""
from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
from pydantic import Field
from torch.utils.data import Dataset

from distill.data.base import Splits
from distill.data.batch_ops import crop_boxes
from distill.data.views import crop_flip
from distill.data.declared import shape_text, shaped, stand_in
from distill.errors import ConfigError, UserError
from distill.registry import datasets

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class ArrayImages(Dataset):
    """uint8 images (N x C x H x W) and labels; an item is the image in [0, 1] normalised by the
    per-channel ``mean`` and ``std``."""

    def __init__(self, images: torch.Tensor, targets: torch.Tensor, mean, std):
        self.images, self.targets = images, targets
        self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return (self.images[i].float() / 255 - self.mean) / self.std, self.targets[i]

    def rows(self, where: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The items ``where`` at once (the loader's batched fetch)."""
        return (self.images[where].float() / 255 - self.mean) / self.std, self.targets[where]


def _require(title: str, paths: list[Path], holds: str) -> None:
    """Raise a UserError naming the first of ``paths`` that does not exist."""
    for path in paths:
        if not path.exists():
            raise UserError(f"{title} not found: {path} does not exist; set data.root to the "
                            f"folder that holds {holds}, or set download: true")


# --- CIFAR -------------------------------------------------------------------------------------

class _CifarUnpickler(pickle.Unpickler):
    """Unpickles only what CIFAR batch files hold: dicts, lists, byte strings, numpy arrays."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"),  # numpy 1.x wrote the real files
               ("numpy._core.multiarray", "_reconstruct"),  # numpy 2 names it so
               ("numpy", "ndarray"), ("numpy", "dtype")}

    def __init__(self, file, path: Path):
        super().__init__(file, encoding="bytes")  # the files were pickled by Python 2
        self.path = path

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise UserError(f"{self.path}: refusing to unpickle {module}.{name}; a CIFAR batch "
                            f"file holds only numpy arrays, lists and byte strings")
        return super().find_class(module, name)


def _load_pickle(path: Path) -> dict:
    with open(path, "rb") as f:
        try:
            content = _CifarUnpickler(f, path).load()
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as e:
            raise UserError(f"{path}: not a CIFAR python-version batch file ({e})") from None
    if not isinstance(content, dict):
        raise UserError(f"{path}: not a CIFAR python-version batch file (no dict inside)")
    return content


def _field(batch: dict, key: bytes, path: Path):
    if key not in batch:
        raise UserError(f"{path}: not a CIFAR python-version batch file (no {key.decode()!r})")
    return batch[key]


@dataclass(frozen=True)
class _CifarLayout:
    title: str
    folder: str
    train_files: tuple[str, ...]
    test_file: str
    meta_file: str
    label_key: bytes
    names_key: bytes
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    downloader: str  # the torchvision class that downloads it


_CIFAR10 = _CifarLayout("CIFAR-10", "cifar-10-batches-py",
                        tuple(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta",
                        b"labels", b"label_names",
                        (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), "CIFAR10")
_CIFAR100 = _CifarLayout("CIFAR-100", "cifar-100-python", ("train",), "test", "meta",
                         b"fine_labels", b"fine_label_names",
                         (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), "CIFAR100")


def _read_cifar(paths: list[Path], label_key: bytes) -> tuple[torch.Tensor, torch.Tensor]:
    """The images (N x 3 x 32 x 32, uint8) and labels of the given batch files, in order."""
    images, labels = [], []
    for path in paths:
        batch = _load_pickle(path)
        data = np.asarray(_field(batch, b"data", path))
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
            raise UserError(f"{path}: 'data' must be uint8 N x 3072, found {data.dtype} "
                            f"{tuple(data.shape)}")
        images.append(data.reshape(-1, 3, 32, 32))  # rows are 1024 red, 1024 green, 1024 blue
        labels.extend(_field(batch, label_key, path))
    return torch.from_numpy(np.concatenate(images)), torch.tensor(labels, dtype=torch.long)


def _cifar(layout: _CifarLayout, root: str, download: bool, augment: bool) -> Splits:
    root = str(Path(root).expanduser())
    if download:
        import torchvision

        try:
            getattr(torchvision.datasets, layout.downloader)(root, train=True, download=True)
        except (OSError, RuntimeError) as e:
            raise UserError(f"could not download {layout.title} to {root}: {e}") from None
    folder = Path(root) / layout.folder
    files = [*layout.train_files, layout.test_file, layout.meta_file]
    _require(layout.title, [Path(root), folder, *(folder / f for f in files)], f"{layout.folder}/")
    train_x, train_y = _read_cifar([folder / f for f in layout.train_files], layout.label_key)
    test_x, test_y = _read_cifar([folder / layout.test_file], layout.label_key)
    meta_path = folder / layout.meta_file
    num_classes = len(_field(_load_pickle(meta_path), layout.names_key, meta_path))
    black = -torch.tensor(layout.mean) / torch.tensor(layout.std)  # padding, normalised
    return Splits(ArrayImages(train_x, train_y, layout.mean, layout.std),
                  ArrayImages(test_x, test_y, layout.mean, layout.std), train_y, test_y,
                  num_classes, (3, 32, 32),
                  augment=crop_flip(4, fill=black) if augment else None)


@datasets.register("cifar10")
def cifar10(root: str, download: bool = False, augment: bool = True) -> Splits:
    """CIFAR-10 from <root>/cifar-10-batches-py, 3x32x32; augmented by a random crop after
    padding by 4 (black) and a horizontal flip, on the training batch."""
    return _cifar(_CIFAR10, root, download, augment)


@datasets.register("cifar100")
def cifar100(root: str, download: bool = False, augment: bool = True) -> Splits:
    """CIFAR-100 (fine labels) from <root>/cifar-100-python, 3x32x32; augmented by a random crop
    after padding by 4 (black) and a horizontal flip, on the training batch."""
    return _cifar(_CIFAR100, root, download, augment)


def _declared(input_shape: tuple, num_classes: int):
    def declared(augment: bool = False, **_) -> tuple[Splits, str]:
        return shaped(input_shape, num_classes, augment), shape_text(input_shape, num_classes)
    return declared


for _name, _shape, _classes in (("cifar10", (3, 32, 32), 10), ("cifar100", (3, 32, 32), 100),
                                ("mnist", (1, 28, 28), 10), ("fashion_mnist", (1, 28, 28), 10)):
    stand_in(_name)(_declared(_shape, _classes))


# --- MNIST and Fashion-MNIST --------------------------------------------------------------------

_IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
              "t10k-labels-idx1-ubyte")


def _mnist_like(name: str, title: str, root: str, download: bool, mean: float,
                std: float) -> Splits:
    import torchvision

    root = str(Path(root).expanduser())
    raw = Path(root) / name / "raw"
    if not download:
        _require(title, [Path(root), raw, *(raw / f for f in _IDX_FILES)], f"{name}/raw/")
    try:
        parts = [getattr(torchvision.datasets, name)(root, train=train, download=download)
                 for train in (True, False)]
    except (OSError, RuntimeError) as e:
        action = "download" if download else "read"
        raise UserError(f"could not {action} {title} under {root}: {e}") from None
    train, test = (ArrayImages(p.data.unsqueeze(1), p.targets.long(), (mean,), (std,))
                   for p in parts)
    return Splits(train, test, train.targets, test.targets, 10, (1, 28, 28))


@datasets.register("mnist")
def mnist(root: str, download: bool = False) -> Splits:
    """MNIST from <root>/MNIST/raw (idx files), normalised, 1x28x28."""
    return _mnist_like("MNIST", "MNIST", root, download, 0.1307, 0.3081)


@datasets.register("fashion_mnist")
def fashion_mnist(root: str, download: bool = False) -> Splits:
    """Fashion-MNIST from <root>/FashionMNIST/raw (idx files), normalised, 1x28x28."""
    return _mnist_like("FashionMNIST", "Fashion-MNIST", root, download, 0.2860, 0.3530)


# --- ImageFolder --------------------------------------------------------------------------------

def _folder(path: Path, transform):
    from torchvision.datasets import ImageFolder

    if not path.is_dir():
        raise UserError(f"image folder not found: {path} does not exist; set data.root to the "
                        f"folder that holds the train and test folders (train_dir, test_dir)")
    try:
        return ImageFolder(str(path), transform=transform)
    except FileNotFoundError as e:
        raise UserError(f"{path}: {e}") from None


class CroppedFolder(Dataset):
    """An image folder whose training items are torchvision's ``RandomResizedCrop(size)`` (area
    8-100%) and a horizontal flip with probability 1/2, drawn per item from (seed, epoch, index)
    (:class:`Indexed` passes the draws); the decoded files differ in size, so this cannot wait for
    the batch. Without draws (passes that read the training set in order) an item is the test
    transform's centre crop."""

    def __init__(self, folder, size: int, plain):
        from torchvision.transforms import v2

        self.folder, self.size, self.plain = folder, size, plain
        self.normalise = v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True),
                                     v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)])

    def __len__(self):
        return len(self.folder)

    def __getitem__(self, i):
        path, target = self.folder.samples[i]
        return self.plain(self.folder.loader(path)), target

    def drawn_item(self, i: int, draws):
        from torchvision.transforms import v2

        path, target = self.folder.samples[i]
        image = v2.functional.to_image(self.folder.loader(path))
        u = draws.uniform(0, 41)
        top, left, height, width = (int(v) for v in crop_boxes(u, *image.shape[-2:], (0.08, 1.0)))
        image = v2.functional.resized_crop(image, top, left, height, width,
                                           [self.size, self.size], antialias=True)
        if float(u[0, 40]) < 0.5:
            image = v2.functional.horizontal_flip(image)
        return self.normalise(image), target


@stand_in("image_folder")
def _image_folder_declared(image_size: int = 224, augment: bool = True,
                           num_classes: int | None = None, **_) -> tuple[Splits, str]:
    if num_classes is None:
        raise ConfigError("data.num_classes", "an image folder's classes are its folders; to "
                                              "validate without them give data.num_classes")
    shape = (3, image_size, image_size)
    return shaped(shape, num_classes, augment), shape_text(shape, num_classes)


@datasets.register("image_folder")
def image_folder(root: str, train_dir: str = "train", test_dir: str = "val", image_size: int = 224,
                 augment: bool = True,
                 num_classes: Annotated[int, Field(ge=2, le=1_000_000)] | None = None) -> Splits:
    """One folder per class under <root>/<train_dir> and <root>/<test_dir> (ImageNet layout);
    ``num_classes``, when given, must be the number of class folders (``validate
    --without-data`` needs it)."""
    from torchvision.transforms import v2

    test_tf = v2.Compose([v2.ToImage(), v2.Resize(round(image_size / 0.875)),
                          v2.CenterCrop(image_size), v2.ToDtype(torch.float32, scale=True),
                          v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    train = _folder(Path(root).expanduser() / train_dir, test_tf)
    test = _folder(Path(root).expanduser() / test_dir, test_tf)
    if train.classes != test.classes:
        only_train = sorted(set(train.classes) - set(test.classes))
        only_test = sorted(set(test.classes) - set(train.classes))
        raise UserError(f"{test.root} must have the same class folders as {train.root}; only in "
                        f"{train_dir}: {only_train}, only in {test_dir}: {only_test}")
    if num_classes is not None and num_classes != len(train.classes):
        raise ConfigError("data.num_classes", f"{train.root} has {len(train.classes)} class "
                                              f"folders, not {num_classes}; give "
                                              f"num_classes: {len(train.classes)}")
    return Splits(CroppedFolder(train, image_size, test_tf) if augment else train, test,
                  torch.tensor(train.targets), torch.tensor(test.targets),
                  len(train.classes), (3, image_size, image_size), augmented=augment)
