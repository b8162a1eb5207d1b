"""``ShapesPipeline``: the bundled offline graph-to-image model of the shapes world (32x32, pixel space).

A diffusers :class:`~diffusers.DiffusionPipeline` with three components:

* ``conditioner`` (:class:`~.conditioning.ShapesConditioner`): graph encoder (HGCN / R-HGNN, or the
  text-only baseline) -> object embeddings, cross-attention tokens and one predicted box per object;
* ``unet`` (:class:`~diffusers.UNet2DConditionModel`): denoises a 7-channel palette one-hot image
  (background + 6 colours, scaled to [-1, 1]) given the layout maps as extra input channels and the
  graph tokens through cross-attention; it predicts palette logits (x0 as a categorical distribution);
* ``scheduler`` (:class:`~diffusers.DDIMScheduler`, ``prediction_type="sample"``).

It departs from ``SceneGraphPipeline`` (a ``StableDiffusionPipeline``: VAE + CLIP text encoder) because
this model has neither; it keeps the same calling convention (a prompt or a ``SceneGraph``) and
round-trips through ``save_pretrained`` / ``from_pretrained``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from diffusers import DDIMScheduler, DiffusionPipeline, UNet2DConditionModel
from diffusers.utils import BaseOutput

from ..graph.scene_graph import SceneGraph, SceneGraphError
from ..weights import align_weights_
from .conditioning import ShapesConditioner
from .layout import NUM_LAYOUT_CHANNELS, layout_maps, repair_layout
from .world import PALETTE, Box, drop_contradictions, validate_shapes_graph

__all__ = ["ShapesPipeline", "ShapesPipelineOutput", "NUM_CLASSES", "bundled_model_path", "make_unet",
           "make_scheduler"]

logger = logging.getLogger(__name__)

NUM_CLASSES = len(PALETTE)  # background + 6 colours
DEFAULT_STEPS = 2


def bundled_model_path() -> Path:
    """Folder of the bundled shapes model (``scenegraph_diff/assets/shapes``)."""
    return Path(__file__).resolve().parent.parent / "assets" / "shapes"


def make_unet(size: int = 32, dim: int = 64, block_out_channels: Sequence[int] = (16, 32, 32)) -> UNet2DConditionModel:
    """The shapes UNet: palette one-hot + layout maps in, palette logits out; cross-attention at 8x8."""
    return UNet2DConditionModel(
        sample_size=size,
        in_channels=NUM_CLASSES + NUM_LAYOUT_CHANNELS,
        out_channels=NUM_CLASSES,
        block_out_channels=tuple(block_out_channels),
        down_block_types=("DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
        layers_per_block=1,
        cross_attention_dim=dim,
        attention_head_dim=16,
        norm_num_groups=8,
    )


def make_scheduler() -> DDIMScheduler:
    """DDIM over a cosine schedule, x0 prediction, ``"trailing"`` timestep spacing (few-step sampling starts
    at ``t = 999``, pure noise; Lin et al. 2023)."""
    return DDIMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type="sample",
                         clip_sample=True, set_alpha_to_one=True, timestep_spacing="trailing")


@dataclass
class ShapesPipelineOutput(BaseOutput):
    """``images``: ``uint8`` ``[B, H, W, 3]``; ``graphs`` and ``layouts``: one per image."""

    images: np.ndarray
    graphs: list[SceneGraph]
    layouts: list[list[Box]]


class ShapesPipeline(DiffusionPipeline):
    """Scene graph (or prompt) -> 32x32 image in the shapes world. See the module docstring."""

    model_cpu_offload_seq = "conditioner->unet"

    def __init__(self, unet: UNet2DConditionModel, conditioner: ShapesConditioner, scheduler: DDIMScheduler) -> None:
        super().__init__()
        self.register_modules(unet=unet, conditioner=conditioner, scheduler=scheduler)

    @classmethod
    def from_pretrained(cls, path: str | Path, **kwargs: object) -> "ShapesPipeline":  # type: ignore[override]
        """Load a pipeline saved by ``save_pretrained`` from a local folder (no network)."""
        if kwargs:
            raise TypeError(f"ShapesPipeline.from_pretrained takes only a folder, got extra {sorted(kwargs)}")
        root = Path(path)
        if not (root / "model_index.json").is_file():
            raise FileNotFoundError(f"{root} is not a saved ShapesPipeline (no model_index.json)")
        unet = UNet2DConditionModel.from_pretrained(root / "unet")
        conditioner = ShapesConditioner.from_pretrained(root / "conditioner")
        scheduler = DDIMScheduler.from_pretrained(root / "scheduler")
        # every weight in owned, aligned memory: the loaded model draws what the saved one did, bit for bit
        return align_weights_(cls(unet=unet.eval(), conditioner=conditioner.eval(), scheduler=scheduler))

    @classmethod
    def from_bundled(cls) -> "ShapesPipeline":
        """The model shipped in the package (trained by ``scenegraph-diff train-shapes``)."""
        path = bundled_model_path()
        if not (path / "model_index.json").is_file():
            raise FileNotFoundError(f"the bundled shapes model is missing from {path}: reinstall the package")
        return cls.from_pretrained(path)

    # ------------------------------------------------------------------ steps
    def _graphs(self, prompt: str | SceneGraph | Sequence[str | SceneGraph],
                parser: Callable[[str], SceneGraph] | None, drop_contradictory: bool) -> list[SceneGraph]:
        items = [prompt] if isinstance(prompt, (str, SceneGraph)) else list(prompt)
        if not items:
            raise ValueError("prompt must name at least one prompt or graph")
        out = []
        for i, item in enumerate(items):
            if isinstance(item, str):
                if parser is None:
                    from .. import parse as parser  # lazy: only string prompts need the parser
                g = parser(item)
                if g.text is None:
                    g = SceneGraph(g.objects, g.relations, item)
            elif isinstance(item, SceneGraph):
                g = item
            else:
                raise TypeError(f"prompt[{i}]: expected a string or SceneGraph, got {type(item).__name__}")
            try:
                validate_shapes_graph(g)
            except SceneGraphError as e:
                raise e.with_prefix(f"prompt[{i}]") from None
            if drop_contradictory:
                g, dropped = drop_contradictions(g)
                if dropped:
                    logger.warning("prompt[%d]: dropped contradictory relations %s of %r", i, dropped, g.text)
            out.append(g)
        return out

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | SceneGraph | Sequence[str | SceneGraph],
        num_images_per_prompt: int = 1,
        num_inference_steps: int = DEFAULT_STEPS,
        generator: torch.Generator | None = None,
        enforce_relations: bool = True,
        layout_jitter: float = 0.06,
        parser: Callable[[str], SceneGraph] | None = None,
        batch_size: int = 256,
        drop_contradictory: bool = False,
    ) -> ShapesPipelineOutput:
        """Generate images.

        Args:
            prompt: a caption, a :class:`SceneGraph`, or a list of them.
            num_images_per_prompt: images per prompt (consecutive in the output).
            num_inference_steps: DDIM steps (default 2).
            generator: randomness for layouts and noise.
            enforce_relations: repair predicted boxes so that every named relation holds on them
                (the graph is known); ``False`` uses the layout head's boxes, only kept apart and inside.
            layout_jitter: standard deviation of the box-centre jitter, as a fraction of the canvas.
            parser: text -> SceneGraph for string prompts (default :func:`scenegraph_diff.parse`).
            batch_size: images per UNet batch.
            drop_contradictory: skip (with a warning) each relation that contradicts the ones named
                before it, instead of raising :class:`SceneGraphError`; ``output.graphs`` holds the
                graphs actually drawn.
        """
        # 1. inputs -> graphs
        if num_images_per_prompt < 1:
            raise ValueError(f"num_images_per_prompt must be >= 1, got {num_images_per_prompt}")
        if num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be >= 1, got {num_inference_steps}")
        graphs = [g for g in self._graphs(prompt, parser, drop_contradictory) for _ in range(num_images_per_prompt)]
        size = int(self.unet.config.sample_size)
        images, layouts = [], []
        for start in range(0, len(graphs), batch_size):
            chunk = graphs[start : start + batch_size]
            imgs, lays = self._sample(chunk, size, num_inference_steps, generator, enforce_relations, layout_jitter)
            images.append(imgs)
            layouts += lays
        return ShapesPipelineOutput(np.concatenate(images), graphs, layouts)

    def _sample(self, graphs: list[SceneGraph], size: int, steps: int, generator: torch.Generator | None,
                enforce: bool, jitter: float) -> tuple[np.ndarray, list[list[Box]]]:
        device = self.unet.device
        # 2. encode the graphs, predict and repair the layout
        cond = self.conditioner(graphs)
        pred = cond.layout.cpu()
        counts = [g.num_objects for g in graphs]
        layouts, i = [], 0
        for g, n in zip(graphs, counts):
            layouts.append(repair_layout(g, pred[i : i + n], size, generator, jitter=jitter, relations=enforce))
            i += n
        maps = layout_maps(graphs, layouts, size).to(device)  # [B, 13, H, W]
        # 3. noise -> palette logits by DDIM
        x = torch.randn(len(graphs), NUM_CLASSES, size, size, generator=generator).to(device)
        self.scheduler.set_timesteps(steps)
        logits = torch.zeros_like(x)
        for t in self.scheduler.timesteps:
            logits = self.unet(torch.cat([x, maps], 1), t, cond.tokens,
                               encoder_attention_mask=cond.token_mask.float()).sample  # [B, 7, H, W]
            x0 = 2 * logits.softmax(1) - 1
            x = self.scheduler.step(x0, t, x, eta=0.0).prev_sample
        # 4. palette classes -> RGB
        classes = logits.argmax(1).cpu().numpy()  # [B, H, W]
        return PALETTE[classes], layouts

