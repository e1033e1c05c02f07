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
from pathlib import Path

import pytest
from test_ddp import assert_same_numbers

GRID = """\
name: {name}
seeds: [0]
data: {{name: mnist1d, num_samples: 640, batch_size: {batch}}}
teacher:
  role: frozen
  net: {{name: cnn1d, width: 8}}
  train: {{epochs: 1, optimizer: {{name: adam, lr: 3.0e-3}}}}
student:
  net: {{name: cnn1d, width: 8}}
train: {{epochs: 2, optimizer: {{name: sgd, lr: 0.1, momentum: 0.9}}}}
objectives: [{{name: ce}}, {{name: kd, temperature: 4}}]
variants:
  kd: {{}}
  crd: {{objectives: [{{name: ce}}, {{name: crd, negatives: 64, dim: 16}}]}}
{trainer}"""
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
    one = tmp_path / "one.yaml"
    one.write_text(GRID.format(name="one", batch=64, trainer=""))
    done = subprocess.run([sys.executable, "-m", "distill.cli", "run", str(one), "--out",
                           str(out)], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]

    nodes = tmp_path / "nodes.yaml"
    nodes.write_text(GRID.format(name="nodes", batch=32, trainer=NODES))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "MASTER_"))}
    launched = []
    for node in (0, 1):
        command, variables = launcher(node, port)
        launched.append(subprocess.Popen([*command, "run", str(nodes), "--out", str(out)],
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                         text=True, env={**env, **variables}, cwd=tmp_path))
    outputs = [p.communicate(timeout=900) for p in launched]
    for p, (stdout, stderr) in zip(launched, outputs):
        assert p.returncode == 0, stdout[-2000:] + stderr[-3000:]
    # the first node prints the results; the second trains its share and prints no table
    assert "crd" in outputs[0][0] and "crd" not in outputs[1][0]
    assert_same_numbers({"one": out / "one", "two": out / "nodes"},
                        ["teacher", "kd/seed0", "crd/seed0"])
