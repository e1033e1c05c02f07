"""From a validated experiment to objects: data module, networks, teacher role, objectives and the
DistillationModule. Building binds every objective with one dry forward pass, so ``validate`` and
``run`` catch the same shape problems before any training."""
from __future__ import annotations

import contextlib
import functools
import json
import os
import random
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.utils.data import default_collate

from distill.config.schema import Experiment, NetSpec
from distill.data.base import DataModule, Splits
from distill.data.declared import STAND_INS
from distill.engine.teacher_cache import CachePlan
from distill.engine.teacher_output_store import FOLDER
from distill.engine.term import Term
from distill.errors import ConfigError, UserError, shorten
from distill.contracts import BindContext, ModelOutput
from distill.registry import augmentations, datasets, objectives, teachers
from students import build_network
from students.interpolate import interpolate_init
from students.taps import Tapped
from teachers.checkpoint import load_weights
from teachers.ensemble import Ensemble
from teachers.role import TeacherRole

if TYPE_CHECKING:
    from distill.engine.module import DistillationModule


@functools.lru_cache(maxsize=8)
def _splits(name: str, params_json: str) -> Splits:
    return datasets.get(name).target(**json.loads(params_json))


def build_data(exp: Experiment, seed: int, without_data: bool = False,
               for_fit: bool = True) -> DataModule:
    """The experiment's data module; dataset loading is cached within the process.
    ``without_data``: a set read from files is stood in by its declared shapes and classes
    (:mod:`distill.data.declared`); ``for_fit``: Lightning's data module, else the same without
    Lightning (``validate``)."""
    spec = exp.data
    with user_values("data.root" if "root" in spec.params() else "data"):
        try:
            if without_data and spec.name in STAND_INS:
                splits, _ = STAND_INS[spec.name](**spec.params())
            else:
                splits = _splits(spec.name, json.dumps(spec.params(), sort_keys=True))
        except UserError as e:
            if not e.key and not e.file:  # an error in a data file already names it
                e.key = "data.root" if "root" in spec.params() else "data"
            raise
    for part, items in (("training", splits.train), ("test", splits.test)):
        if len(items) == 0:
            raise ConfigError("data", f"the {part} set of {spec.name} is empty with these values; "
                                      f"give it samples")
    if splits.kind.name == "classification" and splits.num_classes < 2:
        raise ConfigError("data", f"{spec.name} gives {splits.num_classes} class here; a "
                                  f"classifier needs at least 2 (an image folder: one folder a "
                                  f"class)")
    for name in ("imbalance", "views"):
        if getattr(spec, name) is not None and not splits.kind.has_classes:
            raise ConfigError(f"data.{name}", f"{spec.name} is a {splits.kind.name} set without "
                                              f"classes or images; remove data.{name}")
    train_index = None
    if spec.imbalance is not None:
        from distill.data.imbalance import long_tail_indices
        train_index = long_tail_indices(splits.train_targets, splits.num_classes, spec.imbalance,
                                        seed=0)
        counts = torch.bincount(splits.train_targets[train_index], minlength=splits.num_classes)
        if (counts == 0).any():
            raise ConfigError("data.imbalance", f"{spec.imbalance:g} leaves class "
                                                f"{int((counts == 0).nonzero()[0])} without training "
                                                f"samples; give a larger ratio")
    views = None
    if spec.views is not None:
        with user_values("data.views"):
            views = (augmentations.get(spec.views.name).target(**spec.views.params()),
                     spec.views.count)
    if for_fit:
        from distill.engine.lightning_data import LightningData as data_class
    else:
        data_class = DataModule
    data = data_class(splits, spec.batch_size, spec.num_workers, seed, spec.eval_batch_size,
                      train_index=train_index, views=views)
    if views is not None or splits.augment is not None:  # refused here, not at the first batch
        with user_values("data.views" if views is not None else "data"):
            batch = data.training_batch(default_collate([data.train_set[i] for i in
                                                         range(min(2, len(data.train_set)))]), 0)
        if views is not None and batch[3].shape[2:] != batch[0].shape[1:]:
            raise ConfigError("data.views", f"{spec.views.name} makes views of shape "
                                            f"{tuple(batch[3].shape[2:])} from inputs of shape "
                                            f"{tuple(batch[0].shape[1:])}; give one mean and std "
                                            f"per channel of the inputs")
    return data


@contextlib.contextmanager
def user_values(key: str):
    """Around building a part from the file's values: an exception from the library (torch,
    numpy, a dataset package) becomes one line naming ``key``; a UserError gets ``key`` when it
    has none."""
    try:
        yield
    except UserError as e:
        if not e.key:
            e.key = key
        raise
    except OSError as e:  # a path given in the file: too long, unreadable, a folder, ...
        where = f" {shorten(e.filename, 80)}" if e.filename else ""
        raise ConfigError(key, f"cannot read{where} ({e.strerror or type(e).__name__}); check "
                               f"{key}") from None
    except (ValueError, TypeError, RuntimeError, ArithmeticError, IndexError, KeyError,
            AssertionError, MemoryError) as e:
        raise ConfigError(key, f"cannot be built from these values ({type(e).__name__}: "
                               f"{shorten(str(e).strip() or '-', 120)[1:-1]}); check "
                               f"{key}") from None


def build_net(spec: NetSpec, data: DataModule, key: str) -> Tapped:
    try:
        with user_values(key):
            net = build_network(spec.name, spec.params(), data.num_classes, data.input_shape,
                                spec.taps, vocab_size=data.splits.vocab_size,
                                text_length=data.splits.text_length)
    except UserError as e:
        raise UserError(e.message, key=e.key or key) from None
    data.kind.check_network(net, spec.name, f"{key}.name")
    return net


def teacher_net_spec(exp: Experiment) -> NetSpec:
    return exp.teacher.net or exp.student.net


def teacher_parts(exp: Experiment) -> list[tuple[str, Experiment]]:
    """The teacher's networks, each as (key prefix, the experiment with that network as its
    teacher): the teacher itself, or each member of an ensemble as a frozen teacher of its own
    (its stage and weights found like any teacher's)."""
    if exp.teacher is None:
        return []
    if not exp.teacher.members:
        return [("teacher", exp)]
    return [(f"teacher.members.{i}", exp.model_copy(update={"teacher": exp.teacher.member(m)}))
            for i, m in enumerate(exp.teacher.members)]


def build_teacher(exp: Experiment, data: DataModule,
                  weights: list[str | None] | None) -> TeacherRole | None:
    """The teacher role with its weights. Each of its networks (:func:`teacher_parts`) loads its
    ``checkpoint``, else its entry of ``weights`` (the file of its teacher stage), else keeps its
    initialisation (random role, validation)."""
    if exp.teacher is None:
        return None
    role = teachers.get(exp.teacher.name, "teacher.role").target
    role.check(exp.teacher, continual=exp.continual is not None)
    nets = []
    for i, (prefix, part) in enumerate(teacher_parts(exp)):
        net = build_net(teacher_net_spec(part), data, f"{prefix}.net")
        path = part.teacher.checkpoint or (weights[i] if weights else None)
        if path:
            key = f"{prefix}.checkpoint" if part.teacher.checkpoint else f"{prefix}.train"
            with user_values(key):
                load_weights(net, path, key)
        nets.append(net)
    if exp.teacher.members:
        if data.kind.name != "classification":
            raise ConfigError("teacher.role", f"an ensemble teacher combines class scores; this "
                                              f"dataset is a {data.kind.name} set: use one teacher")
        shapes = [tuple(data.kind.probe(net, data).logits.shape[1:]) for net in nets]
        odd = next((i for i, shape in enumerate(shapes) if shape != shapes[0]), None)
        if odd is not None:
            raise ConfigError(f"teacher.members.{odd}.net",
                              f"gives scores of shape {shapes[odd]}, member 0 {shapes[0]}; the "
                              f"members must score the same classes")
        network = Ensemble(nets, [m.weight for m in exp.teacher.members])
    else:
        network = nets[0]
    with user_values("teacher"):
        return role(network=network, **exp.teacher.params())


def single_teacher_file(exp: Experiment, weights: list[str | None] | None) -> str | None:
    """The weights file of a teacher that is one trained network (objectives cache what they
    derive from it beside it); None for an ensemble or a teacher without one."""
    parts = teacher_parts(exp)
    if len(parts) != 1 or exp.teacher.members:
        return None
    return parts[0][1].teacher.checkpoint or (weights[0] if weights else None)


def cache_plan(exp: Experiment, data: DataModule,
               teacher_weights: list[str | None] | None) -> CachePlan:
    """The teacher's cache as the file sets it, its tables shared beside the weights file of the
    teacher's (first) network when every network has one."""
    from distill.objectives.class_means import training_set_identity

    if exp.teacher is None:
        return CachePlan(enabled=False)
    files = [part.teacher.checkpoint or (teacher_weights[i] if teacher_weights else None)
             for i, (_, part) in enumerate(teacher_parts(exp))]
    root = Path(files[0]).resolve().parent / FOLDER if files and all(files) else None
    identity = {"training_set": training_set_identity(exp, data),
                # the role's options (an ensemble's combination and weights) and every network's
                # specification (its taps decide what `features` is)
                "teacher_section": exp.teacher.model_dump(mode="json", by_alias=True,
                                                          exclude={"cache", "cache_limit_gb"}),
                "networks": [teacher_net_spec(part).model_dump(mode="json")
                             for _, part in teacher_parts(exp)],
                "channels_last": exp.channels_last, "compile": exp.compile}
    return CachePlan(enabled=exp.teacher.cache == "auto", root=root,
                     limit_bytes=int(exp.teacher.cache_limit_gb * 2 ** 30), identity=identity)


def build_module(exp: Experiment, data: DataModule, teacher: TeacherRole | None,
                 task: int = 0, teacher_weights: list[str | None] | None = None,
                 tasks=None) -> DistillationModule:
    """The LightningModule around :func:`build_terms`'s student and objectives.
    ``teacher_weights``: the teacher stages' weights files (as for :func:`build_teacher`);
    ``tasks`` the continual TaskSequence and ``task`` the index of the task to train."""
    from distill.engine.module import DistillationModule

    student, terms = build_terms(exp, data, teacher, teacher_weights, tasks)
    return DistillationModule(student, teacher, terms, data.num_classes, exp.train.epochs,
                              exp.train.optimizer.model_dump(exclude_none=False),
                              exp.train.schedule.model_dump(), task=task, kind=data.kind,
                              cache_plan=cache_plan(exp, data, teacher_weights),
                              gradient_clip=exp.train.gradient_clip,
                              accumulate=exp.trainer.get("accumulate_grad_batches", 1),
                              clip_algorithm=exp.trainer.get("gradient_clip_algorithm", "norm"))


def build_terms(exp: Experiment, data: DataModule, teacher: TeacherRole | None,
                teacher_weights: list[str | None] | None = None,
                tasks=None) -> tuple[Tapped, list[Term]]:
    """The student and the objectives bound to both networks' outputs, with every check a run
    makes before it trains (``validate`` builds this much, without Lightning)."""
    student = build_net(exp.student.net, data, "student.net")
    if exp.student.init.from_ == "teacher":
        if teacher is None:
            raise ConfigError("student.init", "init from: teacher needs a `teacher:` section")
        if exp.teacher.members:
            raise ConfigError("student.init", "an ensemble teacher has no one network to start "
                                              "from; use from: random or a single teacher")
        interpolate_init(student, teacher.network, exp.student.init.alpha)
    if teacher is not None:
        if teacher.trainable and (data.kind.name != "classification" or not exp.data.labels):
            raise ConfigError("teacher.role", f"a {teacher.registered_name} teacher learns from "
                                              f"the labels of a classification set; use it with "
                                              f"one (and data.labels: true)")
        teacher.track(teacher.network, student)
    s_out = data.kind.probe(student, data)
    t_out = data.kind.probe(teacher, data) if teacher is not None else None
    weights = single_teacher_file(exp, teacher_weights)
    terms, seen = [], {}
    for i, spec in enumerate(exp.objectives):
        key = f"objectives.{i}"
        with user_values(key):
            objective = objectives.get(spec.name).target(**spec.params())
        objective.bind(BindContext(student=s_out, teacher=t_out, num_classes=data.num_classes,
                                   key=key, data=data, teacher_role=teacher, student_net=student,
                                   teacher_weights=weights, experiment=exp, tasks=tasks,
                                   task_kind=data.kind.name))
        seen[spec.name] = seen.get(spec.name, 0) + 1
        label = spec.name if seen[spec.name] == 1 else f"{spec.name}{seen[spec.name]}"
        terms.append(Term(label, objective, spec.weight, spec.warmup_epochs,
                          objective.warmup_first_epoch))
    check_probed(exp, s_out, t_out, teacher)
    check_recipes(exp, student, teacher)
    return student, terms


def check_probed(exp: Experiment, s_out: ModelOutput, t_out: ModelOutput | None,
                 teacher: TeacherRole | None) -> None:
    """Evaluators that probe a network's features (``of:``) get a network that gives them, so
    a missing tap stops ``validate``, not the end of a run."""
    from distill.evaluation.features import SOURCES

    for i, spec in enumerate(exp.evaluate):
        for who, out in (("student", s_out), ("teacher", t_out)):
            if who in spec.params().get("of", SOURCES) and out is not None \
                    and out.features is None:
                note = (teacher.gives_note if who == "teacher"
                        else "add a tap (net.taps: {features: ...})")
                raise ConfigError(f"evaluate.{i}.of", f"{spec.name} probes the {who}'s features, "
                                                      f"which its network does not give; {note}, "
                                                      f"or leave {who} out of `of:`")


def check_recipes(exp: Experiment, student: torch.nn.Module, teacher: TeacherRole | None) -> None:
    """Build each training recipe's optimiser and schedule once on throwaway copies of the
    parameters' shapes, and each evaluator's device, so values the libraries refuse (Adam betas
    above 1, a negative gamma, an unknown device) stop ``validate``, not a run after its teacher
    stage. Nothing is trained and the networks are not touched."""
    from distill.registry import optimizers, schedules

    recipes = [("train", exp.train, student)]
    if exp.teacher is not None and exp.teacher.train is not None and teacher is not None:
        recipes.append(("teacher.train", exp.teacher.train, teacher.network))
    for key, train, net in recipes:
        params = [torch.nn.Parameter(torch.empty(0)) for _ in range(2)]
        with user_values(f"{key}.optimizer"):
            optimizer = optimizers.get(train.optimizer.name).target(params,
                                                                  **train.optimizer.params())
        with user_values(f"{key}.schedule"):
            schedules.get(train.schedule.name).target(optimizer, epochs=train.epochs,
                                                      **train.schedule.params())
    for i, spec in enumerate(exp.evaluate):
        device = spec.params().get("device")
        if isinstance(device, str) and device != "auto":
            with user_values(f"evaluate.{i}.device"):
                kind = torch.device(device).type
            if kind == "cuda" and not torch.cuda.is_available():
                raise ConfigError(f"evaluate.{i}.device", f"{shorten(device)}: no GPU here; use "
                                                          f"device: auto or cpu")


def seeded(seed: int) -> None:
    """Python's, NumPy's and torch's generators from ``seed``, and the environment Lightning
    reads it from (``PL_GLOBAL_SEED``; ``PL_SEED_WORKERS``: loader workers seeded from it): what
    Lightning's ``seed_everything(seed, workers=True)`` does, without importing Lightning."""
    os.environ["PL_GLOBAL_SEED"] = str(seed)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    os.environ["PL_SEED_WORKERS"] = "1"
