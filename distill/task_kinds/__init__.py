"""Task kinds: what differs between classification, retrieval and sequence generation (the batch's
layout, how student and teacher are called, the validation metrics and their names in the results
table), each in one object that the dataset chooses. The engine, the objectives' contract and the
runners stay one."""
from distill.task_kinds.base import TaskKind
from distill.task_kinds.classification import Classification

__all__ = ["Classification", "TaskKind"]
