"""QCRD: quality-guided contrastive rationale distillation (Wang et al. 2024), on top of
distilling step-by-step. Per training problem x:

- positives: the teacher's samples that pass self-consistency (:mod:`rationale_pool`);
- negatives: the teacher's samples that fail it (``teacher_negatives``: at most that many per
  problem, drawn at random each step; all by default), plus one sample of the student from
  ``rounds_back`` rounds (epochs) earlier at temperature ``student_temperature``
  (self-adversarial);
- ``L = CE(predict: x -> y) + a1 * L_pos + a2 * L_neg`` with
  ``L_pos = D(x, r*) * CE(x, r*)``, ``r* = argmin_{r in pos} CE(x, r)`` and
  ``L_neg = sum_{r in neg} (1 - D(x, r)) * max(0, delta - CE(x, r))``, batch means, CE each
  sequence's token-mean cross-entropy of ``explain: x -> r``;
- D(x, r) in [0, 1] (:class:`RationaleDiscriminator`) is pre-trained on positives against the
  teacher's negatives and other problems' positives, and re-trained every ``retrain_every``
  rounds with the student's negatives added, with its own Adam optimiser. The paper weighs its
  loss by a3 = 0.5, decaying x0.9 per round; trained apart from the student, a weight acts only
  through the step size, so the decay is applied to its learning rate.

Each step scores every candidate once without a graph, then with gradients only what the loss
reads: each problem's lowest-NLL positive and the negatives inside the margin (the others have
neither a hinge value nor a gradient). Without dropout the loss and gradient are those of scoring
all with gradients; with dropout the choice is made on another dropout draw.

No authors' code is public; this follows the paper as summarised in METHODS.md."""
from __future__ import annotations

import copy
from typing import Annotated

import torch
import torch.nn.functional as F
from pydantic import Field

from distill.contracts.global_batch import global_mean, uniform_rows
from distill.errors import ConfigError, UserError
from distill.objectives.rationale_discriminator import RationaleDiscriminator
from distill.objectives.rationale_pool import RationaleObjective, rows_nll
from distill.objectives.snapshot_ring import SnapshotRing
from distill.task_kinds.generation import trimmed
from distill.registry import objectives


def contrastive_rationale_loss(pos_nll: torch.Tensor, neg_nll: torch.Tensor,
                               pos_weight: torch.Tensor, neg_weight: torch.Tensor,
                               delta: float, processes: int = 1
                               ) -> tuple[torch.Tensor, torch.Tensor]:
    """(L_pos, L_neg) from B x P positive and B x Q negative sequence NLLs (``inf`` marks an
    absent rationale) and their weights: ``L_pos`` the mean over problems with a positive of
    ``w * nll`` at each problem's lowest-NLL positive; ``L_neg`` the mean over problems of
    ``sum_q w_q * max(0, delta - nll_q)``; ``processes``: the batch is one process's share of
    a global batch the means are over (:func:`global_mean`)."""
    has = torch.isfinite(pos_nll).any(dim=1)
    best = pos_nll.argmin(dim=1, keepdim=True)
    pos_terms = (pos_weight.gather(1, best) * pos_nll.gather(1, best)).squeeze(1)
    positive = global_mean(pos_terms, has, processes)
    present = torch.isfinite(neg_nll)
    hinge = torch.where(present, (delta - neg_nll).clamp(min=0), torch.zeros_like(neg_nll))
    negative = ((neg_weight * hinge).sum(dim=1).mean() if neg_nll.numel()
                else neg_nll.new_zeros(()))
    return positive, negative


@objectives.register("qcrd")
class ContrastiveRationaleDistillation(RationaleObjective):
    """QCRD: label CE + a1 * quality-weighted positive rationale CE + a2 * hinge on negative
    rationales (teacher's failed samples, the student's from k rounds back) (generation)."""

    def __init__(self, samples: Annotated[int, Field(ge=1, le=64)] = 5,
                 temperature: float = 0.7,
                 positive_weight: Annotated[float, Field(ge=0)] = 0.5,
                 negative_weight: Annotated[float, Field(ge=0)] = 0.5,
                 margin: Annotated[float, Field(gt=0, le=1e4)] = 3.0,
                 negatives: bool = True, discriminator: bool = True,
                 rounds_back: Annotated[int, Field(ge=1, le=1000)] = 5,
                 student_temperature: float = 1.5,
                 discriminator_lr: Annotated[float, Field(gt=0, le=1)] = 1e-3,
                 discriminator_decay: Annotated[float, Field(gt=0, le=1)] = 0.9,
                 pretrain_epochs: Annotated[int, Field(ge=0, le=100)] = 1,
                 retrain_every: Annotated[int, Field(ge=1, le=1000)] = 1,
                 discriminator_dim: Annotated[int, Field(ge=8, le=1024)] = 64,
                 discriminator_batch: Annotated[int, Field(ge=1, le=4096)] = 128,
                 discriminator_samples: Annotated[int, Field(ge=1, le=10_000_000)] = 4096,
                 teacher_negatives: Annotated[int, Field(ge=1, le=64)] | None = None):
        super().__init__("teacher", samples, temperature)
        self.a1, self.a2, self.delta = positive_weight, negative_weight, margin
        self.use_negatives, self.use_discriminator = negatives, discriminator
        self.student_temperature = student_temperature
        self.ring = SnapshotRing(rounds_back)
        self.lr, self.decay = discriminator_lr, discriminator_decay
        self.pretrain_epochs, self.retrain_every = pretrain_epochs, retrain_every
        self.dim, self.disc_batch = discriminator_dim, discriminator_batch
        self.disc_samples = discriminator_samples
        self.teacher_negatives = teacher_negatives
        self.discriminator: RationaleDiscriminator | None = None
        self.rounds = 0  # discriminator trainings done (pre-training is round 0)
        self.drawn = 0  # the student's negatives drawn so far
        self.student_negatives: torch.Tensor | None = None  # N x L, this round's

    def bind(self, ctx):
        super().bind(ctx)
        self._data_seed = ctx.data.seed
        epochs = ctx.experiment.train.epochs if ctx.experiment is not None else None
        if self.use_negatives and epochs is not None and self.ring.size >= epochs:
            raise ConfigError(f"{ctx.key}.rounds_back", f"{self.ring.size} rounds back needs more "
                                                        f"than {epochs} epochs, or no student "
                                                        f"negatives are ever drawn; give "
                                                        f"rounds_back below train.epochs")
        if self.use_discriminator:
            self.discriminator = RationaleDiscriminator(ctx.data.splits.vocab_size,
                                                        ctx.data.splits.text_length, self.dim)
            self.disc_optimizer = torch.optim.Adam(self.discriminator.parameters(), lr=self.lr)

    def trained_apart(self):
        return [self.discriminator] if self.discriminator is not None else []

    # -- state across rounds, in checkpoints ----------------------------------------------------
    def get_extra_state(self):
        state = {"ring": self.ring.states, "rounds": self.rounds, "drawn": self.drawn}
        if self.discriminator is not None:
            state["optimizer"] = self.disc_optimizer.state_dict()
            state["heads"] = self.discriminator.heads
        return state

    def set_extra_state(self, state):
        self.ring.states = list(state["ring"])
        self.rounds, self.drawn = int(state["rounds"]), int(state["drawn"])
        if self.discriminator is not None:
            if state.get("heads", 4) != self.discriminator.heads:  # runs before heads were kept
                raise UserError(f"a QCRD checkpoint of a discriminator with "
                                f"{state.get('heads', 4)} attention heads (an older version); "
                                f"delete that run's folder to train it afresh",
                                key="objectives")
            self.disc_optimizer.load_state_dict(state["optimizer"])

    # -- rounds -----------------------------------------------------------------------------------
    def on_fit_start(self, trainer, pl_module):
        super().on_fit_start(trainer, pl_module)
        self.__dict__["_past"] = copy.deepcopy(pl_module.student.net).eval()  # not a submodule
        self._past.requires_grad_(False)
        if self.discriminator is not None:  # restored before the module moved to its device
            for state in self.disc_optimizer.state.values():
                for name, value in state.items():
                    if isinstance(value, torch.Tensor) and name != "step":
                        state[name] = value.to(pl_module.device)
        if self.discriminator is not None and self.rounds == 0:
            for k in range(self.pretrain_epochs):  # its own order each pass
                self.train_discriminator(trainer.datamodule, pl_module.device, epoch=-1 - k)
            self.rounds = 1

    def on_train_epoch_start(self, trainer, pl_module):
        """Round ``e``: keep the student as it ended round e-1, draw this round's negatives from
        the one ``rounds_back`` rounds earlier, re-train the discriminator."""
        epoch = trainer.current_epoch
        if epoch >= 1 and self.use_negatives:  # the ring serves the student's negatives only
            self.ring.push(pl_module.student.net)
        self.student_negatives = None
        data = trainer.datamodule
        if self.use_negatives and self.ring.full:
            self.student_negatives = self.draw_student_negatives(data, pl_module.device, epoch)
            self.drawn += len(self.student_negatives)
        if (self.discriminator is not None and epoch >= 1 and epoch % self.retrain_every == 0):
            self.train_discriminator(data, pl_module.device, epoch)
            self.rounds += 1

    @torch.no_grad()
    def draw_student_negatives(self, data, device, epoch: int) -> torch.Tensor:
        self._past.load_state_dict(self.ring.oldest())
        train = data.splits.train
        generator = torch.Generator(device=device).manual_seed(
            self._data_seed * 100_003 + epoch + 1)
        length = train.rationale.shape[1]
        out = []
        for start in range(0, len(train), 256):
            rows = train.explain[start:start + 256].to(device)
            out.append(self._past.generate(rows, max_length=length,
                                           temperature=self.student_temperature,
                                           generator=generator).cpu())
        return torch.cat(out)

    def discriminator_examples(self, generator: torch.Generator):
        """(problem, rationale, target) rows: every positive (1), the teacher's and the student's
        negatives (0), and for each problem a positive of another problem (0)."""
        pos, neg = self.pool.positives, self.pool.negatives
        n = len(pos)
        problems, rows, targets = [], [], []
        for tensor, target in ((pos, 1.0), (neg, 0.0)):
            present = (tensor != 0).any(dim=-1)
            problems.append(present.nonzero()[:, 0])
            rows.append(tensor[present])
            targets.append(torch.full((int(present.sum()),), target))
        if self.student_negatives is not None:
            problems.append(torch.arange(n))
            rows.append(self.student_negatives)
            targets.append(torch.zeros(n))
        other = (torch.arange(n) + torch.randint(1, max(n, 2), (n,), generator=generator)) % n
        other_rows = pos[other, 0]
        present = (other_rows != 0).any(dim=-1)
        problems.append(torch.arange(n)[present])
        rows.append(other_rows[present])
        targets.append(torch.zeros(int(present.sum())))
        width = max(r.shape[1] for r in rows)
        rows = [F.pad(r, (0, width - r.shape[1])) for r in rows]
        return torch.cat(problems), torch.cat(rows), torch.cat(targets)

    def train_discriminator(self, data, device, epoch: int) -> None:
        """One pass of the discriminator over (at most ``discriminator_samples`` of) its examples,
        drawn afresh each round, learning rate ``lr * decay^round``."""
        generator = torch.Generator().manual_seed(self._data_seed * 100_003 + 7919 * (epoch + 2))
        problems, rows, targets = self.discriminator_examples(generator)
        for group in self.disc_optimizer.param_groups:
            group["lr"] = self.lr * self.decay ** self.rounds
        explain = data.splits.train.explain
        order = torch.randperm(len(targets), generator=generator)[:self.disc_samples]
        self.discriminator.train()
        with torch.enable_grad():
            for start in range(0, len(order), self.disc_batch):
                pick = order[start:start + self.disc_batch]
                logits = self.discriminator(trimmed(explain[problems[pick]]).to(device),
                                            trimmed(rows[pick]).to(device))
                loss = F.binary_cross_entropy_with_logits(logits, targets[pick].to(device))
                self.disc_optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.disc_optimizer.step()

    # -- the loss -----------------------------------------------------------------------------------
    @torch.no_grad()
    def weights(self, explain: torch.Tensor, rows: torch.Tensor,
                negative: bool = False) -> torch.Tensor:
        """B x K weights of the candidates: D(x, r) for positives, 1 - D(x, r) for negatives; 1
        without a discriminator (the ablation) and where a candidate is absent."""
        present = (rows != 0).any(dim=-1)
        out = torch.ones(present.shape, device=rows.device)
        if self.discriminator is None or not present.any():
            return out
        rows = trimmed(rows)
        was_training = self.discriminator.training
        self.discriminator.eval()
        sources = explain.repeat_interleave(present.sum(dim=1), dim=0)
        quality = torch.sigmoid(self.discriminator(sources, rows[present]))
        self.discriminator.train(was_training)
        return out.masked_scatter(present, 1 - quality if negative else quality)

    @staticmethod
    def at_most(rows: torch.Tensor, count: int | None, rank: int = 0,
                processes: int = 1) -> torch.Tensor:
        """B x Q x L candidates with at most ``count`` present per problem, a random choice each
        step (all when ``count`` is None), drawn for process ``rank``'s rows of the global
        batch."""
        present = (rows != 0).any(dim=-1)
        if count is None or rows.shape[1] <= count:
            return rows
        draws = uniform_rows(tuple(present.shape), rank, processes)
        order = draws.masked_fill(~present, 2.0).argsort(dim=1)
        return rows.gather(1, order[:, :count, None].expand(-1, -1, rows.shape[2]))

    @staticmethod
    @torch.no_grad()
    def lowest(scorer, explain: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """B x 1 x L: each problem's candidate of lowest NLL (all padding when it has none),
        found without a graph, so only the one the loss reads is scored again with gradients.
        Candidates are packed first (:class:`RationalePool`), so a problem with one has it at 0
        and only problems with several are scored."""
        several = (rows != 0).any(dim=-1).sum(dim=1) > 1
        if not bool(several.any()):
            return rows[:, :1]
        nll = rows_nll(scorer, explain, rows * several[:, None, None])
        best = torch.where(several, nll.argmin(dim=1), 0)
        return rows[torch.arange(len(rows), device=rows.device), best][:, None]

    @torch.no_grad()
    def within_margin(self, scorer, explain: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """The candidates with NLL below the margin; the others (set to padding) give the hinge
        neither a value nor a gradient, so they are not scored again with gradients."""
        inside = rows_nll(scorer, explain, rows) < self.delta
        return rows * inside[..., None]

    def forward(self, step):
        scorer, explain = step.extra["student_seq"], step.extra["explain"]
        index, device = step.index.cpu(), step.inputs.device
        terms = {"label": scorer.nll(step.inputs, step.labels).mean()}
        positives = self.lowest(scorer, explain, self.pool.positives[index].to(device))
        pos_nll = rows_nll(scorer, explain, positives)
        pos_weight = self.weights(explain, positives)
        if self.use_negatives:
            negatives = self.at_most(self.pool.negatives[index], self.teacher_negatives,
                                     step.rank, step.processes)
            if self.student_negatives is not None:
                own = self.student_negatives[index][:, None]
                width = max(negatives.shape[2], own.shape[2])
                negatives = torch.cat([F.pad(negatives, (0, width - negatives.shape[2])),
                                       F.pad(own, (0, width - own.shape[2]))], dim=1)
            negatives = self.within_margin(scorer, explain, negatives.to(device))
            neg_nll = rows_nll(scorer, explain, negatives)
            neg_weight = self.weights(explain, negatives, negative=True)
        else:
            neg_nll = pos_nll.new_zeros(len(index), 0)
            neg_weight = neg_nll
        positive, negative = contrastive_rationale_loss(pos_nll, neg_nll, pos_weight, neg_weight,
                                                        self.delta, step.processes)
        terms["positive"] = self.a1 * positive
        if self.use_negatives:
            terms["negative"] = self.a2 * negative
        return terms

    def summary(self):
        counts = super().summary()
        if counts:
            counts.update(negatives_teacher=int((self.pool.negatives != 0).any(-1).sum())
                          if self.use_negatives else 0,
                          negatives_student=self.drawn)
        return counts
