"""Image-text retrieval: batches ``((images, captions), keys, index)`` of training pairs; networks
are called on both sides (``net(images, captions)`` gives the two embeddings) and score pairs
through :class:`PairScorer`; validation ranks the whole test gallery both ways (image -> text and
text -> image) and reports R@1/5/10 and their sum (RSUM), the headline; the results add the
measured time per query of each direction.

A cross encoder (``fused`` network) is evaluated as such models are used: its towers' embeddings
rank the gallery coarsely and its joint score re-ranks each query's top ``rerank`` candidates
(default 16, at least the largest K)."""
from __future__ import annotations

import contextlib
import time

import torch

from distill.contracts.global_batch import gather_rows
from distill.errors import ConfigError
from distill.evaluation.retrieval_recall import hit_rates
from distill.task_kinds.base import TaskKind, eval_forward, two_input_step

KS = (1, 5, 10)


class PairScorer:
    """One network's scores of a batch's (image, caption) pairs: ``scorer(q, c)`` scores query
    images ``q`` (Q rows of the batch) against candidate captions ``c`` (Q x K rows) -> Q x K. A
    dual encoder scores with its embeddings (``output()``, computed once per batch), a cross
    encoder jointly, one forward pass per pair. ``grad``: whether gradients flow (a frozen teacher:
    no)."""

    def __init__(self, net, output, images: torch.Tensor, texts: torch.Tensor, grad: bool):
        self.net, self.output, self.images, self.texts, self.grad = net, output, images, texts, grad
        self._sides = None

    @property
    def fused(self) -> bool:
        return self.net.fused

    def __call__(self, q: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        if self.fused:
            with contextlib.nullcontext() if self.grad else torch.no_grad():
                scores = self.net.joint(self.sides(), q.repeat_interleave(c.shape[1]),
                                        c.flatten())
            return scores.view(c.shape)
        out = self.output()
        return self.net.score(out.embedding[q, None, :], out.text_embedding[c])

    def cosine(self, q: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """A dual encoder's cosines of the same pairs (Q x K), before its scale."""
        out = self.output()
        return (out.embedding[q, None, :] * out.text_embedding[c]).sum(-1)

    def sides(self):
        """The cross encoder's per-item tokens of this batch, computed once."""
        if self._sides is None:
            self._sides = self.net.sides(self.images, self.texts)
        return self._sides

    def similarity(self) -> torch.Tensor:
        """Every image of the batch against every caption by the embeddings (B x B)."""
        out = self.output()
        return self.net.score(out.embedding[:, None, :], out.text_embedding[None, :, :])


class Retrieval(TaskKind):
    """``texts`` / ``text_keys``: the test gallery's captions and their relevance keys (the test
    set's items are its images with theirs)."""

    name = "retrieval"
    headline = "rsum"
    caches_teacher = False
    shards_validation = False  # R@K ranks the whole gallery

    def __init__(self, texts: torch.Tensor, text_keys: torch.Tensor, rerank: int = 16,
                 chunk: int = 256):
        self.texts, self.text_keys, self.rerank, self.chunk = texts, text_keys, rerank, chunk
        self._images: list[torch.Tensor] = []
        self._keys: list[torch.Tensor] = []

    def metrics(self, num_classes):
        return {}  # the gallery is ranked as a whole at the epoch's end

    def check_network(self, net, name, key):
        if not hasattr(net.net, "encode_texts"):
            raise ConfigError(key, f"network {name!r} has no caption side; a retrieval set needs "
                                   f"a dual_encoder or cross_encoder")

    def probe(self, net, data):
        (image, text), _ = data.splits.train[0]
        return eval_forward(net, image[None], text[None])

    def step(self, module, batch):
        (images, texts), keys, index = batch[0], batch[1], batch[2]
        step = two_input_step(module, images, keys, index, images, texts)
        step.extra = self._scorers(module, step, images, texts)
        return step

    def global_extra(self, module, step, whole):
        return self._scorers(module, whole, whole.inputs, gather_rows(step.extra["texts"]))

    @staticmethod
    def _scorers(module, step, images, texts) -> dict:
        """The step's captions and each network's PairScorer of its pairs."""
        teacher = module.teacher if module.teacher_fields else None
        extra = {"texts": texts,
                 "student_scores": PairScorer(module.student.net, lambda: step.student, images,
                                              texts, grad=True)}
        if teacher is not None:
            extra["teacher_scores"] = PairScorer(teacher.network.net, lambda: step.teacher,
                                                 images, texts, grad=teacher.trainable)
        return extra

    def validation_step(self, module, batch):
        self._images.append(batch[0])
        self._keys.append(batch[1])

    def validation_end(self, module):
        images, keys = torch.cat(self._images), torch.cat(self._keys)
        self._images, self._keys = [], []
        values, _ = self.evaluate(module.student.net, images, keys)
        return values

    def results(self, module, data, history):
        images = torch.stack([data.test_set[i][0] for i in range(len(data.test_set))])
        keys = torch.stack([torch.as_tensor(data.test_set[i][1]) for i in range(len(data.test_set))])
        values, seconds = self.evaluate(module.student.net, images.to(module.device),
                                        keys.to(module.device), timed=True)
        return {**values, "rsum_best": max(history),
                "latency_i2t_us": round(1e6 * seconds["i2t"] / len(images), 2),
                "latency_t2i_us": round(1e6 * seconds["t2i"] / len(self.texts), 2)}

    @torch.no_grad()
    def evaluate(self, net, images: torch.Tensor, image_keys: torch.Tensor, timed: bool = False):
        """R@K both ways over the gallery, and the seconds each direction took to rank (the
        gallery side embedded beforehand, as an index would be). ``timed``: each query is encoded
        again inside the timed part, as a new query would be; otherwise the embeddings already
        computed are reused (the per-epoch validation)."""
        was_training = net.training
        net.eval()
        texts, text_keys = self.texts.to(images.device), self.text_keys.to(images.device)
        encode = lambda fn, x: torch.cat([fn(x[i:i + self.chunk])  # noqa: E731
                                          for i in range(0, len(x), self.chunk)])
        gallery_texts, gallery_images = encode(net.encode_texts, texts), \
            encode(net.encode_images, images)
        sides = None
        if net.fused:  # the gallery's tokens, as an index keeps them
            text_parts = [net.text_side(texts[i:i + self.chunk])
                          for i in range(0, len(texts), self.chunk)]
            sides = (encode(net.image_side, images), torch.cat([p[0] for p in text_parts]),
                     torch.cat([p[1] for p in text_parts]))
        values, seconds = {}, {}
        for direction, queries, q_keys, gallery, g_keys, encoder, embedded in (
                ("i2t", images, image_keys, gallery_texts, text_keys, net.encode_images,
                 gallery_images),
                ("t2i", texts, text_keys, gallery_images, image_keys, net.encode_texts,
                 gallery_texts)):
            started = time.perf_counter()

            def scores(rows, queries=queries, gallery=gallery, encoder=encoder,
                       direction=direction, embedded=embedded):
                query = encoder(queries[rows]) if timed else embedded[rows]
                coarse = query @ gallery.T
                if not net.fused:
                    return coarse
                return self._rerank(net, coarse, rows, sides, direction)

            hits = hit_rates(scores, len(queries), q_keys, g_keys, KS, self.chunk)
            seconds[direction] = time.perf_counter() - started
            values.update({f"{direction}_r{k}": round(v, 4) for k, v in hits.items()})
        values["rsum"] = round(sum(values[f"{d}_r{k}"] for d in ("i2t", "t2i") for k in KS), 4)
        net.train(was_training)
        return values, seconds

    def _rerank(self, net, coarse, rows, sides, direction):
        """Scores in which each query's top ``rerank`` coarse candidates carry their joint score
        and all others rank below them."""
        top = coarse.topk(min(self.rerank, coarse.shape[1]), dim=1).indices
        q = torch.arange(rows.start, rows.stop, device=coarse.device)
        q = q.repeat_interleave(top.shape[1])
        c = top.flatten()
        image_rows, text_rows = (q, c) if direction == "i2t" else (c, q)
        joint = torch.cat([net.joint(sides, image_rows[i:i + 4096], text_rows[i:i + 4096])
                           for i in range(0, len(c), 4096)])
        out = torch.full_like(coarse, float("-inf"))
        out.scatter_(1, top, joint.view(top.shape))
        return out
