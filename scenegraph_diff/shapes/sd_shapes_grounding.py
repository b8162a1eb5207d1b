"""GLIGEN grounding for sd-shapes: box-grounded layers trained on a frozen sd-shapes (GLIGEN's own recipe).

``scenegraph-diff train-grounding`` adds GLIGEN's gated self-attention and position net to the UNet of a trained
Stable Diffusion folder (:func:`~scenegraph_diff.conditioning.grounding.gated_unet`) and trains only those layers,
with the VAE, the text encoder and every base UNet weight frozen, on rendered shapes-world scenes: the caption
as the prompt (dropped with probability ``caption_dropout``) and one grounding token per object (the phrase
``"red circle"`` + its ground-truth box; all of an image's tokens dropped with probability
``grounding_dropout``). The loss is SD's epsilon MSE. The result is written as a ``grounding/`` folder
(:func:`~scenegraph_diff.conditioning.grounding.save_grounding`) that
:class:`~scenegraph_diff.pipelines.SceneGraphPipeline` picks up from a pipeline folder.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["GROUNDING_METHODS", "GroundingConfig", "GroundedUNetForTraining", "grounding_step", "train_grounding", "export_grounding",
           "shapes_phrases"]

logger = logging.getLogger(__name__)

#: What ``train-grounding`` trains: a layout-map adapter, or GLIGEN's layers.
GROUNDING_METHODS: tuple[str, ...] = ("adapter", "gligen")


@dataclass(frozen=True)
class GroundingConfig:
    """Settings of :func:`train_grounding`.

    Args:
        model: the frozen base: a bundled model's name (``"sd-shapes"``) or a Stable Diffusion folder that draws the
            shapes world.
        output_dir: run folder (``checkpoints/``, ``grounding/``, ``train_info.json``).
        steps: optimizer steps (upper bound; ``minutes`` may end the run first).
        minutes: training-time budget over all runs (``None``: steps only); a resumed run trains for what is left.
        batch_size, lr, warmup_steps: optimisation (AdamW, constant learning rate after warm-up, grad clip 1).
        caption_dropout: probability of the empty caption.
        grounding_dropout: probability of masking all of an image's grounding tokens.
        ema_decay: EMA of the trained layers (the saved layers are the EMA ones).
        gate_init: GLIGEN: initial value of the fusers' gates (see
            :func:`~scenegraph_diff.conditioning.grounding.gated_unet`: 0 is GLIGEN's zero gates; the default 1
            zero-initialises the fusers' output layers instead).
        method: ``"adapter"`` (default): a layout-map T2I-Adapter
            (:mod:`~scenegraph_diff.conditioning.layout_adapter`), written as ``output_dir/layout_adapter``;
            ``"gligen"``: GLIGEN's gated self-attention + position net, written as ``output_dir/grounding``.
        checkpoint_every: steps between checkpoints (all kept: the accuracy-vs-minutes curve is measured on them).
        seed, num_threads, device: as in :class:`~scenegraph_diff.shapes.sd_shapes.SDShapesConfig`.
    """

    model: str = "sd-shapes"
    output_dir: str = "runs/sd_shapes_grounding"
    steps: int = 20000
    minutes: float | None = 50.0
    batch_size: int = 64
    lr: float = 5e-4
    warmup_steps: int = 200
    caption_dropout: float = 0.1
    grounding_dropout: float = 0.1
    ema_decay: float = 0.999
    gate_init: float = 1.0
    method: str = "adapter"
    checkpoint_every: int = 500
    seed: int = 0
    num_threads: int = 1
    device: str = "auto"

    def __post_init__(self) -> None:
        from ..devices import check_device

        def bad(field: str, why: str) -> ValueError:
            return ValueError(f"GroundingConfig.{field}={getattr(self, field)!r}: {why}")

        for f in ("steps", "batch_size", "checkpoint_every", "num_threads"):
            if getattr(self, f) < 1:
                raise bad(f, "must be >= 1")
        if not self.lr > 0:
            raise bad("lr", "must be > 0")
        if self.warmup_steps < 0:
            raise bad("warmup_steps", "must be >= 0")
        for f in ("caption_dropout", "grounding_dropout"):
            if not 0.0 <= getattr(self, f) < 1.0:
                raise bad(f, "must be in [0, 1)")
        if not 0.0 < self.ema_decay < 1.0:
            raise bad("ema_decay", "must be in (0, 1)")
        if self.minutes is not None and not self.minutes > 0:
            raise bad("minutes", "must be > 0 or None")
        if self.method not in GROUNDING_METHODS:
            raise bad("method", f"must be one of {', '.join(GROUNDING_METHODS)}")
        check_device(self.device, "device")


def shapes_phrases() -> list[str]:
    """Every object phrase of the shapes world (``"red circle"``, ...), in a fixed order."""
    from .world import COLOUR_NAMES, SHAPES

    return [f"{c} {s}" for c in COLOUR_NAMES for s in SHAPES]


class GroundedUNetForTraining(nn.Module):
    """A grounded UNet (base frozen) with one ``forward`` for the trainer / DDP."""

    def __init__(self, unet: nn.Module) -> None:
        super().__init__()
        self.unet = unet

    def forward(self, noisy: Tensor, timesteps: Tensor, states: Tensor, boxes: Tensor, positive: Tensor,
                masks: Tensor) -> Tensor:
        """Predicted noise ``[B, 4, h, w]``; ``states [B, L, D]``, ``boxes [B, N, 4]``, ``positive [B, N, D]``,
        ``masks [B, N]``."""
        gligen = {"boxes": boxes, "positive_embeddings": positive, "masks": masks}
        return self.unet(noisy, timesteps, states, cross_attention_kwargs={"gligen": gligen}).sample


def grounding_step(vae: nn.Module, text_encoder: nn.Module, phrase_table: Tensor, alphas_cumprod: Tensor):
    """Trainer step: epsilon MSE of the grounded UNet on frozen-VAE latents, frozen-text-encoder states and
    grounding tokens (``phrase_table [P, D]`` indexed by the batch's ``phrase_ids``)."""
    scale = float(vae.config.scaling_factor)

    def step(model: nn.Module, batch: dict[str, Tensor], generator: torch.Generator) -> dict[str, Tensor]:
        x = batch["images"]
        with torch.no_grad():
            z = vae.encode(x).latent_dist.sample(generator=generator) * scale  # [B, 4, h, w]
            states = text_encoder(batch["input_ids"])[0]  # [B, L, D]
        masks = batch["masks"]
        positive = phrase_table.to(z.device)[batch["phrase_ids"]] * masks.unsqueeze(-1)  # [B, N, D]
        noise = torch.randn(z.shape, generator=generator, device=generator.device).to(z.device)
        t = torch.randint(0, alphas_cumprod.numel(), (z.size(0),), generator=generator,
                          device=generator.device).to(z.device)
        a = alphas_cumprod.to(z.device)[t].view(-1, 1, 1, 1)
        noisy = a.sqrt() * z + (1 - a).sqrt() * noise
        pred = model(noisy, t, states, batch["boxes"], positive, masks)
        mse = F.mse_loss(pred.float(), noise.float())
        return {"loss": mse, "mse": mse}

    return step


def _base_pipeline(model: str) -> tuple[Any, Path]:
    from diffusers import StableDiffusionPipeline

    from ..bundled import resolve_model

    source = Path(resolve_model(model))
    if not (source / "model_index.json").is_file():
        raise FileNotFoundError(f"model {model!r}: {source} is not a Stable Diffusion pipeline folder")
    settings = source / "scenegraph_diff.json"
    if not settings.is_file() or json.loads(settings.read_text()).get("world") != "shapes":
        raise ValueError(f"model {model!r}: grounding is trained on shapes-world renders; {source} does not draw the "
                         "shapes world (no scenegraph_diff.json with world 'shapes')")
    pipe = StableDiffusionPipeline.from_pretrained(source, dtype=torch.float32)
    return pipe, source


def train_grounding(config: GroundingConfig, resume: bool = False) -> Path:
    """Train GLIGEN grounding layers on a frozen sd-shapes (see the module docstring); return the written
    ``output_dir/grounding`` folder."""
    from diffusers import DDPMScheduler

    from ..conditioning.grounding import GROUNDING_FOLDER, PhraseEncoder, freeze_base_, gated_unet, save_grounding
    from ..devices import resolve_device
    from ..training import TrainConfig, Trainer, distributed_env, latest_checkpoint
    from .sd_shapes import BETAS, SDShapesConfig, _SceneStream

    rank, world, _ = distributed_env()
    out = Path(config.output_dir)
    pipe, source = _base_pipeline(config.model)
    info = json.loads((source / "train_info.json").read_text()) if (source / "train_info.json").is_file() else {}
    known = set(SDShapesConfig.__dataclass_fields__)
    base_cfg = SDShapesConfig(**{**{k: v for k, v in info.get("config", {}).items() if k in known},
                                 "seed": config.seed, "device": "cpu", "caption_dropout": config.caption_dropout})
    device = resolve_device(config.device, "device")
    vae = pipe.vae.eval().requires_grad_(False).to(device)
    text_encoder = pipe.text_encoder.eval().requires_grad_(False).to(device)
    phrases = shapes_phrases()
    phrase_table = PhraseEncoder(text_encoder, pipe.tokenizer)(phrases).detach()  # [P, D]
    if config.method == "gligen":
        unet = gated_unet(pipe.unet, gate_init=config.gate_init)
        freeze_base_(unet)
        model: nn.Module = GroundedUNetForTraining(unet)
    else:
        from ..conditioning.layout_adapter import LayoutAdapterForTraining, make_layout_adapter

        size = int(pipe.unet.config.sample_size * pipe.vae_scale_factor)
        model = LayoutAdapterForTraining(pipe.unet, make_layout_adapter(pipe.unet, phrase_table.size(-1),
                                                                        pipe.vae_scale_factor), size)
    alphas = DDPMScheduler(**BETAS).alphas_cumprod.float()
    tcfg = TrainConfig(max_steps=config.steps, lr=config.lr, schedule="constant", warmup_steps=config.warmup_steps,
                       grad_clip=1.0, ema_decay=config.ema_decay, ema_warmup=True, log_every=100,
                       checkpoint_every=config.checkpoint_every, max_checkpoints=None,
                       output_dir=str(out / "checkpoints"), seed=config.seed, num_threads=config.num_threads,
                       device=str(device))
    trainer = Trainer(model, grounding_step(vae, text_encoder, phrase_table, alphas), tcfg)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(asdict(config), indent=1) + "\n")
    t0 = time.monotonic()
    deadline = None
    if config.minutes is not None:
        found = latest_checkpoint(out / "checkpoints") if resume else None
        spent = json.loads((found / "trainer_state.json").read_text()).get("train_seconds", 0.0) if found else 0.0
        deadline = t0 + max(0.0, 60 * config.minutes - spent)
    stream = _SceneStream(base_cfg, config.batch_size, rank, salt=4, tokenizer=pipe.tokenizer, deadline=deadline,
                          phrase_index={p: i for i, p in enumerate(phrases)},
                          grounding_dropout=config.grounding_dropout)
    history = trainer.fit(stream, resume=resume)
    from ..conditioning.layout_adapter import LAYOUT_ADAPTER_FOLDER, save_layout_adapter

    dest = out / (GROUNDING_FOLDER if config.method == "gligen" else LAYOUT_ADAPTER_FOLDER)
    if rank == 0:
        final = trainer.ema_model if trainer.ema_model is not None else trainer.model
        info = {"base": str(config.model), "steps": trainer.step, "train_minutes": trainer.train_seconds / 60,
                "batch_size": config.batch_size, "world_size": world, "device": str(device),
                "final": history[-1] if history else None}
        if config.method == "gligen":
            save_grounding(final.unet, dest, info=info)
        else:
            save_layout_adapter(final.adapter, dest, info=info)
        (out / "history.json").write_text(json.dumps(history))
        logger.info("grounding: %d steps (this run %.1f min); saved %s", trainer.step, (time.monotonic() - t0) / 60,
                    dest)
    return dest


def export_grounding(grounding_dir: str | Path, pipeline_dir: str | Path, half: bool = True) -> Path:
    """Copy trained grounding (the ``grounding/`` or ``layout_adapter/`` folder of :func:`train_grounding`) into a
    Stable Diffusion pipeline folder as ``pipeline_dir/grounding`` or ``pipeline_dir/layout_adapter`` (float16 with
    ``half``), checking that it fits the folder's UNet; return the written folder."""
    from diffusers import UNet2DConditionModel

    from ..conditioning.grounding import GROUNDING_FOLDER, load_grounding, save_grounding
    from ..conditioning.layout_adapter import LAYOUT_ADAPTER_FOLDER, load_layout_adapter, save_layout_adapter

    pipeline_dir = Path(pipeline_dir)
    if not (pipeline_dir / "unet" / "config.json").is_file():
        raise FileNotFoundError(f"{pipeline_dir} is not a Stable Diffusion pipeline folder (no unet/config.json)")
    grounding_dir = Path(grounding_dir)
    unet = UNet2DConditionModel.from_pretrained(pipeline_dir / "unet")
    if (grounding_dir / "layout_adapter.json").is_file():
        adapter = load_layout_adapter(grounding_dir)
        channels = list(adapter.config.channels)
        if channels != list(unet.config.block_out_channels):
            raise ValueError(f"{grounding_dir}: adapter levels {channels} do not fit the UNet's block_out_channels "
                             f"{list(unet.config.block_out_channels)}")
        info = json.loads((grounding_dir / "layout_adapter.json").read_text())
        info.pop("map", None)
        return save_layout_adapter(adapter, pipeline_dir / LAYOUT_ADAPTER_FOLDER,
                                   dtype=torch.float16 if half else None, info=info)
    unet = load_grounding(unet, grounding_dir)
    info = json.loads((grounding_dir / "config.json").read_text())
    keep = {k: v for k, v in info.items() if k not in ("attention_type", "cross_attention_dim", "block_out_channels",
                                                       "max_objects")}
    return save_grounding(unet, pipeline_dir / GROUNDING_FOLDER, dtype=torch.float16 if half else None, info=keep)
