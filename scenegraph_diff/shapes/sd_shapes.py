"""sd-shapes: a small but complete Stable Diffusion trained on captions of the shapes world.

``scenegraph-diff train-sd-shapes`` writes a diffusers :class:`~diffusers.StableDiffusionPipeline` folder
(``vae/``, ``text_encoder/``, ``tokenizer/``, ``unet/``, ``scheduler/``, ``model_index.json``) that
``StableDiffusionPipeline.from_pretrained`` loads with no code of ours on the call path. It is trained as
SD is: **text only**, on captions (never on graphs, boxes or relation labels), with caption dropout for
classifier-free guidance. It exists to reproduce SD's relation failure where a checker gives ground truth
(``../shared/SHAPES.md``), and to measure graph conditioning on a frozen UNet.

Stages (each resumable through the shared :class:`~scenegraph_diff.training.Trainer`):

1. **tokenizer** — a CLIP-format byte-level BPE (:func:`~scenegraph_diff.text.bpe.train_clip_bpe`) learnt on
   FACTUAL train captions (when ``data_root`` has them) plus shapes captions, so real captions tokenize into
   words, not bytes;
2. **vae** — :class:`~diffusers.AutoencoderKL` on rendered 32x32 scenes, ``f = 4`` (8x8x4 latents), loss
   L1 + MSE + a small KL term; the latent ``scaling_factor`` is then set to ``1 / std`` of the latents (as
   SD's 0.18215 was chosen);
3. **unet** — :class:`~diffusers.UNet2DConditionModel` with cross-attention and a :class:`~transformers.CLIPTextModel`
   text tower trained jointly from scratch on the epsilon-prediction loss (SD 1.x's objective and
   ``scaled_linear`` betas), captions replaced by ``""`` with probability ``caption_dropout``.

Scenes are drawn on the fly from :func:`~.world.sample_scene` (seeded; each ``torchrun`` rank draws its own
stream). The saved pipeline uses the EMA weights and a DPM-Solver++ scheduler.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .world import Box, render_layout, sample_scene

__all__ = ["SDShapesConfig", "SDShapesModel", "build_tokenizer", "make_vae", "make_text_encoder", "make_unet",
           "make_scheduler", "render_batch", "VAEForTraining", "vae_step", "DecoderForTraining", "decoder_step",
           "palette_cross_entropy", "text_to_image_step", "train_sd_shapes",
           "pipeline_from_checkpoint", "latent_scaling_factor", "export_pipeline", "DEFAULT_STEPS",
           "DEFAULT_GUIDANCE"]

logger = logging.getLogger(__name__)

#: Sampling defaults of the bundled model (``generate``, the benchmark): DPM-Solver++ steps and guidance scale.
DEFAULT_STEPS = 15
DEFAULT_GUIDANCE = 4.0

#: SD 1.x's training noise schedule.
BETAS = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")


@dataclass(frozen=True)
class SDShapesConfig:
    """Settings of :func:`train_sd_shapes`.

    Args:
        output_dir: run folder (``tokenizer/``, ``vae/`` and ``unet/`` checkpoints, ``pipeline/``).
        data_root: datasets root; ``factual/train.csv`` below it joins the tokenizer corpus (``None``:
            ``../shared/datasets`` when present, else shapes captions only).
        size: image size (32; the VAE's factor is 4, latents ``[4, size/4, size/4]``).
        vocab_size: BPE vocabulary size (upper bound).
        tokenizer_captions: shapes captions in the tokenizer corpus.
        max_length: tokenizer / text-encoder sequence length.
        text_hidden, text_layers, text_heads: CLIP text tower width, depth, heads (width = UNet cross-attention dim).
        vae_channels: AutoencoderKL widths (3 levels: f = 4).
        unet_channels: UNet widths (every level has cross-attention).
        unet_layers: ResNet layers per UNet block.
        vae_steps, vae_batch_size, vae_lr, kl_weight: VAE stage.
        decoder_steps, decoder_lr, palette_weight: decoder fine-tuning stage (encoder frozen; batch ``vae_batch_size``).
        unet_steps, batch_size, lr, warmup_steps: UNet + text-encoder stage (constant learning rate after warm-up).
        caption_dropout: probability of training on the empty caption (classifier-free guidance).
        unet_minutes: training-time budget of the UNet stage in minutes, over all runs (``None``: steps only): a
            resumed run trains for what is left of it.
        ema_decay: EMA of the UNet + text-encoder weights (the saved pipeline uses it).
        seed: data and noise seed.
        num_threads: torch CPU threads.
        checkpoint_every: UNet-stage steps between checkpoints (all are kept: the accuracy-vs-minutes curve
            is measured on them).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``.
    """

    output_dir: str = "runs/sd_shapes"
    data_root: str | None = None
    size: int = 32
    vocab_size: int = 8192
    tokenizer_captions: int = 20000
    max_length: int = 40
    text_hidden: int = 128
    text_layers: int = 4
    text_heads: int = 4
    vae_channels: tuple[int, ...] = (32, 64, 64)
    unet_channels: tuple[int, ...] = (64, 128)
    unet_layers: int = 1
    vae_steps: int = 1500
    vae_batch_size: int = 64
    vae_lr: float = 1e-3
    kl_weight: float = 1e-6
    decoder_steps: int = 750
    decoder_lr: float = 3e-4
    palette_weight: float = 0.05
    unet_steps: int = 30000
    batch_size: int = 64
    lr: float = 5e-4
    warmup_steps: int = 200
    caption_dropout: float = 0.1
    unet_minutes: float | None = 124.0
    ema_decay: float = 0.999
    seed: int = 0
    num_threads: int = 1
    checkpoint_every: int = 1000
    device: str = "auto"

    def __post_init__(self) -> None:
        from ..devices import check_device

        object.__setattr__(self, "vae_channels", tuple(int(c) for c in self.vae_channels))
        object.__setattr__(self, "unet_channels", tuple(int(c) for c in self.unet_channels))

        def bad(field: str, why: str) -> ValueError:
            return ValueError(f"SDShapesConfig.{field}={getattr(self, field)!r}: {why}")

        if self.size not in (32, 64):
            raise bad("size", "expected 32 or 64 (SHAPES.md)")
        if len(self.vae_channels) != 3:
            raise bad("vae_channels", "expected 3 widths (f = 4)")
        for f in ("tokenizer_captions", "vae_steps", "decoder_steps", "unet_steps", "batch_size", "vae_batch_size", "max_length", "text_layers",
                  "text_heads", "unet_layers", "checkpoint_every", "num_threads"):
            if getattr(self, f) < 1:
                raise bad(f, "must be >= 1")
        if self.text_hidden % self.text_heads:
            raise bad("text_hidden", f"must be a multiple of text_heads={self.text_heads}")
        if not 0.0 <= self.caption_dropout < 1.0:
            raise bad("caption_dropout", "must be in [0, 1)")
        if not 0.0 < self.ema_decay < 1.0:
            raise bad("ema_decay", "must be in (0, 1)")
        if self.unet_minutes is not None and not self.unet_minutes > 0:
            raise bad("unet_minutes", "must be > 0 or None")
        check_device(self.device, "device")


# ---------------------------------------------------------------------------------------------
# Components
# ---------------------------------------------------------------------------------------------


def _factual_captions(data_root: str | None) -> list[str]:
    from ..data.readers import iter_csv_records
    from ..diffusion.data import default_data_root

    root = Path(data_root) if data_root is not None else default_data_root()
    path = root / "factual" / "train.csv"
    if not path.is_file():
        if data_root is not None:
            raise FileNotFoundError(f"data_root={data_root!r}: no factual/train.csv below it")
        logger.warning("no FACTUAL train captions at %s: the tokenizer learns shapes captions only", path)
        return []
    return [r.value["caption"] for r in iter_csv_records(path)
            if isinstance(r.value, dict) and isinstance(r.value.get("caption"), str)]


def build_tokenizer(config: SDShapesConfig) -> Any:
    """The CLIP tokenizer of sd-shapes: BPE on FACTUAL train captions + ``tokenizer_captions`` shapes captions."""
    from ..text.bpe import clip_tokenizer, train_clip_bpe

    g = torch.Generator().manual_seed(10_000 * config.seed + 1)
    corpus = _factual_captions(config.data_root) + [sample_scene(g, config.size).text or ""
                                                     for _ in range(config.tokenizer_captions)]
    vocab, merges = train_clip_bpe(corpus, vocab_size=config.vocab_size)
    return clip_tokenizer(vocab, merges, model_max_length=config.max_length)


def make_vae(config: SDShapesConfig) -> nn.Module:
    """A fresh :class:`~diffusers.AutoencoderKL` (3 levels, f = 4, 4 latent channels)."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1,
                         block_out_channels=config.vae_channels, down_block_types=("DownEncoderBlock2D",) * 3,
                         up_block_types=("UpDecoderBlock2D",) * 3, norm_num_groups=16, sample_size=config.size)


def make_text_encoder(config: SDShapesConfig, tokenizer: Any) -> nn.Module:
    """A fresh :class:`~transformers.CLIPTextModel` sized for ``tokenizer``."""
    from transformers import CLIPTextConfig, CLIPTextModel

    text_config = CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=config.text_hidden, intermediate_size=4 * config.text_hidden,
        num_hidden_layers=config.text_layers, num_attention_heads=config.text_heads,
        max_position_embeddings=config.max_length, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, layer_norm_eps=1e-5,
        hidden_act="quick_gelu",
    )
    return CLIPTextModel(text_config)


def make_unet(config: SDShapesConfig) -> nn.Module:
    """A fresh :class:`~diffusers.UNet2DConditionModel` on ``[4, size/4, size/4]`` latents, cross-attention everywhere."""
    from diffusers import UNet2DConditionModel

    n = len(config.unet_channels)
    return UNet2DConditionModel(
        sample_size=config.size // 4, in_channels=4, out_channels=4, layers_per_block=config.unet_layers,
        block_out_channels=config.unet_channels, down_block_types=("CrossAttnDownBlock2D",) * n,
        up_block_types=("CrossAttnUpBlock2D",) * n, cross_attention_dim=config.text_hidden,
        attention_head_dim=4, norm_num_groups=32,
    )


def make_scheduler() -> Any:
    """The sampling scheduler saved with the pipeline: DPM-Solver++ (2M) on SD 1.x's betas."""
    from diffusers import DPMSolverMultistepScheduler

    return DPMSolverMultistepScheduler(**BETAS, prediction_type="epsilon", algorithm_type="dpmsolver++",
                                       solver_order=2, steps_offset=1, timestep_spacing="leading")


# ---------------------------------------------------------------------------------------------
# Data and steps
# ---------------------------------------------------------------------------------------------


def render_batch(graphs: Sequence[Any], size: int) -> Tensor:
    """Render shapes-world graphs with their ground-truth boxes: ``[B, 3, size, size]`` in ``[-1, 1]``."""
    images = np.stack([render_layout(g, [Box.from_fractions(o.box, size) for o in g.objects], size)
                       for g in graphs])  # [B, H, W, 3] uint8
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


class _SceneStream:
    """Batches of freshly sampled scenes: ``{"images": [B, 3, H, W], "input_ids": [B, L]}`` (ids only with a tokenizer).

    Re-iterable; each pass continues the same seeded stream and ends once the deadline has passed.
    """

    def __init__(self, config: SDShapesConfig, batch_size: int, rank: int, salt: int, tokenizer: Any = None,
                 deadline: float | None = None, phrase_index: dict[str, int] | None = None,
                 grounding_dropout: float = 0.0) -> None:
        self.config = config
        self.batch_size = batch_size
        self.generator = torch.Generator().manual_seed(10_000 * config.seed + 100 * salt + rank)
        self.tokenizer = tokenizer
        self.deadline = deadline
        self.phrase_index = phrase_index
        self.grounding_dropout = grounding_dropout

    def __iter__(self) -> Iterator[dict[str, Tensor]]:
        cfg = self.config
        while self.deadline is None or time.monotonic() < self.deadline:
            graphs = [sample_scene(self.generator, cfg.size) for _ in range(self.batch_size)]
            batch = {"images": render_batch(graphs, cfg.size)}
            if self.tokenizer is not None:
                drop = torch.rand(self.batch_size, generator=self.generator) < cfg.caption_dropout
                texts = ["" if d else (g.text or "") for g, d in zip(graphs, drop.tolist())]
                batch["input_ids"] = self.tokenizer(texts, padding="max_length", max_length=cfg.max_length,
                                                    truncation=True, return_tensors="pt").input_ids
            if self.phrase_index is not None:
                batch.update(self._grounding(graphs))
            yield batch

    def _grounding(self, graphs: Sequence[Any]) -> dict[str, Tensor]:
        """``boxes [B, N, 4]``, ``phrase_ids [B, N]`` (into ``phrase_index``) and ``masks [B, N]`` (``N`` =
        :data:`~scenegraph_diff.conditioning.grounding.MAX_OBJECTS`); a whole image's tokens are masked with
        probability ``grounding_dropout`` (classifier-free guidance over the grounding)."""
        from ..conditioning.grounding import MAX_OBJECTS, object_phrase

        b = len(graphs)
        boxes = torch.zeros(b, MAX_OBJECTS, 4)
        ids = torch.zeros(b, MAX_OBJECTS, dtype=torch.long)
        masks = torch.zeros(b, MAX_OBJECTS)
        keep = torch.rand(b, generator=self.generator) >= self.grounding_dropout
        for gi, g in enumerate(graphs):
            for j, o in enumerate(g.objects[:MAX_OBJECTS]):
                boxes[gi, j] = torch.tensor(o.box)
                ids[gi, j] = self.phrase_index[object_phrase(g, j)]
                masks[gi, j] = float(keep[gi])
        return {"boxes": boxes, "phrase_ids": ids, "masks": masks}


class VAEForTraining(nn.Module):
    """Wraps an :class:`~diffusers.AutoencoderKL` so that one ``forward`` returns what :func:`vae_step` needs
    (DDP synchronises gradients only through ``forward``)."""

    def __init__(self, vae: nn.Module) -> None:
        super().__init__()
        self.vae = vae

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Reconstruction ``[B, 3, H, W]`` of a posterior sample, and the per-image KL ``[B]`` to N(0, I)."""
        dist = self.vae.encode(x).latent_dist
        z = dist.sample(generator=generator)  # [B, 4, H/4, W/4]
        return self.vae.decode(z).sample, dist.kl()


def vae_step(kl_weight: float):
    """Trainer step of the VAE (a :class:`VAEForTraining`): ``L1 + MSE`` reconstruction of a posterior sample,
    plus ``kl_weight`` x the KL per latent element."""

    def step(model: nn.Module, batch: dict[str, Tensor], generator: torch.Generator) -> dict[str, Tensor]:
        x = batch["images"]  # [B, 3, H, W]
        recon, kl = model(x, generator=generator)
        l1 = (recon - x).abs().mean()
        mse = (recon - x).pow(2).mean()
        kl = kl.mean() / (4 * (x.size(2) // 4) * (x.size(3) // 4))
        return {"loss": l1 + mse + kl_weight * kl, "l1": l1, "mse": mse, "kl": kl}

    return step


def palette_cross_entropy(recon: Tensor, target: Tensor, temperature: float = 0.05) -> Tensor:
    """Cross-entropy of each pixel's nearest-palette-colour class (soft, by RGB distance) against the target's.

    A perceptual loss for the shapes world: it rewards a decoder whose pixels land on the right palette colour,
    which is what the checker reads. ``recon``, ``target``: ``[B, 3, H, W]`` in ``[-1, 1]``; ``target`` holds
    palette colours only.
    """
    from .world import PALETTE

    pal = torch.as_tensor(PALETTE, dtype=recon.dtype, device=recon.device).div(127.5).sub(1.0)  # [K, 3]
    d_rec = (recon.unsqueeze(1) - pal.view(1, -1, 3, 1, 1)).pow(2).sum(2)  # [B, K, H, W]
    d_tgt = (target.unsqueeze(1) - pal.view(1, -1, 3, 1, 1)).pow(2).sum(2)
    return F.cross_entropy(-d_rec / temperature, d_tgt.argmin(1))


class DecoderForTraining(nn.Module):
    """Fine-tunes only the decoder of a trained :class:`~diffusers.AutoencoderKL` (encoder frozen, so the
    latent space — and every UNet trained on it — is unchanged), as SD's ft-MSE decoder was made."""

    def __init__(self, vae: nn.Module) -> None:
        super().__init__()
        self.vae = vae
        for module in (vae.encoder, vae.quant_conv):
            if module is not None:
                module.requires_grad_(False)

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Reconstruction ``[B, 3, H, W]`` of a posterior sample of the frozen encoder."""
        with torch.no_grad():
            z = self.vae.encode(x).latent_dist.sample(generator=generator)
        return self.vae.decode(z).sample


def decoder_step(palette_weight: float):
    """Trainer step of :class:`DecoderForTraining`: ``L1 + MSE + palette_weight`` x :func:`palette_cross_entropy`."""

    def step(model: nn.Module, batch: dict[str, Tensor], generator: torch.Generator) -> dict[str, Tensor]:
        x = batch["images"]
        recon = model(x, generator=generator)
        l1 = (recon - x).abs().mean()
        mse = (recon - x).pow(2).mean()
        ce = palette_cross_entropy(recon, x)
        return {"loss": l1 + mse + palette_weight * ce, "l1": l1, "mse": mse, "palette_ce": ce}

    return step


class SDShapesModel(nn.Module):
    """The jointly trained text-to-image parts: ``unet`` and ``text_encoder`` (one module for the trainer / DDP)."""

    def __init__(self, unet: nn.Module, text_encoder: nn.Module) -> None:
        super().__init__()
        self.unet = unet
        self.text_encoder = text_encoder

    def forward(self, input_ids: Tensor, noisy_latents: Tensor, timesteps: Tensor) -> Tensor:
        """Predicted noise ``[B, 4, h, w]`` for ``noisy_latents [B, 4, h, w]`` at ``timesteps [B]``, captions ``[B, L]``."""
        states = self.text_encoder(input_ids)[0]  # [B, L, D]: the last hidden state, as SD's pipeline reads it
        return self.unet(noisy_latents, timesteps, states).sample


def text_to_image_step(vae: nn.Module, alphas_cumprod: Tensor):
    """Trainer step of the UNet + text encoder: epsilon MSE on VAE latents (the VAE is frozen)."""
    scale = float(vae.config.scaling_factor)

    def step(model: nn.Module, batch: dict[str, Tensor], generator: torch.Generator) -> dict[str, Tensor]:
        x = batch["images"]
        with torch.no_grad():
            z = vae.encode(x).latent_dist.sample(generator=generator) * scale  # [B, 4, h, w]
        noise = torch.randn(z.shape, generator=generator, device=generator.device).to(z.device)
        t = torch.randint(0, alphas_cumprod.numel(), (z.size(0),), generator=generator,
                          device=generator.device).to(z.device)
        a = alphas_cumprod.to(z.device)[t].view(-1, 1, 1, 1)
        noisy = a.sqrt() * z + (1 - a).sqrt() * noise
        pred = model(batch["input_ids"], noisy, t)
        mse = F.mse_loss(pred.float(), noise.float())
        return {"loss": mse, "mse": mse}

    return step


@torch.no_grad()
def latent_scaling_factor(vae: nn.Module, config: SDShapesConfig, num_images: int = 2048) -> float:
    """``1 / std`` of the VAE's posterior samples over ``num_images`` fresh scenes (SD's latent scaling)."""
    stream = iter(_SceneStream(config, 256, rank=0, salt=9))
    samples = []
    g = torch.Generator().manual_seed(config.seed)
    device = next(vae.parameters()).device
    for _ in range(max(1, num_images // 256)):
        x = next(stream)["images"].to(device)
        samples.append(vae.encode(x).latent_dist.sample(generator=g if device.type == "cpu" else None).cpu())
    return float(1.0 / torch.cat(samples).std())


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------


def _trainer(model: nn.Module, step: Any, config: SDShapesConfig, out: Path, *, steps: int, lr: float,
             warmup: int, ema: float | None, checkpoint_every: int, max_checkpoints: int | None) -> Any:
    from ..training import TrainConfig, Trainer

    tcfg = TrainConfig(max_steps=steps, lr=lr, schedule="constant", warmup_steps=warmup, grad_clip=1.0,
                       ema_decay=ema, ema_warmup=True, log_every=100, checkpoint_every=checkpoint_every,
                       max_checkpoints=max_checkpoints, output_dir=str(out), seed=config.seed,
                       num_threads=config.num_threads, device=config.device)
    return Trainer(model, step, tcfg)


def _record(out: Path, key: str, value: Any, append: bool = False) -> None:
    """Update one entry of ``out/train_info.json`` (re-read first: stages may run side by side)."""
    path = out / "train_info.json"
    info = json.loads(path.read_text()) if path.is_file() else {}
    if append:
        info.setdefault(key, []).append(value)
    else:
        info[key] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(info, indent=1))
    tmp.replace(path)


def train_sd_shapes(config: SDShapesConfig, resume: bool = False, stages: Sequence[str] = ("vae", "unet")) -> Path:
    """Train sd-shapes (see the module docstring); save the pipeline to ``output_dir/pipeline``; return that path.

    ``resume=True`` continues every stage from its newest checkpoint (a finished VAE stage is not re-run).
    ``stages`` picks stages to run, in this order: ``"vae"``, ``"decoder"`` (fine-tune the VAE decoder with the
    encoder frozen and write it back to ``output_dir/vae/final``; optional, and it may run in a second process
    beside ``"unet"``: the latents do not change) and ``"unet"``. The decoder and UNet stages need a trained VAE in
    ``output_dir/vae/final``; the saved pipeline takes the newest decoder found there when the UNet stage ends.
    """
    from diffusers import AutoencoderKL, StableDiffusionPipeline
    from transformers import CLIPTokenizer

    from ..devices import resolve_device
    from ..training import distributed_env, latest_checkpoint

    unknown = set(stages) - {"vae", "decoder", "unet"}
    if unknown or not stages:
        raise ValueError(f"stages={tuple(stages)!r}: expected some of 'vae', 'decoder', 'unet'")
    if config.device.startswith("cuda"):
        resolve_device(config.device, "device")  # fail now, not after building the models
    rank, world, _ = distributed_env()
    out = Path(config.output_dir)
    if rank == 0:
        _record(out, "config", asdict(config))

    # 1. Tokenizer (deterministic; built once and kept for resumes).
    tok_dir = out / "tokenizer"
    if (tok_dir / "vocab.json").is_file():
        tokenizer = CLIPTokenizer.from_pretrained(tok_dir)
    else:
        tokenizer = build_tokenizer(config)
        if rank == 0:
            tokenizer.save_pretrained(tok_dir)

    # 2. VAE.
    vae_final = out / "vae" / "final"
    if "vae" in stages and not (vae_final / "config.json").is_file():
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            vae_model = VAEForTraining(make_vae(config))
        trainer = _trainer(vae_model, vae_step(config.kl_weight), config, out / "vae" / "checkpoints",
                           steps=config.vae_steps, lr=config.vae_lr, warmup=100, ema=None,
                           checkpoint_every=250, max_checkpoints=2)
        history = trainer.fit(_SceneStream(config, config.vae_batch_size, rank, salt=1), resume=resume)
        vae = trainer.model.vae.to("cpu").eval()
        vae.register_to_config(scaling_factor=latent_scaling_factor(vae, config))
        if rank == 0:
            vae.save_pretrained(vae_final)
            _record(out, "vae", {"steps": trainer.step, "minutes": trainer.train_seconds / 60,
                                 "final": history[-1] if history else None,
                                 "scaling_factor": vae.config.scaling_factor})
    if ("decoder" in stages or "unet" in stages) and not (vae_final / "config.json").is_file():
        raise FileNotFoundError(f"the decoder and UNet stages need a trained VAE at {vae_final}: run the 'vae' stage first")

    # 2b. Decoder fine-tuning (encoder frozen: the latent space is unchanged).
    if "decoder" in stages:
        model = DecoderForTraining(AutoencoderKL.from_pretrained(vae_final))
        trainer = _trainer(model, decoder_step(config.palette_weight), config, out / "decoder" / "checkpoints",
                           steps=config.decoder_steps, lr=config.decoder_lr, warmup=100, ema=None,
                           checkpoint_every=250, max_checkpoints=2)
        history = trainer.fit(_SceneStream(config, config.vae_batch_size, rank, salt=3), resume=resume)
        if rank == 0:
            vae = trainer.model.vae.to("cpu").eval()
            tmp = out / "vae" / ".final.tmp"
            vae.save_pretrained(tmp)
            for f in tmp.iterdir():  # same file names: replace each atomically
                f.replace(vae_final / f.name)
            tmp.rmdir()
            _record(out, "decoder", {"steps": trainer.step, "minutes": trainer.train_seconds / 60,
                                     "final": history[-1] if history else None})
    if "unet" not in stages:
        return vae_final

    # 3. UNet + text encoder on frozen VAE latents.
    vae = AutoencoderKL.from_pretrained(vae_final).eval().requires_grad_(False)
    device = resolve_device(config.device, "device")
    vae.to(device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = SDShapesModel(make_unet(config), make_text_encoder(config, tokenizer))
    from diffusers import DDPMScheduler

    alphas = DDPMScheduler(**BETAS).alphas_cumprod.float()
    trainer = _trainer(model, text_to_image_step(vae, alphas), config, out / "unet" / "checkpoints",
                       steps=config.unet_steps, lr=config.lr, warmup=config.warmup_steps, ema=config.ema_decay,
                       checkpoint_every=config.checkpoint_every, max_checkpoints=None)
    t0 = time.monotonic()
    deadline = None
    if config.unet_minutes is not None:  # a budget of training time over all runs: a resume gets what is left
        found = latest_checkpoint(out / "unet" / "checkpoints") if resume else None
        spent = json.loads((found / "trainer_state.json").read_text()).get("train_seconds", 0.0) if found else 0.0
        deadline = t0 + max(0.0, 60 * config.unet_minutes - spent)
    history = trainer.fit(_SceneStream(config, config.batch_size, rank, salt=2, tokenizer=tokenizer,
                                       deadline=deadline), resume=resume)
    minutes = (time.monotonic() - t0) / 60
    path = out / "pipeline"
    if rank == 0:
        final = (trainer.ema_model if trainer.ema_model is not None else trainer.model).to("cpu").eval()
        vae = AutoencoderKL.from_pretrained(vae_final).eval()  # the newest decoder (a decoder stage may have run beside)
        pipe = StableDiffusionPipeline(vae=vae, text_encoder=final.text_encoder, tokenizer=tokenizer,
                                       unet=final.unet, scheduler=make_scheduler(), safety_checker=None,
                                       feature_extractor=None, requires_safety_checker=False)
        pipe.save_pretrained(path)
        _record(out, "unet_runs", {"steps_end": trainer.step, "minutes": minutes,
                                   "train_minutes_total": trainer.train_seconds / 60, "world_size": world,
                                   "device": str(device), "final": history[-1] if history else None}, append=True)
        (out / "unet" / "history.json").write_text(json.dumps(history))
        logger.info("sd-shapes: %d UNet steps (this run %.1f min); saved %s", trainer.step, minutes, path)
    return path


def pipeline_from_checkpoint(run_dir: str | Path, checkpoint: str | Path, ema: bool = True) -> Any:
    """A :class:`~diffusers.StableDiffusionPipeline` from one UNet-stage checkpoint of a ``train_sd_shapes`` run.

    Args:
        run_dir: the run's ``output_dir`` (``train_info.json``, ``tokenizer/``, ``vae/final``).
        checkpoint: a ``checkpoint-*`` folder of ``run_dir/unet/checkpoints``.
        ema: load the EMA weights (what the finished run saves) rather than the raw ones.
    """
    from diffusers import AutoencoderKL, StableDiffusionPipeline
    from transformers import CLIPTokenizer

    from ..training import load_weights

    run = Path(run_dir)
    info = json.loads((run / "train_info.json").read_text())
    known = set(SDShapesConfig.__dataclass_fields__)
    config = SDShapesConfig(**{k: v for k, v in info["config"].items() if k in known})
    tokenizer = CLIPTokenizer.from_pretrained(run / "tokenizer")
    with torch.random.fork_rng(devices=[]):
        model = SDShapesModel(make_unet(config), make_text_encoder(config, tokenizer))
    load_weights(model, checkpoint, ema=ema)
    vae = AutoencoderKL.from_pretrained(run / "vae" / "final")
    return StableDiffusionPipeline(vae=vae.eval(), text_encoder=model.text_encoder.eval(), tokenizer=tokenizer,
                                   unet=model.unet.eval(), scheduler=make_scheduler(), safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)


def export_pipeline(run_dir: str | Path, dest: str | Path, half: bool = True, card: str | None = None) -> Path:
    """Write the trained pipeline of ``run_dir`` (``run_dir/pipeline``) to ``dest`` for bundling.

    Args:
        run_dir: a finished ``train_sd_shapes`` run.
        dest: the folder to write (a complete ``StableDiffusionPipeline`` folder, plus ``train_info.json``).
        half: store the UNet and VAE weights in float16 (half the size; diffusers loads them back as float32 unless
            asked otherwise). The text encoder stays float32: transformers would otherwise load it in float16 and
            feed a float32 UNet half-precision states.
        card: the model card (``README.md``) text, if any.
    """
    import shutil

    from diffusers import StableDiffusionPipeline

    run = Path(run_dir)
    pipe = StableDiffusionPipeline.from_pretrained(run / "pipeline")
    if half:
        pipe.unet.to(torch.float16)
        pipe.vae.to(torch.float16)
    dest = Path(dest)
    if dest.exists():
        shutil.rmtree(dest)
    pipe.save_pretrained(dest)
    shutil.copy(run / "train_info.json", dest / "train_info.json")
    # What scenegraph_diff's generate reads: the prompts it can draw and the sampling defaults.
    settings = {"world": "shapes", "size": int(pipe.unet.config.sample_size * pipe.vae_scale_factor),
                "steps": DEFAULT_STEPS, "guidance_scale": DEFAULT_GUIDANCE}
    (dest / "scenegraph_diff.json").write_text(json.dumps(settings, indent=1) + "\n")
    if card is not None:
        (dest / "README.md").write_text(card)
    return dest
