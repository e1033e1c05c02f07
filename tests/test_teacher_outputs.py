"""A frozen teacher's outputs computed once per (teacher, seed, epoch, sample) and shared by every
run of a grid through files beside the teacher's weights (teacher.cache)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from dataset_files import write_cifar10
from experiment_text import digits_pair
from run_logs import log_rows

from distill.config import load_experiment
from distill.config.schema import Experiment
from distill.engine.run_lock import RunLock
from distill.engine.stage import RunPlan, resolved_config
from distill.engine.teacher_cache import TeacherCache
from distill.engine.teacher_output_store import TeacherOutputStore
from distill.runner import run_experiment


def cifar_grid(root: Path, teacher_lines: str = "", seeds: str = "[0]") -> str:
    """Augmented CIFAR-format data (crop and flip), a teacher stage and two KD variants."""
    return f"""\
name: shared
seeds: {seeds}
data: {{name: cifar10, root: {root}, batch_size: 16}}
teacher:
  role: frozen
  net: {{name: small_cnn, width: 4}}
  train: {{epochs: 1}}
{teacher_lines}student:
  net: {{name: mlp, hidden: [16], dropout: 0.1}}
train: {{epochs: 3, optimizer: {{name: sgd, lr: 0.05, momentum: 0.9}}}}
objectives:
  - {{name: ce}}
  - {{name: kd, temperature: 4}}
variants:
  kd: {{}}
  kd-t2: {{objectives: [{{name: ce}}, {{name: kd, temperature: 2}}]}}
"""


@pytest.fixture
def counted(monkeypatch):
    """How many tables the runs computed (each one teacher pass over an epoch)."""
    calls = []
    compute = TeacherCache.compute

    def counting(self, teacher, batches, fits=None):
        calls.append(1)
        return compute(self, teacher, batches, fits)

    monkeypatch.setattr(TeacherCache, "compute", counting)
    return calls


def run(tmp_path: Path, text: str, out: str, lines: list | None = None) -> Path:
    f = tmp_path / f"{out}.yaml"
    f.write_text(text)
    run_experiment(load_experiment(f), tmp_path / out, None, RunPlan(),
                   say=(lines.append if lines is not None else lambda _: None))
    return tmp_path / out / "shared"


@pytest.mark.parametrize("switches", ["", "channels_last: true\n",
                                      "trainer: {precision: bf16-true}\n"])
def test_a_grid_computes_each_epochs_teacher_outputs_once_and_equals_uncached_runs(
        tmp_path, counted, switches):
    write_cifar10(tmp_path / "data", n=16)
    shared = run(tmp_path, cifar_grid(tmp_path / "data") + switches, "cached")
    assert len(counted) == 3  # 2 variants x 3 epochs, one pass per epoch
    tables = sorted(p.name for p in (shared / "teacher" / "teacher_outputs").rglob("*.pt"))
    assert tables == ["epoch0.pt", "epoch1.pt", "epoch2.pt"]
    counted.clear()
    plain = run(tmp_path, cifar_grid(tmp_path / "data", "  cache: off\n") + switches, "live")
    assert counted == [] and not (plain / "teacher" / "teacher_outputs").exists()
    for variant in ("kd", "kd-t2"):  # every logged term of every epoch, to the bit
        rows = log_rows(shared / variant / "seed0")
        assert len(rows) == 6 and rows == log_rows(plain / variant / "seed0")


def test_each_seed_has_its_own_tables_and_a_second_grid_reads_them(tmp_path, counted):
    write_cifar10(tmp_path / "data", n=16)
    text = cifar_grid(tmp_path / "data", seeds="[0, 1]")
    shared = run(tmp_path, text, "out")
    assert len(counted) == 6  # 2 seeds x 3 epochs
    assert len([p for p in (shared / "teacher" / "teacher_outputs").iterdir() if p.is_dir()]) == 2
    counted.clear()
    for variant in ("kd", "kd-t2"):
        shutil.rmtree(shared / variant)
    again = run(tmp_path, text, "out")
    assert counted == []  # every table read
    assert (again / "kd" / "seed1" / "metrics.json").exists()


def test_the_bound_stops_sharing_with_one_line_and_changes_no_number(tmp_path, counted):
    write_cifar10(tmp_path / "data", n=16)
    lines_out = []
    shared = run(tmp_path, cifar_grid(tmp_path / "data", "  cache_limit_gb: 1.0e-6\n"), "small",
                 lines_out)
    plain = run(tmp_path, cifar_grid(tmp_path / "data", "  cache: off\n"), "live")
    assert not list((shared / "teacher" / "teacher_outputs").rglob("*.pt"))
    assert log_rows(shared / "kd-t2" / "seed0") == log_rows(plain / "kd-t2" / "seed0")


def test_the_bound_is_said_once_per_run(tmp_path, capsys):
    write_cifar10(tmp_path / "data", n=16)
    run(tmp_path, cifar_grid(tmp_path / "data", "  cache_limit_gb: 1.0e-6\n"), "small")
    said = [line for line in capsys.readouterr().out.splitlines() if "cache_limit_gb" in line]
    assert len(said) == 2, said  # one per run: each stops at its first table
    assert "raise the limit or delete that folder" in said[0]


def test_inputs_that_repeat_share_one_table_across_the_grid(tmp_path, counted):
    text = digits_pair("shared", "  - {name: ce}\n  - {name: kd}\n",
                       tail="variants:\n  t1: {}\n  t2: {objectives: [{name: kd, temperature: 2}]}\n")
    shared = run(tmp_path, text, "out")
    assert len(counted) == 1
    assert [p.name for p in (shared / "teacher" / "teacher_outputs").rglob("*.pt")] == ["all.pt"]


def test_cache_off_runs_the_teacher_at_every_step(tmp_path, counted):
    text = digits_pair("shared", "  - {name: kd}\n").replace("  train: {epochs: 1}\n",
                                                            "  train: {epochs: 1}\n  cache: off\n")
    run(tmp_path, text, "out")
    assert counted == []


def test_yaml_off_is_the_switch_and_defaults_leave_the_run_folders_configuration_alone(tmp_path):
    f = tmp_path / "x.yaml"
    f.write_text(digits_pair("x", "  - {name: kd}\n"))
    exp = load_experiment(f).variants["default"]
    assert "cache" not in resolved_config(exp, 0)
    off = Experiment.model_validate({**exp.model_dump(by_alias=True),
                                     "teacher": {**exp.teacher.model_dump(by_alias=True),
                                                 "cache": False, "cache_limit_gb": 2}})
    assert off.teacher.cache == "off"
    assert "cache: 'off'" in resolved_config(off, 0) and "cache_limit_gb: 2" in \
        resolved_config(off, 0)


def test_an_unreadable_table_is_computed_again(tmp_path):
    lines = []
    store = TeacherOutputStore(tmp_path, {"k": 1}, 2 ** 30, lines.append)
    assert store.write("epoch0", {"logits": torch.ones(4, 3)})
    assert torch.equal(store.read("epoch0")["logits"], torch.ones(4, 3))
    store.path("epoch0").write_bytes(b"truncated")
    assert store.read("epoch0") is None and not store.path("epoch0").exists()
    assert "not a table of tensors" in lines[0] and "computing it again" in lines[0]
    torch.save({"logits": "not a tensor"}, store.path("epoch0"))
    assert store.read("epoch0") is None


def test_a_table_another_process_is_writing_leaves_this_epoch_to_the_teacher(tmp_path):
    store = TeacherOutputStore(tmp_path, {"k": 1}, 2 ** 30)
    cache = TeacherCache(frozenset({"logits"}), 4, None, store)
    holder = RunLock(store.folder, ".epoch0.lock")
    assert holder.try_acquire()
    teacher = lambda x: type("Out", (), {"get": lambda self, f: x * 2})()  # noqa: E731
    batches = lambda: [(torch.ones(4, 3), torch.arange(4))]  # noqa: E731
    cache.load("epoch0", batches, teacher, always=False)
    assert cache.table is None and cache.counts["live"] == 1
    cache.load("epoch0", batches, teacher, always=True)  # inputs that repeat: its own table
    assert torch.equal(cache(torch.tensor([2])).logits, torch.full((1, 3), 2.0))
    assert not store.path("epoch0").exists()
    holder.release()
    cache.load("epoch0", batches, teacher, always=False)
    assert store.path("epoch0").exists() and cache.counts["computed"] == 2


def test_a_subset_keeps_a_row_per_sample_it_trains_on(tmp_path):
    cache = TeacherCache(frozenset({"logits"}), 10, torch.tensor([7, 2, 5]))
    teacher = lambda x: type("Out", (), {"get": lambda self, f: x})()  # noqa: E731
    cache.load("all", lambda: [(torch.tensor([[5.0], [7.0], [2.0]]), torch.tensor([5, 7, 2]))],
               teacher, always=True)
    assert cache.table["logits"].shape == (3, 1)
    assert cache(torch.tensor([2, 7])).logits.flatten().tolist() == [2.0, 7.0]


def test_batches_other_than_the_epochs_own_are_never_read_from_a_table(tmp_path, counted):
    write_cifar10(tmp_path / "data", n=16)
    lines = "trainer: {overfit_batches: 1.0}\n"  # Lightning's own sampler, in order
    shared = run(tmp_path, cifar_grid(tmp_path / "data") + lines, "cached")
    assert counted == []
    plain = run(tmp_path, cifar_grid(tmp_path / "data", "  cache: off\n") + lines, "live")
    assert log_rows(shared / "kd" / "seed0") == log_rows(plain / "kd" / "seed0")


def test_the_key_holds_what_changes_the_teachers_numbers(tmp_path):
    from distill.engine.build import build_data, build_teacher, cache_plan

    f = tmp_path / "k.yaml"
    f.write_text(digits_pair("k", "  - {name: kd}\n", tail="""\
variants:
  plain: {}
  tapped: {teacher: {net: {name: small_cnn, width: 8, taps: {features: pool}}}}
  nhwc: {channels_last: true}
  compiled: {compile: true}
  subset: {data: {imbalance: 0.5}}
  limited: {teacher: {cache_limit_gb: 2}}
"""))
    keys = {}
    for name, exp in load_experiment(f).variants.items():
        data = build_data(exp, 0)
        plan = cache_plan(exp, data, ["w.pt"])
        keys[name] = TeacherOutputStore(plan.root, plan.identity, 1).folder.name
    assert keys["limited"] == keys["plain"]  # the bound decides no number
    assert len({keys[n] for n in keys if n != "limited"}) == 5, keys
    assert cache_plan(exp, data, None).root is None  # no weights file: nothing shared
