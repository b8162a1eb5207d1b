"""``scenegraph-diff generate``: prompts -> scene graphs -> images (PNG) + graphs (JSON / JSONL).

Default model: the bundled shapes model (:class:`~.pipeline.ShapesPipeline`, offline). With ``model``
set, a Stable Diffusion checkpoint is loaded into :class:`~scenegraph_diff.pipelines.SceneGraphPipeline`
instead. Output layout, for prompts ``0..P-1`` and ``num_images`` = K:

    DIR/00000.png, DIR/00000_1.png, ..., DIR/00000_{K-1}.png, DIR/00001.png, ...
    DIR/00000.json ...   the parsed graph of each prompt (SceneGraph JSON v1)

A relation that contradicts the ones parsed before it (a parse error: no image can satisfy both) is
skipped with a warning; the JSON files keep the parsed graph as it came from the parser.
    DIR/graphs.jsonl     one parsed graph per prompt, in input order
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..graph.scene_graph import SceneGraph

__all__ = ["GenerateConfig", "generate", "image_name"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GenerateConfig:
    """Settings of :func:`generate`.

    Args:
        prompts: the prompts (at least one).
        out: output folder (created).
        num_images: images per prompt.
        seed: seed of the sampling generator.
        steps: denoising steps (``None``: the pipeline's default).
        model: ``None`` for the bundled shapes model, else a Stable Diffusion id or folder, or a saved
            ``ShapesPipeline`` folder.
        scale: nearest-neighbour upscaling factor of the written PNGs (1 = native 32x32).
        parser_backend: parser backend for :func:`scenegraph_diff.parsing.load_parser`.
        batch_size: images per batch.
        graph_refiner: folder of a saved :class:`~scenegraph_diff.diffusion.SceneGraphRefiner`: the parsed
            graphs are refined (SDEdit on the typed graph) before generation, and the refined graphs are
            the ones written to ``DIR/00000.json``. Works with any image model.
        refine_strength: fraction of object classes / relation slots re-masked, in ``(0, 1]``.
        refine_steps: refiner network evaluations.
        device: where the image model and the refiner run: ``"cpu"`` (default: outputs are bit-reproducible),
            ``"cuda"``, ``"cuda:N"`` or ``"auto"`` (CUDA when available). Parsing stays on CPU, and the noise is
            drawn from a CPU generator seeded with ``seed`` on every device, so CUDA images match the CPU ones up
            to floating-point differences.
    """

    prompts: tuple[str, ...]
    out: str
    num_images: int = 1
    seed: int = 0
    steps: int | None = None
    model: str | None = None
    scale: int = 1
    parser_backend: str = "auto"
    batch_size: int = 256
    graph_refiner: str | None = None
    refine_strength: float = 0.3
    refine_steps: int = 5
    device: str = "cpu"

    def __post_init__(self) -> None:
        if not self.prompts:
            raise ValueError("generate needs at least one prompt")
        for i, p in enumerate(self.prompts):
            if not isinstance(p, str) or not p.strip():
                raise ValueError(f"prompt {i} is empty")
        if self.num_images < 1:
            raise ValueError(f"num_images must be >= 1, got {self.num_images}")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.scale < 1:
            raise ValueError(f"scale must be >= 1, got {self.scale}")
        if not 0.0 < self.refine_strength <= 1.0:
            raise ValueError(f"refine_strength must be in (0, 1], got {self.refine_strength}")
        if self.refine_steps < 1:
            raise ValueError(f"refine_steps must be >= 1, got {self.refine_steps}")
        from ..devices import check_device

        check_device(self.device, "device")


def image_name(prompt_index: int, k: int) -> str:
    """``00000.png`` for the first image of a prompt, ``00000_1.png`` ... for the next ones."""
    return f"{prompt_index:05d}.png" if k == 0 else f"{prompt_index:05d}_{k}.png"


def _is_shapes_folder(path: Path) -> bool:
    index = path / "model_index.json"
    return index.is_file() and json.loads(index.read_text()).get("_class_name") == "ShapesPipeline"


def _save_png(image: np.ndarray, path: Path, scale: int) -> None:
    from PIL import Image

    if scale > 1:
        image = image.repeat(scale, axis=0).repeat(scale, axis=1)
    Image.fromarray(image).save(path)


def generate(config: GenerateConfig, progress: Callable[[int], None] | None = None) -> dict:
    """Run the generation described by ``config``; return a summary dict (files, graphs, seconds).

    Raises:
        RuntimeError: ``config.device`` names CUDA but CUDA is not available.
    """
    import torch

    from ..devices import resolve_device

    device = resolve_device(config.device, "device")  # fail before any work
    t0 = time.perf_counter()
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    from ..parsing import load_parser

    parser = load_parser(config.parser_backend)
    graphs: list[SceneGraph] = []
    for p in config.prompts:
        g = parser.parse(p) if hasattr(parser, "parse") else parser(p)  # type: ignore[operator]
        graphs.append(g if g.text is not None else SceneGraph(g.objects, g.relations, p))
    if config.graph_refiner is not None:
        from ..diffusion import SceneGraphRefiner

        refiner = SceneGraphRefiner.from_pretrained(config.graph_refiner).to(device)
        # Its own generator: refining never shifts the image noise.
        graphs = refiner.refine(graphs, strength=config.refine_strength, num_steps=config.refine_steps,
                                generator=torch.Generator().manual_seed(config.seed + 1))
    generator = torch.Generator().manual_seed(config.seed)
    files: list[str] = []
    if config.model is None or _is_shapes_folder(Path(config.model)):
        from .pipeline import DEFAULT_STEPS, ShapesPipeline

        pipe = ShapesPipeline.from_bundled() if config.model is None else ShapesPipeline.from_pretrained(config.model)
        pipe.to(device)
        result = pipe(graphs, num_images_per_prompt=config.num_images, generator=generator,
                      num_inference_steps=config.steps or DEFAULT_STEPS, batch_size=config.batch_size,
                      drop_contradictory=True)
        images = list(result.images)
    else:
        images = _generate_sd(config, graphs, generator, device)
    for i in range(len(graphs)):
        for k in range(config.num_images):
            path = out / image_name(i, k)
            _save_png(images[i * config.num_images + k], path, config.scale)
            files.append(str(path))
        (out / f"{i:05d}.json").write_text(graphs[i].to_json() + "\n", encoding="utf-8")
        if progress is not None:
            progress(1)
    from ..graph import write_jsonl

    write_jsonl(out / "graphs.jsonl", graphs)
    return {"out": str(out), "images": files, "graphs": str(out / "graphs.jsonl"), "num_prompts": len(graphs),
            "seconds": round(time.perf_counter() - t0, 3)}


def _generate_sd(config: GenerateConfig, graphs: Sequence[SceneGraph], generator: object,
                 device: object = "cpu") -> list[np.ndarray]:
    """Images from a Stable Diffusion checkpoint through ``SceneGraphPipeline`` (loaded from ``config.model``)
    on ``device`` (``generator`` stays on CPU: diffusers draws the latents there and moves them)."""
    try:
        from ..pipelines import SceneGraphPipeline
    except ImportError as e:
        raise RuntimeError(f"--model {config.model!r} needs scenegraph_diff.pipelines.SceneGraphPipeline: {e}") from e
    pipe = SceneGraphPipeline.from_pretrained(config.model).to(device)
    images: list[np.ndarray] = []
    kwargs = {} if config.steps is None else {"num_inference_steps": config.steps}
    for g in graphs:
        res = pipe(prompt=g.text or None, scene_graph=g, num_images_per_prompt=config.num_images,
                   generator=generator, output_type="np", **kwargs)
        for im in res.images:
            images.append(np.clip(np.asarray(im) * 255.0 + 0.5, 0, 255).astype(np.uint8))
    return images
