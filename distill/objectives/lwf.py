"""Learning without Forgetting (Li & Hoiem 2016, "Learning without Forgetting").

While task t is learnt, the network of the end of task t-1 (the ``snapshot`` teacher) gives its
outputs on the new data, and the student keeps them on every earlier task's own classes (the paper's
old-task heads), each a softmax of its own:

``L_old = sum_{t' < t} KL( sm(z_old[C_t'] / T) || sm(z_new[C_t'] / T) )``, batch mean, T = 2,

no T^2 factor (the paper's loss weight lambda_o = 1 is the objective's ``weight``). The paper writes
the cross-entropy of the two softened distributions, which differs from the KL divergence by the
old distribution's entropy, a constant: same gradients. Zero during task 0 (no snapshot yet).
"""
from distill.objectives.base import Objective
from distill.objectives.kd import kd_loss
from distill.registry import objectives
from teachers.snapshot import require_snapshot


@objectives.register("lwf")
class LwF(Objective):
    """LwF: KL from the previous task's snapshot on each earlier task's classes, T = 2."""

    teacher_needs = frozenset({"logits"})

    def __init__(self, temperature: float = 2.0):
        super().__init__()
        self.temperature = temperature
        self.classes: tuple[tuple[int, ...], ...] = ()

    def bind(self, ctx):
        require_snapshot(ctx, "lwf")
        super().bind(ctx)
        self.classes = ctx.tasks.classes

    def forward(self, step):
        loss = step.student.logits.new_zeros(())
        for old in self.classes[:step.task]:
            columns = list(old)
            loss = loss + kd_loss(step.student.logits[:, columns], step.teacher.logits[:, columns],
                                  self.temperature) / self.temperature ** 2
        return loss
