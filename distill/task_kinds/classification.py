"""Classification: batches ``(x, y, index[, views])``, networks called on ``x``, validation
accuracy; the table reports ``top1`` (final epoch) and ``top1_best`` (best epoch)."""
from __future__ import annotations

import torch

from distill.contracts import ModelOutput, Step
from distill.errors import ConfigError
from distill.task_kinds.base import TaskKind, eval_forward


def split_views(out: ModelOutput, count: int) -> list[ModelOutput]:
    """One forward pass over n*B stacked views -> n ModelOutputs of B rows each."""
    chunks = {f: value.chunk(count) for f, value in out.values().items()}
    return [ModelOutput.of({f: c[v] for f, c in chunks.items()}) for v in range(count)]


class Classification(TaskKind):
    name = "classification"
    headline = "acc"

    def metrics(self, num_classes):
        from torchmetrics.classification import MulticlassAccuracy  # imported by runs alone

        return {"acc": MulticlassAccuracy(num_classes, average="micro")}

    def check_network(self, net, name, key):
        if hasattr(net.net, "encode_texts"):
            raise ConfigError(key, f"network {name!r} embeds images and captions (retrieval); "
                                   f"this is a classification set")

    def probe(self, net, data):
        x = torch.stack([data.train_set[i][0] for i in range(min(2, len(data.train_set)))])
        return eval_forward(net, x)

    def step(self, module, batch):
        x, y, index = batch[:3]
        compute = {"student": lambda: module.student(x),
                   "teacher": lambda: module.teacher_output(x, index)}
        if module.uses_views:
            views = batch[3].transpose(0, 1).flatten(0, 1)  # view-major: n*B x ...
            count = batch[3].shape[1]
            compute["student_views"] = lambda: split_views(module.student(views), count)
            if module.teacher is not None and module.teacher_fields:
                compute["teacher_views"] = lambda: split_views(module.teacher(views), count)
        return Step(inputs=x, labels=y, index=index, epoch=module.current_epoch,
                    max_epochs=module.epochs, global_step=module.global_step, task=module.task,
                    compute=compute)

    def validation_step(self, module, batch):
        x, y = batch[0], batch[1]
        module.val_metrics["acc"].update(module.predict_logits(x), y)

    def validation_end(self, module):
        metric = module.val_metrics["acc"]
        acc = round(metric.compute().item() * 100, 4)  # no float32 noise in tables
        metric.reset()
        return {"acc": acc}

    def results(self, module, data, history):
        # the student's classifier accuracy means something only if an objective trained it on
        # labels
        if not any(term.objective.uses_labels for term in module.terms):
            return {}
        return {"top1": history[-1], "top1_best": max(history)}
