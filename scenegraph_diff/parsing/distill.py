"""Distil the accurate parser into the fast BiLSTM default: train the learned parser on FACTUAL's gold labels
and on the accurate parser's output distributions.

    python -m scenegraph_diff.parsing.distill --teacher scenegraph_diff/assets/parser-accurate \\
        --data-root ../shared/datasets [--out DIR] [--epochs 8] [--alpha 0.5]

The student (:class:`~.model.SceneGraphTagger`) is trained on the teacher's fit split of FACTUAL train (the
same seeded split as :mod:`.train_accurate`, so the held-out part stays unseen) with the teacher's
predicate vocabulary and normalisation tables. For every caption the teacher gives, on the gold mentions
(teacher-forced, as the student is trained): tag distributions per token, the attribute -> mention
distribution of every gold attribute, and the top-``k`` predicate distribution of every ordered mention
pair. The loss is ``(1 - alpha) * gold CE + alpha * CE against the teacher`` for each of the three heads.
The relation threshold is chosen on the held-out part; FACTUAL dev is scored once at the end, for the record.

Training runs on the shared :class:`~scenegraph_diff.training.Trainer` (AdamW, cosine schedule, clipping).
``--checkpoint DIR``: trainer checkpoints every ``--checkpoint-every`` steps, and a run resumes from the newest
one in ``DIR``. Under ``torchrun --nproc_per_node N`` each process labels and trains on its shard of the fit
captions (``--batch-size`` per process); process 0 alone evaluates and writes.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from .accurate import AccurateParser
from .align import TAGS, align
from .factual import read_factual_csv
from .learned import DEFAULT_WEIGHTS, Featurizer, LearnedParser, TaggerConfig, _prefix
from .model import SceneGraphTagger
from .model import _prefix as _torch_prefix
from .train import _example, collate
from .trainkit import (
    EpochBatches, LossModel, add_recipe_flags, check_config, default_data_root, finish_run, heldout_split,
    loss_step, run_cli, start_run, steps_per_epoch, summary_line,
)

__all__ = ["DistillConfig", "teacher_targets", "distill", "main"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistillConfig:
    """Settings of one distillation run (see the module docstring)."""

    teacher: str
    data_root: str = field(default_factory=default_data_root)
    out: str = str(DEFAULT_WEIGHTS)
    epochs: int = 8
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-5
    hidden: int = 128
    dropout: float = 0.3
    alpha: float = 0.5
    top_k: int = 5
    seed: int = 0
    threads: int = 1
    limit: int | None = None
    checkpoint: str | None = None  # folder of trainer checkpoints (resumed from when it holds one)
    checkpoint_every: int = 500
    device: str = "cpu"

    def __post_init__(self) -> None:
        check_config(self, ("epochs", "batch_size", "hidden", "top_k", "threads", "checkpoint_every"))
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"DistillConfig.alpha must be in [0, 1], got {self.alpha}")


def _softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(-1, keepdims=True)
    np.exp(x, out=x)
    x /= x.sum(-1, keepdims=True)
    return x


def teacher_targets(teacher: AccurateParser, examples: Sequence[dict[str, Any]], top_k: int = 5,
                    batch_size: int = 256) -> None:
    """Add the teacher's distributions on the gold spans to each training example, in place:
    ``soft_tags [T, len(TAGS)]``, ``soft_attr`` (one ``[mentions]`` row per attribute) and ``soft_rel``
    (``(indices [k], probabilities [k])`` per ordered mention pair, in :func:`.train.collate` 's order)."""
    net = teacher.network()
    order = sorted(range(len(examples)), key=lambda i: len(examples[i]["words"]))
    for s in range(0, len(order), batch_size):
        idx = order[s : s + batch_size]
        batch = [examples[i] for i in idx]
        h = teacher._states(net, [e["words"] for e in batch])
        tags = _softmax(net.tag_logits(h))
        prefix = _prefix(h)
        for b, e in enumerate(batch):
            e["soft_tags"] = tags[b, : len(e["words"])].astype(np.float32)
            e["soft_attr"], e["soft_rel"] = [], []
            k = len(e["mentions"])
            if not k:
                continue
            mb = np.full(k, b, dtype=np.int64)
            ms = np.array([m[0] for m in e["mentions"]], dtype=np.int64)
            me = np.array([m[1] for m in e["mentions"]], dtype=np.int64)
            mvec = net.mention(net.span_states(h, prefix, mb, ms, me))
            if e["attributes"]:
                ab = np.full(len(e["attributes"]), b, dtype=np.int64)
                as_ = np.array([a[0] for a in e["attributes"]], dtype=np.int64)
                ae = np.array([a[1] for a in e["attributes"]], dtype=np.int64)
                q = net.attr_query(net.span_states(h, prefix, ab, as_, ae))
                scores = net.attr_scores(q, np.broadcast_to(mvec, (len(ab), k, mvec.shape[-1])))
                e["soft_attr"] = list(_softmax(scores))
            pairs = [(i, j) for i in range(k) for j in range(k) if i != j]
            if pairs:
                p1 = np.array([i for i, _ in pairs], dtype=np.int64)
                p2 = np.array([j for _, j in pairs], dtype=np.int64)
                logits = net.pair_logits(h, prefix, np.full(len(pairs), b, dtype=np.int64), ms[p1], me[p1],
                                         ms[p2], me[p2], mvec[p1], mvec[p2])
                probs = _softmax(logits)
                top = np.argsort(-probs, axis=-1)[:, :top_k]
                e["soft_rel"] = [(t, probs[r, t].astype(np.float32)) for r, t in enumerate(top)]


def _soft_collate(examples: Sequence[dict[str, Any]], featurizer: Featurizer, top_k: int) -> dict[str, Tensor]:
    batch = collate(examples, featurizer)
    B, T = batch["tags"].shape
    soft_tags = torch.zeros(B, T, len(TAGS))
    attr_rows, rel_idx, rel_p = [], [], []
    for b, e in enumerate(examples):
        soft_tags[b, : len(e["words"])] = torch.from_numpy(e["soft_tags"])
        attr_rows += e["soft_attr"]
        for t, p in e["soft_rel"]:
            rel_idx.append(t)
            rel_p.append(p)
    M = batch["acand"].shape[1]
    soft_attr = torch.zeros(len(attr_rows), M)
    for r, row in enumerate(attr_rows):
        soft_attr[r, : len(row)] = torch.from_numpy(np.asarray(row, dtype=np.float32))
    batch["soft_tags"] = soft_tags
    batch["soft_attr"] = soft_attr
    batch["soft_rel_idx"] = torch.from_numpy(np.array(rel_idx, dtype=np.int64).reshape(-1, top_k))
    batch["soft_rel_p"] = torch.from_numpy(np.array(rel_p, dtype=np.float32).reshape(-1, top_k))
    return batch


def distill_step(model: SceneGraphTagger, batch: dict[str, Tensor], alpha: float) -> dict[str, Tensor]:
    """``(1 - alpha)`` x gold CE + ``alpha`` x CE against the teacher, summed over the three heads."""
    ce = nn.functional.cross_entropy
    h = model.encode(batch["word_ids"], batch["char_ids"], batch["offsets"], batch["lengths"])
    logp = model.tagger(h).log_softmax(-1)  # [B, T, 5]
    valid = batch["tags"] >= 0
    tag_gold = ce(logp.flatten(0, 1), batch["tags"].flatten(), ignore_index=-100)
    tag_soft = -(batch["soft_tags"] * logp).sum(-1)[valid].mean()
    out = {"tag": tag_gold.detach(), "tag_kd": tag_soft.detach()}
    loss = (1 - alpha) * tag_gold + alpha * tag_soft
    if batch["mb"].numel():
        prefix = _torch_prefix(h)
        mvec = model.mention(model.span_states(h, prefix, batch["mb"], batch["ms"], batch["me"]))
        if batch["ab"].numel():
            q = model.attr_query(model.span_states(h, prefix, batch["ab"], batch["as"], batch["ae"]))
            scores = model.attr_scores(q, mvec[batch["acand"]]).masked_fill(~batch["avalid"], -1e4)
            lp = scores.log_softmax(-1)
            a_gold = ce(scores, batch["atgt"])
            a_soft = -(batch["soft_attr"] * lp).sum(-1).mean()
            loss = loss + (1 - alpha) * a_gold + alpha * a_soft
            out["attr"] = a_gold.detach()
        if batch["pb"].numel():
            p1, p2 = batch["p1"], batch["p2"]
            logits = model.pair_logits(h, prefix, batch["pb"], batch["ms"][p1], batch["me"][p1], batch["ms"][p2],
                                       batch["me"][p2], mvec[p1], mvec[p2])
            lp = logits.log_softmax(-1)
            r_gold = ce(logits, batch["plab"])
            r_soft = -(batch["soft_rel_p"] * lp.gather(1, batch["soft_rel_idx"])).sum(-1).mean()
            loss = loss + (1 - alpha) * r_gold + alpha * r_soft
            out["rel"] = r_gold.detach()
            out["rel_kd"] = r_soft.detach()
    out["loss"] = loss
    return out


def distill(cfg: DistillConfig) -> dict[str, Any] | None:
    """Run the recipe of the module docstring; returns the summary also written to ``config.json``
    (``None`` on the ranks other than 0 under ``torchrun``)."""
    from ..training import TrainConfig, Trainer, shard_for_rank

    rank, world, t0 = start_run(cfg.device, cfg.threads, "DistillConfig.device")
    teacher = AccurateParser.from_pretrained(cfg.teacher)
    tcfg_json = json.loads((Path(cfg.teacher) / "config.json").read_text(encoding="utf-8"))
    tc = tcfg_json.get("metrics", {}).get("train_config", {})
    root = Path(cfg.data_root) / "factual"
    rows = read_factual_csv(root / "train.csv")
    if tc.get("limit") is not None:
        rows = rows[: tc["limit"]]
    fit, held = heldout_split(rows, int(tc.get("holdout", 2000)), int(tc.get("seed", 0)))  # the teacher's split
    if cfg.limit is not None:
        fit = fit[: cfg.limit]
    vocab = teacher.vocab
    pred_index = {p: i for i, p in enumerate(vocab.predicates)}
    examples = [e for e in (_example(align(r.caption, r.graph), pred_index, vocab) for r in fit) if e is not None]
    shard = shard_for_rank(examples)
    t_label = time.time()
    teacher_targets(teacher, shard, cfg.top_k)
    log.info("teacher targets for %d captions in %.0f s", len(shard), time.time() - t_label)
    config = TaggerConfig(num_words=len(vocab.words), num_predicates=len(vocab.predicates) - 1, hidden=cfg.hidden,
                          dropout=cfg.dropout)
    torch.manual_seed(cfg.seed)
    model = SceneGraphTagger(config)
    featurizer = Featurizer(vocab, config.char_buckets)
    per_epoch = steps_per_epoch(len(examples), cfg.batch_size, world)
    batches = EpochBatches(shard, cfg.batch_size, cfg.seed, lambda b: _soft_collate(b, featurizer, cfg.top_k),
                           per_epoch)
    tcfg = TrainConfig(max_steps=cfg.epochs * per_epoch, lr=cfg.lr, weight_decay=cfg.weight_decay,
                       schedule="cosine", warmup_steps=min(200, per_epoch), grad_clip=5.0,
                       num_threads=cfg.threads, seed=cfg.seed, log_every=100, progress=sys.stderr.isatty(),
                       device=cfg.device, output_dir=cfg.checkpoint, checkpoint_every=cfg.checkpoint_every,
                       ddp_find_unused_parameters=True)
    trainer = Trainer(LossModel(model, partial(distill_step, alpha=cfg.alpha)), loss_step, tcfg)
    t_train = time.time()
    history = trainer.fit(batches, resume=cfg.checkpoint is not None)
    train_s = time.time() - t_train
    if rank != 0:
        return None
    model.eval().to("cpu")
    parser = LearnedParser(model, vocab)
    return finish_run(parser, held, cfg.data_root, cfg.out, {
        "teacher": str(cfg.teacher), "fit_captions": len(fit), "heldout_captions": len(held), "steps": trainer.step,
        "final_loss": history[-1]["loss"] if history else None, "train_seconds": round(train_s, 1),
        "threads": cfg.threads, "world_size": world, "train_config": asdict(cfg)}, t0)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (see the module docstring; runs under ``torchrun`` too)."""
    p = argparse.ArgumentParser(
        prog="python -m scenegraph_diff.parsing.distill", description=__doc__.split("\n")[0],
        epilog="Runs on the shared Trainer, alone or under `torchrun --nproc_per_node N` (gloo on CPU, nccl on "
               "CUDA); new with that move: --checkpoint, --checkpoint-every and --device.")
    p.add_argument("--teacher", required=True, help="folder of an accurate parser")
    d = DistillConfig(teacher="")
    add_recipe_flags(p, d, ("epochs", "hidden", "top_k", "seed", "threads"), ("lr", "weight_decay", "dropout", "alpha"))
    return run_cli(p, argv, lambda a: DistillConfig(**a), distill, summary_line)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
