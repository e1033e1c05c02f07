"""``distill validate``: an experiment file checked by building every variant once (data,
networks, dry forward passes, objectives bound), training nothing and importing Lightning only
for a file whose ``trainer:`` section needs it checked."""
from __future__ import annotations

from distill.config.load import ExperimentFile
from distill.config.schema import Experiment
from distill.continual.tasks import check_continual
from distill.engine.acceleration import check_compiler
from distill.engine.build import build_data, build_teacher, build_terms, seeded, teacher_parts
from distill.engine.trainer_args import check_loggers, check_trainer_keys, quiet_lightning
from distill.errors import ConfigError, UserError
from distill.teacher_stage import needs_teacher_stage, teacher_stage


def validate_builds(ef: ExperimentFile, without_data: bool = False) -> None:
    """Build every variant once (data, networks, dry forward, objective binding), training
    nothing; ``without_data``: sets read from files are stood in by their declared shapes."""
    quiet_lightning()
    for variant, exp in ef.variants.items():
        try:
            check_trainer_keys(exp.trainer)
            check_loggers(exp.loggers)
            check_compiler(exp.compile)
            for i, (prefix, part) in enumerate(teacher_parts(exp) if not exp.data.labels
                                               else []):
                if needs_teacher_stage(part):  # named where the file gives the recipe
                    own = not exp.teacher.members or exp.teacher.members[i].train
                    raise ConfigError(f"{prefix if own else 'teacher'}.train",
                                      f"the teacher stage trains on the labels, but `data.labels: "
                                      f"false` says there are none; give `{prefix}.checkpoint` "
                                      f"instead")
            seeded(exp.seeds[0])
            data = build_data(exp, exp.seeds[0], without_data, for_fit=False)
            tasks = check_continual(exp, data)
            teacher = build_teacher(exp, data, None)
            build_terms(exp, data, teacher, tasks=tasks)
            for prefix, part in teacher_parts(exp):
                if needs_teacher_stage(part):
                    validate_teacher_stage(part, data, prefix)
        except UserError as e:
            raise ef.locate(e, variant) from None


def validate_teacher_stage(exp: Experiment, data, prefix: str = "teacher") -> None:
    """Build the teacher stage's terms (its network as a student of ``teacher.objectives``), so
    an objective that cannot train that network is refused before anything runs; its errors
    name the teacher's keys (``prefix``: ``teacher`` or ``teacher.members.<i>``)."""
    try:
        build_terms(teacher_stage(exp), data, None)
    except UserError as e:
        own = e.key
        if own and own.split(".")[0] in ("objectives", "train"):
            e.key = f"{prefix}.{own}"
        elif own and own.startswith("student."):
            e.key = f"{prefix}.{own[len('student.'):]}"
        if own and e.key != own:  # the advice names the file's key too
            e.message = e.message.replace(own, e.key)
        raise
