"""Generated datasets made once per machine and read back (distill/data/generated_cache.py), and
the atomic write under them."""
import importlib.metadata

import mnist1d.data as mnist1d_data
import numpy as np
import pytest
import torch

from distill.atomic_write import atomic_write
from distill.data.embedded import mnist1d
from distill.data.generated_cache import cache_root

GENERATE = mnist1d_data.make_dataset  # the generator itself, uncounted


@pytest.fixture
def made(monkeypatch, tmp_path):
    """A fresh cache folder; the calls of mnist1d's generator, counted."""
    monkeypatch.setenv("DISTILL_CACHE", str(tmp_path / "cache"))
    calls = []

    def counted(args):
        calls.append(dict(vars(args)))
        return GENERATE(args)

    monkeypatch.setattr(mnist1d_data, "make_dataset", counted)
    return calls


def tensors(splits):
    return [*splits.train.tensors, *splits.test.tensors]


def fresh(num_samples, seed):
    args = mnist1d_data.get_dataset_args()
    args.num_samples, args.seed = num_samples, seed
    d = GENERATE(args)
    return [torch.as_tensor(d["x"], dtype=torch.float32), torch.as_tensor(d["y"]),
            torch.as_tensor(d["x_test"], dtype=torch.float32), torch.as_tensor(d["y_test"])]


def test_mnist1d_is_made_once_for_its_values_and_read_back_the_same(made, monkeypatch):
    first = tensors(mnist1d(num_samples=200, seed=3))
    again = tensors(mnist1d(num_samples=200, seed=3))
    assert len(made) == 1  # the second came from the cache
    for a, b, c in zip(first, again, fresh(200, 3)):
        assert torch.equal(a, b) and torch.equal(a, c)
    assert [t.shape[0] for t in first] == [160, 160, 40, 40]
    other_seed = tensors(mnist1d(num_samples=200, seed=4))
    assert len(made) == 2 and not torch.equal(other_seed[0], first[0])
    mnist1d(num_samples=200, seed=3, train_split=0.5)
    mnist1d(num_samples=100, seed=3)
    assert len(made) == 4  # every value is in the key
    installed = importlib.metadata.version
    for package in ("mnist1d", "scipy"):  # another version of the generator, or of SciPy
        monkeypatch.setattr(importlib.metadata, "version",
                            lambda name, other=package: "99.0" if name == other else installed(name))
        mnist1d(num_samples=200, seed=3)
    monkeypatch.setattr(np, "__version__", "0.0")  # and of NumPy
    mnist1d(num_samples=200, seed=3)
    assert len(made) == 7  # each made it again


def test_an_unreadable_or_incomplete_file_is_made_again(made):
    expected = tensors(mnist1d(num_samples=120, seed=0))
    (stored,) = (cache_root() / "generated").glob("mnist1d-*.npz")
    whole = stored.read_bytes()
    for broken in (b"not an archive", whole[:len(whole) // 2], b""):  # garbage, cut, empty
        stored.write_bytes(broken)
        assert all(torch.equal(a, b) for a, b in zip(tensors(mnist1d(num_samples=120, seed=0)),
                                                     expected))
    with stored.open("wb") as f:
        np.save(f, np.zeros(3))  # one array (.npy), not an archive
    assert torch.equal(tensors(mnist1d(num_samples=120, seed=0))[0], expected[0])
    with np.load(stored, allow_pickle=False) as repaired:
        assert set(repaired.files) == {"x", "y", "x_test", "y_test"}
    np.savez(stored, x=np.zeros((3, 40)))  # a valid archive without the other arrays
    assert all(torch.equal(a, b) for a, b in zip(tensors(mnist1d(num_samples=120, seed=0)),
                                                 expected))
    assert len(made) == 6


def test_a_cache_that_cannot_be_written_only_loses_the_saving(made, monkeypatch, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("DISTILL_CACHE", str(blocker / "cache"))  # under a file: no folder
    x = tensors(mnist1d(num_samples=120, seed=0))
    assert torch.equal(x[0], fresh(120, 0)[0]) and len(made) == 1


def test_the_cache_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("DISTILL_CACHE", str(tmp_path / "mine"))
    assert cache_root() == tmp_path / "mine"
    monkeypatch.delenv("DISTILL_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "distill"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_root() == tmp_path / "home" / ".cache" / "distill"


def test_a_failed_atomic_write_leaves_the_old_file_and_no_temporary_one(tmp_path):
    path = tmp_path / "table.txt"
    path.write_text("old")

    def fails(f):
        f.write("half of the new")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, fails, "w")
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["table.txt"]
    atomic_write(path, lambda f: f.write("new"), "w")
    assert path.read_text() == "new"
