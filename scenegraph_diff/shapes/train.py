"""Training of the shapes model (``scenegraph-diff train-shapes``) on the shared
:class:`~scenegraph_diff.training.Trainer`.

One step, for a batch of sampled scenes (graphs with ground-truth boxes and rendered images):

1. the conditioner encodes the graphs and predicts one box per object; layout loss = MSE to the
   ground-truth ``(cx, cy, side)``;
2. the UNet gets the noised palette one-hot image (DDPM forward process at a uniform timestep) and the
   layout maps of the *ground-truth* boxes, plus the graph tokens; image loss = cross-entropy of its
   palette logits against the clean image's palette classes (x0 prediction as a categorical);
3. ``loss = image_loss + layout_weight * layout_loss``.

Data are drawn on the fly from :func:`~.world.sample_scene` (an endless, seeded stream; each rank of a
``torchrun`` job draws from its own seed), or from a fixed pool of scenes (``pool_size``: the
benchmark's baselines, so that the frozen text encoder's token states can be cached).
Training stops at ``max_steps`` or after ``max_minutes``, whichever comes first.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..graph.scene_graph import SceneGraph
from .conditioning import ENCODERS, ShapesConditioner
from .layout import boxes_to_targets, layout_maps
from .pipeline import NUM_CLASSES, ShapesPipeline, make_scheduler, make_unet
from .world import Box, render_layout, sample_scene

__all__ = ["TrainShapesConfig", "ShapesModel", "shapes_step", "train_shapes", "image_classes"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainShapesConfig:
    """Settings of :func:`train_shapes`.

    Args:
        output_dir: run folder (checkpoints, ``pipeline/``, ``history.json``).
        encoder: ``"rhgnn"``, ``"hgcn"`` or ``"text"`` (the text-only baseline).
        max_steps: optimizer steps (upper bound).
        max_minutes: wall-clock budget in minutes (``None``: steps only).
        batch_size: scenes per step (per rank under ``torchrun``).
        lr: AdamW learning rate (cosine schedule with a short warm-up).
        layout_weight: weight of the layout MSE.
        size: image size (32).
        dim: token / embedding width.
        block_out_channels: UNet widths.
        pool_size: draw batches from a fixed pool of this many scenes (``None``: an endless stream).
        seed: data and noise seed.
        num_threads: torch CPU threads (default 1).
        ema_decay: EMA of the weights (the saved pipeline uses the EMA weights).
        checkpoint_every: steps between checkpoints.
        device: training device: ``"cpu"`` (default), ``"cuda"``, ``"cuda:N"`` or ``"auto"``; under ``torchrun``
            ``"cuda"`` means one GPU per ``LOCAL_RANK``. Scenes are drawn and rendered on CPU either way; the
            saved pipeline is on CPU.
    """

    output_dir: str = "runs/shapes"
    encoder: str = "rhgnn"
    max_steps: int = 4000
    max_minutes: float | None = 60.0
    batch_size: int = 32
    lr: float = 2e-3
    layout_weight: float = 10.0
    size: int = 32
    dim: int = 64
    block_out_channels: tuple[int, ...] = (16, 32, 32)
    pool_size: int | None = None
    seed: int = 0
    num_threads: int = 1
    ema_decay: float | None = 0.995
    checkpoint_every: int = 200
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.encoder not in ENCODERS:
            raise ValueError(f"encoder must be one of {ENCODERS}, got {self.encoder!r}")
        if self.max_steps < 1 or self.batch_size < 1:
            raise ValueError(f"max_steps and batch_size must be >= 1, got {self.max_steps}, {self.batch_size}")
        if self.max_minutes is not None and self.max_minutes <= 0:
            raise ValueError(f"max_minutes must be > 0, got {self.max_minutes}")
        if self.pool_size is not None and self.pool_size < self.batch_size:
            raise ValueError(f"pool_size must be >= batch_size, got {self.pool_size}")
        from ..devices import check_device

        check_device(self.device, "device")


class ShapesModel(nn.Module):
    """The trainable parts of :class:`~.pipeline.ShapesPipeline` in one module (for the trainer / DDP)."""

    def __init__(self, unet: nn.Module, conditioner: ShapesConditioner) -> None:
        super().__init__()
        self.unet = unet
        self.conditioner = conditioner
        self.register_buffer("alphas_cumprod", make_scheduler().alphas_cumprod.clone().float(), persistent=False)

    def forward(self, graphs: list[SceneGraph], x0: Tensor, maps: Tensor, noise: Tensor,
                timesteps: Tensor) -> tuple[Tensor, Tensor]:
        """Palette logits ``[B, 7, H, W]`` for the noised ``x0`` and the predicted layout ``[No, 3]``."""
        cond = self.conditioner(graphs)
        a = self.alphas_cumprod[timesteps].view(-1, 1, 1, 1)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        logits = self.unet(torch.cat([xt, maps], 1), timesteps, cond.tokens,
                           encoder_attention_mask=cond.token_mask.float()).sample
        return logits, cond.layout


def image_classes(images: np.ndarray) -> Tensor:
    """Exact palette classes ``[B, H, W]`` of rendered ``uint8`` images ``[B, H, W, 3]`` (palette colours only)."""
    from .world import PALETTE

    def code(rgb: np.ndarray) -> np.ndarray:
        rgb = rgb.astype(np.int64)
        return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]

    pal = code(PALETTE)  # [7]
    order = np.argsort(pal)
    pos = np.searchsorted(pal[order], code(images))  # [B, H, W]
    cls = order[np.clip(pos, 0, len(pal) - 1)]
    if not np.array_equal(pal[cls], code(images)):
        raise ValueError("image_classes: the images contain colours outside the palette")
    return torch.from_numpy(cls)


def make_batch(graphs: list[SceneGraph], size: int) -> dict:
    """Training batch for scenes with ground-truth boxes: graphs, x0 one-hot, layout maps, targets."""
    layouts = [[Box.from_fractions(o.box, size) for o in g.objects] for g in graphs]  # type: ignore[arg-type]
    images = np.stack([render_layout(g, lay, size) for g, lay in zip(graphs, layouts)])
    classes = image_classes(images)  # [B, H, W]
    x0 = F.one_hot(classes, NUM_CLASSES).permute(0, 3, 1, 2).float() * 2 - 1  # [B, 7, H, W]
    return {"graphs": graphs, "x0": x0, "classes": classes, "maps": layout_maps(graphs, layouts, size),
            "targets": boxes_to_targets(graphs)}


def shapes_step(layout_weight: float):
    """The trainer step: image cross-entropy + ``layout_weight`` x layout MSE."""

    def step(model: nn.Module, batch: dict, generator: torch.Generator) -> dict[str, Tensor]:
        x0 = batch["x0"]
        noise = torch.randn(x0.shape, generator=generator, device=generator.device).to(x0.device)
        t = torch.randint(0, 1000, (x0.shape[0],), generator=generator, device=generator.device).to(x0.device)
        logits, layout = model(batch["graphs"], x0, batch["maps"], noise, t)
        image_loss = F.cross_entropy(logits, batch["classes"])
        layout_loss = F.mse_loss(layout, batch["targets"])
        return {"loss": image_loss + layout_weight * layout_loss, "image_ce": image_loss, "layout_mse": layout_loss}

    return step


class _Batches:
    """Re-iterable batch stream: ends (yields nothing) once the wall-clock deadline has passed."""

    def __init__(self, config: TrainShapesConfig, rank: int, deadline: float | None) -> None:
        self.config = config
        self.generator = torch.Generator().manual_seed(10_000 * config.seed + rank)
        self.deadline = deadline
        self.pool: list[SceneGraph] | None = None
        if config.pool_size is not None:
            g = torch.Generator().manual_seed(10_000 * config.seed + 7)  # same pool on every rank and method
            self.pool = [sample_scene(g, config.size) for _ in range(config.pool_size)]

    def __iter__(self) -> Iterator[dict]:
        cfg = self.config
        while self.deadline is None or time.monotonic() < self.deadline:
            if self.pool is not None:
                idx = torch.randint(0, len(self.pool), (cfg.batch_size,), generator=self.generator).tolist()
                graphs = [self.pool[i] for i in idx]
            else:
                graphs = [sample_scene(self.generator, cfg.size) for _ in range(cfg.batch_size)]
            yield make_batch(graphs, cfg.size)


def build_model(config: TrainShapesConfig) -> ShapesModel:
    unet = make_unet(config.size, config.dim, config.block_out_channels)
    return ShapesModel(unet, ShapesConditioner(encoder=config.encoder, dim=config.dim))


def train_shapes(config: TrainShapesConfig, resume: bool = False) -> Path:
    """Train a shapes model; save the (EMA) pipeline to ``output_dir/pipeline`` and return that path."""
    from ..training import TrainConfig, Trainer, distributed_env

    from ..devices import resolve_device

    if config.device.startswith("cuda"):
        resolve_device(config.device, "device")  # RuntimeError now, not after building the model
    rank, world, _ = distributed_env()
    out = Path(config.output_dir)
    model = build_model(config)
    tcfg = TrainConfig(max_steps=config.max_steps, lr=config.lr, schedule="cosine", warmup_steps=50,
                       min_lr_ratio=0.05, grad_clip=1.0, ema_decay=config.ema_decay, ema_warmup=True,
                       log_every=50, checkpoint_every=config.checkpoint_every, output_dir=str(out / "checkpoints"),
                       seed=config.seed, num_threads=config.num_threads, device=config.device,
                       ddp_find_unused_parameters=config.encoder != "text")
    trainer = Trainer(model, shapes_step(config.layout_weight), tcfg)
    if config.encoder == "text" and config.pool_size is not None:
        # Warm the frozen text encoder's cache before the clock starts (not part of the training budget).
        pool = _Batches(config, rank, None).pool or []
        model.conditioner._encode_text(pool)
    t0 = time.monotonic()
    deadline = None if config.max_minutes is None else t0 + 60 * config.max_minutes
    history = trainer.fit(_Batches(config, rank, deadline), resume=resume)
    minutes = (time.monotonic() - t0) / 60
    final = trainer.ema_model if trainer.ema_model is not None else trainer.model
    path = out / "pipeline"
    if rank == 0:
        final.to("cpu")  # training is over: save (and hand back) CPU weights
        pipe = ShapesPipeline(unet=final.unet, conditioner=final.conditioner, scheduler=make_scheduler())
        pipe.save_pretrained(path)
        info = {"config": asdict(config), "steps": trainer.step, "minutes": minutes, "world_size": world,
                "final": history[-1] if history else None}
        (out / "train_info.json").write_text(json.dumps(info, indent=1))
        (out / "history.json").write_text(json.dumps(history))
        logger.info("trained %d steps in %.1f min; saved %s", trainer.step, minutes, path)
    return path
