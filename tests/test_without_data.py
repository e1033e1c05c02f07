"""`distill validate FILE --without-data`: a CIFAR, Flickr30K or JSONL file checked on a machine
without its data, each set stood in by its declared shapes and classes; every other mistake is
still found; without the flag the missing data are still an error."""
from __future__ import annotations

from pathlib import Path

import pytest

from distill.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("file,words", [
    ("cifar100_baselines.yaml", ["cifar100 stood in by 3x32x32, 100 classes"]),
    ("split_cifar100.yaml", ["cifar100"]),
    ("dcd_flickr30k.yaml", ["flickr30k", "captions of 32 tokens", "stand-in vocabulary"]),
])
def test_a_file_for_a_cluster_validates_without_its_data(tmp_path, monkeypatch, capsys, file,
                                                         words):
    monkeypatch.chdir(tmp_path)  # no data/ folder here
    path = ROOT / "experiments" / file
    assert main(["validate", str(path)]) == 2
    assert "data" in capsys.readouterr().err
    assert main(["validate", str(path), "--without-data"]) == 0
    out = capsys.readouterr().out
    assert "ok" in out and all(w in out for w in words), out


def test_the_other_mistakes_are_still_found(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    text = (ROOT / "experiments" / "cifar100_baselines.yaml").read_text()
    broken = tmp_path / "broken.yaml"
    broken.write_text(text.replace("s2: layer2,", "s2: layer9,"))
    assert main(["validate", str(broken), "--without-data"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "layer9" in err and "student.net" in err, err
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(text.replace("kd++: {objectives: [{name: ce}, {name: kd, weight: 3.5,",
                                  "kd++: {objectives: [{name: ce}, {name: kd, weight: -3.5,"))
    assert main(["validate", str(wrong), "--without-data"]) == 2
    assert "weight" in capsys.readouterr().err


IMAGES = """\
name: folder
data: {name: image_folder, root: nowhere, image_size: 32, batch_size: 8NUM}
student: {net: {name: resnet8x4}}
objectives: [{name: ce}]
"""
JSONL = """\
name: own
data: {name: rationale_jsonl, train: nowhere/train.jsonl, test: nowhere/test.jsonl}
student: {net: {name: seq2seq, dim: 16, layers: 1, heads: 2}}
objectives: [{name: dss, rationales: teacher}]
teacher: {role: frozen, net: {name: seq2seq, dim: 16, layers: 1, heads: 2},
          train: {epochs: 1}, objectives: [{name: dss, rationales: gold}]}
"""


def test_an_image_folder_declares_its_classes_to_validate_without_data(tmp_path, capsys):
    f = tmp_path / "folder.yaml"
    f.write_text(IMAGES.replace("NUM", ""))
    assert main(["validate", str(f), "--without-data"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "data.num_classes" in err, err
    f.write_text(IMAGES.replace("NUM", ", num_classes: 7"))
    assert main(["validate", str(f), "--without-data"]) == 0
    assert "3x32x32, 7 classes" in capsys.readouterr().out


def test_own_generation_data_validate_without_their_files(tmp_path, capsys):
    f = tmp_path / "own.yaml"
    f.write_text(JSONL)
    assert main(["validate", str(f)]) == 2
    assert "data.train" in capsys.readouterr().err
    assert main(["validate", str(f), "--without-data"]) == 0
    assert "made-up problems" in capsys.readouterr().out
