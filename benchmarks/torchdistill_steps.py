"""The workbench against torchdistill (https://github.com/yoshitomo-matsubara/torchdistill) on the
same KD configuration: resnet56 -> resnet20 on the same CIFAR-10-format files (generated 32x32
images, ``cifar_steps.write_cifar10``), batch 64, a frozen teacher at random initialisation, the
student's CE + KD (T = 4, weight 1) step with SGD (lr 0.05, momentum 0.9, weight decay 5e-4),
one torch thread, no loader workers.

    .venv/bin/python benchmarks/torchdistill_steps.py [--steps 24] [--warmup 4] [--repeats 3]
                                                      [--channels-last]
                                                      [--venv ~/.cache/distill-benchmarks/torchdistill-venv]

torchdistill runs in a virtual environment of its own (``--venv``; created when absent or not
matching): ``torchdistill==1.1.5`` from the package registry with exactly the torch and torchvision
versions of the interpreter running this script. Its side is configured the torchdistill way, as
its ``examples/torchvision/image_classification.py`` and its CIFAR-10 configs do: a YAML config
read by its loader, its own CIFAR ResNets (``torchdistill.models.classification``), torchvision's
CIFAR10 dataset with per-image RandomCrop(32, padding 4), RandomHorizontalFlip, ToTensor and
Normalize, ``get_distillation_box`` with a ``WeightedSumLoss`` of its ``KDLoss`` (alpha 1, beta 1:
CE + T^2 KL), and its per-batch loop ``pre_epoch_process`` / ``forward_process`` /
``post_forward_process``. Two things differ from its example, both stated in the output: the
dataset class skips torchvision's MD5 check and reads the generated files' byte-string keys
(``GeneratedCIFAR10``; loading happens before the timed steps, ``__getitem__`` is torchvision's),
and the teacher is put in eval mode, as the workbench's frozen teacher is (torchdistill leaves it
in training mode: BatchNorm on batch statistics).

The workbench side is ``cifar_steps.py``'s workbench measurement (the stage ``distill run`` trains),
run as ``cifar_steps.py --one workbench``, whose experiment runs the teacher at every step
(``teacher: {cache: off}``), as torchdistill does. Each measurement is its own process, torchdistill and
workbench in turn; a process times ``--steps`` training steps after ``--warmup`` (the same
``StepClock``) and reports its peak resident memory. Prints steps/s, the ratio
workbench/torchdistill and the peak memory of each, median over ``--repeats``, and what each side
trained (images, batch, parameters of teacher and student, the loss of both on the same logits).
Left out of torchdistill's loop, in its favour: the example's per-step logging (``MetricLogger``,
``loss.item()``).

``--channels-last`` measures two more sides: the workbench with its file's ``channels_last: true``
(weights and images in NHWC memory order), and torchdistill with the same memory order applied by
hand in its loop (its configuration has no such switch): what the switch gains against
torchdistill as configured, and what is left of it when torchdistill's code is changed to match.
Run by hand, results in the README; never part of the tests.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import json
import pickle
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchvision

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cifar_steps  # noqa: E402
from cifar_steps import IMAGES, StepClock, cpu_model, experiment_file, write_cifar10  # noqa: E402

TORCHDISTILL = "1.1.5"
TEACHER, STUDENT = "resnet56", "resnet20"
DEFAULT_VENV = Path.home() / ".cache" / "distill-benchmarks" / "torchdistill-venv"

# torchdistill's config format (configs/official/cifar10/...): datasets built by !import_call, the
# models by registry key, the KD criterion as a weighted sum of loss modules
CONFIG = """\
datasets:
  &train cifar10/train: !import_call
    key: 'torchdistill_steps.GeneratedCIFAR10'  # this file, as a module (its folder is on sys.path)
    init:
      kwargs:
        root: '{root}'
        train: True
        transform: !import_call
          key: 'torchvision.transforms.Compose'
          init:
            kwargs:
              transforms:
                - !import_call
                  key: 'torchvision.transforms.RandomCrop'
                  init: {{kwargs: {{size: 32, padding: 4}}}}
                - !import_call
                  key: 'torchvision.transforms.RandomHorizontalFlip'
                  init: {{kwargs: {{p: 0.5}}}}
                - !import_call
                  key: 'torchvision.transforms.ToTensor'
                  init:
                - !import_call
                  key: 'torchvision.transforms.Normalize'
                  init:
                    kwargs:
                      mean: [0.49139968, 0.48215841, 0.44653091]
                      std: [0.24703223, 0.24348513, 0.26158784]
models:
  teacher_model: {{key: '{teacher}', kwargs: {{num_classes: 10, pretrained: False}}}}
  student_model: {{key: '{student}', kwargs: {{num_classes: 10, pretrained: False}}}}
train:
  num_epochs: {epochs}
  train_data_loader:
    dataset_id: *train
    sampler:
      class_or_func: !import_get
        key: 'torch.utils.data.RandomSampler'
      kwargs:
    kwargs: {{batch_size: 64, num_workers: 0, pin_memory: False, drop_last: False}}
  teacher: {{forward_proc: 'forward_batch_only', sequential: [], requires_grad: False,
            frozen_modules: []}}
  student: {{forward_proc: 'forward_batch_only', sequential: [], requires_grad: True,
            frozen_modules: []}}
  optimizer:
    key: 'SGD'
    kwargs: {{lr: 0.05, momentum: 0.9, weight_decay: 0.0005}}
  criterion:
    key: 'WeightedSumLoss'
    kwargs:
      sub_terms:
        kd:
          criterion:
            key: 'KDLoss'
            kwargs:
              student_module_path: '.'
              student_module_io: 'output'
              teacher_module_path: '.'
              teacher_module_io: 'output'
              temperature: {temperature}
              alpha: 1.0
              beta: 1.0
              reduction: 'batchmean'
          weight: 1.0
"""


# --- the torchdistill side: runs in torchdistill's environment ------------------------------------

class GeneratedCIFAR10(torchvision.datasets.CIFAR10):
    """torchvision's CIFAR10 over the generated files, its ``__getitem__`` (a PIL image through
    the transforms) unchanged. Only the loading differs: the files' MD5 sums are not the real
    CIFAR-10's, and a pickle written by Python 3 keeps its keys as bytes (the real files, written
    by Python 2, load them as str)."""

    def __init__(self, root, train=True, transform=None, target_transform=None):
        torchvision.datasets.VisionDataset.__init__(self, root, transform=transform,
                                                    target_transform=target_transform)
        self.train = train
        folder = Path(root) / self.base_folder

        def load(name):
            with open(folder / name, "rb") as f:
                return pickle.load(f, encoding="bytes")

        batches = [load(name) for name, _ in (self.train_list if train else self.test_list)]
        self.data = np.vstack([b[b"data"] for b in batches]).reshape(-1, 3, 32, 32)
        self.data = self.data.transpose((0, 2, 3, 1))  # HWC, as torchvision keeps it
        self.targets = [y for b in batches for y in b[b"labels"]]
        self.classes = [n.decode() for n in load(self.meta["filename"])[b"label_names"]]
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}


def probe():
    """Student logits, teacher logits and labels to put through both sides' losses."""
    g = torch.Generator().manual_seed(0)
    return (3 * torch.randn(64, 10, generator=g), 3 * torch.randn(64, 10, generator=g),
            torch.randint(0, 10, (64,), generator=g))


def torchdistill_run(work: Path, clock: StepClock | None, temperature: float = 4.0,
                     epochs: int = 1, channels_last: bool = False) -> dict:
    """torchdistill's loop as its image-classification example trains (without its evaluation):
    ``epochs`` epochs, or until the ``clock`` has timed its steps; returns what it trained.
    ``channels_last``: its networks and batches put in NHWC memory order by hand."""
    from torchdistill.common import yaml_util
    from torchdistill.common.main_util import set_seed
    from torchdistill.core.distillation import get_distillation_box
    from torchdistill.models.official import get_image_classification_model
    from torchdistill.models.registry import get_model

    def load_model(model_config):  # the example's load_model, without a checkpoint
        model = get_image_classification_model(model_config, False)
        if model is None:
            model = get_model(model_config["key"], None, **model_config["kwargs"])
        return model.to(device)

    path = work / "torchdistill.yaml"
    path.write_text(CONFIG.format(root=work / "data", teacher=TEACHER, student=STUDENT,
                                  temperature=float(temperature), epochs=epochs))
    set_seed(0)
    device = torch.device("cpu")
    config = yaml_util.load_yaml_file(str(path))
    teacher = load_model(config["models"]["teacher_model"])
    student = load_model(config["models"]["student_model"])
    box = get_distillation_box(teacher, student, config["datasets"], config["train"], device,
                               None, False, 1)
    s, t, y = probe()
    probe_loss = box.criterion({"student": {".": {"output": s}}, "teacher": {".": {"output": t}}},
                               {}, y).item()
    facts = {"images": len(box.train_data_loader.dataset),
             "batch_size": box.train_data_loader.batch_size,
             "teacher_params": sum(p.numel() for p in teacher.parameters()),
             "student_params": sum(p.numel() for p in student.parameters()),
             "criterion": str(box.criterion), "probe_loss": probe_loss,
             "torch": torch.__version__, "torchvision": torchvision.__version__,
             "torchdistill": importlib.metadata.version("torchdistill")}
    layout = torch.channels_last if channels_last else torch.contiguous_format
    # in place: the optimiser keeps the same parameters, their data in the new order
    box.teacher_model.to(memory_format=layout), box.student_model.to(memory_format=layout)
    for epoch in range(epochs):
        box.pre_epoch_process(epoch=epoch)
        box.teacher_model.eval()  # as the workbench's frozen teacher; torchdistill leaves it
        # training
        for sample_batch, targets, supp_dict in box.train_data_loader:
            if clock is not None and not clock.tick():
                return facts
            sample_batch = sample_batch.to(device).contiguous(memory_format=layout)
            targets = targets.to(device)
            loss = box.forward_process(sample_batch, targets, supp_dict)
            box.post_forward_process(loss=loss)
        box.post_epoch_process()
    if clock is not None:
        raise SystemExit("the epoch ended before the timed steps did")
    return facts


def one(args) -> None:
    torch.set_num_threads(1)
    clock = StepClock(args.warmup, args.steps)
    facts = torchdistill_run(Path(args.work), clock, channels_last=args.channels_last)
    print(json.dumps({"steps_per_s": args.steps / clock.seconds,
                      "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      **facts}))


# --- torchdistill's environment ---------------------------------------------------------------------

def wanted_versions() -> dict:
    """torchdistill's release and this interpreter's torch and torchvision, as pip names them."""
    return {"torchdistill": TORCHDISTILL, "torch": importlib.metadata.version("torch"),
            "torchvision": importlib.metadata.version("torchvision")}


def installed_versions(python: Path) -> dict | None:
    if not python.exists():
        return None
    code = ("import importlib.metadata as m, json; print(json.dumps({p: m.version(p) for p in "
            "('torchdistill', 'torch', 'torchvision')}))")
    done = subprocess.run([str(python), "-c", code], capture_output=True, text=True)
    return json.loads(done.stdout) if done.returncode == 0 else None


def ensure_venv(venv: Path) -> tuple[Path, str]:
    """torchdistill's environment at ``venv``, created or brought to the wanted versions; its
    python and a line saying what was done and how long it took."""
    python, want = venv / "bin" / "python", wanted_versions()
    if installed_versions(python) == want:
        return python, f"torchdistill environment {venv}: reused"
    started = time.perf_counter()
    if not python.exists():
        venv.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    log = venv / "pip-install.log"
    with open(log, "w") as out:
        done = subprocess.run([str(python), "-m", "pip", "install",
                               *(f"{p}=={v}" for p, v in want.items())],
                              stdout=out, stderr=subprocess.STDOUT)
    if done.returncode or installed_versions(python) != want:
        sys.exit(f"could not install {want} into {venv}; see {log}:\n"
                 f"{log.read_text()[-3000:]}")
    return python, (f"torchdistill environment {venv}: set up in "
                    f"{time.perf_counter() - started:.0f} s (" +
                    ", ".join(f"{p} {v}" for p, v in want.items()) + ")")


# --- the parent: both sides in turn ---------------------------------------------------------------

def workbench_facts(work: Path) -> dict:
    """What the workbench's side trains, read from the objects it builds."""
    from distill.config import load_experiment
    from distill.engine.build import build_data
    from distill.soft_targets import kd_loss
    from students import build_network

    exp = load_experiment(str(work / f"{TEACHER}-{STUDENT}.yaml")).variants["default"]
    data = build_data(exp, 0)
    params = {name: sum(p.numel() for p in build_network(
        name, {}, num_classes=10, input_shape=(3, 32, 32)).net.parameters())
        for name in (TEACHER, STUDENT)}
    ce, kd = exp.objectives  # the experiment's objectives: ce, then kd
    assert (ce.name, kd.name) == ("ce", "kd"), exp.objectives
    s, t, y = probe()
    loss = ce.weight * F.cross_entropy(s, y) + kd.weight * kd_loss(s, t, kd.temperature)
    return {"images": len(data.train_set), "batch_size": data.batch_size,
            "probe_loss": loss.item(),
            "teacher_params": params[TEACHER], "student_params": params[STUDENT]}


NHWC = " NHWC"  # a side's name ends with it when it runs in NHWC memory order


def measure(kind: str, python: Path, work: str, args) -> dict:
    timing = ["--steps", str(args.steps), "--warmup", str(args.warmup),
              *(["--channels-last"] if kind.endswith(NHWC) else [])]
    if kind.startswith("torchdistill"):
        command = [str(python), __file__, "--one", "torchdistill", "--work", work, *timing]
    else:
        command = [sys.executable, cifar_steps.__file__, "--one", "workbench",
                   "--pair", f"{TEACHER}:{STUDENT}", "--work", work, *timing]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{kind} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=24)
    p.add_argument("--warmup", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--channels-last", action="store_true",
                   help="also measure both sides in NHWC memory order (the workbench's "
                        "channels_last: true; torchdistill's by hand)")
    p.add_argument("--venv", type=Path, default=DEFAULT_VENV,
                   help="torchdistill's virtual environment (created when absent)")
    p.add_argument("--one", choices=["torchdistill"], help=argparse.SUPPRESS)
    p.add_argument("--work", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.warmup + args.steps >= IMAGES // 64:
        sys.exit(f"--warmup + --steps must stay inside one epoch of {IMAGES // 64} batches")
    if args.one:
        return one(args)
    python, venv_line = ensure_venv(args.venv.expanduser())
    print(venv_line)
    print(f"{cpu_model()}, {torch.get_num_threads()} threads available, 1 used; torch "
          f"{torch.__version__}, torchvision {torchvision.__version__}; {TEACHER} -> {STUDENT}, "
          f"batch 64, CE + KD (T = 4), frozen random teacher, SGD")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        write_cifar10(work / "data", images=IMAGES)
        experiment_file(work, TEACHER, STUDENT)
        experiment_file(work, TEACHER, STUDENT, channels_last=True)
        ours = workbench_facts(work)
        kinds = ["torchdistill", "workbench"]
        if args.channels_last:
            kinds += [kind + NHWC for kind in kinds]
        results = {kind: [] for kind in kinds}
        for _ in range(args.repeats):
            for kind in results:
                results[kind].append(measure(kind, python, tmp, args))
    theirs = results["torchdistill"][0]
    if theirs["torch"] != torch.__version__ or theirs["torchvision"] != torchvision.__version__:
        sys.exit(f"torchdistill ran with torch {theirs['torch']}, torchvision "
                 f"{theirs['torchvision']}; expected {torch.__version__}, {torchvision.__version__}")
    print(f"torchdistill {theirs['torchdistill']} (torch {theirs['torch']}, torchvision "
          f"{theirs['torchvision']}); its criterion: {' '.join(theirs['criterion'].split())}")
    same = True
    for key, what in (("images", "training images"), ("batch_size", "batch size"),
                      ("teacher_params", f"{TEACHER} parameters"),
                      ("student_params", f"{STUDENT} parameters")):
        agree = ours[key] == theirs[key]
        same &= agree
        print(f"  {what:22s} workbench {ours[key]:>8,}  torchdistill {theirs[key]:>8,}"
              f"{'' if agree else '  DIFFERENT'}")
    agree = abs(ours["probe_loss"] - theirs["probe_loss"]) <= 1e-5 * abs(ours["probe_loss"])
    same &= agree
    print(f"  {'loss on probe logits':22s} workbench {ours['probe_loss']:.6f}  torchdistill "
          f"{theirs['probe_loss']:.6f}{'' if agree else '  DIFFERENT'} (CE + T^2 KL, T = 4)")
    print("  the same work: " + ("yes" if same else "NO, see DIFFERENT above") +
          "; differences kept: the augmentation (torchdistill: torchvision per image in the "
          "loader; workbench: one batch crop and flip after loading), the networks' "
          "initialisation (each framework's own, random), the workbench's deterministic mode; "
          "the workbench's teacher runs at every step (teacher: {cache: off}) as torchdistill's; "
          "torchdistill's teacher put in eval mode as ours (it leaves it training)")
    speed = {k: statistics.median(r["steps_per_s"] for r in v) for k, v in results.items()}
    peak = {k: statistics.median(r["peak_mib"] for r in v) for k, v in results.items()}
    for kind in results:
        runs = ", ".join(f"{r['steps_per_s']:.3f}" for r in results[kind])
        print(f"{kind:17s} {speed[kind]:.3f} steps/s (runs: {runs}), peak memory "
              f"{peak[kind]:.0f} MiB")
    if args.channels_last:
        print(f"workbench NHWC (channels_last: true) / torchdistill as configured: "
              f"{speed['workbench' + NHWC] / speed['torchdistill']:.3f} in speed; "
              f"workbench NHWC / torchdistill NHWC (by hand): "
              f"{speed['workbench' + NHWC] / speed['torchdistill' + NHWC]:.3f}")
    print(f"workbench / torchdistill: {speed['workbench'] / speed['torchdistill']:.3f} in speed, "
          f"{peak['workbench'] / peak['torchdistill']:.3f} in peak memory "
          f"(median of {args.repeats}, {args.steps} steps after {args.warmup})")


if __name__ == "__main__":
    main()
