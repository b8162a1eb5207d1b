"""Train the learned parser on FACTUAL train and write its bundled weights.

    python -m scenegraph_diff.parsing.train --data-root ../shared/datasets [--out DIR] [--epochs N]

Steps: align every gold graph to its caption's tokens (:mod:`.align`; the share of exactly aligned
captions is reported), build the vocabularies and normalisation tables, train
:class:`~.learned.SceneGraphTagger` with the shared :class:`~scenegraph_diff.training.Trainer`
(AdamW, cosine schedule, gradient clipping, one CPU thread by default), pick the relation threshold on
dev, score dev with FACTUAL's metric and save ``model.safetensors`` + ``config.json`` + ``vocab.json``
(``config.json`` records the dev scores, the data sizes and the wall time of the run).

Under ``torchrun --nproc_per_node N`` (gloo on CPU, nccl on CUDA) each process trains on its shard of
the captions with ``--batch-size`` captions per step; process 0 scores and writes the weights.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import Tensor, nn

from .align import Alignment, align
from .factual import read_factual_csv
from .learned import COPY, DEFAULT_WEIGHTS, MAX_SEQ, Featurizer, LearnedParser, TaggerConfig, Vocab, predicate_words
from .model import SceneGraphTagger, _prefix
from .trainkit import (
    EpochBatches, LossModel, check_config, default_data_root, evaluate, loss_step, pick_threshold, run_cli, start_run,
)
from .trainkit import steps_per_epoch as _steps_per_epoch

__all__ = ["ParserTrainConfig", "train_parser", "build_vocab", "head_losses", "main"]

log = logging.getLogger(__name__)


_default_data_root = default_data_root  # (the old name)


@dataclass(frozen=True)
class ParserTrainConfig:
    """Settings of one training run.

    ``device``: training device (``"cpu"`` default: the bundled weights are reproducible; ``"cuda"``,
    ``"cuda:N"`` or ``"auto"``). Parsing after training (the dev scores) always runs the numpy network on CPU.
    """

    data_root: str = field(default_factory=_default_data_root)
    out: str = str(DEFAULT_WEIGHTS)
    epochs: int = 8
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-5
    min_word_count: int = 2
    seed: int = 0
    threads: int = 1
    limit: int | None = None  # use only the first N training captions (quick runs)
    hidden: int = 128
    dropout: float = 0.3
    device: str = "cpu"

    def __post_init__(self) -> None:
        check_config(self, ("epochs", "batch_size", "min_word_count", "threads", "hidden"))


def _majority_forms(pairs: Sequence[tuple[str, str]]) -> dict[str, str]:
    """surface -> gold label, where the most frequent gold label of a surface form differs from it."""
    by_surface: dict[str, Counter] = defaultdict(Counter)
    for surface, gold in pairs:
        by_surface[surface][gold] += 1
    out = {}
    for surface, c in by_surface.items():
        gold, n = c.most_common(1)[0]
        if gold != surface and n > c.get(surface, 0):
            out[surface] = gold
    return out


def _known(labels: Sequence[str], min_count: int = 3) -> dict[str, int]:
    """Labels seen at least ``min_count`` times -> count (most frequent first)."""
    c = Counter(labels)
    return {k: n for k, n in sorted(c.items(), key=lambda kv: (-kv[1], kv[0])) if n >= min_count}


def build_vocab(alignments: Sequence[Alignment], min_word_count: int = 2) -> Vocab:
    """Words (count >= ``min_word_count``), predicates (all aligned ones) and normalisation tables."""
    counts = Counter(t.lower for a in alignments for t in a.tokens)
    words = ["<pad>", "<unk>"] + sorted(w for w, c in counts.items() if c >= min_word_count)
    # Verb lemmas: predicate words vs the caption words between the two mentions, position by position.
    pairs = []
    for a in alignments:
        ws, in_m, in_a = _masks(a)
        for m1, m2, p in a.relations:
            picked = _picked(a, ws, in_m, in_a, m1, m2)
            pw = p.split()
            if len(picked) == len(pw):
                # Same first two letters: inflections and typos ("sitting" -> "sit"), not paraphrases.
                pairs += [(ws[k], w) for k, w in zip(picked, pw) if ws[k][:2] == w[:2]]
    vocab = Vocab(
        words=words,
        predicates=[],
        name_forms=_majority_forms([f for a in alignments for f in a.name_forms]),
        attribute_forms=_majority_forms([f for a in alignments for f in a.attribute_forms]),
        verb_lemmas=_majority_forms(pairs),
        known_names=_known([n for a in alignments for n in a.mention_names]),
        known_attributes=_known([g for a in alignments for *_, g in a.attributes]),
    )
    preds = Counter(p for a in alignments for _, _, p in a.relations)
    vocab.predicates = ["<none>"] + sorted(preds, key=lambda p: (-preds[p], p)) + [COPY]
    return vocab


def _masks(a: Alignment) -> tuple[list[str], list[bool], list[bool]]:
    ws = [t.lower for t in a.tokens]
    in_m, in_a = [False] * len(ws), [False] * len(ws)
    for s, e in a.mentions:
        in_m[s:e] = [True] * (e - s)
    for s, e, _, _ in a.attributes:
        in_a[s:e] = [True] * (e - s)
    return ws, in_m, in_a


def _picked(a: Alignment, ws: list[str], in_m: list[bool], in_a: list[bool], m1: int, m2: int) -> list[int]:
    (s1, e1), (s2, e2) = a.mentions[m1], a.mentions[m2]
    return predicate_words(ws, in_m, in_a, min(e1, e2), max(s1, s2))


def copy_candidate(vocab: Vocab, a: Alignment, m1: int, m2: int) -> str:
    """The lemmatised words between two gold mentions (what the ``<copy>`` class produces)."""
    ws, in_m, in_a = _masks(a)
    return " ".join(vocab.lemma(ws[k]) for k in _picked(a, ws, in_m, in_a, m1, m2))


def _example(al: Alignment, pred_index: dict[str, int], vocab: Vocab | None = None) -> dict[str, Any] | None:
    """Training example; with ``vocab``, relations whose predicate equals the copied words get the ``<copy>`` class."""
    n = len(al.tokens)
    if n == 0 or n > MAX_SEQ:
        return None
    rels = {}
    for a, b, p in al.relations:
        if vocab is not None and COPY in pred_index and copy_candidate(vocab, al, a, b) == p:
            rels[(a, b)] = pred_index[COPY]
        elif p in pred_index:
            rels[(a, b)] = pred_index[p]
    return {
        "words": [t.lower for t in al.tokens],
        "tags": list(al.tags),
        "mentions": list(al.mentions),
        "attributes": [(s, e, m) for s, e, m, _ in al.attributes],
        "relations": rels,
    }


def collate(examples: Sequence[dict[str, Any]], featurizer: Featurizer) -> dict[str, Tensor]:
    """Batch of training examples -> tensors (see :func:`step`)."""
    word_ids, char_ids, offsets, lengths = featurizer.batch([e["words"] for e in examples])
    B, T = word_ids.shape
    tags = torch.full((B, T), -100, dtype=torch.long)
    mb, ms, me = [], [], []
    ab, as_, ae, atgt, acand = [], [], [], [], []
    pb, p1, p2, plab = [], [], [], []
    for b, e in enumerate(examples):
        tags[b, : len(e["tags"])] = torch.tensor(e["tags"])
        base = len(mb)
        for s, en in e["mentions"]:
            mb.append(b), ms.append(s), me.append(en)
        k = len(e["mentions"])
        for s, en, m in e["attributes"]:
            ab.append(b), as_.append(s), ae.append(en), atgt.append(m), acand.append((base, k))
        for i in range(k):
            for j in range(k):
                if i != j:
                    pb.append(b), p1.append(base + i), p2.append(base + j)
                    plab.append(e["relations"].get((i, j), 0))
    M = max([c for _, c in acand], default=1)
    cand = torch.tensor([[base + min(j, c - 1) for j in range(M)] for base, c in acand], dtype=torch.long).reshape(-1, M)
    valid = (torch.arange(M).unsqueeze(0) < torch.tensor([c for _, c in acand], dtype=torch.long).reshape(-1, 1))
    t = lambda x: torch.tensor(x, dtype=torch.long)  # noqa: E731
    return {"word_ids": word_ids, "char_ids": char_ids, "offsets": offsets, "lengths": lengths, "tags": tags,
            "mb": t(mb), "ms": t(ms), "me": t(me), "ab": t(ab), "as": t(as_), "ae": t(ae), "atgt": t(atgt),
            "acand": cand, "avalid": valid, "pb": t(pb), "p1": t(p1), "p2": t(p2), "plab": t(plab)}


def step_loss(model: SceneGraphTagger, batch: dict[str, Tensor]) -> dict[str, Tensor]:
    """Loss = tag CE + attribute-link CE + relation-pair CE (teacher-forced gold mentions)."""
    h = model.encode(batch["word_ids"], batch["char_ids"], batch["offsets"], batch["lengths"])  # [B, T, H]
    return head_losses(model, h, batch)


def step(model: SceneGraphTagger, batch: dict[str, Tensor], generator: torch.Generator) -> dict[str, Tensor]:
    """:func:`step_loss` with the trainer's step signature (for an unwrapped model)."""
    return step_loss(model, batch)


def head_losses(model: nn.Module, h: Tensor, batch: dict[str, Tensor]) -> dict[str, Tensor]:
    """The three head losses on token states ``h [B, T, H]`` (any tagger with the heads of
    :class:`~.model.SceneGraphTagger`); ``loss`` is their sum."""
    tag_loss = nn.functional.cross_entropy(model.tagger(h).flatten(0, 1), batch["tags"].flatten(), ignore_index=-100)
    loss = tag_loss
    out = {"tag": tag_loss.detach()}
    if batch["mb"].numel():
        prefix = _prefix(h)
        mvec = model.mention(model.span_states(h, prefix, batch["mb"], batch["ms"], batch["me"]))  # [S, D]
        if batch["ab"].numel():
            q = model.attr_query(model.span_states(h, prefix, batch["ab"], batch["as"], batch["ae"]))  # [A, D]
            scores = model.attr_scores(q, mvec[batch["acand"]]).masked_fill(~batch["avalid"], -1e4)  # [A, M]
            attr_loss = nn.functional.cross_entropy(scores, batch["atgt"])
            loss = loss + attr_loss
            out["attr"] = attr_loss.detach()
        if batch["pb"].numel():
            p1, p2 = batch["p1"], batch["p2"]
            logits = model.pair_logits(h, prefix, batch["pb"], batch["ms"][p1], batch["me"][p1], batch["ms"][p2],
                                       batch["me"][p2], mvec[p1], mvec[p2])
            rel_loss = nn.functional.cross_entropy(logits, batch["plab"])
            loss = loss + rel_loss
            out["rel"] = rel_loss.detach()
    out["loss"] = loss
    return out


def train_parser(cfg: ParserTrainConfig) -> dict[str, Any] | None:
    """Run the whole recipe (see the module docstring); returns the summary also written to ``config.json``.

    Under ``torchrun`` each rank trains on its shard of the examples (``batch_size`` per rank) and rank 0
    alone picks the threshold, scores and saves; the other ranks return ``None``.
    """
    from ..training import TrainConfig, Trainer, shard_for_rank

    # RuntimeError before any work when CUDA is missing
    rank, world, t0 = start_run(cfg.device, cfg.threads, "ParserTrainConfig.device")
    root = Path(cfg.data_root) / "factual"
    train_rows = read_factual_csv(root / "train.csv")
    dev_rows = read_factual_csv(root / "dev.csv")
    if cfg.limit is not None:
        train_rows = train_rows[: cfg.limit]
    alignments = [align(r.caption, r.graph) for r in train_rows]
    complete = sum(a.complete for a in alignments)
    log.info("aligned %d/%d train captions exactly (%.1f%%)", complete, len(alignments), 100 * complete / len(alignments))
    vocab = build_vocab(alignments, cfg.min_word_count)
    pred_index = {p: i for i, p in enumerate(vocab.predicates)}
    examples = [e for e in (_example(a, pred_index, vocab) for a in alignments) if e is not None]
    n_rel = sum(len(e["relations"]) for e in examples)
    n_copy = sum(c == pred_index[COPY] for e in examples for c in e["relations"].values())
    log.info("%d relations, %.1f%% labelled <copy> (predicate = lemmatised words between the mentions)",
             n_rel, 100 * n_copy / max(n_rel, 1))
    config = TaggerConfig(num_words=len(vocab.words), num_predicates=len(vocab.predicates) - 1,
                          hidden=cfg.hidden, dropout=cfg.dropout)
    torch.manual_seed(cfg.seed)  # parameter init (nn.Module initialisers take no generator)
    model = SceneGraphTagger(config)
    log.info("%r", model)
    featurizer = Featurizer(vocab, config.char_buckets)
    per_epoch = _steps_per_epoch(len(examples), cfg.batch_size, world)
    batches = EpochBatches(shard_for_rank(examples), cfg.batch_size, cfg.seed, lambda b: collate(b, featurizer),
                           per_epoch)
    tcfg = TrainConfig(max_steps=cfg.epochs * per_epoch, lr=cfg.lr, weight_decay=cfg.weight_decay,
                       schedule="cosine", warmup_steps=min(200, per_epoch), grad_clip=5.0,
                       num_threads=cfg.threads, seed=cfg.seed, log_every=100, progress=sys.stderr.isatty(),
                       device=cfg.device, ddp_find_unused_parameters=world > 1)
    trainer = Trainer(LossModel(model, step_loss), loss_step, tcfg)
    t_train = time.time()
    history = trainer.fit(batches)
    train_s = time.time() - t_train
    if rank != 0:
        return None
    model.eval().to("cpu")  # the parser's numpy network copies CPU weights
    parser = LearnedParser(model, vocab)
    parser.save_pretrained(cfg.out, extra={"metrics": {"train_seconds": round(train_s, 1), "dev": None}})
    pick_threshold(parser, dev_rows, "dev")  # chosen on dev (the test split is never seen)
    scores = evaluate(parser, [r.caption for r in dev_rows], [r.graph for r in dev_rows])
    summary = {
        "metrics": {
            "dev": scores,
            "train_captions": len(train_rows),
            "train_captions_aligned_exactly": complete,
            "train_examples": len(examples),
            "steps": tcfg.max_steps,
            "final_loss": history[-1]["loss"] if history else None,
            "train_seconds": round(train_s, 1),
            "total_seconds": round(time.time() - t0, 1),
            "threads": cfg.threads,
            "train_config": asdict(cfg),
        }
    }
    parser.save_pretrained(cfg.out, extra=summary)
    log.info("dev: SPICE F %.2f, Set Match %.2f (official metric: %s); wrote %s in %.0f s",
             scores["spice_f"], scores["set_match"], scores["official"], cfg.out, time.time() - t0)
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (see the module docstring; runs under ``torchrun`` too)."""
    p = argparse.ArgumentParser(prog="python -m scenegraph_diff.parsing.train", description=__doc__.split("\n")[0])
    d = ParserTrainConfig()
    p.add_argument("--data-root", default=d.data_root, help="folder with factual/{train,dev}.csv")
    p.add_argument("--out", default=d.out, help="output folder (default: the bundled assets/parser)")
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="captions per batch (per process under torchrun)")
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--hidden", type=int, default=d.hidden)
    p.add_argument("--dropout", type=float, default=d.dropout)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--threads", type=int, default=d.threads, help="torch CPU threads (default 1)")
    p.add_argument("--limit", type=int, default=None, help="use only the first N training captions")
    p.add_argument("--device", default=d.device, help="training device: cpu (default, reproducible), cuda, cuda:N or auto")
    return run_cli(p, argv, lambda a: ParserTrainConfig(**a), train_parser,
                   lambda m, cfg: {"dev_spice_f": m["dev"]["spice_f"], "dev_set_match": m["dev"]["set_match"],
                                   "train_seconds": m["train_seconds"], "total_seconds": m["total_seconds"],
                                   "out": cfg.out})


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
