"""The one training loop shared by every model: a model supplies a *step*, this module does the rest.

Every trainable part of the library (graph diffusion, relation rectification, the shapes model, ...)
is trained by :class:`Trainer`: optimizer, learning-rate schedule, gradient clipping, an EMA copy
of the weights, safetensors checkpoints with bit-exact resume, a tqdm progress bar, logging, and
data-parallel training when launched under ``torchrun``.

API::

    from scenegraph_diff.training import TrainConfig, Trainer

    def step_fn(model, batch, generator) -> dict[str, Tensor]:
        # ``model`` is the (possibly DDP-wrapped) model: call ``model(...)`` so DDP syncs gradients.
        # ``generator`` is the trainer's torch.Generator (on the training device): use it for noise.
        x, y = batch
        mse = (model(x) - y).pow(2).mean()
        return {"loss": mse, "mse": mse}   # "loss" is back-propagated; every entry is logged

    config = TrainConfig(max_steps=1000, lr=1e-3, schedule="cosine", warmup_steps=50,
                         grad_clip=1.0, ema_decay=0.999, output_dir="runs/demo", checkpoint_every=200)
    trainer = Trainer(model, step_fn, config)
    history = trainer.fit(batches)              # list[dict[str, float]], one entry per step
    history = trainer.fit(batches, resume=True) # after a crash: continue from the last checkpoint
    trainer.ema_model                           # the EMA copy (None when ema_decay is None)
    plot_history(history, "runs/demo/loss.png")

``batches`` is either

* a re-iterable (a list, a ``DataLoader``, a PyG ``DataLoader``): it is cycled until ``max_steps``;
  a one-shot iterator simply ends training when it is exhausted. On resume the first ``step``
  batches are skipped, so a deterministic iterable gives a bit-exact continuation; or
* a callable ``batches(step: int, generator: torch.Generator) -> batch`` (synthetic data drawn with
  the trainer's generator, whose state is checkpointed, so resume is bit-exact too).

Batches are moved to the training device (tensors, ``Data``/``HeteroData``, and dicts/lists/tuples
of them); anything else is passed through untouched.

Checkpoints (``output_dir/checkpoint-00000200/``, written to a temporary folder and renamed, so a
crash never leaves a half-written checkpoint): ``model.safetensors``, ``ema.safetensors``,
``optimizer.safetensors`` (optimizer state flattened to ``state.<param index>.<name>`` tensors) and
``trainer_state.json`` (step, config, history, RNG states, training seconds so far). Nothing is pickled. The newest
``max_checkpoints`` are kept. :func:`load_weights` loads a checkpoint's (EMA) weights into a model.

Distributed data parallel: under ``torchrun`` (``WORLD_SIZE`` > 1 in the environment) the trainer
initialises the process group (``gloo`` on CPU, ``nccl`` on CUDA; one GPU per ``LOCAL_RANK``),
wraps the model in ``DistributedDataParallel``, seeds each rank's generator with ``seed + rank``,
averages the logged losses over ranks, and logs/checkpoints on rank 0 only. Give each rank its own
data with :func:`shard_for_rank`.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import json
import logging
import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import (
    Any,
    Callable,
    Iterable,
    Iterator,
    Literal,
    Mapping,
    Sequence,
    TypeVar,
    Union,
)

import torch
from torch import Tensor, nn

logger = logging.getLogger(__name__)

__all__ = [
    "TrainConfig",
    "Trainer",
    "StepFn",
    "shard_for_rank",
    "distributed_env",
    "latest_checkpoint",
    "load_weights",
    "plot_history",
]

StepFn = Callable[[nn.Module, Any, torch.Generator], Mapping[str, Tensor]]
PathLike = Union[str, "os.PathLike[str]"]
T = TypeVar("T")

_CHECKPOINT_PREFIX = "checkpoint-"
# Config fields that may change between a run and its resumption (they do not change the math).
_RESUMABLE_FIELDS = frozenset(
    {"max_steps", "log_every", "checkpoint_every", "max_checkpoints", "output_dir", "progress", "num_threads", "device"}
)


@dataclass(frozen=True)
class TrainConfig:
    """Settings of :class:`Trainer`.

    Args:
        max_steps: number of optimizer steps.
        lr: peak learning rate.
        weight_decay: weight decay (decoupled for ``"adamw"``, L2 for ``"adam"``). (default: ``0.0``)
        optimizer: ``"adamw"`` or ``"adam"``.
        betas: Adam betas.
        eps: Adam epsilon.
        schedule: ``"constant"``, ``"cosine"`` (to ``min_lr_ratio * lr`` at ``max_steps``) or
            ``"exponential"`` (``lr * lr_gamma ** k`` after warm-up, ``k`` counted in steps).
        warmup_steps: linear warm-up from ``lr / warmup_steps`` to ``lr`` (any schedule).
        min_lr_ratio: final learning rate of the cosine schedule, as a fraction of ``lr``.
        lr_gamma: per-step decay factor of the exponential schedule.
        grad_clip: max global gradient L2 norm; ``None`` disables clipping.
        ema_decay: decay of the exponential moving average of the weights; ``None`` disables EMA.
        ema_warmup: use ``min(ema_decay, (1 + t) / (10 + t))`` so the EMA tracks early training.
        log_every: log (``logging.INFO``) every this many steps.
        checkpoint_every: checkpoint every this many steps (and always at the end); ``None``: only
            at the end. No checkpoints at all when ``output_dir`` is ``None``.
        max_checkpoints: how many of the newest checkpoints to keep (``None``: keep all).
        output_dir: folder for checkpoints.
        seed: seed of the :class:`torch.Generator` passed to the step (``seed + rank`` under DDP).
        num_threads: torch intra-op threads during :meth:`Trainer.fit` (restored afterwards).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"`` (CUDA when available).
        progress: show a tqdm progress bar on stderr (rank 0 only).
        ddp_find_unused_parameters: passed to ``DistributedDataParallel`` (set it when some
            parameters get no gradient in a step).
    """

    max_steps: int = 1000
    lr: float = 1e-3
    weight_decay: float = 0.0
    optimizer: Literal["adamw", "adam"] = "adamw"
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    schedule: Literal["constant", "cosine", "exponential"] = "constant"
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0
    lr_gamma: float = 1.0
    grad_clip: float | None = None
    ema_decay: float | None = None
    ema_warmup: bool = False
    log_every: int = 50
    checkpoint_every: int | None = None
    max_checkpoints: int | None = 3
    output_dir: str | None = None
    seed: int = 0
    num_threads: int = 1
    device: str = "cpu"
    progress: bool = True
    ddp_find_unused_parameters: bool = False

    def __post_init__(self) -> None:
        def bad(field: str, why: str) -> ValueError:
            return ValueError(f"TrainConfig.{field}={getattr(self, field)!r}: {why}")

        if self.max_steps < 1:
            raise bad("max_steps", "must be >= 1")
        if not self.lr > 0:
            raise bad("lr", "must be > 0")
        if self.weight_decay < 0:
            raise bad("weight_decay", "must be >= 0")
        if self.optimizer not in ("adamw", "adam"):
            raise bad("optimizer", "expected 'adamw' or 'adam'")
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise bad("betas", "expected two values in [0, 1)")
        object.__setattr__(self, "betas", (float(self.betas[0]), float(self.betas[1])))
        if self.schedule not in ("constant", "cosine", "exponential"):
            raise bad("schedule", "expected 'constant', 'cosine' or 'exponential'")
        if self.warmup_steps < 0:
            raise bad("warmup_steps", "must be >= 0")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise bad("min_lr_ratio", "must be in [0, 1]")
        if not 0.0 < self.lr_gamma <= 1.0:
            raise bad("lr_gamma", "must be in (0, 1]")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise bad("grad_clip", "must be > 0 or None")
        if self.ema_decay is not None and not 0.0 < self.ema_decay < 1.0:
            raise bad("ema_decay", "must be in (0, 1) or None")
        if self.log_every < 1:
            raise bad("log_every", "must be >= 1")
        if self.checkpoint_every is not None and self.checkpoint_every < 1:
            raise bad("checkpoint_every", "must be >= 1 or None")
        if self.max_checkpoints is not None and self.max_checkpoints < 1:
            raise bad("max_checkpoints", "must be >= 1 or None")
        if self.output_dir is not None:
            object.__setattr__(self, "output_dir", os.fspath(self.output_dir))
        if self.num_threads < 1:
            raise bad("num_threads", "must be >= 1")
        if not (self.device in ("cpu", "cuda", "auto") or self.device.startswith("cuda:")):
            raise bad("device", "expected 'cpu', 'cuda', 'cuda:N' or 'auto'")

    def lr_at(self, step: int) -> float:
        """Learning rate of the optimizer step with 0-based index ``step``."""
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        k = step - self.warmup_steps
        if self.schedule == "constant":
            return self.lr
        if self.schedule == "exponential":
            return self.lr * self.lr_gamma**k
        span = max(1, self.max_steps - self.warmup_steps)
        cos = 0.5 * (1.0 + math.cos(math.pi * min(k, span) / span))
        return self.lr * (self.min_lr_ratio + (1.0 - self.min_lr_ratio) * cos)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        return d


# ---------------------------------------------------------------------------------------------
# Distributed helpers
# ---------------------------------------------------------------------------------------------


def distributed_env() -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` from the ``torchrun`` environment (``(0, 1, 0)`` otherwise)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", str(rank)))
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"bad distributed environment: RANK={rank!r}, WORLD_SIZE={world!r}")
    return rank, world, local


def shard_for_rank(data: Sequence[T], rank: int | None = None, world_size: int | None = None) -> Sequence[T]:
    """The ``rank``-th of ``world_size`` interleaved shards of ``data`` (items ``rank::world_size``).

    Defaults come from :func:`distributed_env`. Lists, tuples and tensors are sliced; any other
    sequence (a PyG ``Dataset``, a ``torch.utils.data.Dataset``) is indexed with a list of indices
    when it supports it, else wrapped in a ``torch.utils.data.Subset``.
    """
    env_rank, env_world, _ = distributed_env()
    rank = env_rank if rank is None else rank
    world_size = env_world if world_size is None else world_size
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"shard_for_rank: bad rank={rank!r} for world_size={world_size!r}")
    if isinstance(data, (list, tuple, Tensor)):
        return data[rank::world_size]
    indices = list(range(rank, len(data), world_size))
    pyg_data = sys.modules.get("torch_geometric.data")  # a PyG dataset implies PyG is imported already
    if pyg_data is not None and isinstance(data, pyg_data.Dataset):
        return data.index_select(indices)  # type: ignore[return-value]
    from torch.utils.data import Subset

    return Subset(data, indices)  # type: ignore[arg-type,return-value]


def _move_to(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, Tensor) or (hasattr(batch, "to") and hasattr(batch, "__dict__") and not isinstance(batch, nn.Module)):
        try:
            return batch.to(device)
        except TypeError:
            return batch
    if isinstance(batch, Mapping):
        return type(batch)({k: _move_to(v, device) for k, v in batch.items()})  # type: ignore[call-arg]
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):
        return type(batch)(*(_move_to(v, device) for v in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(_move_to(v, device) for v in batch)
    return batch


# ---------------------------------------------------------------------------------------------
# Checkpoint I/O (safetensors + JSON, no pickle)
# ---------------------------------------------------------------------------------------------


def _state_tensors(module: nn.Module) -> dict[str, Tensor]:
    # clone(): safetensors refuses tensors that share storage (tied weights).
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in module.state_dict().items()}


def _save_tensors(tensors: Mapping[str, Tensor], path: Path) -> None:
    from safetensors.torch import save_file

    save_file(dict(tensors), str(path))


def _load_tensors(path: Path) -> dict[str, Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


def _flatten_optimizer(optimizer: torch.optim.Optimizer) -> tuple[dict[str, Tensor], dict[str, Any]]:
    tensors: dict[str, Tensor] = {}
    scalars: dict[str, Any] = {}
    for idx, state in optimizer.state_dict()["state"].items():
        for name, value in state.items():
            key = f"state.{idx}.{name}"
            if isinstance(value, Tensor):
                tensors[key] = value.detach().to("cpu").contiguous().clone()
            elif isinstance(value, (int, float, bool)) or value is None:
                scalars[key] = value
            else:
                raise TypeError(f"optimizer state {key!r} has unsupported type {type(value).__name__}")
    return tensors, scalars


def _unflatten_optimizer(tensors: Mapping[str, Tensor], scalars: Mapping[str, Any]) -> dict[int, dict[str, Any]]:
    state: dict[int, dict[str, Any]] = {}
    for key, value in [*tensors.items(), *scalars.items()]:
        _, idx, name = key.split(".", 2)
        state.setdefault(int(idx), {})[name] = value
    return state


def _encode_rng(state: Tensor) -> str:
    return base64.b64encode(state.cpu().numpy().tobytes()).decode("ascii")


def _decode_rng(text: str) -> Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(text)), dtype=torch.uint8).clone()


def _checkpoint_step(path: Path) -> int | None:
    name = path.name
    if not name.startswith(_CHECKPOINT_PREFIX) or not path.is_dir():
        return None
    try:
        return int(name[len(_CHECKPOINT_PREFIX):])
    except ValueError:
        return None


def latest_checkpoint(output_dir: PathLike) -> Path | None:
    """The newest complete checkpoint folder under ``output_dir`` (``None`` when there is none)."""
    root = Path(output_dir)
    if not root.is_dir():
        return None
    found = [(s, p) for p in root.iterdir() if (s := _checkpoint_step(p)) is not None]
    found = [(s, p) for s, p in found if (p / "trainer_state.json").is_file()]
    return max(found)[1] if found else None


def load_weights(model: nn.Module, checkpoint: PathLike, ema: bool = True, strict: bool = True) -> nn.Module:
    """Load a checkpoint's weights into ``model`` (in place) and return it.

    Args:
        model: a module with the architecture that was trained.
        checkpoint: a ``checkpoint-*`` folder, or an ``output_dir`` (its newest checkpoint is used).
        ema: load the EMA weights when the checkpoint has them (else the raw weights).
        strict: passed to :meth:`torch.nn.Module.load_state_dict`.
    """
    path = Path(checkpoint)
    if _checkpoint_step(path) is None:
        found = latest_checkpoint(path)
        if found is None:
            raise FileNotFoundError(f"no checkpoint found in {str(path)!r}")
        path = found
    file = path / ("ema.safetensors" if ema and (path / "ema.safetensors").is_file() else "model.safetensors")
    model.load_state_dict(_load_tensors(file), strict=strict)
    return model


# ---------------------------------------------------------------------------------------------
# Trainer
# ---------------------------------------------------------------------------------------------


class Trainer:
    r"""Train ``model`` by minimising ``step_fn(model, batch, generator)["loss"]``.

    Args:
        model: the module to train (moved to the configured device).
        step_fn: ``step_fn(model, batch, generator) -> dict[str, Tensor]`` returning scalar losses;
            ``"loss"`` is back-propagated, every entry is recorded in the history.
        config: the :class:`TrainConfig`.

    Attributes:
        model: the unwrapped model being trained.
        ema_model: the EMA copy (``None`` when ``config.ema_decay`` is ``None``), in eval mode.
        optimizer: the torch optimizer.
        generator: the :class:`torch.Generator` passed to ``step_fn`` (and to callable batches).
        step: number of optimizer steps taken so far.
        history: one dict per step: ``step``, ``lr``, the losses (averaged over ranks) and,
            with clipping, ``grad_norm`` (before clipping).
        rank, world_size: the DDP rank and world size (``0``, ``1`` when not distributed).
    """

    def __init__(self, model: nn.Module, step_fn: StepFn, config: TrainConfig) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"Trainer: model must be a torch.nn.Module, got {type(model).__name__}")
        if not callable(step_fn):
            raise TypeError(f"Trainer: step_fn must be callable, got {type(step_fn).__name__}")
        if not isinstance(config, TrainConfig):
            raise TypeError(f"Trainer: config must be a TrainConfig, got {type(config).__name__}")
        self.config = config
        self.step_fn = step_fn
        self.rank, self.world_size, self.local_rank = distributed_env()
        self.device = self._resolve_device(config.device)
        self.model = model.to(self.device)
        params = [p for p in self.model.parameters() if p.requires_grad]
        if not params:
            raise ValueError("Trainer: the model has no trainable parameters")
        opt_cls = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
        self.optimizer = opt_cls(
            params, lr=config.lr_at(0), betas=config.betas, eps=config.eps, weight_decay=config.weight_decay
        )
        self.ema_model: nn.Module | None = None
        if config.ema_decay is not None:
            self.ema_model = copy.deepcopy(self.model).eval().requires_grad_(False)
        self.generator = torch.Generator(self.device).manual_seed(config.seed + self.rank)
        self.step = 0
        self.train_seconds = 0.0  # wall-clock seconds spent in fit() over all runs (kept across resumes)
        self.history: list[dict[str, float]] = []
        self._ddp_model: nn.Module | None = None

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}({self.model.__class__.__name__}, step={self.step}, "
            f"max_steps={self.config.max_steps}, device={str(self.device)!r}, world_size={self.world_size})"
        )

    # -- setup -------------------------------------------------------------------------------

    def _resolve_device(self, device: str) -> torch.device:
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device.startswith("cuda"):
            if not torch.cuda.is_available():
                raise RuntimeError(f"TrainConfig.device={device!r} but CUDA is not available")
            if device == "cuda":
                device = f"cuda:{self.local_rank if self.world_size > 1 else torch.cuda.current_device()}"
        return torch.device(device)

    @property
    def is_main(self) -> bool:
        """Whether this process logs and writes checkpoints (rank 0)."""
        return self.rank == 0

    def _setup_distributed(self) -> bool:
        """Initialise the process group and DDP wrapper; return whether this call created the group."""
        if self.world_size == 1:
            return False
        import torch.distributed as dist
        from torch.nn.parallel import DistributedDataParallel

        created = False
        if not dist.is_initialized():
            backend = "nccl" if self.device.type == "cuda" else "gloo"
            if self.device.type == "cuda":
                torch.cuda.set_device(self.device)
            dist.init_process_group(backend=backend, rank=self.rank, world_size=self.world_size)
            created = True
        if self._ddp_model is None:
            self._ddp_model = DistributedDataParallel(
                self.model,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=self.config.ddp_find_unused_parameters,
            )
        return created

    # -- checkpoints ---------------------------------------------------------------------------

    def _gather_rng_states(self) -> list[str]:
        state = _encode_rng(self.generator.get_state())
        if self.world_size == 1:
            return [state]
        import torch.distributed as dist

        states: list[Any] = [None] * self.world_size
        dist.all_gather_object(states, state)
        return [str(s) for s in states]

    def save_checkpoint(self) -> Path | None:
        """Write a checkpoint for the current step (collective under DDP; rank 0 writes).

        Returns the checkpoint folder (``None`` without ``output_dir`` or on other ranks).
        """
        if self.config.output_dir is None:
            return None
        rng_states = self._gather_rng_states()
        path: Path | None = None
        if self.is_main:
            root = Path(self.config.output_dir)
            root.mkdir(parents=True, exist_ok=True)
            path = root / f"{_CHECKPOINT_PREFIX}{self.step:08d}"
            tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=root))
            try:
                _save_tensors(_state_tensors(self.model), tmp / "model.safetensors")
                if self.ema_model is not None:
                    _save_tensors(_state_tensors(self.ema_model), tmp / "ema.safetensors")
                opt_tensors, opt_scalars = _flatten_optimizer(self.optimizer)
                _save_tensors(opt_tensors, tmp / "optimizer.safetensors")
                state = {
                    "format": "scenegraph_diff.training/1",
                    "step": self.step,
                    "world_size": self.world_size,
                    "config": self.config.to_dict(),
                    "optimizer_scalars": opt_scalars,
                    "rng_states": rng_states,
                    "history": self.history,
                    "train_seconds": self.train_seconds,
                }
                (tmp / "trainer_state.json").write_text(json.dumps(state, indent=1, sort_keys=True))
                for f in tmp.iterdir():
                    with open(f, "rb") as fh:
                        os.fsync(fh.fileno())
                if path.exists():
                    shutil.rmtree(path)
                os.replace(tmp, path)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            self._prune_checkpoints(root)
            logger.info("saved checkpoint %s", path)
        if self.world_size > 1:
            import torch.distributed as dist

            dist.barrier()
        return path

    def _prune_checkpoints(self, root: Path) -> None:
        if self.config.max_checkpoints is None:
            return
        found = sorted((s, p) for p in root.iterdir() if (s := _checkpoint_step(p)) is not None)
        for _, p in found[: -self.config.max_checkpoints]:
            shutil.rmtree(p, ignore_errors=True)

    def load_checkpoint(self, checkpoint: PathLike) -> None:
        """Restore model, EMA, optimizer, step, history and RNG state from a checkpoint folder."""
        path = Path(checkpoint)
        state = json.loads((path / "trainer_state.json").read_text())
        saved = state["config"]
        current = self.config.to_dict()
        changed = {k for k in current if k not in _RESUMABLE_FIELDS and saved.get(k) != current[k]}
        if changed:
            diff = ", ".join(f"{k}: {saved.get(k)!r} -> {current[k]!r}" for k in sorted(changed))
            raise ValueError(f"cannot resume from {str(path)!r}: the config changed ({diff})")
        if state["world_size"] != self.world_size:
            raise ValueError(
                f"cannot resume from {str(path)!r}: saved with world_size={state['world_size']}, "
                f"running with world_size={self.world_size}"
            )
        self.model.load_state_dict(_load_tensors(path / "model.safetensors"))
        if self.ema_model is not None:
            self.ema_model.load_state_dict(_load_tensors(path / "ema.safetensors"))
        opt_state = _unflatten_optimizer(_load_tensors(path / "optimizer.safetensors"), state["optimizer_scalars"])
        groups = self.optimizer.state_dict()["param_groups"]
        self.optimizer.load_state_dict({"state": opt_state, "param_groups": groups})
        self.generator.set_state(_decode_rng(state["rng_states"][self.rank]))
        self.step = int(state["step"])
        self.history = [dict(h) for h in state["history"]]
        self.train_seconds = float(state.get("train_seconds", 0.0))
        logger.info("resumed from %s at step %d", path, self.step)

    # -- training ------------------------------------------------------------------------------

    @torch.no_grad()
    def _update_ema(self) -> None:
        assert self.ema_model is not None and self.config.ema_decay is not None
        decay = self.config.ema_decay
        if self.config.ema_warmup:
            decay = min(decay, (1 + self.step) / (10 + self.step))
        for e, p in zip(self.ema_model.parameters(), self.model.parameters()):
            e.lerp_(p.detach(), 1.0 - decay)
        for e, b in zip(self.ema_model.buffers(), self.model.buffers()):
            e.copy_(b)

    def _batch_stream(self, batches: Iterable[Any] | Callable[[int, torch.Generator], Any]) -> Iterator[Any]:
        if callable(batches) and not isinstance(batches, Iterable):
            step = self.step
            while True:
                yield batches(step, self.generator)
                step += 1
        skip = self.step
        while True:
            it = iter(batches)
            one_shot = it is batches
            empty = True
            for batch in it:
                empty = False
                if skip > 0:
                    skip -= 1
                    continue
                yield batch
            if empty or one_shot:
                return

    def _reduce(self, values: Tensor) -> Tensor:
        if self.world_size == 1:
            return values
        import torch.distributed as dist

        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
        return values / self.world_size

    def fit(
        self,
        batches: Iterable[Any] | Callable[[int, torch.Generator], Any],
        resume: bool = False,
    ) -> list[dict[str, float]]:
        """Train until ``config.max_steps`` and return the history (one dict per step).

        Args:
            batches: a (re-)iterable of batches, or ``batches(step, generator) -> batch``.
            resume: continue from the newest checkpoint in ``config.output_dir`` (a fresh start
                when there is none).
        """
        cfg = self.config
        if resume and cfg.output_dir is None:
            raise ValueError("fit(resume=True) needs TrainConfig.output_dir")
        prev_threads = torch.get_num_threads()
        torch.set_num_threads(cfg.num_threads)
        created_group = self._setup_distributed()
        try:
            if resume:
                found = latest_checkpoint(cfg.output_dir)  # type: ignore[arg-type]
                if found is not None:
                    self.load_checkpoint(found)
                elif self.is_main:
                    logger.info("no checkpoint in %s: starting from scratch", cfg.output_dir)
            self._train(batches)
        finally:
            torch.set_num_threads(prev_threads)
            if created_group:
                import torch.distributed as dist

                # Drop the DDP wrapper first: its reducer tears down against the live group. Dropping
                # it after destroy_process_group hung rank 1 at times (faulthandler stack in the
                # two-process test).
                self._ddp_model = None
                dist.destroy_process_group()
        return self.history

    def _train(self, batches: Iterable[Any] | Callable[[int, torch.Generator], Any]) -> None:
        cfg = self.config
        train_model = self._ddp_model if self._ddp_model is not None else self.model
        self.model.train()
        bar = None
        if cfg.progress and self.is_main and self.step < cfg.max_steps:
            from tqdm.auto import tqdm

            bar = tqdm(total=cfg.max_steps, initial=self.step, desc="train", file=sys.stderr, dynamic_ncols=True)
        last_saved = -1
        try:
            stream = self._batch_stream(batches)
            while self.step < cfg.max_steps:
                tick = time.perf_counter()
                try:
                    batch = next(stream)
                except StopIteration:
                    logger.warning("batches exhausted after %d of %d steps", self.step, cfg.max_steps)
                    break
                record = self._train_step(train_model, _move_to(batch, self.device))
                self.train_seconds += time.perf_counter() - tick
                self.history.append(record)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{record['loss']:.4g}", refresh=False)
                if self.is_main and (self.step % cfg.log_every == 0 or self.step == cfg.max_steps):
                    logger.info(
                        "step %d/%d: %s",
                        self.step,
                        cfg.max_steps,
                        ", ".join(f"{k}={v:.5g}" for k, v in record.items() if k != "step"),
                    )
                if cfg.checkpoint_every is not None and self.step % cfg.checkpoint_every == 0:
                    self.save_checkpoint()
                    last_saved = self.step
            if last_saved != self.step:
                self.save_checkpoint()
        finally:
            if bar is not None:
                bar.close()

    def _train_step(self, train_model: nn.Module, batch: Any) -> dict[str, float]:
        cfg = self.config
        lr = cfg.lr_at(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.zero_grad(set_to_none=True)
        out = self.step_fn(train_model, batch, self.generator)
        if not isinstance(out, Mapping) or "loss" not in out:
            got = sorted(out) if isinstance(out, Mapping) else type(out).__name__
            raise KeyError(f"step_fn must return a dict of scalar tensors with a 'loss' key, got {got}")
        loss = out["loss"]
        if not isinstance(loss, Tensor) or loss.numel() != 1:
            raise ValueError(f"step_fn's 'loss' must be a scalar tensor, got {loss!r}")
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite loss {loss.item()} at step {self.step}")
        loss.backward()
        record: dict[str, float] = {"step": self.step + 1, "lr": lr}
        names = list(out)
        values = torch.stack([out[k].detach().float().reshape(()) for k in names])
        extras: list[str] = []
        if cfg.grad_clip is not None:
            params = [p for g in self.optimizer.param_groups for p in g["params"]]
            norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            extras.append("grad_norm")
            values = torch.cat([values, norm.detach().float().reshape(1).to(values.device)])
        self.optimizer.step()
        self.step += 1
        if self.ema_model is not None:
            self._update_ema()
        values = self._reduce(values).tolist()
        record.update(zip(names + extras, values))
        return record


# ---------------------------------------------------------------------------------------------
# Plotting
# ---------------------------------------------------------------------------------------------


def plot_history(
    history: Sequence[Mapping[str, float]],
    path: PathLike,
    keys: Sequence[str] | None = None,
    log_y: bool = True,
) -> Path:
    """Save a loss-curve PNG of ``history`` (as returned by :meth:`Trainer.fit`) and return its path.

    Args:
        history: one dict per step with a ``"step"`` entry.
        path: output PNG path.
        keys: which entries to plot (default: every entry except ``step``, ``lr`` and ``grad_norm``).
        log_y: logarithmic y axis (only when all plotted values are positive).
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:  # pragma: no cover - matplotlib is a dependency
        raise ImportError("plot_history needs matplotlib: pip install matplotlib") from e
    if not history:
        raise ValueError("plot_history: empty history")
    if keys is None:
        keys = [k for k in history[0] if k not in ("step", "lr", "grad_norm")]
    missing = [k for k in keys if k not in history[0]]
    if missing:
        raise KeyError(f"plot_history: keys {missing} not in history (have {sorted(history[0])})")
    fig = Figure(figsize=(6, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    steps = [h["step"] for h in history]
    positive = True
    for k in keys:
        ys = [h[k] for h in history]
        positive = positive and all(y > 0 for y in ys)
        ax.plot(steps, ys, label=k)
    if log_y and positive:
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend()
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    return out
