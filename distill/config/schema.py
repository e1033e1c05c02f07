"""The experiment file's schema (pydantic). Parts named by a registry (objectives, networks,
datasets, teacher roles, optimisers, schedules) accept the registered entry's own keyword
arguments as further keys; :func:`check_named_parts` checks those against the registry."""
from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (BaseModel, ConfigDict, Field, ValidationError, field_validator,
                      model_serializer, model_validator)

from distill import registry
from distill.errors import UserError, shorten

MAX_SEED = 2 ** 32 - 1  # numpy's and torch's seed range
Seed = Annotated[int, Field(ge=0, le=MAX_SEED, strict=True)]
Scalar = bool | int | float | str | None  # a value a sweep can give a key


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class Named(BaseModel):
    """A part chosen by ``name`` from a registry; its other keys are that entry's parameters."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)
    name: str

    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class NetSpec(Named):
    taps: dict[str, str] = Field(default_factory=dict)


class ViewSpec(Named):
    """Augmented views of every training sample (for contrastive and self-distillation objectives):
    ``count`` draws of the named augmentation."""

    count: int = Field(2, ge=1, le=1024)


class DataSpec(Named):
    views: ViewSpec | None = None
    batch_size: int = Field(128, ge=1, le=2 ** 20, strict=True)
    eval_batch_size: int | None = Field(None, ge=1, le=2 ** 20, strict=True)
    num_workers: int = Field(0, ge=0, le=256)
    imbalance: float | None = Field(None, gt=0, le=1)
    labels: bool = Field(True, description="false: training reads no labels (label-free "
                                           "distillation); objectives that use labels are refused")


class OptimizerSpec(Named):
    name: str = "sgd"


class ScheduleSpec(Named):
    name: str = "none"


class TrainSpec(Strict):
    epochs: int = Field(30, ge=1, le=100_000, strict=True)
    optimizer: OptimizerSpec = Field(default_factory=OptimizerSpec)
    schedule: ScheduleSpec = Field(default_factory=ScheduleSpec)
    gradient_clip: float | None = Field(None, gt=0)
    validate_every: int = Field(
        1, ge=1, le=100_000, strict=True,
        description="measure the test set every n-th epoch and always after the last one")

    @field_validator("schedule", mode="before")
    @classmethod
    def _schedule_by_name(cls, v):
        return {"name": v} if isinstance(v, str) else v

    @model_serializer(mode="wrap")
    def _validate_every_when_given(self, handler):
        """At its default the dump is that of a recipe before the key existed, so run folders
        made then keep their configuration (and resume) and teachers their stage."""
        data = handler(self)
        if self.validate_every == 1:
            data.pop("validate_every", None)
        return data


class InitSpec(Strict):
    """Student initialisation: ``from: teacher`` interpolates toward the teacher's weights."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, allow_inf_nan=False)
    from_: Literal["random", "teacher"] = Field("random", alias="from")
    alpha: float = Field(1.0, ge=0, le=1)


class StudentSpec(Strict):
    net: NetSpec
    init: InitSpec = Field(default_factory=InitSpec)


class ObjectiveSpec(Named):
    weight: float | None = Field(None, ge=0, le=1e6,
                                 description="the term's weight in the sum (default: the "
                                             "objective's own, its authors' value, mostly 1)")
    warmup_epochs: int | None = Field(
        None, ge=0, strict=True, description="epochs over which the weight rises linearly from 0 "
                                             "(default: the objective's own, mostly 0)")


class TeacherNetwork(BaseModel):
    """A teacher's network and where its weights come from: ``checkpoint`` (a file), or its
    teacher stage (``train``, ``seed``, ``objectives``: trained on the labels, then frozen)."""

    net: NetSpec | None = None
    checkpoint: str | None = None
    train: TrainSpec | None = None
    seed: Seed = 0
    objectives: list[ObjectiveSpec] | None = Field(
        None, min_length=1, description="the teacher stage's objectives (default: ce)")


class MemberSpec(TeacherNetwork, Strict):
    """One frozen member of an ensemble teacher, and its ``weight`` in the combination
    (normalised over members). ``net``, ``train`` and ``objectives`` default to the teacher
    section's (``net`` then to the student's), so members often differ by seed alone."""

    weight: float = Field(1.0, gt=0, le=1e6)


class TeacherSpec(TeacherNetwork, Named):
    """``role`` picks the teacher role; ``net`` defaults to the student's network; ``members``:
    the frozen networks of an ensemble role."""

    name: str = Field("frozen", alias="role")
    model_config = ConfigDict(extra="allow", populate_by_name=True, allow_inf_nan=False)
    members: list[MemberSpec] | None = Field(None, min_length=1, max_length=64)
    cache: Literal["auto", "off"] = Field(
        "auto", description="auto: a frozen teacher's outputs are computed once per sample (per "
                            "epoch on augmented data) and shared by the grid's runs beside its "
                            "weights; off: the teacher runs at every step")
    cache_limit_gb: float = Field(8.0, gt=0, le=1e6, description="the most the shared tables "
                                                                 "beside the teacher may hold")

    @field_validator("cache", mode="before")
    @classmethod
    def _cache_switch(cls, v):
        """YAML reads ``off`` and ``on`` as booleans."""
        return {False: "off", True: "auto"}.get(v, v) if isinstance(v, bool) else v

    @model_serializer(mode="wrap")
    def _new_keys_only_when_given(self, handler):
        """Without members, and with the cache's defaults, the dump is that of a teacher before
        these keys existed, so run folders made then keep their configuration (and resume)."""
        data = handler(self)
        for key, default in (("members", None), ("cache", "auto"), ("cache_limit_gb", 8.0)):
            if getattr(self, key) == default:
                data.pop(key, None)
        return data

    def member(self, member: MemberSpec) -> "TeacherSpec":
        """A member of this ensemble as a frozen teacher of its own: its keys, else this
        section's (a member from a checkpoint has no stage)."""
        return TeacherSpec(role="frozen", net=member.net or self.net, checkpoint=member.checkpoint,
                           train=None if member.checkpoint else member.train or self.train,
                           seed=member.seed, objectives=member.objectives or self.objectives)


class ContinualSpec(Strict):
    """A task sequence: the dataset's classes in ``order`` (a permutation, ``seed``: drawn from the
    run's seed, default 0..C-1) cut into ``tasks`` groups, one ``Trainer.fit`` per task.
    ``setting`` says whether the task is known at test time: task-incremental reports the
    task-aware and the task-agnostic accuracy matrix, class-incremental the task-agnostic one.
    ``first_task_extra_epochs``: the first task trains that many epochs more than the others."""

    tasks: int = Field(ge=1)
    split: Literal["classes"] = "classes"
    order: list[int] | Literal["seed"] | None = None
    setting: Literal["task-incremental", "class-incremental"] = "task-incremental"
    first_task_extra_epochs: int = Field(0, ge=0, description="epochs the first task trains on "
                                         "top of train.epochs (the PRD authors' warm-up: 120)")


class Experiment(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
    seeds: list[Seed] = Field(default_factory=lambda: [0], min_length=1)
    data: DataSpec
    teacher: TeacherSpec | None = None
    student: StudentSpec
    train: TrainSpec = Field(default_factory=TrainSpec)
    objectives: list[ObjectiveSpec] = Field(min_length=1)
    variants: dict[str, dict[str, Any]] = Field(default_factory=dict)
    baseline: str | None = None
    trainer: dict[str, Any] = Field(default_factory=dict)
    threads: int = Field(1, ge=1, le=4096, description="CPU threads for torch; 1 suits the small models")
    channels_last: bool = Field(False, strict=True, description="convolution weights and image "
                                                               "batches in NHWC memory order")
    compile: bool = Field(False, strict=True, description="torch.compile the student's and the "
                                                         "frozen teacher's networks")
    continual: ContinualSpec | None = None
    evaluate: list[Named] = Field(default_factory=list)
    checkpoint_seconds: float = Field(
        10.0, ge=0, le=1e9, allow_inf_nan=False, strict=True,
        description="seconds of training at least between a stage's epoch-end checkpoints (0: "
                    "every epoch); the last epoch's is always written")
    loggers: list[Literal["csv", "tensorboard", "mlflow", "wandb"]] = Field(
        default_factory=lambda: ["csv"], min_length=1,
        description="Lightning loggers of every stage; the CSV log is always written")
    sweep: dict[str, list[Scalar]] = Field(
        default_factory=dict, description="key path -> values: one variant per combination "
                                          "(distill.config.sweep)")

    @field_validator("sweep")
    @classmethod
    def _bounded_sweep(cls, sweep: dict[str, list]) -> dict[str, list]:
        from distill.config.sweep import MAX_VARIANTS

        combos = 1
        for key, values in sweep.items():
            if not key or key.split(".")[0] in ("name", "variants", "sweep", "baseline"):
                raise ValueError(f"{key!r} cannot be swept; sweep keys of the configuration such "
                                 f"as objectives.1.temperature or train.optimizer.lr")
            if not 1 <= len(values) <= 64:
                raise ValueError(f"{key}: give 1 to 64 values, not {len(values)}")
            if len({(type(v) is bool, v) for v in values}) != len(values):  # 4 and 4.0 alike
                raise ValueError(f"{key}: a value is listed twice")
            combos *= len(values)
        if combos > MAX_VARIANTS:
            raise ValueError(f"the sweep makes {combos} variants; at most {MAX_VARIANTS} (fewer "
                             f"values, or several files)")
        return sweep

    @model_serializer(mode="wrap")
    def _switches_when_given(self, handler):
        """Off, the dump is that of a file before these keys existed, so run folders made then
        keep their configuration (and resume)."""
        data = handler(self)
        for key in ("channels_last", "compile"):
            if not getattr(self, key):
                data.pop(key, None)
        return data

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, seeds: list[int]) -> list[int]:
        twice = sorted({s for s in seeds if seeds.count(s) > 1})
        if twice:
            raise ValueError(f"seed {twice[0]} is listed twice; each seed runs once per variant")
        return seeds

    @model_validator(mode="after")
    def _objective_defaults(self) -> "Experiment":
        """The weights and warm-ups the file leaves out: each objective's own (its authors'
        values), a warm-up at most as long as the training."""
        own_defaults(self.objectives, self.train.epochs)
        for stage in [self.teacher, *(self.teacher.members or [])] if self.teacher else []:
            train = stage.train or self.teacher.train  # a member inherits the section's
            if stage.objectives and train:
                own_defaults(stage.objectives, train.epochs)
        return self


def own_defaults(specs: list[ObjectiveSpec], epochs: int) -> None:
    """Fill each spec's missing weight and warm-up from its objective (unknown names are left
    for :func:`check_named_parts` to report)."""
    from distill.catalog import load_all

    load_all()
    for spec in specs:
        if spec.name not in registry.objectives:
            continue
        objective = registry.objectives.get(spec.name).target
        if spec.weight is None:
            spec.weight = objective.default_weight
        if spec.warmup_epochs is None:
            spec.warmup_epochs = min(objective.default_warmup, epochs)


def _registry_check(spec: Named, reg: registry.Registry, path: tuple) -> list[tuple[tuple, str]]:
    try:
        entry = reg.get(spec.name)
    except UserError as e:
        return [(path + ("role" if isinstance(spec, TeacherSpec) else "name",), e.message)]
    given = spec.params()
    try:
        checked = entry.params.model_validate(given)
    except ValidationError as e:
        return [(path + tuple(err["loc"]), describe(err, entry.params)) for err in e.errors()]
    for key in given:  # the builders get the checked values ("8" -> 8), not the raw ones
        spec.__pydantic_extra__[key] = getattr(checked, key)
    return []


def describe(err: dict, model: type[BaseModel] | None = None) -> str:
    """One pydantic error as a short sentence, with the nearest valid key for unknown keys."""
    if err["type"] == "extra_forbidden":
        fields = list(model.model_fields) if model else []
        hint = registry.nearest(err["loc"][-1], fields)
        valid = f"; valid keys: {', '.join(fields)}" if fields and not hint else ""
        return f"unknown key{hint}{valid}"
    if err["type"] == "missing":
        return "required key is missing"
    given = err.get("input")
    msg = err["msg"].removeprefix("Value error, ")
    if isinstance(given, (str, int, float, bool)) and err["type"] != "value_error":
        shown = shorten(given) if isinstance(given, str) else shorten(repr(given))[1:-1]
        return f"{shown} is not accepted here: {msg[0].lower()}{msg[1:]}"
    return msg


def _recipe_problems(exp: Experiment) -> list[tuple[tuple, str]]:
    """Objectives whose weights could train nothing: all zero, or a warm-up longer than the
    training, so the weight never reaches the value the file gives."""
    problems = []
    if all(spec.weight == 0 for spec in exp.objectives):  # None: the objective's own, above 0
        problems.append((("objectives",), "every objective has weight 0, so nothing trains; give "
                                          "one a weight above 0"))
    for i, spec in enumerate(exp.objectives):
        if spec.warmup_epochs is not None and spec.warmup_epochs > exp.train.epochs:
            problems.append((("objectives", i, "warmup_epochs"),
                             f"a warm-up of {spec.warmup_epochs} epochs is longer than the "
                             f"{exp.train.epochs} the training lasts, so the weight never reaches "
                             f"{'its weight' if spec.weight is None else format(spec.weight, 'g')};"
                             f" shorten it or train longer"))
    return problems


def check_named_parts(exp: Experiment) -> list[tuple[tuple, str]]:
    """(key path, message) for every registry-named part whose name or parameters are wrong."""
    from distill.catalog import load_all

    load_all()
    errors = _recipe_problems(exp)
    errors += _registry_check(exp.data, registry.datasets, ("data",))
    if exp.data.views:
        errors += _registry_check(exp.data.views, registry.augmentations, ("data", "views"))
    errors += _registry_check(exp.student.net, registry.networks, ("student", "net"))
    stages = [(("teacher",), exp.teacher)] if exp.teacher else []
    stages += [(("teacher", "members", i), m) for i, m in enumerate(exp.teacher.members or [])
               ] if exp.teacher else []
    trains = [(("train",), exp.train)]
    trains += [(path + ("train",), stage.train) for path, stage in stages if stage.train]
    for path, spec in trains:
        errors += _registry_check(spec.optimizer, registry.optimizers, path + ("optimizer",))
        errors += _registry_check(spec.schedule, registry.schedules, path + ("schedule",))
    if exp.teacher:
        errors += _registry_check(exp.teacher, registry.teachers, ("teacher",))
    for path, stage in stages:
        if stage.net:
            errors += _registry_check(stage.net, registry.networks, path + ("net",))
    for i, spec in enumerate(exp.objectives):
        errors += _registry_check(spec, registry.objectives, ("objectives", i))
    for path, stage in stages:
        for i, spec in enumerate(stage.objectives or []):
            errors += _registry_check(spec, registry.objectives, path + ("objectives", i))
    for i, spec in enumerate(exp.evaluate):
        errors += _registry_check(spec, registry.evaluators, ("evaluate", i))
    return errors
