"""Class-means of the teacher for nd: the values, the cache beside the teacher's weights (computed
once, reused by every variant and seed, visible in the log), exactness after a resume, and the
reduction across processes."""
from __future__ import annotations

import re
from pathlib import Path

import lightning as L
import torch
import torch.multiprocessing as mp

from distill.cli import main
from distill.config import load_experiment
from distill.data.base import DataModule
from distill.engine.build import build_data, build_module, build_teacher
from distill.objectives.class_means import ClassMeans
from distill.registry import datasets
from students import build_network
from experiment_text import digits_pair

EXPERIMENT = digits_pair(
    "cm", "  - {name: ce}\n  - {name: nd, weight: 2}\n", seeds="[0, 1]",
    tail="variants:\n  nd: {}\n"
         "  kd+nd: {objectives: [{name: ce}, {name: kd}, {name: nd, weight: 2}]}\n")


def teacher_net():
    torch.manual_seed(0)
    return build_network("small_cnn", {"width": 8}, num_classes=10, input_shape=(1, 8, 8))


def digits_data(train_index=None) -> DataModule:
    return DataModule(datasets.get("digits").target(), batch_size=64, eval_batch_size=100,
                      train_index=train_index)


def reference_means(net, data):
    """Per-class mean of the features, one sample at a time."""
    net.eval()
    sums, counts = {}, {}
    with torch.no_grad():
        for x, y, _ in data.train_set:
            f = net(x.unsqueeze(0)).features[0].double()
            sums[int(y)] = sums.get(int(y), 0) + f
            counts[int(y)] = counts.get(int(y), 0) + 1
    return sums, counts


def test_the_means_are_the_per_class_averages_of_the_teacher_features(tmp_path):
    net, data = teacher_net(), digits_data()
    means = ClassMeans(10, 16)
    assert not means.filled
    assert means.fill(net, data, "cpu", tmp_path, {"id": 1}, say=lambda _: None) == "computed"
    sums, counts = reference_means(net, data)
    for k in range(10):
        torch.testing.assert_close(means.means[k], (sums[k] / counts[k]).float())
    assert "means" in dict(means.named_buffers())


def test_a_class_without_samples_keeps_a_zero_mean(tmp_path):
    targets = datasets.get("digits").target().train_targets
    data = digits_data(train_index=torch.nonzero(targets < 5).flatten())
    means = ClassMeans(10, 16)
    means.fill(teacher_net(), data, "cpu", None, {}, say=lambda _: None)
    assert means.filled and (means.means[5:] == 0).all() and (means.means[:5] != 0).any()


def test_the_cache_is_reused_for_the_same_identity_only(tmp_path):
    net, data = teacher_net(), digits_data()
    said = []
    first = ClassMeans(10, 16)
    assert first.fill(net, data, "cpu", tmp_path, {"id": 1}, say=said.append) == "computed"
    assert len(list(tmp_path.glob("class_means-*.pt"))) == 1
    second = ClassMeans(10, 16)
    assert second.fill(None, None, "cpu", tmp_path, {"id": 1}, say=said.append) == "reused"
    assert torch.equal(first.means, second.means)
    third = ClassMeans(10, 16)
    assert third.fill(net, data, "cpu", tmp_path, {"id": 2}, say=said.append) == "computed"
    assert len(list(tmp_path.glob("class_means-*.pt"))) == 2
    assert said[0].startswith("class-means: computed from 1437 training samples -> ")
    assert said[1].startswith("class-means: reused ")
    assert first.fill(None, None, "cpu", tmp_path, {"id": 1}, say=said.append) == "restored"


def test_computed_once_per_teacher_and_reused_by_every_variant_and_seed(tmp_path, capsys):
    f = tmp_path / "cm.yaml"
    f.write_text(EXPERIMENT)
    out = tmp_path / "runs"
    assert main(["run", str(f), "--fast", "--out", str(out)]) == 0
    log = capsys.readouterr().out
    computed = re.findall(r"class-means: computed .* -> (\S+)", log)
    reused = re.findall(r"class-means: reused (\S+)", log)
    teacher_dir = out / "_fast" / "cm" / "teacher"
    files = list(teacher_dir.glob("class_means-*.pt"))
    assert len(files) == 1 and (teacher_dir / "teacher.pt").exists()
    assert computed == [str(files[0])] and reused == [str(files[0])] * 3, log
    # a second run of the same file reuses the cache too; a long-tail training set does not
    assert main(["run", str(f), "--fast", "--out", str(out), "--set", "name=cm-lt",
                 "--set", "data.imbalance=0.1", "--seeds", "0", "--variant", "nd"]) == 0
    log = capsys.readouterr().out
    assert "class-means: computed" in log


def test_a_resumed_run_keeps_the_means_it_started_with(tmp_path, capsys):
    weights = tmp_path / "teacher.pt"
    torch.save({"state_dict": teacher_net().net.state_dict()}, weights)
    f = tmp_path / "cm.yaml"
    f.write_text(EXPERIMENT.replace("  train: {epochs: 1}\n", f"  checkpoint: {weights}\n", 1))
    exp = load_experiment(str(f)).variants["nd"]

    def module():
        data = build_data(exp, 0)
        return build_module(exp, data, build_teacher(exp, data, None)), data

    def trainer(epochs):
        return L.Trainer(max_epochs=epochs, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         num_sanity_val_steps=0, limit_train_batches=2, limit_val_batches=1)

    first, data = module()
    t1 = trainer(1)
    t1.fit(first, datamodule=data)
    ckpt = tmp_path / "last.ckpt"
    t1.save_checkpoint(ckpt)
    started_with = first.terms[1].objective.class_means.means.clone()
    cache = next(tmp_path.glob("class_means-*.pt"))
    torch.save(torch.full_like(started_with, 7.0), cache)  # a recomputation or re-read would show
    capsys.readouterr()

    resumed, data = module()
    t2 = trainer(2)
    t2.fit(resumed, datamodule=data, ckpt_path=str(ckpt))
    assert t2.current_epoch == 2
    assert "class-means: restored from the checkpoint" in capsys.readouterr().out
    assert torch.equal(resumed.terms[1].objective.class_means.means, started_with)
    assert torch.isfinite(started_with).all()


# --- across processes ---------------------------------------------------------------------------

def _rank_means(rank: int, world: int, port: int, out: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world)
    cache = Path(out).parent / "cache"
    first, second = ClassMeans(10, 16), ClassMeans(10, 16)
    how = [first.fill(teacher_net(), digits_data(), "cpu", cache, {}, say=lambda _: None)]
    dist.barrier()  # rank 0 has written the cache
    how.append(second.fill(teacher_net(), digits_data(), "cpu", cache, {}, say=lambda _: None))
    if rank == 0:
        torch.save({"means": first.means, "reread": second.means, "how": how}, out)
    dist.destroy_process_group()


def test_sums_and_counts_are_reduced_across_processes(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "means.pt"
    mp.spawn(_rank_means, args=(2, port, str(out)), nprocs=2, join=True)
    single = ClassMeans(10, 16)
    single.fill(teacher_net(), digits_data(), "cpu", None, {}, say=lambda _: None)
    result = torch.load(out)
    torch.testing.assert_close(result["means"], single.means)
    assert result["how"] == ["computed", "reused"]
    assert torch.equal(result["reread"], result["means"])
