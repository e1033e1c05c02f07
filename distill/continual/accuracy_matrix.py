"""The accuracy matrix of a task sequence and the standard continual-learning metrics computed from
it. ``R[i][j]`` is the test accuracy (%) on task j after training task i, for j <= i; T tasks,
indices from 0.

- average accuracy ``A_i = (1/(i+1)) sum_{j<=i} R[i][j]``, reported after the last task
  (``avg_acc``): the mean over tasks, each task counting once whatever its size;
- sample-weighted average accuracy ``sum_{j<=i} n_j R[i][j] / sum_{j<=i} n_j`` with ``n_j`` the
  number of test samples of task j (``avg_acc_samples``): the accuracy over all test samples of the
  classes seen so far, iCaRL's convention (Rebuffi et al. 2017); equal to ``avg_acc`` when the
  tasks have equal test sets;
- average incremental accuracy ``(1/T) sum_i A_i`` (Rebuffi et al. 2017, iCaRL);
- forgetting ``(1/(T-1)) sum_{j<T-1} max_{i<T-1} R[i][j] - R[T-1][j]`` (Chaudhry et al. 2018):
  each earlier task's drop from its best accuracy before the last task to its final accuracy;
- backward transfer ``(1/(T-1)) sum_{j<T-1} R[T-1][j] - R[j][j]`` (Lopez-Paz & Ranzato 2017, GEM):
  negative when later tasks hurt earlier ones.

Two evaluations give two matrices: task-aware (``til_``, task-incremental: the task is known, the
scores are restricted to its classes) and task-agnostic (``cil_``, class-incremental: the scores
over every class seen so far).
"""
from __future__ import annotations

from dataclasses import dataclass

DEFINITIONS = {
    "avg_acc": "average accuracy (%) after the last task, the mean over tasks (each task counts "
               "once whatever its size), (1/T) sum_j R[T-1][j], with R[i][j] the test accuracy on "
               "task j after training task i",
    "avg_acc_samples": "sample-weighted average accuracy (%) after the last task, "
                       "sum_j n_j R[T-1][j] / sum_j n_j with n_j the test samples of task j: the "
                       "accuracy over all test samples of the seen classes (iCaRL's convention, "
                       "Rebuffi et al. 2017); equals avg_acc when the tasks' test sets are equal",
    "avg_inc_acc": "average incremental accuracy (%), the mean over tasks i of the average "
                   "accuracy after task i, (1/T) sum_i (1/(i+1)) sum_{j<=i} R[i][j] "
                   "(Rebuffi et al. 2017)",
    "forgetting": "forgetting (% points), (1/(T-1)) sum_{j<T-1} (max_{i<T-1} R[i][j] - R[T-1][j]): "
                  "the mean drop of each earlier task from its best to its final accuracy "
                  "(Chaudhry et al. 2018)",
    "bwt": "backward transfer (% points), (1/(T-1)) sum_{j<T-1} (R[T-1][j] - R[j][j]); negative "
           "when later tasks hurt earlier ones (Lopez-Paz & Ranzato 2017, GEM)",
}
EVALUATIONS = {
    "til": "task-aware R (task-incremental: scores restricted to the task's own classes)",
    "cil": "task-agnostic R (class-incremental: scores over every class seen so far)",
}
MATRIX_NOTE = ("R[i][j] = test accuracy (%) on task j after training task i (j <= i), "
               "tasks counted from 0")


def metric_notes() -> dict[str, str]:
    """Every continual metric's name (e.g. ``til_forgetting``) and its definition."""
    return {f"{prefix}_{name}": f"{evaluation}; {definition}"
            for prefix, evaluation in EVALUATIONS.items()
            for name, definition in DEFINITIONS.items()}


@dataclass(frozen=True)
class AccuracyMatrix:
    """``rows[i][j]`` = R[i][j] for j <= i (a lower-triangular matrix as a list of rows);
    ``counts[j]``: the number of test samples of task j, when known (for the sample-weighted
    average)."""

    rows: tuple[tuple[float, ...], ...]
    counts: tuple[int, ...] | None = None

    def __post_init__(self):
        for i, row in enumerate(self.rows):
            if len(row) != i + 1:
                raise ValueError(f"row {i} of an accuracy matrix has {i + 1} entries, "
                                 f"not {len(row)}")
        if self.counts is not None and (len(self.counts) != len(self.rows)
                                        or min(self.counts, default=1) < 1):
            raise ValueError(f"an accuracy matrix of {len(self.rows)} tasks needs as many positive "
                             f"test-sample counts, got {self.counts}")

    @classmethod
    def of(cls, rows, counts=None) -> "AccuracyMatrix":
        return cls(tuple(tuple(float(v) for v in row) for row in rows),
                   None if counts is None else tuple(int(n) for n in counts))

    @property
    def tasks(self) -> int:
        return len(self.rows)

    def average_accuracy(self, after: int | None = None) -> float:
        row = self.rows[self.tasks - 1 if after is None else after]
        return sum(row) / len(row)

    def sample_weighted_accuracy(self, after: int | None = None) -> float | None:
        """Accuracy over all test samples of tasks 0..after (None without the counts)."""
        if self.counts is None:
            return None
        i = self.tasks - 1 if after is None else after
        counts = self.counts[:i + 1]
        return sum(n * r for n, r in zip(counts, self.rows[i])) / sum(counts)

    def average_incremental_accuracy(self) -> float:
        return sum(self.average_accuracy(i) for i in range(self.tasks)) / self.tasks

    def forgetting(self) -> float | None:
        """None for a single task (nothing earlier to forget)."""
        last = self.tasks - 1
        if last == 0:
            return None
        drops = [max(self.rows[i][j] for i in range(j, last)) - self.rows[last][j]
                 for j in range(last)]
        return sum(drops) / last

    def backward_transfer(self) -> float | None:
        """None for a single task."""
        last = self.tasks - 1
        if last == 0:
            return None
        return sum(self.rows[last][j] - self.rows[j][j] for j in range(last)) / last

    def metrics(self, prefix: str) -> dict[str, float]:
        """Every metric of :data:`DEFINITIONS` that is defined for this many tasks (and, for
        ``avg_acc_samples``, with the test-sample counts), named ``<prefix>_<metric>``."""
        values = {"avg_acc": self.average_accuracy(),
                  "avg_acc_samples": self.sample_weighted_accuracy(),
                  "avg_inc_acc": self.average_incremental_accuracy(),
                  "forgetting": self.forgetting(), "bwt": self.backward_transfer()}
        return {f"{prefix}_{name}": value for name, value in values.items() if value is not None}
