"""The one training loop every objective shares: a LightningModule around a student, an optional
teacher role and a list of weighted objectives (mdistiller's contract: each objective gives named
loss terms; the engine weights, sums and logs them)."""
from __future__ import annotations

import math
from contextlib import nullcontext

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.plugins.precision import Precision
from lightning.pytorch.profilers import PassThroughProfiler
from lightning.pytorch.strategies import ParallelStrategy, SingleDeviceStrategy
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from distill.contracts import FIELDS, ModelOutput, Step
from distill.contracts.global_batch import global_step, on_every_rank, reads_global_batch
from distill.data.base import EpochSampler
from distill.data.batch_groups import BatchGroup, BatchGroups
from distill.engine import direct_validation
from distill.engine.epoch_means import EpochMeans
from distill.engine.epoch_record import as_logged, mean_over_processes, show, write_row
from distill.engine.objective_hooks import ObjectiveHooks
from distill.engine.rng_state import capture_rng, restore_rng
from distill.engine.teacher_cache import CachePlan, TeacherCache
from distill.engine.teacher_in_checkpoints import digest, from_files, leave_out, put_back
from distill.engine.teacher_output_store import TeacherOutputStore, hardware
from distill.engine.term import Term
from distill.environment import checkout
from distill.errors import UserError
from distill.objectives.base import Objective
from distill.registry import optimizers, schedules
from distill.task_kinds import Classification, TaskKind
from students.taps import Tapped
from teachers.role import TeacherRole


GROUP_BYTES = 1 << 20  # batches' bytes one Lightning step may take (BatchGroups)
PER_BATCH_HOOKS = ("on_train_batch_start", "on_train_batch_end",  # called once a group
                   "on_validation_batch_start", "on_validation_batch_end")
STEP_HOOKS = ("on_before_backward", "on_after_backward", "on_before_optimizer_step")


def overrides(objects, hooks, base=Callback) -> bool:
    """Whether any of ``objects`` has its own version of one of ``base``'s ``hooks``, in its
    class or set on it (Lightning calls the instance's)."""
    return any(getattr(getattr(o, hook), "__func__", None) is not getattr(base, hook)
               for o in objects for hook in hooks)


def _plus(total: torch.Tensor | None, value: torch.Tensor) -> torch.Tensor:
    return value if total is None else total + value


class DistillationModule(L.LightningModule):
    """Student + teacher role + objectives; logs ``train/<term>``, ``train/loss`` and the task
    kind's validation values ``val/<name>`` (``val/acc`` for classification).

    ``kind`` (the dataset's task kind) lays out the step and validates. ``history`` holds its
    headline validation value of every finished epoch (saved in checkpoints), so both the
    final-epoch and the best-epoch value can be reported.
    """

    def __init__(self, student: Tapped, teacher: TeacherRole | None, terms: list[Term],
                 num_classes: int, epochs: int, optimizer: dict, schedule: dict, task: int = 0,
                 kind: TaskKind | None = None, cache_plan: CachePlan | None = None,
                 gradient_clip: float | None = None, accumulate: int = 1,
                 clip_algorithm: str = "norm"):
        super().__init__()
        # the engine takes the optimiser steps (several batches may come in one Lightning step)
        self.automatic_optimization = False
        self.gradient_clip, self.accumulate = gradient_clip, accumulate
        self.direct = False  # backward and step past Lightning's plumbing (steps_directly)
        self.validating_itself = self.test_pass_due = False  # (validates_itself)
        self.clip_algorithm = clip_algorithm  # norm or value (the file's trainer key)
        self.student = student
        self.teacher = teacher
        self.objectives = nn.ModuleList(t.objective for t in terms)
        for t in terms:
            t.objective._state_key = f"objective:{t.label}"
        self.terms = terms
        # in a run of several processes, DDP leaves alone the parts an objective trains apart
        # (QCRD's discriminator: trained alike in every process, with its own optimiser) and the
        # objectives' buffers (memory banks, centres, class-means, BatchNorm statistics of their
        # layers: updated alike in every process, from the global batch or all-reduced), which
        # it would otherwise send from the first process at every step
        apart = {id(p) for t in terms for m in t.objective.trained_apart() for p in m.parameters()}
        self._ddp_params_and_buffers_to_ignore = [
            *(name for name, p in self.named_parameters() if id(p) in apart),
            *(f"objectives.{name}" for name, _ in self.objectives.named_buffers())]
        self.epoch_terms = EpochMeans()
        self.epoch_row: dict[str, torch.Tensor] = {}  # the training means, written at epoch end
        self.validated_epoch: int | None = None  # the last epoch that measured the test set
        self.epochs, self.task = epochs, task
        self.optimizer_spec, self.schedule_spec = optimizer, schedule
        self.kind = kind or Classification()
        self.val_metrics = nn.ModuleDict(self.kind.metrics(num_classes))
        self.teacher_fields = frozenset().union(*(t.objective.teacher_needs for t in terms),
                                                teacher.needs if teacher is not None else ())
        self.uses_views = any(t.objective.uses_views for t in terms)
        self.cache_plan = cache_plan or CachePlan()
        self.teacher_cache: TeacherCache | None = None
        self.history: list[float] = []
        # a reported teacher (co-trained, ensemble) is evaluated beside the student (accuracy)
        self.reports_teacher = teacher is not None and teacher.reported
        self.teacher_acc = (MulticlassAccuracy(num_classes, average="micro")
                            if self.reports_teacher else None)
        self.teacher_history: list[float] = []
        self.resumed_rng: dict | None = None  # the generators' state in the checkpoint resumed from
        self.rng_at_fit: dict | None = None  # the generators' state when fit was called
        self.reads_global: list[bool] = []  # per term, set by setup (several processes)
        # a teacher rebuilt from files stays out of checkpoints (teacher_in_checkpoints): the
        # digest of its weights as built, before a precision plugin converts them
        self.teacher_digest = digest(teacher.state_dict()) if from_files(teacher) else None

    # -- Lightning plumbing -------------------------------------------------------------------
    def configure_callbacks(self):
        return [ObjectiveHooks(o) for o in self.objectives]

    def configure_optimizers(self):
        own_groups = [group for o in self.objectives for group in o.param_groups()]
        in_own_group = {id(p) for group in own_groups for p in group["params"]}
        in_own_group |= {id(p) for o in self.objectives for m in o.trained_apart()
                         for p in m.parameters()}
        params = [p for p in self.student.parameters() if p.requires_grad]
        params += [p for p in self.objectives.parameters()
                   if p.requires_grad and id(p) not in in_own_group]
        if self.teacher is not None and self.teacher.trainable:
            params += list(self.teacher.parameters())
        opt_spec = dict(self.optimizer_spec)
        optimizer = optimizers.get(opt_spec.pop("name")).target(
            [{"params": params}, *own_groups] if own_groups else params, **opt_spec)
        sched_spec = dict(self.schedule_spec)
        scheduler = schedules.get(sched_spec.pop("name")).target(optimizer, epochs=self.epochs,
                                                                  **sched_spec)
        if scheduler is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}

    def on_fit_start(self):
        data = self.trainer.datamodule
        if self.teacher is not None:
            self.teacher.plan_steps(self.planned_steps())
        self.teacher_cache = None
        if not (self.cache_plan.enabled and self.teacher is not None and self.teacher_fields
                and self.teacher.static and self.kind.caches_teacher and data is not None
                and self.teacher_fields <= set(FIELDS)):  # tapped maps could fill the memory
            return
        augmented = data.splits.augmented
        store = self._shared_store(data, augmented)
        if augmented and store is None:  # a table per epoch pays only when the grid shares it
            return
        self.teacher_cache = TeacherCache(self.teacher_fields, len(data.splits.train),
                                          data.train_set.indices, store)
        if not augmented:
            convert = self.trainer.precision_plugin.convert_input
            self.teacher_cache.load("all", lambda: ((convert(x).to(self.device), i) for x, _, i in
                                                    data.train_eval_dataloader()),
                                    self._teacher_pass, always=True)

    def epoch_batches(self) -> int | float:
        """The training batches of an epoch (Lightning counts groups of them)."""
        loader = self.trainer.train_dataloader
        return loader.batches if isinstance(loader, BatchGroups) else \
            self.trainer.num_training_batches

    def planned_steps(self) -> int | float:
        """The optimiser steps the fit takes: Lightning's ``estimated_stepping_batches``,
        counted in batches and with the engine's accumulation."""
        trainer = self.trainer
        if trainer.max_epochs == -1:
            return float("inf") if trainer.max_steps == -1 else trainer.max_steps
        if trainer.train_dataloader is None:
            trainer.fit_loop.setup_data()
        batches = self.epoch_batches()
        if batches == float("inf"):
            return trainer.max_steps
        steps = math.ceil(batches / self.accumulate) * max(trainer.max_epochs, 1)
        return min(steps, trainer.max_steps) if trainer.max_steps != -1 else steps

    def _shared_store(self, data, augmented: bool) -> TeacherOutputStore | None:
        """The store of this run's teacher tables beside the teacher's weights, keyed by what
        decides their numbers; None for a teacher without files or a run of several processes
        (each sees a shard of every epoch)."""
        plan, trainer = self.cache_plan, self.trainer
        if plan.root is None or self.teacher_digest is None or trainer.world_size > 1:
            return None
        inputs = ({"seed": data.seed, "batch_size": data.batch_size} if augmented
                  else {"in_order": data.eval_batch_size})
        identity = {**plan.identity, "teacher": self.teacher_digest,
                    "fields": sorted(self.teacher_fields), "inputs": inputs,
                    "precision": str(trainer.precision), "hardware": hardware(self.device),
                    "threads": torch.get_num_threads(), "torch": torch.__version__,
                    "code": checkout()}  # the workbench's commit (a fix changes the numbers)
        return TeacherOutputStore(plan.root, identity, plan.limit_bytes)

    def _teacher_pass(self, x: torch.Tensor) -> ModelOutput:
        """The teacher on a batch, in the precision context of a training step (as live)."""
        with self.trainer.precision_plugin.train_step_context():
            return self.teacher(x)

    def on_train_epoch_start(self):
        self.epoch_terms = EpochMeans()
        data = self.trainer.datamodule
        if self.teacher_cache is None or not data.splits.augmented:
            return
        epoch = data.epoch_now()
        whole = -(-len(data.train_set) // data.batch_size)
        loader = self.trainer.train_dataloader
        if (self.epoch_batches() < whole  # --fast, limit_train_batches
                or not isinstance(getattr(loader, "sampler", None), EpochSampler)):  # overfit_
            self.teacher_cache.table = None  # batches: other batches than the table's
            return
        convert = self.trainer.precision_plugin.convert_input
        self.teacher_cache.load(f"epoch{epoch}",
                                lambda: data.epoch_inputs(epoch, self.device, convert),
                                self._teacher_pass, always=False)

    def on_fit_end(self):
        cache = self.teacher_cache
        if cache is not None and cache.store is not None and self.trainer.is_global_zero:
            print(f"teacher outputs: {cache.counts['read']} table(s) read from "
                  f"{cache.store.folder}, {cache.counts['computed']} computed, "
                  f"{cache.counts['live']} left to the teacher at every step")

    def on_save_checkpoint(self, checkpoint):
        checkpoint["history"] = list(self.history)
        checkpoint["teacher_history"] = list(self.teacher_history)
        checkpoint["rng_state"] = capture_rng()
        if self.teacher_digest is not None:
            leave_out(checkpoint, self.teacher, self.teacher_digest)

    def on_load_checkpoint(self, checkpoint):
        put_back(checkpoint, self.teacher, self.teacher_digest, self.trainer.ckpt_path)
        self.history = list(checkpoint.get("history", []))
        self.teacher_history = list(checkpoint.get("teacher_history", []))
        self.resumed_rng = checkpoint.get("rng_state")

    def setup(self, stage: str) -> None:
        # several processes: Lightning seeded each again when it connected them; the generators
        # go back to where they stood when fit was called, as in one process, so the draws of
        # training (dropout, negatives) are the single-process run's
        several = self.trainer.world_size > 1
        if self.rng_at_fit is not None and several:
            restore_rng(self.rng_at_fit)
        self.rng_at_fit = None
        # per term, once a fit (the objectives are bound): whether it reads the global batch
        self.reads_global = [several and reads_global_batch(t.objective) for t in self.terms]
        data = self.trainer.datamodule
        if data is not None and stage == "fit":
            data.group_budget = GROUP_BYTES if self.groups_batches() else 0

    def teardown(self, stage: str) -> None:
        data = self.trainer.datamodule
        if data is not None:
            data.group_budget = 0  # the data module's loader is one batch at a time again

    def groups_batches(self) -> bool:
        """Whether a Lightning step may take several batches (training and validation alike):
        in one process without DDP's wrapper (one backward per forward of the wrapped module),
        where every epoch runs and measures all its batches (Lightning's limits and
        ``max_steps`` count Lightning steps) and no objective has a hook of its own at each
        batch's start or end."""
        t = self.trainer
        per_batch = overrides(self.objectives, PER_BATCH_HOOKS, Objective)
        return (isinstance(t.strategy, SingleDeviceStrategy) and t.max_steps == -1
                and not t.fast_dev_run and not t.overfit_batches and not per_batch
                and all(isinstance(limit, float) and limit == 1.0
                        for limit in (t.limit_train_batches, t.limit_val_batches)))

    def steps_directly(self) -> bool:
        """Whether the module may call backward and the optimiser itself, past Lightning's
        plumbing around them (every callback's hook, the precision's wrappers: about 0.25 ms a
        step on CPU): in one process at full precision without a profiler, where no callback (an
        objective, for its ObjectiveHooks) and not the module has a hook around either. Never
        under DDP: its strategy readies the gradients' all-reduce in its own backward."""
        t = self.trainer
        return (isinstance(t.strategy, SingleDeviceStrategy)
                and type(t.precision_plugin) is Precision
                and isinstance(t.profiler, PassThroughProfiler)
                and not self.listened(STEP_HOOKS, STEP_HOOKS[:2] + ("backward", "manual_backward")))

    def validates_itself(self) -> bool:
        """Whether the module takes the test pass at an epoch's end itself
        (:mod:`~distill.engine.direct_validation`): where it takes its steps directly, in
        groups of whole epochs, and nothing listens to the hooks of Lightning's evaluation loop."""
        return (self.direct and self.groups_batches() and self.trainer.datamodule is not None
                and not self.listened(direct_validation.CALLBACK_HOOKS,
                                      direct_validation.MODULE_HOOKS))

    def listened(self, hooks: tuple[str, ...], module_hooks: tuple[str, ...]) -> bool:
        """Whether a callback (an objective, for its ObjectiveHooks) has its own version of one
        of ``hooks``, or the module of one of ``module_hooks``."""
        callbacks = self.trainer.callbacks
        own = [c.objective for c in callbacks if isinstance(c, ObjectiveHooks)]
        others = [c for c in callbacks if not isinstance(c, ObjectiveHooks)]
        return (overrides(own, hooks, Objective) or overrides(others, hooks)
                or overrides([self], module_hooks, L.LightningModule))

    def schedule_test_pass(self, due: bool) -> bool:
        """Whether Lightning's loop takes this epoch's test pass (``due``, from the
        ValidationSchedule at the epoch's start): not where the module takes it itself."""
        self.test_pass_due = due and self.validating_itself
        return due and not self.validating_itself

    def on_train_start(self):
        self.direct = self.steps_directly()
        self.validating_itself = self.validates_itself()
        # restored here, after everything a resumed fit does before its first batch, so the
        # generators continue exactly as in a run that was never interrupted
        if self.resumed_rng is not None:
            restore_rng(self.resumed_rng)
            self.resumed_rng = None

    # -- the shared step ------------------------------------------------------------------------
    def teacher_output(self, x: torch.Tensor, index: torch.Tensor) -> ModelOutput | None:
        if self.teacher is None or not self.teacher_fields:
            return None
        if self.teacher_cache is not None and self.teacher_cache.table is not None:
            return self.teacher_cache(index)
        return self.teacher(x)

    def make_step(self, batch) -> Step:
        """The step record, laid out by the task kind; each forward pass runs when an objective
        first reads its output."""
        return self.kind.step(self, batch)

    def training_step(self, batch, batch_idx):
        """One optimiser step per batch (of a :class:`BatchGroup`, several in one Lightning
        step): the loss, backward, the (clipped) step every ``accumulate`` batches of
        the epoch and at its end (Lightning's accumulation; under DDP all-reduced once a
        window, as Lightning's automatic loop does), the teacher's update after each step, and
        the schedule's step after the epoch's last batch."""
        trainer = self.trainer
        optimizer = self.optimizers()
        batches = batch if isinstance(batch, BatchGroup) else [batch]
        loader = trainer.train_dataloader
        first = batch_idx * (loader.size if isinstance(loader, BatchGroups) else 1)
        epoch_ends = trainer.fit_loop.epoch_loop.batch_progress.is_last_batch
        for k, one in enumerate(batches):
            position, last = first + k, epoch_ends and k == len(batches) - 1
            steps = last or (position + 1) % self.accumulate == 0
            loss = self.batch_loss(one, last)
            if position % self.accumulate == 0:
                optimizer.zero_grad()
            with self._summed_apart(steps):
                self._backward(loss / self.accumulate if self.accumulate > 1 else loss)
            if not steps:
                continue
            self._optimiser_step(optimizer)
            if self.teacher is not None:
                self.teacher.after_student_step(self.student)
        scheduler = self.lr_schedulers() if epoch_ends else None
        if scheduler is not None:
            scheduler.step()
        if epoch_ends and self.test_pass_due:
            direct_validation.validate_directly(self)

    def _summed_apart(self, steps: bool):
        """DDP: the backward of a batch that does not end an accumulation window sums its
        gradients in each process (DDP's no_sync); the window's last all-reduces them."""
        strategy = self.trainer.strategy
        if steps or not isinstance(strategy, ParallelStrategy):
            return nullcontext()
        return strategy.block_backward_sync()

    def _backward(self, loss: torch.Tensor) -> None:
        if self.direct:
            loss.backward()
        else:
            self.manual_backward(loss)

    def _optimiser_step(self, optimizer) -> None:
        """The optimiser's step, its gradients clipped first (on_before_optimizer_step)."""
        if not self.direct:
            optimizer.step()
            return
        optimizer._on_before_step()  # Lightning's count of the steps taken (global_step)
        self.on_before_optimizer_step(optimizer.optimizer)  # as Lightning's precision passes it
        optimizer.optimizer.step()
        optimizer._on_after_step()

    def on_before_optimizer_step(self, optimizer):
        """Clips the gradients where Lightning's automatic loop did: after the precision's
        unscaling and the callbacks' own hook."""
        if self.gradient_clip:
            self.clip_gradients(optimizer, gradient_clip_val=self.gradient_clip,
                                gradient_clip_algorithm=self.clip_algorithm)

    def batch_loss(self, batch, epoch_ends: bool = False) -> torch.Tensor:
        """The weighted sum of the terms on one batch, recorded for the epoch's means (logged
        with the epoch's last batch, ``epoch_ends``); a non-finite sum stops the run."""
        step = self.make_step(batch)
        trainer = self._trainer  # None when a step is taken by hand
        several = trainer is not None and trainer.world_size > 1
        if several:
            step.processes, step.rank = trainer.world_size, trainer.global_rank
        reads_global = self.reads_global if several else [False] * len(self.terms)
        whole = global_step(step, self) if any(reads_global) else None
        total = None
        logs = {}
        for term, global_batch in zip(self.terms, reads_global):
            out = term.objective(whole if global_batch else step)
            parts = out if isinstance(out, dict) else {"": out}
            weight = term.weight_at(step.epoch)
            for name, value in parts.items():
                label = f"{term.label}/{name}" if name else term.label
                logs[f"train/{label}"] = value.detach()
                total = _plus(total, value if weight == 1 else weight * value)
        if self.teacher is not None:
            for name, value in self.teacher.loss(step).items():
                logs[f"train/teacher/{name}"] = value.detach()
                total = _plus(total, value)
        # one check (one device sync) per step, not one per term; under several processes all
        # stop at the same step when the loss of any is not finite (a process stopping alone
        # would leave the others waiting in their next collective until the group's timeout)
        finite = math.isfinite(total.item())
        if not on_every_rank(finite):
            where = f"at epoch {step.epoch}, step {step.global_step}"
            if finite:
                raise UserError(f"the loss became non-finite in another process {where} (that "
                                f"process names the term); lower the learning rate or that "
                                f"term's weight")
            label, value = next(((k, v) for k, v in logs.items() if not torch.isfinite(v)),
                                ("train/loss", total))  # each term finite, their sum not
            raise UserError(f"loss term {label[len('train/'):]!r} became non-finite "
                            f"({value.item()}) {where}; lower the learning rate or this term's "
                            f"weight")
        logs["train/loss"] = total.detach()
        self.epoch_terms.add(logs, len(step.labels))
        if epoch_ends:
            self.log_epoch_terms()
        return total

    def log_epoch_terms(self) -> None:
        """The epoch's means of the training terms, handed to the callbacks and the progress bar
        once (at its last batch, so that the epoch line has them), their row written to the
        loggers at the epoch's end (after the test set's, as Lightning orders them)."""
        if self.epoch_terms.sums:
            # under several processes each has its own samples: the mean of their means (equal
            # shares of every epoch) is the epoch's
            self.epoch_row = mean_over_processes(self.trainer, as_logged(self.epoch_terms.means()))
            show(self.trainer, self.epoch_row)

    def on_train_epoch_end(self):
        self.log_epoch_terms()  # an epoch cut short (max_steps, max_time) has no last batch
        row, self.epoch_row = self.epoch_row, {}
        write_row(self.trainer, row, before_last_step=True)

    def predict_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores for evaluation: the first objective's ``predict`` (e.g. prototypes), else
        the student's logits."""
        out = self.student(x)
        for objective in self.objectives:
            scores = objective.predict(out)
            if scores is not None:
                return scores
        return out.logits

    def validation_step(self, batch, batch_idx):
        for one in batch if isinstance(batch, BatchGroup) else [batch]:
            self.kind.validation_step(self, one)
            if self.reports_teacher:
                self.teacher_acc.update(self.teacher(one[0]).logits, one[1])

    def on_validation_epoch_end(self):
        values = self.kind.validation_end(self)
        if self.reports_teacher:
            values["teacher_acc"] = round(self.teacher_acc.compute().item() * 100, 4)
            self.teacher_acc.reset()
        if self.trainer.sanity_checking:
            return
        if self.reports_teacher:
            self.teacher_history.append(values["teacher_acc"])
        # computed over every process's samples (torchmetrics syncs): the same in each
        row = as_logged({f"val/{name}": value for name, value in values.items()})
        show(self.trainer, row, progress=(f"val/{self.kind.headline}",))
        write_row(self.trainer, row)
        self.history.append(values[self.kind.headline])
        self.validated_epoch = self.trainer.current_epoch
