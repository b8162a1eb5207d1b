r"""Relation rectification (RRNet, Wu et al., CVPR 2024): train the graph encoder + conditioner, SD frozen.

For a prompt "A R B" with images of A R B (positive) and of B R A (the swapped pair), with the same
noise :math:`\epsilon` and timestep :math:`t`, and :math:`c` the graph-conditioned embedding of "A R B":

.. math::
    \mathcal{L} = \lambda_+ \,\| \hat\epsilon(x_t^{ARB}, t, c) - \epsilon \|^2
                - \lambda_- \min\big(\| \hat\epsilon(x_t^{BRA}, t, c) - \epsilon \|^2,\ b\big),

(:math:`\lambda_+ = 10`, :math:`\lambda_- = 2` as in RRNet). RRNet's negative term is unbounded below;
here it is clamped at ``neg_bound`` :math:`b` (no gradient past it). Timesteps are drawn with
:math:`p(t) \propto (t + 1)^{\gamma}` (``timestep_power``; :math:`\gamma > 0` favours large, layout-deciding
timesteps). For ``v_prediction`` models the target is the velocity instead of :math:`\epsilon`.

Dataset layout (RRNet's)::

    ROOT/<relation>/index.json        {"A": "cat", "R": "on", "B": "dog",
                                        "ARB": "a cat on a dog", "BRA": "a dog on a cat"}   (or a list of these)
    ROOT/<relation>/<prompt>/*.png    one image folder per prompt ("a cat on a dog/", "a dog on a cat/")
                                      and per object ("cat/", "dog/"; read but not used by the objective)

An entry may name its folders explicitly with ``"images": {"ARB": "pos", "BRA": "neg", ...}``.

Training uses the shared :class:`~scenegraph_diff.training.Trainer` (AdamW, LR schedule, clipping, EMA,
safetensors checkpoints, resume, DDP under ``torchrun``); this module supplies the step
(:func:`rectification_step`) and the data.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..graph.scene_graph import Relation, SceneGraph, SceneObject
from .alignment import GraphAlignment, align_batch, find_span
from .graph_batch import graph_batch

if TYPE_CHECKING:  # pragma: no cover
    from ..pipelines.scene_graph import SceneGraphPipeline

logger = logging.getLogger(__name__)

__all__ = ["RectificationConfig", "RectificationExample", "RectificationDataset", "Rectifier",
           "rectification_step", "prepare_rectification", "evaluate_rectification", "train_rectification",
           "RectificationRunConfig", "run_rectification", "triplet_graph"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


@dataclass(frozen=True)
class RectificationConfig:
    """Settings of the RRNet objective.

    Args:
        pos_weight: :math:`\\lambda_+` (RRNet: 10).
        neg_weight: :math:`\\lambda_-` (RRNet: 2).
        neg_bound: clamp of the swapped-pair MSE (the negative term stays bounded).
        timestep_power: :math:`\\gamma` of :math:`p(t) \\propto (t+1)^\\gamma` (0 = uniform).
        batch_size: (prompt, positive image, negative image) triples per step and rank.
        resolution: images are resized to this square size before VAE encoding.
        scale: graph scale :math:`w` during training (RRNet: 1).
    """

    pos_weight: float = 10.0
    neg_weight: float = 2.0
    neg_bound: float = 1.0
    timestep_power: float = 1.0
    batch_size: int = 1
    resolution: int = 512
    scale: float = 1.0

    def __post_init__(self) -> None:
        for name in ("pos_weight", "neg_weight", "neg_bound", "timestep_power"):
            if getattr(self, name) < 0:
                raise ValueError(f"RectificationConfig.{name} must be >= 0, got {getattr(self, name)}")
        if self.batch_size < 1:
            raise ValueError(f"RectificationConfig.batch_size must be >= 1, got {self.batch_size}")
        if self.resolution < 8:
            raise ValueError(f"RectificationConfig.resolution must be >= 8, got {self.resolution}")


@dataclass(frozen=True)
class RectificationExample:
    """One relation prompt with its positive (A R B) and swapped (B R A) images."""

    graph: SceneGraph
    prompt: str
    positive: tuple[Path, ...]
    negative: tuple[Path, ...]
    objects: dict[str, tuple[Path, ...]] = field(default_factory=dict)


def triplet_graph(subject: str, predicate: str, obj: str, text: str) -> SceneGraph:
    """The graph "subject -predicate-> object" with spans into ``text`` where the words are found."""
    s_span = find_span(text, subject)
    o_span = find_span(text, obj, s_span[1] if s_span else 0) or find_span(text, obj)
    r_span = find_span(text, predicate, s_span[1] if s_span else 0) or find_span(text, predicate)
    return SceneGraph(
        (SceneObject(subject, span=s_span), SceneObject(obj, span=o_span)),
        (Relation(0, predicate, 1, span=r_span),),
        text,
    )


def _images(folder: Path) -> tuple[Path, ...]:
    if not folder.is_dir():
        return ()
    return tuple(sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES))


class RectificationDataset(Sequence[RectificationExample]):
    """Reads ``ROOT/<relation>/index.json`` folders (see the module docstring).

    Args:
        root: the dataset root.
        relations: relation folder names to read (default: every folder with an ``index.json``).
    """

    def __init__(self, root: str | Path, relations: Sequence[str] | None = None) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"rectification data root {str(self.root)!r} is not a folder")
        if relations is None:
            folders = sorted(p.parent for p in self.root.glob("*/index.json"))
        else:
            folders = [self.root / r for r in relations]
        if not folders:
            raise FileNotFoundError(f"no <relation>/index.json under {str(self.root)!r}")
        self.examples: list[RectificationExample] = []
        for folder in folders:
            index = folder / "index.json"
            if not index.is_file():
                raise FileNotFoundError(f"{str(index)!r} does not exist")
            entries = json.loads(index.read_text(encoding="utf-8"))
            entries = entries if isinstance(entries, list) else [entries]
            for k, e in enumerate(entries):
                where = f"{index}[{k}]"
                missing = [key for key in ("A", "R", "B", "ARB", "BRA") if not isinstance(e.get(key), str)]
                if missing:
                    raise ValueError(f"{where}: missing or non-string keys {missing}")
                names = dict(e.get("images", {}))
                pos = _images(folder / names.get("ARB", e["ARB"]))
                neg = _images(folder / names.get("BRA", e["BRA"]))
                if not pos or not neg:
                    raise FileNotFoundError(f"{where}: no images for {'ARB' if not pos else 'BRA'} in "
                                            f"{str(folder / names.get('ARB' if not pos else 'BRA', e['ARB' if not pos else 'BRA']))!r}")
                objects = {key: _images(folder / names.get(key, e[key])) for key in ("A", "B")}
                graph = triplet_graph(e["A"], e["R"], e["B"], e["ARB"])
                self.examples.append(RectificationExample(graph, e["ARB"], pos, neg, objects))

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> RectificationExample:  # type: ignore[override]
        return self.examples[i]


def load_image(path: Path, resolution: int) -> Tensor:
    """An RGB image as ``[3, H, W]`` in ``[-1, 1]``, resized (bicubic) to ``resolution``²."""
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB").resize((resolution, resolution), Image.BICUBIC)
        x = torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8).view(resolution, resolution, 3)
    return x.permute(2, 0, 1).float() / 127.5 - 1.0


class Rectifier(nn.Module):
    """The trainable part: a scene-graph encoder and a conditioner (SD stays outside, frozen)."""

    def __init__(self, graph_encoder: nn.Module, graph_conditioner: nn.Module) -> None:
        super().__init__()
        self.graph_encoder = graph_encoder
        self.graph_conditioner = graph_conditioner

    def forward(self, graphs: Any, prompt_embeds: Tensor, alignment: GraphAlignment, scale: float = 1.0) -> Tensor:
        """``prompt_embeds [B, L, D]`` conditioned on the batched ``graphs`` (``HeteroData``)."""
        return self.graph_conditioner(prompt_embeds, self.graph_encoder(graphs), alignment, scale=scale)


@dataclass
class PreparedData:
    """Everything the step needs, precomputed with the frozen SD parts (per example)."""

    graphs: list[SceneGraph]
    prompt_embeds: Tensor  # [n, L, D]
    positive: list[Tensor]  # per example [k_i, C, h, w] latents
    negative: list[Tensor]
    tokenizer: Any
    embedder: Any

    def sample(self, batch_size: int, generator: torch.Generator) -> dict[str, Any]:
        """Draw ``batch_size`` (example, positive latent, negative latent) triples with ``generator``."""
        dev = generator.device
        idx = torch.randint(len(self.graphs), (batch_size,), generator=generator, device=dev).tolist()
        pos, neg = [], []
        for i in idx:
            pos.append(self.positive[i][torch.randint(len(self.positive[i]), (1,), generator=generator, device=dev).item()])
            neg.append(self.negative[i][torch.randint(len(self.negative[i]), (1,), generator=generator, device=dev).item()])
        graphs = [self.graphs[i] for i in idx]
        prompt_embeds = self.prompt_embeds[idx]  # [B, L, D]
        alignment = align_batch(graphs, self.tokenizer, max_length=prompt_embeds.size(1))
        return {
            "graphs": graph_batch(graphs, self.embedder, prompt_embeds, alignment),  # scene node = EOT state
            "alignment": alignment,
            "prompt_embeds": prompt_embeds,
            "positive": torch.stack(pos),
            "negative": torch.stack(neg),
        }


@torch.no_grad()
def prepare_rectification(pipe: "SceneGraphPipeline", examples: Sequence[RectificationExample],
                          resolution: int, device: torch.device | str = "cpu") -> PreparedData:
    """Encode prompts (frozen text encoder) and images (VAE posterior mean × scaling factor) once."""
    pipe.to(device)
    embeds = []
    for ex in examples:
        pe, _ = pipe.encode_prompt(ex.prompt, torch.device(device), 1, False)
        embeds.append(pe[0])
    sf = pipe.vae.config.scaling_factor

    def encode(paths: Sequence[Path]) -> Tensor:
        x = torch.stack([load_image(p, resolution) for p in paths]).to(device=device, dtype=pipe.vae.dtype)
        return pipe.vae.encode(x).latent_dist.mean * sf

    embedder = pipe.token_embedder()
    return PreparedData(
        graphs=[ex.graph for ex in examples], prompt_embeds=torch.stack(embeds),
        positive=[encode(ex.positive) for ex in examples], negative=[encode(ex.negative) for ex in examples],
        tokenizer=pipe.tokenizer, embedder=embedder,
    )


def _timestep_weights(num_train_timesteps: int, power: float) -> Tensor:
    return (torch.arange(num_train_timesteps, dtype=torch.float64) + 1.0) ** power


def rectification_step(unet: nn.Module, scheduler: Any, config: RectificationConfig):
    """Build ``step_fn(model, batch, generator) -> {"loss", "positive", "negative"}`` for the Trainer.

    ``model`` is a :class:`Rectifier` (or its DDP wrapper); ``unet`` and ``scheduler`` are the frozen SD
    parts (``scheduler`` only lends its config: the noise is added by a ``DDPMScheduler`` with the same betas, so a
    pipeline sampling with DPM-Solver trains on the right noise levels). ``positive`` / ``negative`` are the unweighted MSEs of the two pairs. An optional boolean
    ``batch["negative_mask"] [B]`` marks the examples that have a swapped image (graphs without a relation have
    none): the negative term then covers only those (each clamped at ``neg_bound``, averaged over the batch).
    """
    from diffusers import DDPMScheduler

    # The forward (noising) process comes from the training schedule, never from the pipeline's sampler: a
    # multistep solver's add_noise (DPM-Solver, ...) indexes its own inference sigmas.
    scheduler = DDPMScheduler.from_config(scheduler.config)
    weights = _timestep_weights(scheduler.config.num_train_timesteps, config.timestep_power)
    prediction_type = scheduler.config.prediction_type

    def step_fn(model: nn.Module, batch: dict[str, Any], generator: torch.Generator) -> dict[str, Tensor]:
        pos, neg = batch["positive"], batch["negative"]  # [B, C, h, w]
        b = pos.size(0)
        device = pos.device
        t = torch.multinomial(weights.to(generator.device), b, replacement=True, generator=generator).to(device)
        noise = torch.randn(pos.shape, generator=generator, device=generator.device, dtype=pos.dtype).to(device)
        cond = model(batch["graphs"], batch["prompt_embeds"], batch["alignment"].to(device), scale=config.scale)
        x = torch.cat([scheduler.add_noise(pos, noise, t), scheduler.add_noise(neg, noise, t)])  # [2B, C, h, w]
        pred = unet(x, torch.cat([t, t]), encoder_hidden_states=torch.cat([cond, cond]).to(unet.dtype)).sample
        if prediction_type == "v_prediction":
            target = torch.cat([scheduler.get_velocity(pos, noise, t), scheduler.get_velocity(neg, noise, t)])
        else:
            target = torch.cat([noise, noise])
        mse_pos = F.mse_loss(pred[:b].float(), target[:b].float())
        per_neg = (pred[b:].float() - target[b:].float()).pow(2).flatten(1).mean(1)  # [B]
        mask = batch.get("negative_mask")  # [B] bool: which examples have a swapped image (optional)
        if mask is None:
            mse_neg = per_neg.mean()
            neg_term = mse_neg.clamp(max=config.neg_bound)
        else:
            mask = mask.to(device=device, dtype=per_neg.dtype)
            mse_neg = (per_neg * mask).sum() / mask.sum().clamp(min=1)
            neg_term = (per_neg.clamp(max=config.neg_bound) * mask).sum() / max(b, 1)
        loss = config.pos_weight * mse_pos - config.neg_weight * neg_term
        return {"loss": loss, "positive": mse_pos, "negative": mse_neg}

    return step_fn


@torch.no_grad()
def evaluate_rectification(pipe: "SceneGraphPipeline", data: PreparedData, num_samples: int = 32,
                           seed: int = 1234, timestep_power: float = 0.0) -> dict[str, float]:
    """Mean positive / swapped-pair MSE over a fixed set of (example, image, t, noise) draws (the same
    draws for every call with the same ``seed``), with the pipeline's current graph modules."""
    device = pipe.unet.device
    generator = torch.Generator(device).manual_seed(seed)
    step = rectification_step(pipe.unet, pipe.scheduler, RectificationConfig(timestep_power=timestep_power))
    model = Rectifier(pipe.graph_encoder, pipe.graph_conditioner)
    was_training = model.training
    model.eval()
    pos, neg = [], []
    for _ in range(num_samples):
        batch = data.sample(1, generator)
        batch["graphs"] = batch["graphs"].to(device)
        out = step(model, batch, generator)
        pos.append(out["positive"].item())
        neg.append(out["negative"].item())
    model.train(was_training)
    return {"positive": sum(pos) / len(pos), "negative": sum(neg) / len(neg)}


def train_rectification(pipe: "SceneGraphPipeline", examples: Sequence[RectificationExample] | Callable[..., Any],
                        config: RectificationConfig, train_config: Any, resume: bool = False) -> list[dict[str, float]]:
    """Train ``pipe.graph_encoder`` and ``pipe.graph_conditioner`` in place with the RRNet objective.

    Args:
        pipe: a :class:`~scenegraph_diff.pipelines.SceneGraphPipeline`; its UNet, VAE and text encoder are
            frozen (``requires_grad_(False)``).
        examples: e.g. a :class:`RectificationDataset`; or a batch source ``batches(step, generator) -> dict`` that
            yields :func:`rectification_step`'s inputs itself (e.g. :class:`~scenegraph_diff.shapes.swap_pairs.SwapPairStream`,
            which renders swap pairs on the fly; ``config.batch_size`` and ``resolution`` are then the source's).
        config: the objective's settings.
        train_config: a :class:`~scenegraph_diff.training.TrainConfig` (RRNet: 500 steps, AdamW, lr 3e-4).
        resume: continue from the newest checkpoint in ``train_config.output_dir``.

    Returns:
        The training history (one dict per step: ``loss``, ``positive``, ``negative``, ``lr``, ...). With
        EMA enabled, the EMA weights are copied into the pipeline's graph modules at the end.
    """
    from ..training import Trainer

    streaming = callable(examples)
    if not streaming and len(examples) == 0:  # type: ignore[arg-type]
        raise ValueError("train_rectification: no examples")
    for module in (pipe.unet, pipe.vae, pipe.text_encoder):
        module.requires_grad_(False)
    trainer_device = torch.device("cuda" if train_config.device == "auto" and torch.cuda.is_available()
                                  else ("cpu" if train_config.device == "auto" else train_config.device))
    if trainer_device.type == "cuda" and trainer_device.index is None:
        from ..training import distributed_env

        trainer_device = torch.device("cuda", distributed_env()[2])
    model = Rectifier(pipe.graph_encoder, pipe.graph_conditioner).train()
    step_fn = rectification_step(pipe.unet, pipe.scheduler, config)
    if streaming:
        pipe.to(trainer_device)
        batches = examples
    else:
        data = prepare_rectification(pipe, list(examples), config.resolution, trainer_device)  # type: ignore[arg-type]

        def batches(step: int, generator: torch.Generator) -> dict[str, Any]:
            return data.sample(config.batch_size, generator)

    trainer = Trainer(model, step_fn, train_config)
    history = trainer.fit(batches, resume=resume)
    if trainer.ema_model is not None:
        model.load_state_dict(trainer.ema_model.state_dict())
    pipe.graph_encoder.eval()
    pipe.graph_conditioner.eval()
    return history


@dataclass(frozen=True)
class RectificationRunConfig:
    """Everything ``scenegraph-diff train-rectification`` needs (see :func:`run_rectification`).

    Args:
        data_root: folder with ``<relation>/index.json`` sub-folders (``data="folder"``).
        output_dir: run folder: checkpoints, ``graph_encoder/``, ``graph_conditioner/``, ``loss.png``.
        model: a bundled model name (``sd-shapes``), a local SD 1.x/2.x pipeline folder (or hub id, if reachable),
            or ``"tiny"`` for :func:`~scenegraph_diff.pipelines.testing.tiny_sd_components` (offline demos).
        data: ``"folder"`` (RRNet's layout under ``data_root``) or ``"shapes"`` (swap pairs of the shapes world
            rendered on the fly, :class:`~scenegraph_diff.shapes.swap_pairs.SwapPairStream`: all four predicates,
            1–3 objects, 0–3 relations; ``objective.batch_size`` scenes per step).
        use_tokens: a fresh conditioner also writes per-token offsets (object / relation words); ``False`` =
            RRNet's EOT-only offset.
        min_relations: with ``data="shapes"``, draw only scenes with at least this many relations.
        save_pipeline: also write the whole trained ``SceneGraphPipeline`` to ``output_dir/pipeline`` (loadable by
            ``SceneGraphPipeline.from_pretrained`` and ``scenegraph-diff generate --model``).
        relations: relation folders to use (default: all).
        graph_encoder: optional folder of a pretrained :class:`~scenegraph_diff.nn.SceneGraphEncoder`.
        conv: ``"hgcn"`` (RRNet) or ``"rhgnn"`` for a fresh encoder.
        max_steps, lr, grad_clip, ema_decay, checkpoint_every, seed, device, num_threads: training settings
            (RRNet: 500 AdamW steps at lr 3e-4).
        objective: the :class:`RectificationConfig`.
    """

    data_root: str | None = None
    output_dir: str = "runs/rectification"
    model: str = "tiny"
    data: str = "folder"
    use_tokens: bool = True
    min_relations: int = 0
    save_pipeline: bool = False
    relations: tuple[str, ...] | None = None
    graph_encoder: str | None = None
    conv: str = "hgcn"
    max_steps: int = 500
    lr: float = 3e-4
    grad_clip: float | None = 1.0
    ema_decay: float | None = None
    checkpoint_every: int | None = 100
    seed: int = 0
    device: str = "auto"
    num_threads: int = 1
    progress: bool = True
    objective: RectificationConfig = field(default_factory=RectificationConfig)

    def __post_init__(self) -> None:
        if self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {self.max_steps}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.conv not in ("hgcn", "rhgnn"):
            raise ValueError(f"conv must be 'hgcn' or 'rhgnn', got {self.conv!r}")
        if self.data not in ("folder", "shapes"):
            raise ValueError(f"data must be 'folder' or 'shapes', got {self.data!r}")
        if self.data == "folder" and not self.data_root:
            raise ValueError("data='folder' needs data_root (a folder with <relation>/index.json sub-folders)")


def run_rectification(config: RectificationRunConfig, resume: bool = False) -> dict[str, Any]:
    """Load the data and the SD pipeline, train, and save the graph modules and the loss curve.

    Returns:
        ``{"graph_encoder": path, "graph_conditioner": path, "plot": path, "steps": n, "first": {...},
        "last": {...}}`` (``first`` / ``last``: mean losses over the first / last 10 % of the steps).
    """
    examples = (RectificationDataset(config.data_root, config.relations)  # fail fast on bad data
                if config.data == "folder" else None)

    from ..nn.encoders import SceneGraphEncoder
    from ..pipelines.scene_graph import SceneGraphPipeline
    from ..training import TrainConfig, distributed_env, plot_history

    encoder = SceneGraphEncoder.from_pretrained(config.graph_encoder) if config.graph_encoder else None
    if config.model == "tiny":
        from ..pipelines.testing import tiny_sd_components

        components = tiny_sd_components(seed=config.seed)
        if encoder is None:
            encoder = _fresh_encoder(components["text_encoder"], components["unet"], config)
        from .conditioner import GraphConditioner

        conditioner = GraphConditioner(graph_dim=encoder.config.out_channels,
                                       embed_dim=components["unet"].config.cross_attention_dim, use_tokens=config.use_tokens)
        pipe = SceneGraphPipeline(**components, graph_encoder=encoder, graph_conditioner=conditioner)
    else:
        from ..bundled import resolve_model

        model_path = resolve_model(config.model)
        kwargs: dict[str, Any] = {"safety_checker": None}
        if encoder is not None:
            kwargs["graph_encoder"] = encoder
        pipe = SceneGraphPipeline.from_pretrained(model_path, **kwargs)
        if encoder is None and not (Path(model_path) / "graph_encoder").is_dir():
            from .conditioner import GraphConditioner

            fresh = _fresh_encoder(pipe.text_encoder, pipe.unet, config)
            pipe.register_modules(graph_encoder=fresh.to(pipe.unet.device), graph_conditioner=GraphConditioner(
                graph_dim=fresh.config.out_channels, embed_dim=pipe.unet.config.cross_attention_dim,
                use_tokens=config.use_tokens).to(pipe.unet.device))
    pipe.set_progress_bar_config(disable=True)
    train_config = TrainConfig(
        max_steps=config.max_steps, lr=config.lr, optimizer="adamw", grad_clip=config.grad_clip,
        ema_decay=config.ema_decay, checkpoint_every=config.checkpoint_every, output_dir=config.output_dir,
        max_checkpoints=None,  # small (graph modules only); all kept for the accuracy-vs-steps curve
        seed=config.seed, num_threads=config.num_threads, device=config.device, progress=config.progress,
        ddp_find_unused_parameters=True,  # graphs without attributes leave attribute weights unused
    )
    if examples is None:
        from ..shapes.swap_pairs import SwapPairStream

        size = pipe.unet.config.sample_size * pipe.vae_scale_factor
        source: Any = SwapPairStream(pipe, config.objective.batch_size, size=size, min_relations=config.min_relations)
    else:
        source = examples
    history = train_rectification(pipe, source, config.objective, train_config, resume=resume)
    out = Path(config.output_dir)
    result: dict[str, Any] = {"steps": len(history)}
    if distributed_env()[0] == 0:
        pipe.graph_encoder.save_pretrained(out / "graph_encoder")
        pipe.graph_conditioner.save_pretrained(out / "graph_conditioner")
        result["graph_encoder"] = str(out / "graph_encoder")
        result["graph_conditioner"] = str(out / "graph_conditioner")
        if config.save_pipeline:
            pipe.save_pretrained(out / "pipeline")
            result["pipeline"] = str(out / "pipeline")
        if history:
            result["plot"] = str(plot_history(history, out / "loss.png", keys=["positive", "negative"]))
            k = max(1, len(history) // 10)
            result["first"] = {key: sum(h[key] for h in history[:k]) / k for key in ("positive", "negative")}
            result["last"] = {key: sum(h[key] for h in history[-k:]) / k for key in ("positive", "negative")}
    return result


def _fresh_encoder(text_encoder: Any, unet: Any, config: RectificationRunConfig) -> Any:
    from ..nn.encoders import SceneGraphEncoder

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return SceneGraphEncoder(in_channels=text_encoder.get_input_embeddings().embedding_dim, hidden_channels=128,
                                 out_channels=unet.config.cross_attention_dim, conv=config.conv)
