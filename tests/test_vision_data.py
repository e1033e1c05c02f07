"""Vision datasets read from small files written here in the real on-disk formats, and the
long-tail subset helper."""
from __future__ import annotations

import io
import os
import pickle
import struct

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from distill.data.imbalance import long_tail_indices
from distill.data.vision import cifar10, cifar100, fashion_mnist, image_folder, mnist
from distill.errors import UserError

from dataset_files import cifar_batch, write_cifar10, write_cifar100, write_py2_pickle
from distill.registry import datasets

CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


def normalised(pixels: np.ndarray, mean, std) -> torch.Tensor:
    x = torch.from_numpy(pixels.astype(np.float32) / 255.0)
    return (x - torch.tensor(mean).view(-1, 1, 1)) / torch.tensor(std).view(-1, 1, 1)


# --- CIFAR --------------------------------------------------------------------------------------

def test_cifar10_reads_the_python_version_format(tmp_path):
    batches = write_cifar10(tmp_path)
    splits = cifar10(root=str(tmp_path))
    assert (len(splits.train), len(splits.test)) == (100, 20)
    assert splits.num_classes == 10 and splits.input_shape == (3, 32, 32) and splits.augmented
    train_labels = sum((b["labels"] for b in batches[:5]), [])
    assert splits.train_targets.tolist() == train_labels
    assert splits.test_targets.dtype == torch.long
    assert splits.test_targets.tolist() == batches[5]["labels"]
    x, y = splits.test[3]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and int(y) == batches[5]["labels"][3]
    expected = normalised(batches[5]["data"][3].reshape(3, 32, 32), CIFAR10_MEAN, CIFAR10_STD)
    torch.testing.assert_close(x, expected)


def test_cifar_normalisation_statistics_are_plausible(tmp_path):
    write_cifar10(tmp_path)
    x = torch.stack([image for image, _ in cifar10(root=str(tmp_path)).test])
    # uniform random pixels: mean 0.5, std 0.289 before normalising with CIFAR-10's mean and std
    per_channel_mean = x.mean(dim=(0, 2, 3))
    expected_mean = (0.5 - torch.tensor(CIFAR10_MEAN)) / torch.tensor(CIFAR10_STD)
    torch.testing.assert_close(per_channel_mean, expected_mean, atol=0.02, rtol=0)
    assert ((x.std(dim=(0, 2, 3)) - 0.2887 / torch.tensor(CIFAR10_STD)).abs() < 0.02).all()


def test_cifar_items_are_normalised_and_training_batches_cropped_and_flipped(tmp_path):
    from distill.data.batch_ops import pad_crop
    from distill.data.sample_draws import SampleDraws

    write_cifar10(tmp_path)
    splits = cifar10(root=str(tmp_path))
    mean, std = torch.tensor(CIFAR10_MEAN).view(3, 1, 1), torch.tensor(CIFAR10_STD).view(3, 1, 1)
    for part in (splits.train, splits.test):  # an item is the image, normalised, every time
        x, _ = part[3]
        torch.testing.assert_close(x, (part.images[3].float() / 255 - mean) / std)
        assert torch.equal(part[3][0], x)
    batch = torch.stack([splits.train[i][0] for i in range(8)])
    draws = SampleDraws(0, 0, torch.arange(8))
    out = splits.augment(batch, draws, 0)
    u = draws.uniform(0, 3)  # the stream's numbers: row offset, column offset, flip
    black = (-mean / std).flatten()
    torch.testing.assert_close(out, pad_crop(batch, 4, u[:, :2], black, u[:, 2] < 0.5))
    for b in range(8):  # by hand: pad with black, crop at the offsets, mirror half of them
        padded = black.view(3, 1, 1).expand(3, 40, 40).clone()
        padded[:, 4:36, 4:36] = batch[b]
        dy, dx = (u[b, :2] * 9).long().tolist()
        crop = padded[:, dy:dy + 32, dx:dx + 32]
        assert torch.equal(out[b], crop.flip(-1) if u[b, 2] < 0.5 else crop)
    assert not torch.equal(out, batch)
    plain = cifar10(root=str(tmp_path), augment=False)
    assert not plain.augmented and plain.augment is None


def test_cifar100_uses_fine_labels(tmp_path):
    train, test = write_cifar100(tmp_path)
    splits = cifar100(root=str(tmp_path), augment=False)
    assert splits.num_classes == 100 and splits.input_shape == (3, 32, 32)
    assert splits.train_targets.tolist() == train["fine_labels"]
    assert splits.test_targets.tolist() == test["fine_labels"]
    assert (len(splits.train), len(splits.test)) == (40, 20)
    assert splits.train[5][0].shape == (3, 32, 32)


class RunsShell:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def test_cifar_refuses_a_pickle_that_calls_anything(tmp_path):
    write_cifar10(tmp_path)
    marker = tmp_path / "pwned"
    evil = tmp_path / "cifar-10-batches-py" / "data_batch_2"
    write_py2_pickle(evil, {"data": RunsShell(f"touch {marker}")})
    with pytest.raises(UserError, match="refusing to unpickle .*system") as err:
        cifar10(root=str(tmp_path))
    assert str(evil) in str(err.value)
    assert not marker.exists()


def test_cifar_rejects_a_file_that_is_not_a_batch(tmp_path):
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(b"not a pickle at all")
    with pytest.raises(UserError, match="test_batch: not a CIFAR"):
        cifar10(root=str(tmp_path))


def test_cifar_missing_root_or_file_names_the_path(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(UserError) as err:
        cifar10(root=str(missing))
    assert str(missing) in str(err.value)
    assert "data.root" in str(err.value) and "download: true" in str(err.value)

    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(UserError, match="data_batch_3 does not exist"):
        cifar10(root=str(tmp_path))
    with pytest.raises(UserError, match="cifar-100-python does not exist"):
        cifar100(root=str(tmp_path))


def test_cifar_download_delegates_to_torchvision(tmp_path, monkeypatch):
    calls = []

    def fake_download(root, train, download):
        calls.append((root, train, download))
        write_cifar10(tmp_path)

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", fake_download)
    splits = cifar10(root=str(tmp_path), download=True)
    assert calls == [(str(tmp_path), True, True)]
    assert len(splits.train) == 100


# --- MNIST and Fashion-MNIST --------------------------------------------------------------------

def write_idx(path, array: np.ndarray):
    header = struct.pack(">I", 0x0800 + array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def write_mnist(root, folder, n_train=12, n_test=6):
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(2)
    data = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        write_idx(raw / f"{split}-images-idx3-ubyte", images)
        write_idx(raw / f"{split}-labels-idx1-ubyte", labels)
        data[split] = images, labels
    return data


@pytest.mark.parametrize("build, folder, mean, std",
                         [(mnist, "MNIST", 0.1307, 0.3081),
                          (fashion_mnist, "FashionMNIST", 0.2860, 0.3530)])
def test_mnist_like_reads_idx_files(tmp_path, build, folder, mean, std):
    data = write_mnist(tmp_path, folder)
    splits = build(root=str(tmp_path))
    assert (len(splits.train), len(splits.test)) == (12, 6)
    assert splits.num_classes == 10 and splits.input_shape == (1, 28, 28) and not splits.augmented
    assert splits.train_targets.tolist() == data["train"][1].tolist()
    assert splits.test_targets.tolist() == data["t10k"][1].tolist()
    x, y = splits.train[4]
    assert x.shape == (1, 28, 28) and int(y) == data["train"][1][4]
    torch.testing.assert_close(x, normalised(data["train"][0][4][None], (mean,), (std,)))
    assert torch.equal(splits.train[4][0], x)


def test_mnist_missing_files_name_the_path(tmp_path):
    with pytest.raises(UserError, match="data.root") as err:
        mnist(root=str(tmp_path / "nowhere"))
    assert str(tmp_path / "nowhere") in str(err.value)
    write_mnist(tmp_path, "MNIST")
    (tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(UserError, match="t10k-labels-idx1-ubyte does not exist"):
        mnist(root=str(tmp_path))
    with pytest.raises(UserError, match="FashionMNIST/raw does not exist"):
        fashion_mnist(root=str(tmp_path))


# --- ImageFolder --------------------------------------------------------------------------------

def write_image_folder(root, classes=("cat", "dog"), splits=(("train", 3), ("val", 2))):
    rng = np.random.default_rng(3)
    for split, n in splits:
        for name in classes:
            (root / split / name).mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 256, size=(12, 16, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / name / f"{i}.png")


def test_image_folder_reads_class_folders(tmp_path):
    write_image_folder(tmp_path)
    splits = image_folder(root=str(tmp_path), image_size=8)
    assert splits.num_classes == 2 and splits.input_shape == (3, 8, 8) and splits.augmented
    assert splits.train_targets.tolist() == [0, 0, 0, 1, 1, 1]
    assert splits.test_targets.tolist() == [0, 0, 1, 1]
    x, y = splits.test[2]
    assert x.shape == (3, 8, 8) and x.dtype == torch.float32 and y == 1
    assert torch.equal(splits.test[2][0], x)
    assert -2.2 < float(x.min()) and float(x.max()) < 2.7  # within ImageNet-normalised [0, 1]
    from distill.data.sample_draws import SampleDraws

    def drawn(epoch, seed=0):
        return splits.train.drawn_item(0, SampleDraws(seed, epoch, torch.tensor([0])))[0]

    first = drawn(0)
    assert first.shape == (3, 8, 8)
    assert torch.equal(drawn(0), first)  # a function of (seed, epoch, index)
    assert any(not torch.equal(first, drawn(e)) for e in range(1, 10))
    assert any(not torch.equal(first, drawn(0, seed)) for seed in range(1, 10))
    assert torch.equal(splits.train[0][0], image_folder(root=str(tmp_path), image_size=8,
                                                        augment=False).train[0][0])


def test_image_folder_needs_the_same_classes_and_both_folders(tmp_path):
    write_image_folder(tmp_path / "a", splits=(("train", 2),))
    write_image_folder(tmp_path / "a", classes=("cat", "cow"), splits=(("val", 1),))
    with pytest.raises(UserError, match=r"same class folders.*\['dog'\].*\['cow'\]"):
        image_folder(root=str(tmp_path / "a"))
    write_image_folder(tmp_path / "b", splits=(("train", 2),))
    with pytest.raises(UserError) as err:
        image_folder(root=str(tmp_path / "b"))
    assert str(tmp_path / "b" / "val") in str(err.value) and "data.root" in str(err.value)


def test_vision_sets_are_registered_with_their_schema():
    for name in ("cifar10", "cifar100", "mnist", "fashion_mnist", "image_folder"):
        assert name in datasets
    fields = datasets.get("cifar10").params.model_fields
    assert fields["root"].is_required()
    assert (fields["download"].default, fields["augment"].default) == (False, True)
    fields = datasets.get("image_folder").params.model_fields
    assert (fields["train_dir"].default, fields["test_dir"].default) == ("train", "val")


# --- long-tail subsets --------------------------------------------------------------------------

def test_long_tail_counts_follow_the_exponential_profile():
    targets = torch.arange(10).repeat(100)
    kept = long_tail_indices(targets, 10, imbalance=0.1, seed=0)
    counts = torch.bincount(targets[kept], minlength=10).tolist()
    assert counts == [100, 77, 59, 46, 35, 27, 21, 16, 12, 10]
    assert torch.equal(kept, kept.sort().values) and len(kept.unique()) == len(kept)


@pytest.mark.parametrize("num_classes, per_class, total", [(10, 5000, 12406), (100, 500, 10847)])
def test_long_tail_sizes_match_the_published_cifar_lt_sets(num_classes, per_class, total):
    targets = torch.arange(num_classes).repeat_interleave(per_class)
    assert len(long_tail_indices(targets, num_classes, imbalance=0.01, seed=0)) == total


def test_long_tail_choice_depends_on_the_seed_only():
    targets = torch.arange(5).repeat(40)
    a = long_tail_indices(targets, 5, 0.2, seed=1)
    assert torch.equal(a, long_tail_indices(targets, 5, 0.2, seed=1))
    assert not torch.equal(a, long_tail_indices(targets, 5, 0.2, seed=2))
    with pytest.raises(UserError, match="imbalance"):
        long_tail_indices(targets, 5, 0.0, seed=0)


def test_an_image_folders_declared_classes_must_be_its_folders(tmp_path):
    write_image_folder(tmp_path)
    assert image_folder(root=str(tmp_path), image_size=8, num_classes=2).num_classes == 2
    with pytest.raises(UserError, match="has 2 class folders, not 3"):
        image_folder(root=str(tmp_path), image_size=8, num_classes=3)


def test_an_image_folder_of_one_class_is_refused_by_validate(tmp_path, capsys):
    """One class folder: ``validate`` stops at ``data`` in one line (before this, ``validate``
    passed it and the run's accuracy metric raised at its start)."""
    from distill.cli import main

    write_image_folder(tmp_path / "one", classes=("cat",))
    f = tmp_path / "one.yaml"
    f.write_text(f"name: one\ndata: {{name: image_folder, root: {tmp_path / 'one'}, image_size: 8}}\n"
                 "student:\n  net: {name: mlp, hidden: [8]}\n"
                 "train: {epochs: 1, optimizer: {name: sgd, lr: 0.1}}\nobjectives: [{name: ce}]\n")
    assert main(["validate", str(f)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "data" in err and "at least 2" in err, err
    write_image_folder(tmp_path / "two")
    f.write_text(f.read_text().replace(str(tmp_path / "one"), str(tmp_path / "two")))
    assert main(["validate", str(f)]) == 0

