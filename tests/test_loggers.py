"""`loggers:` in a file: the CSV log always, TensorBoard events beside it, and a logger whose
package is missing refused at validate in one line."""
from __future__ import annotations

import importlib.util

import pytest

from distill.cli import main

FILE = """\
name: logged
seeds: [0]
data: {name: digits, batch_size: 128}
student:
  net: {name: mlp, hidden: [32]}
train: {epochs: 2, optimizer: {name: sgd, lr: 0.05, momentum: 0.9}}
objectives: [{name: ce}]
loggers: LOGGERS
"""


def write(tmp_path, loggers):
    f = tmp_path / "logged.yaml"
    f.write_text(FILE.replace("LOGGERS", loggers))
    return f


def test_tensorboard_events_are_written_beside_the_csv_log(tmp_path):
    out = tmp_path / "runs"
    assert main(["run", str(write(tmp_path, "[csv, tensorboard]")), "--out", str(out)]) == 0
    run = out / "logged" / "default" / "seed0"
    assert (run / "logs" / "metrics.csv").is_file()
    events = list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert len(events) == 1 and events[0].stat().st_size > 100
    assert "loggers" not in (run / "config.yaml").read_text()  # they do not change a result


def test_the_csv_log_is_written_whatever_the_loggers(tmp_path):
    out = tmp_path / "runs"
    assert main(["run", str(write(tmp_path, "[tensorboard]")), "--out", str(out)]) == 0
    assert (out / "logged" / "default" / "seed0" / "logs" / "metrics.csv").is_file()


@pytest.mark.parametrize("logger,package", [("mlflow", "mlflow"), ("wandb", "wandb"),
                                            ("tensorboard", "tensorboardX")])
def test_a_logger_without_its_package_is_one_line(tmp_path, capsys, monkeypatch, logger,
                                                  package):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("mlflow", "wandb", "tensorboardX",
                                                          "tensorboard") else real(name, *a))
    assert main(["validate", str(write(tmp_path, f"[csv, {logger}]"))]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "loggers.1" in err and package in err, err


def test_an_unknown_logger_is_one_line(tmp_path, capsys):
    assert main(["validate", str(write(tmp_path, "[csv, neptune]"))]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "loggers.1" in err and "tensorboard" in err, err


def test_mlflow_records_every_epoch_in_the_runs_file_store(tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    out = tmp_path / "runs"
    assert main(["run", str(write(tmp_path, "[csv, mlflow]")), "--out", str(out)]) == 0
    store = out / "logged" / "default" / "seed0" / "mlruns"
    client = MlflowClient(store.resolve().as_uri())
    (run,) = client.search_runs([client.get_experiment_by_name("logged").experiment_id])
    assert run.info.run_name == "default s0"
    assert len(client.get_metric_history(run.info.run_id, "val/acc")) == 2  # both epochs


def test_wandb_writes_an_offline_run_in_the_runs_folder(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_SILENT", "true")
    out = tmp_path / "runs"
    assert main(["run", str(write(tmp_path, "[csv, wandb]")), "--out", str(out)]) == 0
    runs = list((out / "logged" / "default" / "seed0" / "wandb").glob("offline-run-*/*.wandb"))
    assert len(runs) == 1 and runs[0].stat().st_size > 0
