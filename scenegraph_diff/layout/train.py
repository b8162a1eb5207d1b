"""Training of the layout models (``scenegraph-diff train-layout``) on the shared
:class:`~scenegraph_diff.training.Trainer` (checkpoints, resume, EMA, DDP under ``torchrun``).

Data are a fixed list of graphs with boxes (:func:`~.data.layout_graphs`: a pool of shapes-world scenes, or a
prepared VRD split); each step draws ``batch_size`` of them (a seeded index stream per rank, so resuming is
bit-exact), gives a random subset of their boxes as known with probability ``complete_prob`` (so the model
learns completion), replaces labels by ``<unk>`` with probability ``unk_prob`` (so unseen labels get a
trained embedding), and calls the model's loss (:func:`~.regression.regression_loss` or
:func:`~.diffusion.diffusion_loss`). Training stops at ``max_steps`` or after ``max_minutes``.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import torch
from torch import Tensor, nn

from ..devices import rand
from ..graph.scene_graph import SceneGraph
from ..graph.vocab import Vocabulary
from .base import LayoutModel
from .data import SHAPES_DATA, layout_graphs

__all__ = ["TrainLayoutConfig", "MODELS", "build_layout_model", "layout_step", "train_layout"]

logger = logging.getLogger(__name__)

#: the two model kinds of ``--model``
MODELS = ("regression", "diffusion")


@dataclass(frozen=True)
class TrainLayoutConfig:
    """Settings of :func:`train_layout`.

    Args:
        output_dir: run folder (``checkpoints/``, ``model/`` with the EMA weights, ``train_info.json``).
        model: ``"regression"`` or ``"diffusion"``.
        encoder: ``"hgcn"`` or ``"rhgnn"``.
        data: ``"shapes"`` or a folder prepared by ``scenegraph-diff preprocess vrd`` (its ``train`` split).
        max_steps: optimizer steps (upper bound).
        max_minutes: wall-clock budget (``None``: steps only).
        batch_size: graphs per step (per rank under ``torchrun``).
        lr: AdamW learning rate (cosine schedule with warm-up); weight_decay: AdamW's.
        dim, num_layers, heads, attn_layers, dropout: model size (:class:`~.encoder.LayoutGraphEncoder`).
        complete_prob: fraction of training graphs with some boxes given (random subsets).
        unk_prob: probability of replacing a label by ``<unk>`` during training.
        pool_size: shapes scenes in the training pool (``data="shapes"`` only).
        shapes_gap, shapes_slack: room the shapes pool's layouts keep (pixels between boxes; centroid slack of
            every relation; see :func:`~.data.shapes_layout_graphs`).
        snr_weight: diffusion loss weighting ``1 + min(SNR, snr_weight)`` (0: plain x₀-MSE).
        relation_drop_prob: diffusion: fraction of training graphs whose relations are dropped (objects kept),
            so that the model learns the relation-free prediction used by relation guidance.
        guidance_scale: diffusion: default relation guidance of the saved model (1 = none).
        num_inference_steps, spacing: defaults of a diffusion model's DDIM sampler (network evaluations, time grid).
        seed: data and noise seed.
        num_threads: torch CPU threads.
        ema_decay: EMA of the weights (the saved model holds the EMA weights).
        checkpoint_every: steps between checkpoints.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``.
        progress: progress bars on stderr.
        eval_graphs: shapes world only: score the trained model on this many held-out graphs (0: skip).
    """

    output_dir: str = "runs/layout"
    model: str = "diffusion"
    encoder: str = "rhgnn"
    data: str = SHAPES_DATA
    max_steps: int = 20_000
    max_minutes: float | None = 15.0
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    dim: int = 64
    num_layers: int = 2
    heads: int = 2
    attn_layers: int = 1
    dropout: float = 0.0
    complete_prob: float = 0.5
    unk_prob: float = 0.02
    pool_size: int = 100_000
    shapes_gap: int = 3
    shapes_slack: float = 1.5
    snr_weight: float = 0.0
    relation_drop_prob: float = 0.15
    guidance_scale: float = 1.0
    num_inference_steps: int = 10
    spacing: str = "quadratic"
    seed: int = 0
    num_threads: int = 1
    ema_decay: float | None = 0.999
    checkpoint_every: int = 1000
    device: str = "cpu"
    progress: bool = True
    eval_graphs: int = 700

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"model must be one of {MODELS}, got {self.model!r}")
        if self.encoder not in ("hgcn", "rhgnn"):
            raise ValueError(f"encoder must be 'hgcn' or 'rhgnn', got {self.encoder!r}")
        for name in ("max_steps", "batch_size", "dim", "num_layers", "heads", "pool_size", "checkpoint_every",
                     "num_threads", "num_inference_steps"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        if isinstance(self.eval_graphs, bool) or not isinstance(self.eval_graphs, int) or self.eval_graphs < 0:
            raise ValueError(f"eval_graphs must be an integer >= 0, got {self.eval_graphs!r}")
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise ValueError(f"max_minutes must be > 0 or None, got {self.max_minutes!r}")
        for name in ("complete_prob", "unk_prob", "relation_drop_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)!r}")
        if not 0.0 <= self.guidance_scale <= 20.0:
            raise ValueError(f"guidance_scale must be in [0, 20], got {self.guidance_scale!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr!r}")
        from ..devices import check_device

        check_device(self.device, "device")


def build_layout_model(config: TrainLayoutConfig, vocab: Vocabulary) -> LayoutModel:
    """A fresh model of ``config.model`` over ``vocab``."""
    from .diffusion import DiffusionLayoutModel
    from .regression import RegressionLayoutModel

    labels = vocab.to_dict()
    size = dict(encoder=config.encoder, dim=config.dim, num_layers=config.num_layers, heads=config.heads,
                attn_layers=config.attn_layers, dropout=config.dropout)
    if config.model == "regression":
        return RegressionLayoutModel(**labels, **size)
    return DiffusionLayoutModel(**labels, **size, num_inference_steps=config.num_inference_steps,
                                spacing=config.spacing, guidance_scale=config.guidance_scale)


def _draw_known(object_batch: Tensor, num_graphs: int, complete_prob: float,
                generator: torch.Generator) -> Tensor:
    """``[No]`` bool: in a fraction ``complete_prob`` of the graphs, each object is given with a probability
    drawn uniformly per graph; no object is given elsewhere."""
    dev = object_batch.device
    chosen = rand((num_graphs,), generator, dev) < complete_prob  # [G]
    rate = rand((num_graphs,), generator, dev) * chosen  # [G]
    return rand((object_batch.numel(),), generator, dev) < rate[object_batch]


def layout_step(config: TrainLayoutConfig, graphs: Sequence[SceneGraph]
                ) -> Callable[[nn.Module, Tensor, torch.Generator], dict[str, Tensor]]:
    """The trainer step: ``batch`` is a ``[batch_size]`` tensor of indices into ``graphs``."""
    from .diffusion import diffusion_loss
    from .regression import regression_loss

    def step(model: nn.Module, batch: Tensor, generator: torch.Generator) -> dict[str, Tensor]:
        net: LayoutModel = getattr(model, "module", model)  # unwrapped (DDP)
        chosen = [graphs[i] for i in batch.tolist()]
        if config.model == "diffusion" and config.relation_drop_prob > 0:
            drop = (rand((len(chosen),), generator, batch.device) < config.relation_drop_prob).tolist()
            chosen = [SceneGraph(g.objects, (), g.text) if d else g for g, d in zip(chosen, drop)]
        inputs = net.prepare(chosen, keep_boxes=False)
        inputs = inputs.with_known(_draw_known(inputs.object_batch, inputs.num_graphs, config.complete_prob, generator))
        if config.unk_prob > 0:
            for nt in ("object", "attribute", "relation"):
                label = inputs.batch[nt].label
                drop = rand((label.numel(),), generator, label.device) < config.unk_prob
                inputs.batch[nt].label = torch.where(drop, torch.zeros_like(label), label)
        if config.model == "regression":
            return regression_loss(model, inputs)
        return diffusion_loss(model, inputs, generator, config.snr_weight)

    return step


class _IndexStream:
    """Re-iterable stream of ``[batch_size]`` index tensors into ``num`` graphs; ends at the deadline.

    Re-iterating restarts the same seeded stream, so the trainer's resume (which skips the batches already
    trained on) continues it exactly; skipping costs one small random draw per batch.
    """

    def __init__(self, num: int, batch_size: int, seed: int, deadline: float | None) -> None:
        self.num, self.batch_size, self.seed, self.deadline = num, batch_size, seed, deadline

    def __iter__(self) -> Iterator[Tensor]:
        g = torch.Generator().manual_seed(self.seed)
        while self.deadline is None or time.monotonic() < self.deadline:
            yield torch.randint(0, self.num, (self.batch_size,), generator=g)


def train_layout(config: TrainLayoutConfig, resume: bool = False) -> Path:
    """Train a layout model; save the EMA model to ``output_dir/model`` and return that path.

    Also writes ``output_dir/train_info.json`` (config, steps, minutes, final losses, vocabulary sizes, and on
    the shapes world the relation scores of ``eval_graphs`` held-out graphs) and ``output_dir/history.json``.
    """
    from ..devices import resolve_device
    from ..training import TrainConfig, Trainer, distributed_env

    if config.device.startswith("cuda"):
        resolve_device(config.device, "device")  # fail now, not after loading the data
    rank, world, _ = distributed_env()
    out = Path(config.output_dir)
    graphs = layout_graphs(config.data, "train", config.pool_size, config.seed, config.shapes_gap, config.shapes_slack,
                           progress=config.progress and rank == 0)
    if not graphs:
        raise ValueError(f"--data {config.data!r}: no training graphs")
    vocab = Vocabulary.from_graphs(graphs)
    with torch.random.fork_rng(devices=[]):  # seeded initial weights; the caller's global RNG is left as it was
        torch.manual_seed(config.seed)
        model = build_layout_model(config, vocab)
    tcfg = TrainConfig(max_steps=config.max_steps, lr=config.lr, weight_decay=config.weight_decay, schedule="cosine",
                       warmup_steps=min(200, config.max_steps // 10), min_lr_ratio=0.05, grad_clip=1.0,
                       ema_decay=config.ema_decay, ema_warmup=True, log_every=200,
                       checkpoint_every=config.checkpoint_every, output_dir=str(out / "checkpoints"),
                       seed=config.seed, num_threads=config.num_threads, device=config.device,
                       progress=config.progress, ddp_find_unused_parameters=True)
    trainer = Trainer(model, layout_step(config, graphs), tcfg)
    t0 = time.monotonic()
    deadline = None if config.max_minutes is None else t0 + 60 * config.max_minutes
    history = trainer.fit(_IndexStream(len(graphs), config.batch_size, 10_000 * config.seed + 17 + rank, deadline),
                          resume=resume)
    final: LayoutModel = trainer.ema_model if trainer.ema_model is not None else trainer.model  # type: ignore[assignment]
    final = final.to("cpu").eval()
    path = out / "model"
    if rank == 0:
        final.save_pretrained(path)
        info = {"config": asdict(config), "steps": trainer.step, "train_minutes": trainer.train_seconds / 60,
                "world_size": world, "train_graphs": len(graphs),
                "vocabulary": {k: len(v) for k, v in vocab.to_dict().items()},
                "parameters": sum(p.numel() for p in final.parameters()),
                "final": history[-1] if history else None}
        if config.data == SHAPES_DATA and config.eval_graphs > 0:
            info["held_out"] = _shapes_held_out(final, config.eval_graphs)
        (out / "train_info.json").write_text(json.dumps(info, indent=1))
        (out / "history.json").write_text(json.dumps(history))
        logger.info("trained %d steps in %.1f min; saved %s", trainer.step, info["train_minutes"], path)
    return path


def _shapes_held_out(model: LayoutModel, num: int = 700) -> dict[str, float]:
    """Relation scores of ``model``'s layouts (boxes resampled) for ``num`` held-out shapes graphs (seed 0)."""
    from ..shapes.evaluation import held_out_graphs
    from .evaluation import shapes_layout_scores

    graphs = held_out_graphs(num)
    layouts = model.sample(graphs, 1, torch.Generator().manual_seed(0), resample=True)
    return shapes_layout_scores([s[0] for s in layouts])
