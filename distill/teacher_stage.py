"""The teacher stage: the teacher's own training, once for every variant and seed that shares its
identity (network, data and recipe), before the grid."""
from __future__ import annotations

from distill.config.schema import Experiment, ObjectiveSpec, StudentSpec
from distill.engine.build import teacher_net_spec, teacher_parts
from distill.fingerprint import fingerprint


def teacher_stage(exp: Experiment) -> Experiment:
    """The teacher's own training: its network as a student of the labels, with
    ``teacher.objectives`` (default: cross-entropy)."""
    spec = exp.teacher
    return exp.model_copy(update={
        "teacher": None, "student": StudentSpec(net=teacher_net_spec(exp)), "train": spec.train,
        "objectives": spec.objectives or [ObjectiveSpec(name="ce", weight=1.0,
                                                        warmup_epochs=0)], "variants": {}})


def teacher_identity(exp: Experiment) -> dict:
    """What decides the teacher's weights: its network, data and recipe."""
    identity = {"net": teacher_net_spec(exp).model_dump(), "data": exp.data.model_dump(),
                # how often it measured the test set does not change its weights
                "train": exp.teacher.train.model_dump(exclude={"validate_every"}),
                "seed": exp.teacher.seed}
    if exp.teacher.objectives:
        identity["objectives"] = [o.model_dump() for o in exp.teacher.objectives]
    return identity


def needs_teacher_stage(exp: Experiment) -> bool:
    """Whether the teacher is trained by a stage of its own (no checkpoint, a recipe)."""
    return exp.teacher is not None and exp.teacher.checkpoint is None and exp.teacher.train is not None


def stage_keys(exp: Experiment) -> list[str | None]:
    """For each of the teacher's networks (:func:`teacher_parts`), its teacher stage (the
    fingerprint of its identity), None for one that has no stage (a checkpoint, a random
    teacher)."""
    return [fingerprint(teacher_identity(part)) if needs_teacher_stage(part) else None
            for _, part in teacher_parts(exp)]
