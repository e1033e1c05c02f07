"""The order of a grid's runs: the teacher stage first, and runs that do not read the teacher go
on while another process trains it."""
from __future__ import annotations

import threading
import time

from experiment_text import digits_pair

from distill.config import load_experiment
from distill.engine.run_lock import RunLock
from distill.engine.stage import RunPlan
from distill.runner import reads_teacher, run_experiment

GRID = digits_pair("order", "  - {name: kd}\n",
                   tail="variants:\n  ce-only: {objectives: [{name: ce}]}\n  kd: {}\n")


def test_which_variants_read_their_teacher(tmp_path):
    f = tmp_path / "grid.yaml"
    f.write_text(GRID + "  gold: {objectives: [{name: ce}], student: {net: {name: mlp}, "
                        "init: {from: teacher, alpha: 0.5}}}\n")
    ef = load_experiment(f)
    assert not reads_teacher(ef.variants["ce-only"])
    assert reads_teacher(ef.variants["kd"]) and reads_teacher(ef.variants["gold"])


def test_runs_without_the_teacher_go_on_while_another_process_trains_it(tmp_path):
    f = tmp_path / "grid.yaml"
    f.write_text(GRID)
    ef = load_experiment(f)
    lock = RunLock(tmp_path / "out" / "order" / "teacher")  # another process trains the teacher
    assert lock.try_acquire()
    said: list[str] = []
    worker = threading.Thread(target=run_experiment,
                              args=(ef, tmp_path / "out", None, RunPlan()),
                              kwargs={"say": said.append})
    worker.start()
    done = tmp_path / "out" / "order" / "ce-only" / "seed0" / "metrics.json"
    for _ in range(600):
        if done.exists() or not worker.is_alive():
            break
        time.sleep(0.1)
    assert done.exists()  # ce-only finished while the teacher was held elsewhere
    assert not (tmp_path / "out" / "order" / "kd" / "seed0").exists()  # kd waits for it
    lock.release()
    worker.join(timeout=300)
    assert (tmp_path / "out" / "order" / "kd" / "seed0" / "metrics.json").exists()
    assert sum("runs that do not read it go first" in s for s in said) == 1

    alone = run_experiment(ef, tmp_path / "alone", None, RunPlan(), say=lambda _: None)
    together = run_experiment(ef, tmp_path / "out", None, RunPlan(), say=lambda _: None)
    key = lambda r: (r["variant"], r["seed"])
    assert sorted(alone, key=key) == sorted(together, key=key)  # the same numbers either way


def test_a_teacher_no_run_reads_is_still_trained_or_waited_for(tmp_path):
    f = tmp_path / "grid.yaml"
    f.write_text(GRID.replace("  kd: {}\n", ""))
    ef = load_experiment(f)
    lock = RunLock(tmp_path / "out" / "order" / "teacher")
    assert lock.try_acquire()
    worker = threading.Thread(target=run_experiment, args=(ef, tmp_path / "out", None, RunPlan()),
                              kwargs={"say": lambda _: None})
    worker.start()
    done = tmp_path / "out" / "order" / "ce-only" / "seed0" / "metrics.json"
    for _ in range(600):
        if done.exists():
            break
        time.sleep(0.1)
    time.sleep(0.5)
    assert done.exists() and worker.is_alive()  # it waits for the teacher, a row of the table
    lock.release()
    worker.join(timeout=300)
    assert (tmp_path / "out" / "order" / "teacher" / "teacher.pt").exists()


def test_an_evaluator_that_measures_the_teacher_reads_it(tmp_path):
    f = tmp_path / "grid.yaml"
    f.write_text(GRID + "  probed: {objectives: [{name: ce}], evaluate: [{name: knn}]}\n"
                        "  student-only: {objectives: [{name: ce}], "
                        "evaluate: [{name: knn, of: [student]}]}\n")
    ef = load_experiment(f)
    assert reads_teacher(ef.variants["probed"])  # knn measures the teacher by default
    assert not reads_teacher(ef.variants["student-only"])
