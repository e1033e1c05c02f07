"""Hostile inputs, family by family: every refusal is one line on stderr (``FILE:LINE: key.path:
message`` with the parts that are known), exit status 2, no traceback, and nothing written (an
earlier output root stays byte-identical). A refused ``run`` refuses before any training."""
from __future__ import annotations

import errno
import json
import os
import re
import sqlite3
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

from distill.cli import main
from distill.config import load_experiment
from distill.results.store import ResultsStore
from experiment_text import RETRIEVAL, digits_pair

GOOD = digits_pair("hostile", "  - {name: ce}\n  - {name: kd, temperature: 4}\n",
                   tail="variants:\n  ce-only: {objectives: [{name: ce}]}\n  kd: {}\n")
# GOOD's lines: 1 name, 2 seeds, 3 data, 4 teacher, 5 role, 6 net, 7 train, 8 student, 9 net,
# 10 train, 11 objectives, 12 - ce, 13 - kd, 14 variants, 15 ce-only, 16 kd
DISTILL = Path(sys.executable).parent / "distill"
ANY = "any line"


def tree(root: Path) -> dict:
    """Every file under ``root`` with its bytes (folders as None), to prove nothing changed."""
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None)
            for p in sorted(root.rglob("*"))}


@pytest.fixture
def earlier(tmp_path):
    """An output root with the results of an earlier run."""
    out = tmp_path / "runs"
    ResultsStore(out / "results.sqlite").record("older", "kd", 0, {"top1": 71.5})
    (out / "older" / "kd" / "seed0").mkdir(parents=True)
    (out / "older" / "kd" / "seed0" / "metrics.json").write_text('{"top1": 71.5}')
    return out


def refused(capsys, args: list[str]) -> str:
    """Run the CLI; it must exit 2 with exactly one line on stderr and no traceback."""
    code = main([str(a) for a in args])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1 and err.endswith("\n"), repr(err[:2000])
    assert len(lines[0]) < 400, lines[0][:500]
    return lines[0]


def write(tmp_path: Path, text: str | bytes, name: str = "exp.yaml") -> Path:
    f = tmp_path / name
    f.write_bytes(text if isinstance(text, bytes) else text.encode())
    return f


def run_refused(tmp_path, capsys, earlier, f: Path, *extra) -> str:
    """``run`` of ``f`` into the earlier output root: refused, and the root is unchanged."""
    before = tree(earlier)
    line = refused(capsys, ["run", f, "--out", earlier, *extra])
    assert tree(earlier) == before, "a refused run must leave the output root as it was"
    return line


# ---------------------------------------------------------------- 1. files that are not YAML text

def alias_bomb(levels: int = 12) -> str:
    text = "name: hostile\nbomb:\n  a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n"
    for i in range(1, levels):
        text += f"  a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]\n"
    return text


def merge_bomb(levels: int = 40) -> str:
    text = "m0: &m0 {a: 1}\n"
    for i in range(1, levels):
        text += f"m{i}: &m{i} {{<<: [*m{i - 1}, *m{i - 1}, *m{i - 1}]}}\n"
    return text


FILES = {
    "latin-1": (GOOD.replace("seeds: [0]", "seeds: [0]  # café").encode("latin-1"), 2,
                ["not UTF-8", "0xe9", "save the file as UTF-8"]),
    "utf-16 with BOM": (GOOD.encode("utf-16"), None, ["UTF-16", "save it as UTF-8"]),
    "utf-16-be with BOM": (b"\xfe\xff" + GOOD.encode("utf-16-be"), None, ["UTF-16"]),
    "utf-32 with BOM": (GOOD.encode("utf-32"), None, ["UTF-32"]),
    "utf-16 without BOM": (GOOD.encode("utf-16-le"), 1, ["NUL bytes"]),
    "a NUL byte": (GOOD.replace("student:", "stud\x00ent:").encode(), 8, ["NUL bytes"]),
    "a control character": (GOOD.replace("kd: {}", "kd: {}\x07").encode(), 16,
                            ["control character U+0007"]),
    "binary": (bytes(range(256)) * 4, 1, ["NUL bytes"]),
    "huge": (GOOD.encode() + b"#" * 2_000_000, None, ["larger than 100 kB"]),
    "just over the size bound": (GOOD.encode() + b"#" * 100_000, None, ["larger than 100 kB"]),
    "many values": ("".join(f"k{i}: [1,2]\n" for i in range(7000)).encode(), ANY,
                    ["more than 20000 values"]),
    "alias bomb": (alias_bomb().encode(), ANY, ["more than 20000 values", "aliases"]),
    "merge-key bomb": (merge_bomb().encode(), ANY, ["more than 20000 values", "aliases"]),
    "deep flow lists": (("name: x\nd: " + "[" * 5000 + "]" * 5000 + "\n").encode(), 2,
                        ["nested more than 100 deep"]),
    "deep flow mappings": (("name: x\nd: " + "{a: " * 3000 + "1" + "}" * 3000 + "\n").encode(),
                           2, ["nested more than 100 deep"]),
    "deep block mappings": ("".join(" " * i + f"k{i}:\n" for i in range(300)).encode(), 100,
                            ["nested more than 100 deep"]),
    "deep aliases": (("a: &a [1]\n" + "".join(f"b{i}: &b{i} [*{'a' if i == 0 else f'b{i - 1}'}]\n"
                                                for i in range(150))).encode(), ANY,
                     ["more than 100 deep"]),
    "a mapping as key": (GOOD.replace("kd: {}", "? {a: 1}\n  : {}").encode(), 16,
                         ["a key cannot be a mapping"]),
    "a list as key": (GOOD.replace("kd: {}", "[1, 2]: {}").encode(), 16,
                      ["a key cannot be a list"]),
    "an integer key": (GOOD.replace("kd: {}", "3: {}").encode(), 16,
                       ["'3' is read as int", "quote it"]),
    "a boolean key": (GOOD.replace("seeds: [0]", "seeds: [0]\non: 1").encode(), 3,
                      ["'on' is read as bool"]),
    "a null key": (GOOD.replace("kd: {}", "~: {}").encode(), 16, ["read as NoneType"]),
    "an integer key in a part": (GOOD.replace("{name: kd, temperature: 4}",
                                              "{name: kd, 4: temperature}").encode(), 13,
                                 ["'4' is read as int"]),
    "two documents": ((GOOD + "---\nname: other\n").encode(), 17, ["second YAML document"]),
    "a duplicate key": (GOOD.replace("kd: {}", "kd: {}\n  kd: {}").encode(), 17,
                        ["'kd' appears twice"]),
    "a duplicate key in a merged mapping's own keys": (
        GOOD.replace("train: {epochs: 1}\nobjectives", "train: {epochs: 1, epochs: 2}\nobjectives")
        .encode(), 10, ["'epochs' appears twice"]),
    "a merge of a scalar": (GOOD.replace("kd: {}", "kd: {<<: 3}").encode(), 16,
                            ["merges a mapping"]),
    "a merge of a list of scalars": (GOOD.replace("kd: {}", "kd: {<<: [1, 2]}").encode(), 16,
                                     ["merges a mapping"]),
    "an undefined alias": (GOOD.replace("kd: {}", "kd: *nowhere").encode(), 16,
                           ["not valid YAML", "undefined alias"]),
    "a python tag": (GOOD.replace("kd: {}", "kd: !!python/object/apply:os.system [ls]").encode(),
                     16, ["not valid YAML"]),
    "a set tag": (GOOD.replace("kd: {}", "kd: !!set {a, b}").encode(), 16, ["tag"]),
    "a tagged int that is no int": (GOOD.replace("kd: {}", "kd: !!int abc").encode(), 16,
                                    ["'abc' cannot be read as int"]),
    "a tagged bool that is no bool": (GOOD.replace("seeds: [0]", "seeds: [!!bool maybe]").encode(),
                                      2, ["'maybe' cannot be read as bool"]),
    "a bad timestamp": (GOOD.replace("seeds: [0]", "seeds: [2001-13-45]").encode(), 2,
                        ["is read as a date"]),
    "a tagged key that is no int": (GOOD.replace("kd: {}", "!!int x: {}").encode(), 16,
                                    ["'x' cannot be read as int"]),
    "an integer of 5000 digits": (GOOD.replace("seeds: [0]", "seeds: [" + "9" * 5000 + "]")
                                  .encode(), 2, ["cannot be read as int"]),
    "a recursive alias": (GOOD.replace("kd: {}", "kd: &r {x: *r}").encode(), ANY,
                          ["more than 100 deep"]),
    "a top-level list": (b"- a\n- b\n", 1, ["mapping"]),
    "a top-level scalar": (b"just words\n", 1, ["mapping"]),
    "only a comment": (b"# nothing\n", None, ["empty"]),
}


@pytest.mark.parametrize("case", list(FILES))
def test_a_file_that_is_not_experiment_yaml_is_refused(tmp_path, capsys, earlier, case):
    raw, line, words = FILES[case]
    f = write(tmp_path, raw)
    started = time.perf_counter()
    text = run_refused(tmp_path, capsys, earlier, f)
    assert time.perf_counter() - started < 10, "a hostile file must be refused quickly"
    if line is ANY:
        assert re.match(re.escape(str(f)) + r":\d+: ", text), text
    else:
        assert text.startswith(f"{f}:{line}: " if line else f"{f}: "), text
    for w in words:
        assert w in text, text


def test_utf8_with_a_byte_order_mark_is_accepted(tmp_path, capsys):
    f = write(tmp_path, b"\xef\xbb\xbf" + GOOD.encode())
    assert main(["validate", str(f)]) == 0, capsys.readouterr().err
    assert "ok" in capsys.readouterr().out


def test_non_ascii_utf8_is_accepted(tmp_path, capsys):
    f = write(tmp_path, GOOD.replace("seeds: [0]", "seeds: [0]  # café, 蒸留"))
    assert main(["validate", str(f)]) == 0, capsys.readouterr().err


@pytest.mark.parametrize("kind", ["folder", "fifo", "device", "missing", "under a file"])
def test_a_path_that_is_no_readable_file(tmp_path, capsys, earlier, kind):
    if kind == "folder":
        target, words = tmp_path / "dir.yaml", ["is a folder"]
        target.mkdir()
    elif kind == "fifo":
        target, words = tmp_path / "pipe.yaml", ["not a regular file"]
        os.mkfifo(target)
    elif kind == "device":
        target, words = Path("/dev/zero"), ["not a regular file"]
    elif kind == "missing":
        target, words = tmp_path / "nope.yaml", ["no such experiment file"]
    else:
        (tmp_path / "plain").write_text("x")
        target, words = tmp_path / "plain" / "exp.yaml", ["no such experiment file"]
    text = run_refused(tmp_path, capsys, earlier, target)
    assert text.startswith(f"{target}: "), text
    for w in words:
        assert w in text


def test_an_unreadable_file(tmp_path, capsys, earlier, monkeypatch):
    f = write(tmp_path, GOOD)
    real_open = Path.open

    def denied(self, *args, **kwargs):
        if self == f:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", denied)
    text = run_refused(tmp_path, capsys, earlier, f)
    assert text == f"{f}: cannot be read (Permission denied)"


MERGED = """\
name: merged
seeds: [0]
data: &data {name: digits, batch_size: 64}
teacher:
  role: frozen
  net: {name: small_cnn, width: 8}
  train: &recipe
    epochs: 1
    optimizer: &opt {name: sgd, lr: 0.05}
student:
  net: {name: mlp, hidden: [32]}
train:
  <<: *recipe
  optimizer: {<<: *opt, lr: 0.1}
objectives:
  - &kd {name: kd, temperature: 4}
variants:
  kd: {}
  both:
    objectives: [{name: ce}, {<<: *kd, temperature: 2}]
  listed:
    train: {<<: [{epochs: 2}, *recipe]}
"""


def test_merge_keys_are_accepted(tmp_path, capsys):
    f = write(tmp_path, MERGED)
    assert main(["validate", str(f)]) == 0, capsys.readouterr().err
    ef = load_experiment(str(f))
    assert ef.base.train.epochs == 1 and ef.base.train.optimizer.lr == 0.1
    assert ef.base.train.optimizer.name == "sgd"
    both = ef.variants["both"].objectives
    assert [o.name for o in both] == ["ce", "kd"] and both[1].params() == {"temperature": 2}
    assert ef.variants["listed"].train.epochs == 2  # the first merged mapping wins
    assert list(ef.variants) == ["kd", "both", "listed"]


@pytest.mark.parametrize("old,new,line,key", [
    # the bad value is written in the anchored mapping: its line, the merged key's path
    ("optimizer: {<<: *opt, lr: 0.1}", "optimizer: {<<: *data, lr: 0.1}", 3,
     "train.optimizer.name"),
    ("optimizer: &opt {name: sgd, lr: 0.05}", "optimizer: &opt {name: sgd, lr: 0.05}\n    bad: 1",
     10, "teacher.train.bad"),
    ("objectives: [{name: ce}, {<<: *kd, temperature: 2}]",
     "objectives: [{name: ce}, {<<: *kd, temperature: -2}]", 20, "variants.both.objectives.1."
                                                                 "temperature"),
    ("  - &kd {name: kd, temperature: 4}", "  - &kd {name: kd, temperature: 4, tmp: 1}", 16,
     "objectives.0.tmp"),
])
def test_errors_inside_merged_content_give_the_line_where_it_is_written(tmp_path, capsys, old,
                                                                        new, line, key):
    assert old in MERGED
    f = write(tmp_path, MERGED.replace(old, new, 1))
    text = refused(capsys, ["validate", f])
    assert text.startswith(f"{f}:{line}: {key}: "), text


# ------------------------------------------------------------ 2. values out of range for a build

@pytest.mark.parametrize("old,new,line,key,words", [
    ("seeds: [0]", "seeds: [-1]", 2, "seeds.0", ["greater than or equal to 0"]),
    ("seeds: [0]", "seeds: [4294967296]", 2, "seeds.0", ["less than or equal to 4294967295"]),
    ("seeds: [0]", "seeds: [99999999999999999999999]", 2, "seeds.0", ["beyond 2**63"]),
    ("batch_size: 64", "batch_size: 100000000000000000000000", 3, "data.batch_size",
     ["beyond 2**63"]),
    ("seeds: [0]", "seeds: []", 2, "seeds", ["at least 1"]),
    ("role: frozen", "role: frozen\n  seed: -5", 6, "teacher.seed", ["greater than or equal"]),
    ("hidden: [32]", "hidden: [-3]", 9, "student.net.hidden", ["greater than 0", "-3"]),
    ("hidden: [32]", "hidden: [32, 0]", 9, "student.net.hidden", ["greater than 0"]),
    ("width: 8", "width: 0", 6, "teacher.net.width", ["greater than 0"]),
    ("width: 8", "width: -8", 6, "teacher.net.width", ["greater than 0"]),
    ("batch_size: 64", "batch_size: 0", 3, "data.batch_size", ["greater than or equal to 1"]),
    ("batch_size: 64", "batch_size: 64, eval_batch_size: -1", 3, "data.eval_batch_size",
     ["greater than or equal to 1"]),
    ("{name: digits, batch_size: 64}", "{name: digits, test_fraction: 0}", 3,
     "data.test_fraction", ["greater than or equal"]),
    ("{name: digits, batch_size: 64}", "{name: digits, test_fraction: 1.5}", 3,
     "data.test_fraction", ["less than or equal"]),
    ("{name: digits, batch_size: 64}", "{name: mnist1d, num_samples: 0}", 3, "data.num_samples",
     ["greater than or equal to 20"]),
    ("{name: digits, batch_size: 64}", "{name: mnist1d, train_split: 1.0}", 3,
     "data.train_split", ["less than 1"]),
    ("{name: digits, batch_size: 64}", "{name: digits, imbalance: 0}", 3, "data.imbalance",
     ["greater than 0"]),
    ("train: {epochs: 1}\nobjectives", "train: {epochs: 1, gradient_clip: -1}\nobjectives", 10,
     "train.gradient_clip", ["greater than 0"]),
    ("hidden: [32]", "hidden: [32], dropout: -0.5", 9, "student.net.dropout",
     ["between 0 and 1"]),
    ("hidden: [32]", "hidden: [32], dropout: 1.5", 9, "student.net.dropout", ["between 0 and 1"]),
    ("net: {name: mlp, hidden: [32]}", "net: {name: mlp, hidden: [32]}\n  init: {alpha: 2}", 10,
     "student.init.alpha", ["less than or equal to 1"]),
])
def test_a_value_out_of_range_names_its_key(tmp_path, capsys, earlier, old, new, line, key,
                                            words):
    assert old in GOOD
    f = write(tmp_path, GOOD.replace(old, new, 1))
    text = run_refused(tmp_path, capsys, earlier, f)
    assert text.startswith(f"{f}:{line}: {key}"), text
    for w in words:
        assert w in text, text


@pytest.mark.parametrize("seeds,words", [
    ("-1", ["out of range"]), ("4294967296", ["out of range"]), ("0,0", ["listed twice"]),
    ("a", ["integers separated by commas"]), (",", ["at least one"]),
])
def test_bad_seeds_on_the_command_line(tmp_path, capsys, earlier, seeds, words):
    f = write(tmp_path, GOOD)
    text = run_refused(tmp_path, capsys, earlier, f, f"--seeds={seeds}")
    assert text.startswith("distill: argument --seeds: "), text
    assert text.endswith("see `distill run --help`")
    for w in words:
        assert w in text


def test_a_network_that_cannot_be_built_is_one_line_naming_the_key(tmp_path, capsys, earlier):
    # a ViT whose patches do not tile the 8x8 digits: the library's error, located
    f = write(tmp_path, GOOD.replace("net: {name: mlp, hidden: [32]}",
                                     "net: {name: vit_tiny, patch_size: 3, dim: 8, depth: 1, "
                                     "heads: 3}"))
    text = run_refused(tmp_path, capsys, earlier, f)
    assert text.startswith(f"{f}:9: student.net"), text


def test_a_network_too_large_to_allocate_is_one_line(tmp_path, capsys, earlier):
    f = write(tmp_path, GOOD.replace("hidden: [32]", "hidden: [100000000000000]"))
    text = run_refused(tmp_path, capsys, earlier, f)
    assert text.startswith(f"{f}:9: student.net: cannot be built from these values"), text


@pytest.mark.parametrize("target,key", [("build_network", "teacher.net"), ("_splits", "data")])
@pytest.mark.parametrize("error", [ValueError, TypeError, RuntimeError, IndexError, KeyError,
                                   ZeroDivisionError, AssertionError])
def test_any_library_error_while_building_names_the_key(tmp_path, capsys, monkeypatch, target,
                                                        key, error):
    import distill.engine.build as build

    def fails(*a, **k):
        raise error("the library says no\nin two lines")

    monkeypatch.setattr(build, target, fails)
    f = write(tmp_path, GOOD)
    text = refused(capsys, ["validate", f])
    line = 3 if key == "data" else 6  # the teacher is built first
    assert text.startswith(f"{f}:{line}: {key}: cannot be built from these values "
                           f"({error.__name__}: "), text
    assert "the library says no" in text


# ------------------------------------------------ 3. values validate refuses without training

BAD_NUMBERS = [".nan", ".inf", "-.inf", "0", "-0.1"]


@pytest.mark.parametrize("value", BAD_NUMBERS)
@pytest.mark.parametrize("where,old,new,line,key", [
    ("student lr", "train: {epochs: 1}\nobjectives",
     "train: {epochs: 1, optimizer: {name: sgd, lr: VALUE}}\nobjectives", 10, "train.optimizer.lr"),
    ("teacher lr", "  train: {epochs: 1}\n", "  train: {epochs: 1, optimizer: {name: adam, "
                                            "lr: VALUE}}\n", 7, "teacher.train.optimizer.lr"),
    ("variant lr", "kd: {}", "kd: {train: {optimizer: {name: adamw, lr: VALUE}}}", 16,
     "variants.kd.train.optimizer.lr"),
    ("kd temperature", "{name: kd, temperature: 4}", "{name: kd, temperature: VALUE}", 13,
     "objectives.1.temperature"),
    ("variant temperature", "kd: {}", "kd: {objectives: [{name: kd, temperature: VALUE}]}", 16,
     "variants.kd.objectives.0.temperature"),
])
def test_a_rate_or_temperature_that_cannot_train(tmp_path, capsys, earlier, value, where, old,
                                                 new, line, key):
    assert old in GOOD
    f = write(tmp_path, GOOD.replace(old, new.replace("VALUE", value), 1))
    text = run_refused(tmp_path, capsys, earlier, f)
    assert text.startswith(f"{f}:{line}: {key}: "), text
    non_finite = value in (".nan", ".inf", "-.inf")
    assert ("NaN and infinite" in text) if non_finite else ("greater than 0" in text), text


@pytest.mark.parametrize("objective,param", [
    ("kd", "temperature"), ("lwf", "temperature"), ("prd", "temperature"),
    ("supcon", "temperature"), ("supcon", "base_temperature"), ("dino", "student_temp"),
    ("dino", "teacher_temp"), ("dino", "warmup_teacher_temp"), ("trg", "tau_max"),
    ("trg", "tau_min"),
])
@pytest.mark.parametrize("value", [0, -1])
def test_every_temperature_must_be_positive(tmp_path, capsys, objective, param, value):
    f = write(tmp_path, GOOD.replace("{name: kd, temperature: 4}",
                                     f"{{name: {objective}, {param}: {value}}}"))
    text = refused(capsys, ["validate", f])
    assert text.startswith(f"{f}:13: objectives.1.{param}: "), text
    assert "greater than 0" in text


@pytest.mark.parametrize("old,new,line,key,words", [
    ("{name: kd, temperature: 4}", "{name: kd, temperature: 4, weight: -1}", 13,
     "objectives.1.weight", ["greater than or equal to 0"]),
    ("{name: ce}\n  - {name: kd", "{name: ce, weight: .nan}\n  - {name: kd", 12,
     "objectives.0.weight", ["NaN and infinite"]),
    ("seeds: [0]", "seeds: [0, 1, 0]", 2, "seeds", ["seed 0 is listed twice"]),
    ("kd: {}", "kd: {seeds: [3, 3]}", 16, "variants.kd.seeds", ["seed 3 is listed twice"]),
    ("seeds: [0]", "seeds: [0]\ntrainer: {accelerator: tpuu}", 3, "trainer.accelerator",
     ["'tpuu'", "refused by Lightning"]),
    ("seeds: [0]", "seeds: [0]\ntrainer: {accelerator: cpu, precision: 99}", 3,
     "trainer.precision", ["refused by Lightning"]),
    ("seeds: [0]", "seeds: [0]\ntrainer: {accelerator: cpu, devices: 0}", 3, "trainer.devices",
     ["refused by Lightning"]),
    ("seeds: [0]", "seeds: [0]\ntrainer: {strategy: nonsense}", 3, "trainer.strategy",
     ["give one of auto, ddp, single_device"]),
    ("seeds: [0]", "seeds: [0]\ntrainer: {gradient_clip_val: 1}", 3, "trainer.gradient_clip_val",
     ["train.gradient_clip"]),
    ("seeds: [0]", "seeds: [0]\ntrainer: {max_time: .inf}", 3, "trainer.max_time",
     ["NaN and infinite"]),
    ("kd: {}", "kd: {trainer: {accelerator: quantum}}", 16, "variants.kd.trainer.accelerator",
     ["refused by Lightning"]),
    ("{name: digits, batch_size: 64}", "{name: digits, batch_size: 64, imbalance: .nan}", 3,
     "data.imbalance", ["NaN and infinite"]),
    ("hidden: [32]", "hidden: [32], dropout: .inf", 9, "student.net.dropout",
     ["NaN and infinite"]),
    ("train: {epochs: 1}\nobjectives",
     "train: {epochs: 1, optimizer: {name: adam, betas: [2, 0.9]}}\nobjectives", 10,
     "train.optimizer", ["Invalid beta"]),
    ("  train: {epochs: 1}\n", "  train: {epochs: 1, optimizer: {name: adam, betas: [0.9, -1]}}\n",
     7, "teacher.train.optimizer", ["Invalid beta"]),
    ("train: {epochs: 1}\nobjectives",
     "train: {epochs: 1, schedule: {name: multistep, gamma: -0.5}}\nobjectives", 10,
     "train.schedule.gamma", ["greater than 0"]),
    ("train: {epochs: 1}\nobjectives",
     "train: {epochs: 1, schedule: {name: cosine, warmup_epochs: -2}}\nobjectives", 10,
     "train.schedule.warmup_epochs", ["0 or more"]),
    ("- {name: ce}\n  - {name: kd", "- {name: ce, label_smoothing: 1.5}\n  - {name: kd", 12,
     "objectives.0.label_smoothing", ["between 0 and 1"]),
    ("seeds: [0]", "seeds: [0]\ntrainer: {limit_val_batches: 0}", 3, "trainer.limit_val_batches",
     ["without a test"]),
    ("seeds: [0]", "seeds: [0]\ntrainer: {limit_train_batches: 0.0}", 3,
     "trainer.limit_train_batches", ["without training"]),
    ("seeds: [0]", "seeds: [0]\nevaluate: [{name: knn, device: quantum}]", 3, "evaluate.0.device",
     ["cannot be built"]),
    ("seeds: [0]", "seeds: [0]\nthreads: 100000000", 3, "threads", ["less than or equal"]),
    ("batch_size: 64", "batch_size: 64, num_workers: 100000", 3, "data.num_workers",
     ["less than or equal"]),
    ("batch_size: 64", "batch_size: 64, views: {name: image, count: 1000000000}", 3,
     "data.views.count", ["less than or equal"]),
])
def test_validate_refuses_what_would_fail_in_training(tmp_path, capsys, earlier, old, new, line,
                                                     key, words):
    assert old in GOOD
    f = write(tmp_path, GOOD.replace(old, new, 1))
    text = run_refused(tmp_path, capsys, earlier, f)
    assert text.startswith(f"{f}:{line}: {key}: "), text
    for w in words:
        assert w in text, text


@pytest.mark.parametrize("assignment,key", [
    ("train.optimizer.lr=.nan", "train.optimizer.lr"),
    ("teacher.train.optimizer.lr=-1", "teacher.train.optimizer.lr"),
    ("objectives.1.temperature=0", "objectives.1.temperature"),
    ("seeds=[1,1]", "seeds"),
    ("trainer.accelerator=abacus", "trainer.accelerator"),
])
def test_a_bad_override_names_the_override(tmp_path, capsys, earlier, assignment, key):
    f = write(tmp_path, GOOD)
    text = run_refused(tmp_path, capsys, earlier, f, "--set", assignment)
    assert text.startswith(f"--set {assignment}: {key}: "), text


def test_checked_values_reach_the_builders(tmp_path, capsys):
    # "8" is accepted as the integer 8 and the network gets the integer, not the text
    f = write(tmp_path, GOOD.replace("width: 8", "width: '8'"))
    assert main(["validate", str(f)]) == 0, capsys.readouterr().err
    assert load_experiment(str(f)).base.teacher.net.params()["width"] == 8


def test_validate_writes_nothing_anywhere(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    f = write(tmp_path, GOOD.replace("seeds: [0]", "seeds: [0]\ntrainer: {accelerator: cpu}"))
    before = tree(tmp_path)
    assert main(["validate", str(f)]) == 0
    assert tree(tmp_path) == before


# ------------------------------------------------------------------ 4. names that become paths

BAD_VARIANT_NAMES = {
    "parent path": ("'../../x'", ["cannot be a variant name"]),
    "absolute path": ("/abs/path", ["cannot be a variant name"]),
    "slash": ("a/b", ["cannot be a variant name"]),
    "backslash": ("'a\\b'", ["cannot be a variant name"]),
    "newline": ('"a\\nb"', ["cannot be a variant name", "\\n"]),
    "NUL": ('"a\\0b"', ["cannot be a variant name"]),
    "empty": ("''", ["cannot be a variant name"]),
    "space": ("'a b'", ["cannot be a variant name"]),
    "dot": ("'.'", ["cannot be a variant name"]),
    "dotdot": ("'..'", ["cannot be a variant name"]),
    "hidden": (".hidden", ["cannot be a variant name"]),
    "teacher": ("teacher", ["teacher stage"]),
    "teacher-fingerprint": ("teacher-0123456789", ["teacher stage"]),
    "source.json": ("source.json", ["rename it"]),
    "experiment.yaml": ("experiment.yaml", ["rename it"]),
    "too long": ("v" * 300, ["too long"]),
}


@pytest.mark.parametrize("case", list(BAD_VARIANT_NAMES))
def test_a_variant_name_that_is_no_safe_folder_name(tmp_path, capsys, earlier, case):
    name, words = BAD_VARIANT_NAMES[case]
    f = write(tmp_path, GOOD.replace("kd: {}", f"{name}: {{}}"))
    outside = tree(tmp_path.parent)
    text = run_refused(tmp_path, capsys, earlier, f)
    assert text.startswith(f"{f}:16: variants."), text
    for w in words:
        assert w in text, text
    assert tree(tmp_path.parent) == outside
    assert not Path("/abs/path").exists()


@pytest.mark.parametrize("name", ["'../x'", "/abs", "a/b", '"a\\nb"', "''", "'-x'",
                                  "results.sqlite", '"x "', "x" * 101])
def test_an_experiment_name_that_is_no_safe_folder_name(tmp_path, capsys, earlier, name):
    f = write(tmp_path, GOOD.replace("name: hostile", f"name: {name}"))
    text = run_refused(tmp_path, capsys, earlier, f)
    assert text.startswith(f"{f}:1: name: "), text


@pytest.mark.parametrize("variant", ["../kd", "/kd", "kd\nx", "teacher", "x" * 100_000])
def test_an_unknown_variant_on_the_command_line(tmp_path, capsys, earlier, variant):
    f = write(tmp_path, GOOD)
    text = run_refused(tmp_path, capsys, earlier, f, "--variant", variant)
    assert text.startswith(f"{f}: --variant "), text
    assert "no such variant" in text


# ------------------------------------------------------------- 5. output and store problems

def test_out_is_an_existing_file(tmp_path, capsys):
    f = write(tmp_path, GOOD)
    out = tmp_path / "runs"
    out.write_text("a file")
    text = refused(capsys, ["run", f, "--out", out])
    assert str(out) in text and "is a file" in text
    assert out.read_text() == "a file"


@pytest.mark.parametrize("out", ["", "  "])
def test_an_empty_out_is_refused(tmp_path, capsys, monkeypatch, out):
    monkeypatch.chdir(tmp_path)
    f = write(tmp_path, GOOD)
    text = refused(capsys, ["run", f, "--out", out])
    assert text.startswith("--out '': give the folder"), text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp.yaml"]


def test_out_under_a_file(tmp_path, capsys):
    f = write(tmp_path, GOOD)
    (tmp_path / "plain").write_text("a file")
    text = refused(capsys, ["run", f, "--out", tmp_path / "plain" / "sub" / "runs"])
    assert "plain" in text and "is a file" in text
    assert (tmp_path / "plain").read_text() == "a file"


@pytest.mark.parametrize("blocker", ["hostile", "hostile/kd", "hostile/ce-only"])
def test_a_run_folder_that_is_a_file(tmp_path, capsys, earlier, blocker):
    f = write(tmp_path, GOOD)
    (earlier / blocker).parent.mkdir(parents=True, exist_ok=True)
    (earlier / blocker).write_text("in the way")
    text = run_refused(tmp_path, capsys, earlier, f)
    assert f"{earlier / blocker} is a file" in text, text


def make_store(path: Path, kind: str) -> None:
    if kind == "random bytes":
        path.write_bytes(os.urandom(4096))
    elif kind == "text":
        path.write_text("results, one per line\n")
    elif kind == "a folder":
        path.mkdir()
    else:
        db = sqlite3.connect(path)
        if kind == "other columns":
            db.execute("CREATE TABLE results (name TEXT, score REAL)")
            db.execute("INSERT INTO results VALUES ('x', 1.0)")
        else:  # other tables only
            db.execute("CREATE TABLE people (name TEXT)")
        db.commit()
        db.close()


STORES = ["random bytes", "text", "a folder", "other columns", "other tables"]


@pytest.mark.parametrize("kind", STORES)
def test_a_store_that_is_not_a_results_store_is_refused_before_training(tmp_path, capsys, kind,
                                                                        monkeypatch):
    import distill.runner as runner

    def no_training(*a, **k):
        raise AssertionError("trained before checking the store")

    monkeypatch.setattr(runner, "fit", no_training)
    f = write(tmp_path, GOOD)
    out = tmp_path / "runs"
    out.mkdir()
    make_store(out / "results.sqlite", kind)
    before = tree(out)
    text = refused(capsys, ["run", f, "--out", out])
    assert text.startswith(f"{out / 'results.sqlite'}: not a results store"), text
    assert tree(out) == before


@pytest.mark.parametrize("kind", STORES)
@pytest.mark.parametrize("target", ["root", "experiment"])
def test_compare_refuses_a_store_that_is_not_a_results_store(tmp_path, capsys, kind, target):
    out = tmp_path / "runs"
    (out / "hostile").mkdir(parents=True)
    make_store(out / "results.sqlite", kind)
    before = tree(out)
    text = refused(capsys, ["compare", out if target == "root" else out / "hostile"])
    assert text.startswith(f"{out / 'results.sqlite'}: not a results store"), text
    assert tree(out) == before


def test_an_empty_store_file_is_fine(tmp_path):
    path = tmp_path / "results.sqlite"
    path.write_bytes(b"")
    ResultsStore(path).check()
    ResultsStore(path).record("e", "v", 0, {"top1": 1.0})
    assert ResultsStore(path).rows()[0]["value"] == 1.0


@pytest.mark.parametrize("content,words", [
    ("{not json", ["not JSON"]),
    ("[]", ["no list of --set overrides"]),
    ('{"file": "x.yaml"}', ["no list of --set overrides"]),
    ('{"file": "x.yaml", "sets": "a=1"}', ["no list of --set overrides"]),
    ('{"file": "x.yaml", "sets": [1, 2]}', ["no list of --set overrides"]),
    ("\xe9t\xe9", ["not UTF-8"]),
    ("\xff\xfe{}", ["UTF-16"]),
])
def test_resume_with_a_damaged_source_json(tmp_path, capsys, earlier, content, words):
    exp_dir = earlier / "hostile"
    exp_dir.mkdir()
    (exp_dir / "experiment.yaml").write_text(GOOD)
    (exp_dir / "source.json").write_bytes(content.encode("latin-1"))
    before = tree(earlier)
    text = refused(capsys, ["resume", exp_dir])
    assert text.startswith(f"{exp_dir / 'source.json'}:"), text
    for w in words:
        assert w in text, text
    assert tree(earlier) == before


@pytest.mark.parametrize("command", ["resume", "compare"])
@pytest.mark.parametrize("kind", ["missing", "file", "empty folder"])
def test_resume_and_compare_of_something_else(tmp_path, capsys, command, kind):
    target = tmp_path / "target"
    if kind == "file":
        target.write_text("x")
    elif kind == "empty folder":
        target.mkdir()
    text = refused(capsys, [command, target])
    assert str(target) in text


def test_resume_runs_the_kept_file_through_the_same_checks(tmp_path, capsys, earlier):
    exp_dir = earlier / "hostile"
    exp_dir.mkdir()
    (exp_dir / "experiment.yaml").write_text(alias_bomb())
    (exp_dir / "source.json").write_text(json.dumps({"file": "x", "sets": []}))
    before = tree(earlier)
    text = refused(capsys, ["resume", exp_dir])
    assert text.startswith(f"{exp_dir / 'experiment.yaml'}:") and "aliases" in text, text
    assert tree(earlier) == before


# --------------------------------------------------------------- 6. echoed values are shortened

@pytest.mark.parametrize("old,new,key", [
    ("kd: {}", "? VALUE\n  : {}", "variants."),
    ("role: frozen", "role: VALUE", "teacher.role"),
    ("{name: kd, temperature: 4}", "{name: kd, ? VALUE : 4}", "objectives.1."),
    ("name: hostile", "name: VALUE", "name"),
    ("{name: kd, temperature: 4}", "{name: kd, temperature: VALUE}", "objectives.1.temperature"),
    ("  train: {epochs: 1}\nstudent", "  checkpoint: VALUE\nstudent", "teacher.checkpoint"),
    ("seeds: [0]", "seeds: [0]\ntrainer: {accelerator: VALUE}", "trainer.accelerator"),
    ("{name: digits, batch_size: 64}", "{name: VALUE}", "data.name"),
    ("{name: digits, batch_size: 64}", "{name: cifar10, root: VALUE}", "data.root"),
])
@pytest.mark.parametrize("value", ["v" * 90_000, "a\\nb" * 1000, "x y " * 20_000])
def test_a_huge_value_is_echoed_short_on_one_line(tmp_path, capsys, old, new, key, value):
    f = write(tmp_path, GOOD.replace(old, new.replace("VALUE", f'"{value}"'), 1))
    started = time.perf_counter()
    text = refused(capsys, ["validate", f])
    assert time.perf_counter() - started < 20
    assert re.match(re.escape(str(f)) + r":\d+: " + re.escape(key), text), text
    assert len(text) < 400


def test_a_huge_variant_name_on_the_command_line(tmp_path, capsys):
    f = write(tmp_path, GOOD)
    text = refused(capsys, ["run", f, "--variant", "v\n" * 2_500_000, "--out", tmp_path / "r"])
    assert text.startswith(f"{f}: --variant 'v\\nv\\n") and "no such variant" in text, text
    assert not (tmp_path / "r").exists()


def test_any_message_stays_one_bounded_line():
    from distill.errors import UserError
    words = "x y " * 100_000
    text = str(UserError(f"root {words}\nis missing; give download: true", "f.yaml", 3,
                         "data.root"))
    assert "\n" not in text and len(text) < 1100
    assert text.startswith("f.yaml:3: data.root: root x y")
    assert text.endswith("is missing; give download: true")


def test_a_newline_in_a_value_is_escaped(tmp_path, capsys):
    f = write(tmp_path, GOOD.replace("role: frozen", 'role: "fro\\nzen\\r\\tx"'))
    text = refused(capsys, ["validate", f])
    assert text.startswith(f"{f}:5: teacher.role: unknown teacher role 'fro\\nzen\\r\\tx'"), text


def test_a_huge_set_override_is_echoed_short(tmp_path, capsys):
    f = write(tmp_path, GOOD)
    text = refused(capsys, ["validate", f, "--set", "x" * 1_000_000 + "=1"])
    assert text.startswith("--set ") and len(text) < 400


def test_a_set_value_alias_bomb_is_refused(tmp_path, capsys):
    f = write(tmp_path, GOOD)
    bomb = "[" + ",".join(["&a [x,x,x,x,x,x,x,x,x,x]"] + ["*a"] * 2) + "]"
    nested = "&a0 [x,x,x,x,x,x,x,x,x,x]"
    value = "{a0: " + nested + ", " + ", ".join(
        f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 12)) + "}"
    assert bomb
    text = refused(capsys, ["validate", f, "--set", f"trainer.x={value}"])
    assert "aliases" in text, text


# ------------------------------------------------------- 7. usage errors and library warnings

@pytest.mark.parametrize("args,words", [
    (["run", "x.yaml", "--bogus"], ["unrecognized arguments: --bogus", "distill --help"]),
    (["run"], ["required: file", "distill run --help"]),
    (["run", "x.yaml", "--out"], ["--out: expected one argument"]),
    (["run", "x.yaml", "--seeds", "1,x"], ["--seeds"]),
    (["compare", "runs", "--format", "pdf"], ["invalid choice: 'pdf'", "distill compare --help"]),
    (["compare", "runs", "--format", "p\nd\nf"], ["invalid choice"]),
    (["frobnicate"], ["invalid choice: 'frobnicate'"]),
    ([], ["required: command"]),
])
def test_a_usage_error_is_one_line(capsys, args, words):
    text = refused(capsys, args)
    assert text.startswith("distill: "), text
    for w in words:
        assert w in text, text


def test_library_warnings_do_not_break_the_one_line_rule(tmp_path, capsys, monkeypatch):
    import distill.file_check as file_check
    real = file_check.build_data

    def noisy(*a, **k):
        warnings.warn("a library has something to say", UserWarning)
        return real(*a, **k)

    monkeypatch.setattr(file_check, "build_data", noisy)
    f = write(tmp_path, GOOD.replace("hidden: [32]", "hidden: [32, 0]"))
    text = refused(capsys, ["validate", f])
    assert "hidden" in text
    f = write(tmp_path, GOOD)
    assert main(["validate", str(f)]) == 0
    assert "a library has something to say" in capsys.readouterr().err  # shown when all is well


@pytest.mark.parametrize("args,words", [
    (["run", "EXP", "--bogus"], ["unrecognized arguments"]),
    (["validate", "EXP", "--set", "trainer.accelerator=tpuu"], ["trainer.accelerator"]),
    (["run", "BOMB", "--out", "OUT"], ["aliases"]),
    (["run", "BADVARIANT", "--out", "OUT"], ["variants."]),
    (["compare", "STORE"], ["not a results store"]),
])
def test_the_installed_command_prints_one_line_and_exits_2(tmp_path, args, words):
    exp = write(tmp_path, GOOD)
    bomb = write(tmp_path, alias_bomb(), "bomb.yaml")
    bad = write(tmp_path, GOOD.replace("kd: {}", "'../../x': {}"), "bad.yaml")
    out = tmp_path / "runs"
    store_root = tmp_path / "store"
    store_root.mkdir()
    make_store(store_root / "results.sqlite", "random bytes")
    paths = {"EXP": exp, "BOMB": bomb, "BADVARIANT": bad, "OUT": out, "STORE": store_root}
    done = subprocess.run([str(DISTILL)] + [str(paths.get(a, a)) for a in args],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          env={**os.environ, "PYTHONWARNINGS": "always"})
    assert done.returncode == 2, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    for w in words:
        assert w in lines[0], lines[0]
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml", "bomb.yaml", "exp.yaml",
                                                          "store"]


# ------------------------------------------------------------ 8. OSError at the CLI boundary

@pytest.mark.parametrize("code,reason", [(errno.ENOSPC, "no space left on device"),
                                         (errno.EACCES, "permission denied"),
                                         (errno.EROFS, "read-only file system")])
def test_an_os_error_on_the_output_is_one_line_naming_the_path(tmp_path, capsys, code, reason,
                                                               monkeypatch):
    import distill.runner as runner

    def full(ef, exp_dir):
        raise OSError(code, os.strerror(code), str(exp_dir / "experiment.yaml"))

    monkeypatch.setattr(runner, "remember_source", full)
    f = write(tmp_path, GOOD)
    out = tmp_path / "runs"
    text = refused(capsys, ["run", f, "--out", out])
    assert text.startswith(f"{out / 'hostile' / 'experiment.yaml'}: {reason}"), text


@pytest.mark.parametrize("message", ["database or disk is full", "unable to open database file",
                                     "attempt to write a readonly database"])
def test_a_store_the_file_system_refuses_is_one_line(tmp_path, capsys, monkeypatch, message):
    def trouble(self):
        raise sqlite3.OperationalError(message)

    monkeypatch.setattr(ResultsStore, "check", trouble)
    f = write(tmp_path, GOOD)
    out = tmp_path / "runs"
    text = refused(capsys, ["run", f, "--out", out])
    assert text.startswith(f"{out / 'results.sqlite'}: {message}"), text


def test_a_store_bug_keeps_its_traceback(tmp_path, monkeypatch):
    def bug(self):
        raise sqlite3.OperationalError("near \"SELEC\": syntax error")

    monkeypatch.setattr(ResultsStore, "check", bug)
    f = write(tmp_path, GOOD)
    with pytest.raises(sqlite3.OperationalError):
        main(["run", str(f), "--out", str(tmp_path / "runs")])


def test_an_os_error_that_is_not_about_a_user_path_keeps_its_traceback(tmp_path, capsys,
                                                                        monkeypatch):
    import distill.runner as runner

    def broken(ef, exp_dir):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(runner, "remember_source", broken)
    f = write(tmp_path, GOOD)
    with pytest.raises(OSError):
        main(["run", str(f), "--out", str(tmp_path / "runs")])


def test_a_real_bug_keeps_its_traceback(tmp_path, monkeypatch):
    import distill.runner as runner

    def bug(*a, **k):
        raise ZeroDivisionError("a bug in the workbench")

    monkeypatch.setattr(runner, "check_run_folder", bug)
    f = write(tmp_path, GOOD)
    with pytest.raises(ZeroDivisionError):
        main(["run", str(f), "--out", str(tmp_path / "runs")])


# ----------------------------------------------------- a red team's findings, one case per family

RED_TEAM = {
    "accumulate 0": ("objectives:", "trainer: {accumulate_grad_batches: 0}\nobjectives:",
                     "trainer.accumulate_grad_batches", ["divide every step by zero"]),
    "val every 3 epochs": ("objectives:", "trainer: {check_val_every_n_epoch: 3}\nobjectives:",
                           "trainer.check_val_every_n_epoch", ["train.validate_every"]),
    "val interval 0": ("objectives:", "trainer: {val_check_interval: 0}\nobjectives:",
                       "trainer.val_check_interval", ["train.validate_every"]),
    "validate every 0": ("train: {epochs: 1}\nobjectives", "train: {epochs: 1, validate_every: 0}"
                         "\nobjectives", "train.validate_every", []),
    "fast_dev_run": ("objectives:", "trainer: {fast_dev_run: true}\nobjectives:",
                     "trainer.fast_dev_run", ["set by the workbench", "--fast"]),
    "max_epochs": ("objectives:", "trainer: {max_epochs: 3}\nobjectives:", "trainer.max_epochs",
                   ["set by the workbench", "use train.epochs"]),
    "a logger": ("objectives:", "trainer: {logger: false}\nobjectives:", "trainer.logger",
                 ["loggers: [tensorboard"]),
    "callbacks": ("objectives:", "trainer: {callbacks: [x]}\nobjectives:", "trainer.callbacks",
                  ["never brings code", "Adding an objective"]),
    "root dir": ("objectives:", "trainer: {default_root_dir: /tmp}\nobjectives:",
                 "trainer.default_root_dir", ["--out"]),
    "max_steps 0": ("objectives:", "trainer: {max_steps: 0}\nobjectives:", "trainer.max_steps",
                    ["set by the workbench"]),
    "64 cpu devices": ("objectives:", "trainer: {accelerator: cpu, devices: 64}\nobjectives:",
                       "trainer.devices", ["cores"]),
    "16-bit on cpu": ("objectives:", "trainer: {accelerator: cpu, precision: 16-mixed}\nobjectives:",
                      "trainer.precision", ["needs a GPU"]),
    "seed true": ("seeds: [0]", "seeds: [true]", "seeds.0", []),
    "width true": ("hidden: [32]", "hidden: [true]", "student.net.hidden", ["not true/false"]),
    "batch 1e12": ("batch_size: 64", "batch_size: 1000000000000", "data.batch_size", []),
    "variant Teacher": ("  kd: {}", "  Teacher: {}", "variants.Teacher", ["teacher stage"]),
    "variant teacher.": ("  kd: {}", "  teacher.: {}", "variants.teacher.", ["teacher stage"]),
    "lr 1e300": ("train: {epochs: 1}\nobjectives",
                 "train: {epochs: 1, optimizer: {name: sgd, lr: 1.0e+300}}\nobjectives",
                 "train.optimizer.lr", ["between 0 and 100"]),
    "temperature 1e300": ("temperature: 4", "temperature: 1.0e+300", "objectives.1.temperature",
                          ["between"]),
    "temperature subnormal": ("temperature: 4", "temperature: 1.0e-320",
                              "objectives.1.temperature", ["between"]),
    "weight 1e308": ("{name: kd,", "{name: kd, weight: 1.0e+308,", "objectives.1.weight", []),
    "all weights 0": ("  - {name: ce}\n  - {name: kd, temperature: 4}\n",
                      "  - {name: ce, weight: 0}\n", "objectives", ["nothing trains"]),
    "warm-up beyond training": ("{name: kd,", "{name: kd, warmup_epochs: 1000000000,",
                                "objectives.1.warmup_epochs", ["longer than the 1"]),
    "imbalance 1e-300": ("batch_size: 64}", "batch_size: 64, imbalance: 1.0e-300}",
                         "data.imbalance", ["without training samples"]),
    "binary name": ("name: hostile", "name: !!binary cnQ=", None, ["!!binary"]),
    "two merge keys": ("  kd: {}", "  kd: {<<: {seeds: [1]}, <<: {seeds: [2]}}", None,
                       ["`<<:` appears twice"]),
}


@pytest.mark.parametrize("case", list(RED_TEAM))
def test_what_a_red_team_found_is_one_line(tmp_path, capsys, earlier, case):
    old, new, key, words = RED_TEAM[case]
    assert old in GOOD
    line = run_refused(tmp_path, capsys, earlier, write(tmp_path, GOOD.replace(old, new, 1)))
    if key:
        assert f": {key}: " in line, line
    for w in words:
        assert w in line, line


def test_a_store_that_is_a_pipe_is_named_so(tmp_path, capsys):
    out = tmp_path / "runs"
    out.mkdir()
    os.mkfifo(out / "results.sqlite")
    line = refused(capsys, ["run", write(tmp_path, GOOD), "--out", out])
    assert "not a regular file" in line, line


# -------------------------------------------------- a second red-team pass: families 5 to 9

def teacher_file(tmp_path, state) -> Path:
    import torch
    path = tmp_path / "teacher.pt"
    torch.save({"state_dict": state}, path)
    return path


def digits_teacher_state():
    from students import build_network
    return build_network("small_cnn", {"width": 8}, num_classes=10,
                         input_shape=(1, 8, 8)).net.state_dict()


@pytest.mark.parametrize("damage,words", [
    (lambda s: {k: 5 for k in s}, "names mapped to tensors"),
    (lambda s: {i: v for i, v in enumerate(s.values())}, "names mapped to tensors"),
    (lambda s: {k: v.float().fill_(float("nan")) if v.is_floating_point() else v
                for k, v in s.items()}, "NaN or infinite"),
    (lambda s: {**s, "extra.weight": next(iter(s.values()))}, "unexpected extra.weight"),
])
def test_a_teacher_checkpoint_of_the_wrong_content_is_one_line(tmp_path, capsys, damage, words):
    path = teacher_file(tmp_path, damage(digits_teacher_state()))
    text = GOOD.replace("  train: {epochs: 1}\nstudent", f"  checkpoint: {path}\nstudent")
    line = refused(capsys, ["validate", write(tmp_path, text)])
    assert "teacher.checkpoint" in line and words in line, line


def test_checkpoint_and_train_together_are_refused(tmp_path, capsys):
    path = teacher_file(tmp_path, digits_teacher_state())
    text = GOOD.replace("  train: {epochs: 1}", f"  train: {{epochs: 1}}\n  checkpoint: {path}")
    assert "not both" in refused(capsys, ["validate", write(tmp_path, text)])


def test_damaged_files_of_an_earlier_run_are_one_line(tmp_path, capsys):
    f = write(tmp_path, GOOD)
    out = tmp_path / "runs"
    assert main(["run", str(f), "--out", str(out), "--fast", "--variant", "kd"]) == 0
    capsys.readouterr()
    marker = out / "_fast" / "hostile" / "teacher" / "identity.json"
    marker.write_text("{not json")
    assert "identity.json: is damaged" in refused(capsys, ["run", f, "--out", out, "--fast"])
    marker.unlink()
    config = out / "_fast" / "hostile" / "kd" / "seed0" / "config.yaml"
    (config.parent / "metrics.json").unlink()
    config.write_bytes(b"\x00\xffgarbage: [")
    assert "different configuration" in refused(capsys, ["run", f, "--out", out, "--fast",
                                                         "--variant", "kd"])


def test_compare_on_a_store_without_rows_is_one_line(tmp_path, capsys):
    ResultsStore(tmp_path / "results.sqlite").check()
    import sqlite3
    from distill.results.store import SCHEMA
    with sqlite3.connect(tmp_path / "results.sqlite") as db:
        db.execute(SCHEMA)
    assert "holds no results yet" in refused(capsys, ["compare", tmp_path])




@pytest.mark.parametrize("old,new,key", [
    ("{name: dcd, candidates: 8, hard_negatives: 3}", "{name: score_kd, candidates: 33}",
     "objectives.1.candidates"),
    ("net: {name: cross_encoder", "net: {name: dual_encoder", "teacher.objectives.1"),
    ("objectives: [{name: itc}, {name: itm}]", "objectives: [{name: kd}]", "teacher.objectives.0"),
])
def test_retrieval_mistakes_of_the_teacher_stage_are_refused_at_validate(tmp_path, capsys, old,
                                                                         new, key):
    assert old in RETRIEVAL
    f = write(tmp_path, RETRIEVAL.replace(old, new))
    line = refused(capsys, ["validate", f])
    assert line.startswith(f"{f}:") and f": {key}: " in line, line


def test_a_split_file_entry_outside_the_image_folder_is_refused(tmp_path):
    from dataset_files import write_karpathy
    from distill.data.karpathy import flickr30k
    from distill.errors import UserError
    entries = write_karpathy(tmp_path)
    entries[0]["filename"] = "../../../../etc/passwd"
    (tmp_path / "dataset_flickr30k.json").write_text(json.dumps({"images": entries}))
    with pytest.raises(UserError, match="lies outside"):
        flickr30k(root=str(tmp_path), image_size=32)


def test_a_store_that_is_a_dangling_link_is_refused_before_anything(tmp_path, capsys):
    out = tmp_path / "runs"
    out.mkdir()
    (out / "results.sqlite").symlink_to(tmp_path / "nowhere" / "results.sqlite")
    line = refused(capsys, ["run", write(tmp_path, GOOD), "--out", out])
    assert "link to nothing" in line, line
    assert sorted(p.name for p in out.iterdir()) == ["results.sqlite"]
