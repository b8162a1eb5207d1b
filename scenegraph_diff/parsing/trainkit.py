"""Pieces shared by the parser training recipes (:mod:`.train`, :mod:`.train_accurate`, :mod:`.distill`).

All three train through the shared :class:`~scenegraph_diff.training.Trainer`; this module holds what they
have in common around it:

* :class:`LossModel`: the tagger and its loss in one module, so that the whole loss runs in ``forward``
  (what ``DistributedDataParallel`` needs under ``torchrun``); :func:`loss_step` is the trainer step;
* :class:`EpochBatches`: seeded epoch-wise shuffled batches (``batches(step, generator)`` for the trainer),
  and :func:`steps_per_epoch`, the same count on every rank;
* :class:`ScaledAdamW` / :func:`use_lr_scales`: parameter groups whose learning rates are fixed multiples of
  the trainer's schedule (the accurate parser's encoder and heads);
* :func:`heldout_split` (the seeded fit / held-out split of FACTUAL train), :func:`evaluate` and
  :func:`pick_threshold` (the relation threshold chosen on held-out captions);
* :func:`fit_in_minutes`: fit a wall-time budget by shortening the schedule after timing the first steps;
* :func:`start_run` / :func:`finish_run`: a recipe's first and last lines (device and threads; threshold,
  dev score, save);
* :func:`run_cli`: the common command-line tail (one-line errors, the data check, the JSON summary).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import random
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence, TypeVar

import torch
from torch import Tensor, nn

from .factual import graph_to_string
from .metrics import score_graph_strings

__all__ = [
    "default_data_root", "heldout_split", "LossModel", "loss_step", "steps_per_epoch", "EpochBatches",
    "ScaledAdamW", "use_lr_scales", "evaluate", "pick_threshold", "fit_in_minutes", "checkpoint_dir", "check_config",
    "start_run",
    "finish_run", "add_recipe_flags", "summary_line", "run_cli",
]

log = logging.getLogger(__name__)

T = TypeVar("T")
THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7)


def default_data_root() -> str:
    """``../shared/datasets`` relative to the repository (when present), else relative to the working folder."""
    repo_side = Path(__file__).resolve().parents[2].parent / "shared" / "datasets"
    return str(repo_side) if repo_side.is_dir() else "../shared/datasets"


def heldout_split(rows: Sequence[T], holdout: int, seed: int) -> tuple[list[T], list[T]]:
    """``(fit, held)``: ``holdout`` rows drawn with ``random.Random(seed)`` are held out, the rest fit
    (the split of :mod:`.train_accurate`, which :mod:`.distill` repeats so the held-out part stays unseen)."""
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    return [rows[i] for i in order[holdout:]], [rows[i] for i in order[:holdout]]


class LossModel(nn.Module):
    """A tagger and its loss as one module: ``forward(batch)`` returns ``loss(net, batch)`` (a dict of
    scalar tensors with a ``"loss"`` entry). Under ``torchrun`` the trainer wraps this module in
    ``DistributedDataParallel``, whose gradient sync needs the whole loss computed inside ``forward``.

    Args:
        net: the network being trained (its weights are this module's, under ``net.``).
        loss: ``loss(net, batch) -> dict[str, Tensor]``.
    """

    def __init__(self, net: nn.Module, loss: Callable[[nn.Module, Any], Mapping[str, Tensor]]) -> None:
        super().__init__()
        self.net = net
        self._loss = loss

    def forward(self, batch: Any) -> Mapping[str, Tensor]:  # noqa: D102
        return self._loss(self.net, batch)


def loss_step(model: nn.Module, batch: Any, generator: torch.Generator) -> Mapping[str, Tensor]:
    """The :class:`~scenegraph_diff.training.Trainer` step for a (possibly DDP-wrapped) :class:`LossModel`."""
    return model(batch)


def steps_per_epoch(num_items: int, batch_size: int, world_size: int = 1) -> int:
    """Batches per epoch of each rank's shard (``num_items // world_size`` items, the smallest shard), so that
    every rank takes the same number of steps; ``ceil(num_items / batch_size)`` on one process.

    Raises:
        ValueError: fewer items than ranks.
    """
    per_rank = num_items // world_size
    if per_rank < 1:
        raise ValueError(f"{num_items} training examples cannot be shared by {world_size} processes")
    return math.ceil(per_rank / batch_size)


class EpochBatches:
    """``batches(step, generator) -> batch`` over epochs of a seeded shuffle: epoch ``e`` permutes the items
    with ``torch.Generator().manual_seed(seed * 1000 + e)`` and step ``k`` of it collates items
    ``[k * batch_size, (k + 1) * batch_size)`` of that permutation (only the newest permutation is kept).

    Args:
        items: this rank's training examples.
        batch_size: examples per batch.
        seed: the run's seed.
        collate: ``collate(list of examples) -> batch``.
        per_epoch: steps per epoch (default ``ceil(len(items) / batch_size)``; see :func:`steps_per_epoch`).
    """

    def __init__(self, items: Sequence[Any], batch_size: int, seed: int, collate: Callable[[list[Any]], Any],
                 per_epoch: int | None = None) -> None:
        if not items:
            raise ValueError("EpochBatches: no training examples")
        self.items, self.batch_size, self.seed, self.collate = items, batch_size, seed, collate
        self.per_epoch = per_epoch if per_epoch is not None else math.ceil(len(items) / batch_size)
        self._perm: tuple[int, list[int]] | None = None

    def __call__(self, step: int, generator: torch.Generator | None = None) -> Any:  # noqa: D102
        epoch, k = divmod(step, self.per_epoch)
        if self._perm is None or self._perm[0] != epoch:
            g = torch.Generator().manual_seed(self.seed * 1000 + epoch)
            self._perm = (epoch, torch.randperm(len(self.items), generator=g).tolist())
        idx = self._perm[1][k * self.batch_size : (k + 1) * self.batch_size]
        return self.collate([self.items[i] for i in idx])


class ScaledAdamW(torch.optim.AdamW):
    """AdamW whose parameter groups may carry an ``lr_scale``: each step uses ``lr * lr_scale`` (the trainer
    sets every group's ``lr`` to its schedule's value; decoupled weight decay scales with it, as it would with
    a per-group learning rate)."""

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # noqa: D102
        base = [g["lr"] for g in self.param_groups]
        for g in self.param_groups:
            g["lr"] = g["lr"] * g.get("lr_scale", 1.0)
        try:
            return super().step(closure)
        finally:
            for g, lr in zip(self.param_groups, base):
                g["lr"] = lr


def use_lr_scales(trainer: Any, groups: Sequence[tuple[Sequence[nn.Parameter], float]]) -> None:
    """Replace ``trainer.optimizer`` (before :meth:`~scenegraph_diff.training.Trainer.fit`) by a
    :class:`ScaledAdamW` with one group per ``(parameters, lr_scale)`` and the trainer config's betas, eps and
    weight decay. The groups must hold exactly the trainer's trainable parameters.

    Raises:
        ValueError: the trainer is not an AdamW run, has stepped already, or the groups do not match.
    """
    cfg = trainer.config
    if cfg.optimizer != "adamw":
        raise ValueError(f"use_lr_scales needs TrainConfig.optimizer='adamw', got {cfg.optimizer!r}")
    if trainer.step:
        raise ValueError("use_lr_scales: call it before training starts")
    own = [p for g in trainer.optimizer.param_groups for p in g["params"]]
    given = [p for params, _ in groups for p in params]
    if len(given) != len(own) or {id(p) for p in given} != {id(p) for p in own}:
        raise ValueError("use_lr_scales: the groups must hold exactly the trainer's trainable parameters")
    trainer.optimizer = ScaledAdamW(
        [{"params": list(params), "lr_scale": float(scale)} for params, scale in groups],
        lr=cfg.lr_at(0), betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay)


def evaluate(parser: Any, captions: Sequence[str], golds: Sequence[str], official: bool | None = None) -> dict:
    """FACTUAL scores (:func:`~.metrics.score_graph_strings`, as a dict) of ``parser`` on ``captions``."""
    graphs = parser.parse_batch(list(captions))
    return score_graph_strings([graph_to_string(g) for g in graphs], golds, official=official).to_dict()


def pick_threshold(parser: Any, rows: Sequence[Any], label: str = "held-out") -> dict[str, dict[str, float]]:
    """Set ``parser.relation_threshold`` to the best of 0.3 ... 0.7 on ``rows`` (FACTUAL rows) by SPICE F +
    Set Match (exact-match metric; ties prefer 0.5, then the larger threshold). Returns the scores per
    threshold (``{"0.5": {"spice_f": ..., "set_match": ...}, ...}``); no rows: the threshold stays."""
    caps, golds = [r.caption for r in rows], [r.graph for r in rows]
    best = None
    scores: dict[str, dict[str, float]] = {}
    if not rows:
        return scores
    for thr in THRESHOLDS:
        parser.relation_threshold = thr
        s = evaluate(parser, caps, golds, official=False)
        scores[str(thr)] = {"spice_f": s["spice_f"], "set_match": s["set_match"]}
        log.info("%s threshold %.1f: SPICE(exact) %.2f set match %.2f", label, thr, s["spice_f"], s["set_match"])
        key = (s["spice_f"] + s["set_match"], thr == 0.5)
        if best is None or key > best[0]:
            best = (key, thr)
    parser.relation_threshold = best[1]  # type: ignore[index]
    return scores


def _agreed_rate(trainer: Any, steps: int, seconds: float) -> float:
    """Steps per second, the slowest rank's under DDP (so every rank picks the same schedule)."""
    rate = steps / max(seconds, 1e-6)
    if trainer.world_size == 1:
        return rate
    import torch.distributed as dist

    t = torch.tensor([rate], dtype=torch.float64, device=trainer.device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return float(t.item())


def fit_in_minutes(trainer: Any, batches: Callable[[int, Any], Any], resume: bool, seconds_left: Callable[[], float],
                   timing_steps: int = 50) -> list[dict[str, float]]:
    """``trainer.fit(batches, resume)`` within a wall-time budget: train ``timing_steps`` steps, measure the
    rate (the slowest rank's), shorten ``max_steps`` to what ``seconds_left()`` allows at that rate (never
    lengthen it), then train the rest. The schedule (warm-up, decay) follows the new ``max_steps`` from there;
    keep ``timing_steps`` within the warm-up for a schedule that does not depend on the budget at all.
    """
    cfg = trainer.config
    rate: list[float] = []

    def timed() -> Iterator[Any]:
        start, sec0 = trainer.step, trainer.train_seconds
        for _ in range(start):
            yield None  # the trainer skips the first `step` batches of an iterable (a resumed run)
        for s in range(start, min(start + timing_steps, cfg.max_steps)):
            yield batches(s, trainer.generator)
        rate.append(_agreed_rate(trainer, trainer.step - start, trainer.train_seconds - sec0))
        log.info("timing: %.3f steps/s over %d steps (the run stops here to fit its schedule into the "
                 "budget, then continues)", rate[0], trainer.step - start)

    trainer.fit(timed(), resume=resume)
    if trainer.step >= cfg.max_steps:
        return trainer.history
    fits = max(trainer.step + int(rate[0] * seconds_left()), trainer.step + 1)
    if fits < cfg.max_steps:
        log.info("%.2f steps/s: schedule shortened from %d to %d steps", rate[0], cfg.max_steps, fits)
        trainer.config = dataclasses.replace(cfg, max_steps=fits)
    return trainer.fit(batches)


def checkpoint_dir(path: str | None) -> str | None:
    """Check a ``--checkpoint`` value: a folder of trainer checkpoints (``None`` passes).

    Raises:
        ValueError: ``path`` is an existing file (the old single-file checkpoint format).
    """
    if path is not None and Path(path).is_file():
        raise ValueError(f"--checkpoint {path}: a file; it names a folder of trainer checkpoints now")
    return path


def check_config(cfg: Any, at_least_one: Sequence[str], positive: Sequence[str] = ("lr",),
                 non_negative: Sequence[str] = ()) -> None:
    """A recipe config's ``__post_init__`` checks: the ``at_least_one`` fields are >= 1, ``positive`` > 0,
    ``non_negative`` >= 0 (``None`` values pass); and, where the config has them, ``checkpoint``
    (:func:`checkpoint_dir`) and ``device``.

    Raises:
        ValueError: the first failed check (``"<Config>.<field> must be ..., got <value>"``).
    """
    name = type(cfg).__name__
    for fields, ok, what in ((at_least_one, lambda v: v >= 1, ">= 1"), (positive, lambda v: v > 0, "> 0"),
                             (non_negative, lambda v: v >= 0, ">= 0")):
        for k in fields:
            v = getattr(cfg, k)
            if v is not None and not ok(v):
                raise ValueError(f"{name}.{k} must be {what}, got {v}")
    if hasattr(cfg, "checkpoint"):
        checkpoint_dir(cfg.checkpoint)
    if hasattr(cfg, "device"):
        from ..devices import check_device

        check_device(cfg.device, f"{name}.device")


def start_run(device: str, threads: int, what: str) -> tuple[int, int, float]:
    """A recipe's first lines: check ``device`` (named ``what``), set the torch CPU threads; returns
    ``(rank, world_size, start time)``.

    Raises:
        RuntimeError: CUDA asked for but not available (before any work is done).
    """
    from ..devices import resolve_device
    from ..training import distributed_env

    resolve_device(device, what)
    rank, world, _ = distributed_env()
    t0 = time.time()
    torch.set_num_threads(threads)
    return rank, world, t0


def finish_run(parser: Any, held: Sequence[Any], data_root: str, out: str, metrics: Mapping[str, Any],
               t0: float) -> dict[str, Any]:
    """A recipe's last lines (rank 0): pick the relation threshold on the ``held`` rows, score FACTUAL dev
    once (the record, not used for any choice), save the parser to ``out`` with the summary and return it:
    ``{"metrics": {"dev", "heldout", **metrics, "total_seconds"}}``."""
    from .factual import read_factual_csv

    held_scores = pick_threshold(parser, held)
    dev_rows = read_factual_csv(Path(data_root) / "factual" / "dev.csv")
    dev = evaluate(parser, [r.caption for r in dev_rows], [r.graph for r in dev_rows])
    summary = {"metrics": {"dev": dev, "heldout": held_scores, **metrics, "total_seconds": round(time.time() - t0, 1)}}
    parser.save_pretrained(out, extra=summary)
    log.info("dev: SPICE F %.2f, Set Match %.2f (official: %s); wrote %s in %.0f s", dev["spice_f"],
             dev["set_match"], dev["official"], out, time.time() - t0)
    return summary


def add_recipe_flags(p: argparse.ArgumentParser, defaults: Any, ints: Sequence[str], floats: Sequence[str]) -> None:
    """The flags the recipes share, defaults from the config ``defaults``: ``--data-root``, ``--out``, one
    ``--<field>`` per name in ``ints`` / ``floats``, ``--batch-size``, ``--limit``, ``--checkpoint DIR``,
    ``--checkpoint-every`` and ``--device``."""
    p.add_argument("--data-root", default=defaults.data_root, help="folder with factual/{train,dev}.csv")
    p.add_argument("--out", default=defaults.out, help="output folder of the parser")
    for names, kind in ((ints, int), (floats, float)):
        for name in names:
            p.add_argument("--" + name.replace("_", "-"), type=kind, default=getattr(defaults, name))
    p.add_argument("--batch-size", type=int, default=defaults.batch_size,
                   help="captions per step (per process under torchrun)")
    p.add_argument("--limit", type=int, default=None, help="use only the first N training captions")
    p.add_argument("--checkpoint", default=None, metavar="DIR",
                   help="folder of trainer checkpoints (safetensors); a run resumes from the newest one in it")
    p.add_argument("--checkpoint-every", type=int, default=defaults.checkpoint_every, help="steps between checkpoints")
    p.add_argument("--device", default=defaults.device, help="training device: cpu (default), cuda, cuda:N or auto")


def summary_line(metrics: Mapping[str, Any], cfg: Any) -> dict[str, Any]:
    """The JSON line the recipes print: dev SPICE F / Set Match, training seconds, output folder."""
    return {"dev_spice_f": metrics["dev"]["spice_f"], "dev_set_match": metrics["dev"]["set_match"],
            "train_seconds": metrics["train_seconds"], "out": cfg.out}


def run_cli(parser: argparse.ArgumentParser, argv: Sequence[str] | None, make_config: Callable[[dict], Any],
            run: Callable[[Any], dict[str, Any] | None], report: Callable[[dict[str, Any], Any], dict]) -> int:
    """The recipes' command-line tail: parse ``argv``, build the config (``make_config(vars(args))``),
    check the device and ``data_root/factual/train.csv``, run, print ``report(summary, config)`` as JSON
    (rank 0 only). Bad input: one ``error: ...`` line on stderr and exit status 2."""
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cfg = make_config(vars(args))
        if getattr(cfg, "device", None) is not None:
            from ..devices import resolve_device

            resolve_device(cfg.device, "--device")
        from ..training import distributed_env

        distributed_env()
    except (ValueError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    train_csv = Path(cfg.data_root) / "factual" / "train.csv"
    if not train_csv.is_file():
        print(f"error: {train_csv} not found (--data-root)", file=sys.stderr)
        return 2
    try:
        summary = run(cfg)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if summary is not None:  # rank 0
        print(json.dumps(report(summary["metrics"], cfg)))
    return 0
