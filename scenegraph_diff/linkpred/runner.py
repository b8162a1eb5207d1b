"""The link-prediction experiment runner: config -> per-seed JSON -> markdown table + summary.

Layout of an output folder::

    OUT/<row>/seed_<s>.json   config, metrics (test), val_metrics, best_epoch, val_history, timings, versions
    OUT/<row>/summary.json    {metric: {"mean", "std", "n"}} over the finished seeds of the row
    OUT/summary.json          {row: {metric: {"mean", "std", "n"}}}
    OUT/results.md            one table: rows x metrics, "mean ± std" (n seeds)

* Model selection uses the validation split only: every ``eval_every`` epochs the validation metric
  ``select_metric`` is computed; the best state is kept; test metrics are computed once, at the end,
  for that state. ``patience`` evaluations without improvement stop training early.
* Resume: a (row, seed) whose JSON exists with the same row config is skipped; a JSON with a
  different config is an error (delete it or use another output folder).
* Distributed: under ``torchrun --nproc_per_node K`` (``WORLD_SIZE`` > 1) a process group (gloo on
  CPU, nccl with ``device: cuda``, one GPU per rank) is started, the model is wrapped in
  ``DistributedDataParallel`` and each rank trains on its share of every batch (gradients are
  averaged, so one step matches a single-process step on the whole batch); every rank evaluates the
  same full graph and only rank 0 writes files.
* Parallel seeds: ``jobs > 1`` runs that many (row, seed) pairs at a time in spawned processes (each
  with ``threads`` threads); the per-seed records are the same as a one-process sweep writes.
* Randomness: the split and negatives come from ``torch.Generator`` seeded with the run's seed; parameter
  init and dropout use the global RNG inside ``torch.random.fork_rng`` seeded with it (restored after).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import nn

from .config import LinkPredConfig, ModelConfig

__all__ = ["run_sweep", "run_seed", "fit", "aggregate", "load_task_data", "markdown_table", "resolve_device"]

logger = logging.getLogger(__name__)


def _versions() -> dict[str, str]:
    import numpy
    import torch_geometric

    from .. import __version__

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_geometric": torch_geometric.__version__,
        "numpy": numpy.__version__,
        "scenegraph_diff": __version__,
    }


def resolve_device(spec: str) -> torch.device:
    """``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"`` -> a concrete ``torch.device``.

    ``auto`` picks CUDA when available; under ``torchrun`` a bare ``cuda`` means ``cuda:LOCAL_RANK``.
    Raises ``RuntimeError`` naming the value when CUDA is asked for but not available.
    """
    from ..devices import resolve_device as _resolve

    device = _resolve(spec)
    if spec in ("cuda", "auto") and device.type == "cuda" and "LOCAL_RANK" in os.environ:
        device = _resolve(f"cuda:{int(os.environ['LOCAL_RANK'])}")
    return device


def _dist() -> tuple[int, int]:
    """(rank, world size) of an initialised process group, else (0, 1)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def fit(task: Any, m: ModelConfig, select_metric: str, seed: int, rank: int = 0, world: int = 1,
        on_epoch: Callable[[int, float], None] | None = None) -> dict[str, Any]:
    """Train ``task.model`` with early stopping on validation; return metrics and timings.

    ``select_metric`` must be a key of ``task.evaluate(...)``; larger is better.
    """
    model: nn.Module = task.model
    if world > 1:
        dev = next(iter(model.parameters()), torch.empty(0)).device
        model = nn.parallel.DistributedDataParallel(  # hetero layers may skip some parameters
            model, device_ids=[dev.index] if dev.type == "cuda" else None, find_unused_parameters=True)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(task.param_groups(model), weight_decay=m.weight_decay) if params else None
    gen = torch.Generator().manual_seed(seed * 1000 + 17 + rank)  # batches/negatives (per rank)
    order_gen = torch.Generator().manual_seed(seed * 1000 + 7)  # batch order (same on every rank)
    epochs = 0 if opt is None else m.epochs
    ema = None
    if m.ema_decay > 0 and epochs:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        ema = AveragedModel(task.model, multi_avg_fn=get_ema_multi_avg_fn(m.ema_decay), use_buffers=True)
    evaluated = task.model if ema is None else ema.module  # the weights that are validated, kept and tested
    best_val: dict[str, float] | None = None
    best_state: dict[str, torch.Tensor] | None = None
    best_epoch, bad, epochs_run = -1, 0, 0
    val_history: list[dict[str, float]] = []  # {"epoch", <validation metrics>} per evaluation (no test numbers)
    epoch_times: list[float] = []
    eval_time = 0.0
    for epoch in range(epochs):
        model.train()
        t0 = time.perf_counter()
        last = math.nan
        for batch in task.batches(order_gen):
            loss = task.loss(model, batch, gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if ema is not None:
                ema.update_parameters(task.model)
            last = float(loss.detach())
        epoch_times.append(time.perf_counter() - t0)
        epochs_run = epoch + 1
        if on_epoch is not None:
            on_epoch(epoch, last)
        if (epoch + 1) % m.eval_every and epoch + 1 != epochs:
            continue
        evaluated.eval()  # the unwrapped model or its EMA copy (evaluation needs no DDP)
        t1 = time.perf_counter()
        val = task.evaluate(evaluated, "val")
        eval_time += time.perf_counter() - t1
        val_history.append({"epoch": epoch, **val})
        if select_metric not in val:
            raise ValueError(f"select_metric {select_metric!r} not among the validation metrics {sorted(val)}")
        if best_val is None or val[select_metric] > best_val[select_metric]:
            best_val, best_epoch, bad = val, epoch, 0
            best_state = copy.deepcopy(evaluated.state_dict())
        else:
            bad += 1
            if m.patience and bad >= m.patience:
                logger.info("early stop at epoch %d (best %d)", epoch, best_epoch)
                break
    if best_state is not None:
        task.model.load_state_dict(best_state)
    model.eval()
    t1 = time.perf_counter()
    if best_val is None:
        best_val = task.evaluate(model, "val")
    test = task.evaluate(model, "test")
    eval_time += time.perf_counter() - t1
    return {
        "metrics": test,
        "val_metrics": best_val,
        "best_epoch": best_epoch,
        "val_history": val_history,
        "epochs_run": epochs_run,
        "timings": {
            "epoch_s_median": statistics.median(epoch_times) if epoch_times else 0.0,
            "train_s": sum(epoch_times),
            "eval_s": eval_time,
        },
    }


def load_task_data(cfg: LinkPredConfig, data_root: str | Path | None) -> Any:
    """Load the dataset of ``cfg`` once for all rows and seeds."""
    from .data import default_data_root, load_imdb, load_planetoid

    root = Path(data_root) if data_root is not None else default_data_root()
    if cfg.task == "planetoid":
        return load_planetoid(cfg.dataset, root)
    if cfg.task == "imdb":
        if cfg.dataset != "IMDB":
            raise ValueError(f"task imdb supports dataset 'IMDB', got {cfg.dataset!r}")
        return load_imdb(root)
    from .vrd import load_vrd

    if cfg.dataset != "VRD":
        raise ValueError(f"task vrd supports dataset 'VRD', got {cfg.dataset!r}")
    return {"train": load_vrd(root, "train"), "test": load_vrd(root, "test")}


def run_seed(cfg: LinkPredConfig, m: ModelConfig, data: Any, seed: int) -> dict[str, Any]:
    """Build the task for (row, seed), train it, and return the per-seed record (not yet written)."""
    from .tasks import TASK_CLASSES

    rank, world = _dist()
    device = resolve_device(cfg.device)
    t0 = time.perf_counter()
    with torch.random.fork_rng(devices=[device.index] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        task = TASK_CLASSES[cfg.task].build(cfg, m, data, seed, rank, world, device=device)
        out = fit(task, m, cfg.select_metric, seed, rank, world)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    out["timings"]["total_s"] = time.perf_counter() - t0
    return {
        "model": m.name,
        "seed": seed,
        "task": cfg.task,
        "dataset": cfg.dataset,
        "config": _row_config(cfg, m),
        **out,
        "world_size": world,
        "threads": torch.get_num_threads(),
        "device": str(device) + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""),
        "versions": _versions(),
    }


def _row_config(cfg: LinkPredConfig, m: ModelConfig) -> dict[str, Any]:
    """What must match for a finished seed to be reused: the sweep settings (minus the row list and
    seeds) and this row's settings."""
    d = cfg.to_dict()
    d.pop("models")
    d.pop("seeds")
    d.pop("threads")
    d.pop("device")
    d.pop("report")
    d["model"] = m.__dict__.copy()
    return json.loads(json.dumps(d))


def _same_config(have: dict[str, Any], want: dict[str, Any]) -> bool:
    """Equal, except that settings added to the configs after ``have`` was written count as equal
    when ``want`` holds their default value (old result files stay reusable)."""
    defaults = {f.name: f.default for f in dataclasses.fields(ModelConfig)}
    sweep_defaults = {f.name: f.default for f in dataclasses.fields(LinkPredConfig) if f.default is not dataclasses.MISSING}
    have = {**{k: v for k, v in want.items() if k not in have and k != "model" and v == _jsonable(sweep_defaults.get(k))}, **have}
    hm = have.get("model", {})
    hm = {**{k: v for k, v in want["model"].items() if k not in hm and v == _jsonable(defaults.get(k))}, **hm}
    return {**have, "model": hm} == want


def _jsonable(v: Any) -> Any:
    return json.loads(json.dumps(v))


def _atomic_json(path: Path, obj: Any) -> None:
    tmp = path.with_suffix(path.suffix + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def _stats(values: list[float]) -> dict[str, float]:
    n = len(values)
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if n > 1 else 0.0, "n": n}


def aggregate(out_dir: str | Path, rows: list[str] | None = None, columns: tuple[str, ...] = ()) -> dict[str, dict[str, dict[str, float]]]:
    """Summarise the seed files of every row: writes ``<row>/summary.json``, ``summary.json`` and
    ``results.md`` and returns ``{row: {metric: {"mean", "std", "n"}}}``."""
    out = Path(out_dir)
    if rows is None:
        rows = sorted(p.name for p in out.iterdir() if p.is_dir())
    summary: dict[str, dict[str, dict[str, float]]] = {}
    for row in rows:
        files = sorted((out / row).glob("seed_*.json"))
        recs = [json.loads(f.read_text()) for f in files]
        if not recs:
            continue
        metrics: dict[str, list[float]] = {}
        for r in recs:
            for k, v in r["metrics"].items():
                metrics.setdefault(k, []).append(float(v))
            metrics.setdefault("epoch_s", []).append(float(r["timings"]["epoch_s_median"]))
            metrics.setdefault("total_s", []).append(float(r["timings"]["total_s"]))
        summary[row] = {k: _stats(v) for k, v in metrics.items()}
        _atomic_json(out / row / "summary.json", summary[row])
    _atomic_json(out / "summary.json", summary)
    (out / "results.md").write_text(markdown_table(summary, columns))
    return summary


def markdown_table(summary: Mapping[str, Mapping[str, Mapping[str, float]]], columns: tuple[str, ...] = ()) -> str:
    """``| row | metric ... | n |`` with ``mean ± std`` cells (AUC/AP as fractions, others in %).

    ``columns`` selects and orders the metrics (default: all, in first-seen order)."""
    if not summary:
        return "(no finished runs)\n"
    cols: list[str] = list(columns)
    if not cols:
        for s in summary.values():
            for k in s:
                if k not in cols:
                    cols.append(k)
    lines = ["| model | " + " | ".join(cols) + " | seeds |", "|---" * (len(cols) + 2) + "|"]
    for row, s in summary.items():
        cells = []
        for c in cols:
            if c not in s:
                cells.append("—")
                continue
            mean, std = s[c]["mean"], s[c]["std"]
            prec = 4 if c.endswith("auc") or c.endswith("ap") else 2
            cells.append(f"{mean:.{prec}f} ± {std:.{prec}f}")
        n = max(int(v["n"]) for v in s.values())
        lines.append(f"| {row} | " + " | ".join(cells) + f" | {n} |")
    return "\n".join(lines) + "\n"


_POOL_DATA: Any = None  # the dataset, in a worker process of a ``jobs > 1`` sweep


def _pool_init(data: Any, threads: int) -> None:
    global _POOL_DATA
    _POOL_DATA = data
    torch.set_num_threads(threads)
    _die_with_parent()


def _die_with_parent() -> None:
    """Linux: have the kernel send SIGTERM to this worker when the sweep process dies (a killed sweep
    must not leave workers training); elsewhere, nothing."""
    import signal
    import sys

    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except OSError:
            pass


def _pool_run(cfg: LinkPredConfig, m: ModelConfig, seed: int) -> dict[str, Any]:
    return run_seed(cfg, m, _POOL_DATA, seed)


def run_sweep(cfg: LinkPredConfig, out_dir: str | Path, data_root: str | Path | None = None,
              progress: bool = True, only: list[str] | None = None, data: Any = None,
              jobs: int = 1) -> dict[str, dict[str, dict[str, float]]]:
    """Run every (row, seed) not finished yet, then aggregate. Returns the summary.

    Args:
        cfg: the sweep.
        out_dir: output folder (created).
        data_root: dataset root (default ``../shared/datasets``).
        progress: tqdm bar on stderr (rank 0).
        only: restrict to these row names.
        data: an already loaded dataset (as :func:`load_task_data` returns it) instead of reading
            ``data_root``.
        jobs: run this many (row, seed) pairs at a time, each in its own (spawned) process with
            ``cfg.threads`` threads. A seed's result does not depend on ``jobs``: every run seeds its
            own RNGs. Not combinable with ``torchrun``.
    """
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    from tqdm.auto import tqdm

    _maybe_init_distributed(cfg.device)
    rank, world = _dist()
    out = Path(out_dir)
    rows = [m for m in cfg.models if only is None or m.name in only]
    if only is not None and len(rows) != len(set(only)):
        raise ValueError(f"unknown row(s) in only={only}; have {[m.name for m in cfg.models]}")
    todo = []
    for m in rows:
        (out / m.name).mkdir(parents=True, exist_ok=True)
    # Seed-major order: an interrupted sweep leaves every row with the same finished seeds.
    for s in cfg.seeds:
        for m in rows:
            want = _row_config(cfg, m)
            path = out / m.name / f"seed_{s}.json"
            if path.exists():
                try:
                    have = json.loads(path.read_text())["config"]
                except (json.JSONDecodeError, KeyError):
                    have = None
                if have is None:
                    logger.warning("%s is unreadable: re-running it", path)
                elif not _same_config(have, want):
                    raise ValueError(f"{path} was produced by a different config; delete it or use another output folder")
                else:
                    logger.info("skip %s (finished)", path)
                    continue
            todo.append((m, s, path))
    if jobs > 1 and world > 1:
        raise ValueError(f"jobs={jobs} cannot be combined with torchrun (WORLD_SIZE={world}): use one or the other")
    old = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        if todo and data is None:
            data = load_task_data(cfg, data_root)
        if jobs > 1 and len(todo) > 1:
            _run_pool(cfg, todo, data, jobs, progress)
            return aggregate(out, [m.name for m in cfg.models], cfg.report)
        bar = tqdm(todo, desc=f"linkpred {cfg.dataset}", disable=not progress or rank != 0)
        for m, s, path in bar:
            bar.set_postfix_str(f"{m.name} seed {s}")
            rec = run_seed(cfg, m, data, s)
            if rank == 0:
                _atomic_json(path, rec)
                logger.info("%s seed %d: %s", m.name, s, {k: round(v, 4) for k, v in rec["metrics"].items()})
            if world > 1:
                torch.distributed.barrier()
    finally:
        torch.set_num_threads(old)
    return aggregate(out, [m.name for m in cfg.models], cfg.report) if rank == 0 else {}


def _run_pool(cfg: LinkPredConfig, todo: list, data: Any, jobs: int, progress: bool) -> None:
    """Run ``todo`` ((row, seed, path) triples) in ``jobs`` spawned processes; write each record as it ends."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    from tqdm.auto import tqdm

    bar = tqdm(total=len(todo), desc=f"linkpred {cfg.dataset} ({jobs} jobs)", disable=not progress)
    with ProcessPoolExecutor(min(jobs, len(todo)), mp_context=multiprocessing.get_context("spawn"),
                             initializer=_pool_init, initargs=(data, cfg.threads)) as ex:
        futures = {ex.submit(_pool_run, cfg, m, s): (m, s, path) for m, s, path in todo}
        pending, error = set(futures), None
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                m, s, path = futures[fut]
                if fut.cancelled():
                    continue
                if fut.exception() is not None:  # stop queued runs; let running ones finish and be written
                    if error is None:
                        error = fut.exception()
                        for p in pending:
                            p.cancel()
                    continue
                rec = fut.result()
                _atomic_json(path, rec)
                bar.update(1)
                bar.set_postfix_str(f"{m.name} seed {s}")
                logger.info("%s seed %d: %s", m.name, s, {k: round(v, 4) for k, v in rec["metrics"].items()})
    bar.close()
    if error is not None:
        raise error


def _maybe_init_distributed(device: str = "cpu") -> None:
    """Under ``torchrun``: a process group, nccl when the sweep runs on CUDA, else gloo."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.distributed.is_initialized():
        cuda = resolve_device(device).type == "cuda"
        if cuda:
            torch.cuda.set_device(resolve_device(device))
        torch.distributed.init_process_group("nccl" if cuda else "gloo")
