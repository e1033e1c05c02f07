"""Small files in the real dataset formats, written by the tests themselves (no downloads)."""
from __future__ import annotations

import io
import pickle
import struct

import numpy as np


class Py2Pickler(pickle._Pickler):
    """Pickles as Python 2 did for the real CIFAR files: every string is a byte string."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_byte_string(self, obj):
        data = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[str] = dispatch[bytes] = save_byte_string


def write_py2_pickle(path, obj):
    buffer = io.BytesIO()
    Py2Pickler(buffer, protocol=2).dump(obj)
    # numpy 1.x, which wrote the real files, named its array reconstructor numpy.core.multiarray
    data = buffer.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
    assert b"numpy._core" not in data and b"_codecs" not in data
    path.write_bytes(data)


def cifar_batch(rng, n, num_classes, label_key="labels"):
    data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    labels = rng.integers(0, num_classes, size=n).tolist()
    return {"batch_label": "a batch", "filenames": [f"img_{i}.png" for i in range(n)],
            label_key: labels, "data": data}


def write_cifar10(root, n=20):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    batches = [cifar_batch(rng, n, 10) for _ in range(6)]
    for i, batch in enumerate(batches[:5], 1):
        write_py2_pickle(folder / f"data_batch_{i}", batch)
    write_py2_pickle(folder / "test_batch", batches[5])
    write_py2_pickle(folder / "batches.meta", {"label_names": [f"class{i}" for i in range(10)],
                                               "num_cases_per_batch": n, "num_vis": 3072})
    return batches


def write_cifar100(root):
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    train, test = (cifar_batch(rng, n, 100, "fine_labels") for n in (40, 20))
    for batch in (train, test):
        batch["coarse_labels"] = [y // 5 for y in batch["fine_labels"]]
    write_py2_pickle(folder / "train", train)
    write_py2_pickle(folder / "test", test)
    write_py2_pickle(folder / "meta", {"fine_label_names": [f"f{i}" for i in range(100)],
                                       "coarse_label_names": [f"c{i}" for i in range(20)]})
    return train, test


def write_karpathy(root, images=12, per_image=3, name="dataset_flickr30k.json", splits=None):
    """A tiny Karpathy split file and its JPEG images under ``root/images``: the first two thirds
    train, the rest test; returns the entries."""
    import json

    from PIL import Image

    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True, exist_ok=True)
    colours = ["red", "green", "blue", "yellow"]
    entries = []
    for i in range(images):
        pixels = rng.integers(0, 256, size=(40, 48, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / "images" / f"{i:04d}.jpg", quality=90)
        split = (splits or {}).get(i, "train" if i < 2 * images // 3 else "test")
        entries.append({"filename": f"{i:04d}.jpg", "imgid": i, "split": split,
                        "sentences": [{"raw": f"A {colours[(i + k) % 4]} picture number {i} "
                                              f"seen {k} times.", "imgid": i, "sentid": i * 10 + k}
                                      for k in range(per_image)]})
    (root / name).write_text(json.dumps({"images": entries, "dataset": "flickr30k"}))
    return entries
