"""One run over several machines (``trainer: {num_nodes: 2, devices: 1, strategy: ddp}``),
launched the way clusters launch it: one launcher per node, which Lightning's own cluster
environments read. Both nodes run here on one machine and reach each other over TCP, as two
machines would; their run folders are the same files, as on a shared filesystem. The numbers must
be those of one process with the same global batch."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_ddp import GRID, assert_same_numbers, stages_of

# the tests' classification grid (a teacher stage, kd, kd+nd) and crd, which reads the global batch
CRD = "  crd: {objectives: [{name: ce}, {name: crd, negatives: 64, dim: 16}]}\n"
NODES = "trainer: {strategy: ddp, num_nodes: 2, devices: 1, accelerator: cpu}\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(node: int, port: int) -> tuple[list[str], dict]:
    """torch's elastic launcher on each node (Lightning: TorchElasticEnvironment)."""
    torchrun = Path(sys.executable).with_name("torchrun")
    return ([str(torchrun), "--nnodes", "2", "--nproc_per_node", "1", "--node_rank", str(node),
             "--master_addr", "127.0.0.1", "--master_port", str(port), "-m", "distill.cli"], {})


def srun(node: int, port: int) -> tuple[list[str], dict]:
    """What ``srun`` gives each task of a 2-node job (Lightning: SLURMEnvironment)."""
    return ([sys.executable, "-m", "distill.cli"],
            {"SLURM_NTASKS": "2", "SLURM_NTASKS_PER_NODE": "1", "SLURM_NNODES": "2",
             "SLURM_JOB_NAME": "grid", "SLURM_JOB_ID": "4242", "SLURM_PROCID": str(node),
             "SLURM_LOCALID": "0", "SLURM_NODEID": str(node), "SLURM_NODELIST": "127.0.0.1",
             "MASTER_PORT": str(port)})


@pytest.mark.slow
@pytest.mark.parametrize("launcher", [torchrun, srun])
def test_two_nodes_equal_one_process_with_their_global_batch(tmp_path, launcher):
    out = tmp_path / "out"
    # both sides in the same folder and environment (the same code), no launcher's variables
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "MASTER_"))}
    one = tmp_path / "one.yaml"
    one.write_text(GRID.format(name="one", batch=64, every=CRD, trainer=""))
    done = subprocess.run([sys.executable, "-m", "distill.cli", "run", str(one), "--out",
                           str(out)], capture_output=True, text=True, timeout=900, env=env,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]

    nodes = tmp_path / "nodes.yaml"
    nodes.write_text(GRID.format(name="nodes", batch=32, every=CRD, trainer=NODES))
    port = free_port()  # free now; a process that takes it meanwhile fails the test, never hangs
    logs = [tmp_path / f"node{node}.log" for node in (0, 1)]
    launched = []
    try:
        for node, log in zip((0, 1), logs):
            command, variables = launcher(node, port)
            with open(log, "w") as f:  # a file, not a pipe: a node never blocks on its output
                launched.append(subprocess.Popen(
                    [*command, "run", str(nodes), "--out", str(out)], stdout=f,
                    stderr=subprocess.STDOUT, env={**env, **variables}, cwd=tmp_path))
        deadline = time.monotonic() + 900
        for p in launched:
            p.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        for p in launched:
            if p.poll() is None:
                p.kill()
    said = [log.read_text() for log in logs]
    for p, text in zip(launched, said):
        assert p.returncode == 0, text[-4000:]
    # the first node prints the results; the second trains its share and prints no table
    table = "Mean ± sample std over seeds"
    assert table in said[0] and table not in said[1]
    runs = {"one": out / "one", "two": out / "nodes"}
    stages = stages_of(runs)
    assert len(stages) == 4
    assert_same_numbers(runs, stages)
