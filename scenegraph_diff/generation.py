"""``scenegraph-diff generate``: prompts -> scene graphs -> images (PNG) + graphs (JSON / JSONL).

One route from prompt to pixels for every model: prompt -> parse -> (refine) -> graph -> a diffusers pipeline
-> image. ``model`` is a bundled model's name (``scenegraph-diff models``), a folder or a hub id:

* a Stable Diffusion folder / id (the bundled ``sd-shapes``, or SD 1.x / 2.x) runs through
  :class:`~scenegraph_diff.pipelines.SceneGraphPipeline`: ``conditioning="text"`` sets the graph scale to 0 (the
  image is bit-identical to plain :class:`~diffusers.StableDiffusionPipeline`), ``"graph"`` applies the folder's
  trained graph adapter (``graph_encoder/`` + ``graph_conditioner/``), ``"layout"`` grounds every object in a box
  that a layout model predicts from the graph (drawn in by the folder's ``layout_adapter/`` (a layout-map
  T2I-Adapter) and/or GLIGEN layers (its ``grounding/``, or a GLIGEN checkpoint); the boxes are written to the graph
  JSON) and ``"graph+layout"`` does both. The default is the strongest the folder
  supports: ``"graph+layout"``, ``"layout"``, ``"graph"``, then ``"text"``;
* a :class:`~scenegraph_diff.shapes.pipeline.ShapesPipeline` folder (the bundled ``shapes``: the layout-painting
  reference, and the default model) draws the graph directly.

A folder that carries ``scenegraph_diff.json`` with ``{"world": "shapes"}`` (sd-shapes) only draws the shapes world,
and prompts are checked against it as for ``shapes``. Output layout, for prompts ``0..P-1`` and ``num_images`` = K:

    DIR/00000.png, DIR/00000_1.png, ..., DIR/00000_{K-1}.png, DIR/00001.png, ...
    DIR/00000.json ...   the parsed graph of each prompt (SceneGraph JSON v1)
    DIR/graphs.jsonl     one parsed graph per prompt, in input order

Every prompt is parsed and checked against what the model can draw (:func:`check_prompts`) before torch
and diffusers are imported, so a prompt the model cannot draw is rejected in well under a second. With
``on_error="skip"`` such prompts are left out (no PNG or JSON file for them; ``graphs.jsonl`` still has a
line for every prompt) and listed in the summary's ``skipped``.

Stable Diffusion models also take the sampling-time methods of :mod:`scenegraph_diff.guidance`: FK steering
(``fk_particles``, ``fk_reward``), DeepCache (``cache_interval``) and composed relation scores (``composed``).

A relation that contradicts the ones parsed before it (a parse error: no image can satisfy both) is
skipped with a warning; the JSON files keep the parsed graph as it came from the parser.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .graph.scene_graph import SceneGraph, SceneGraphError

__all__ = ["GenerateConfig", "generate", "check_prompts", "model_kind", "model_settings", "image_name",
           "image_seeds", "CONDITIONINGS"]

#: What ``conditioning`` may be, weakest first.
CONDITIONINGS: tuple[str, ...] = ("text", "graph", "layout", "graph+layout")


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
        conditioning: for a Stable Diffusion model, ``"text"`` (graph scale 0, no grounding: plain SD), ``"graph"``
            (the folder's trained graph adapter), ``"layout"`` (box grounding: layout model -> GLIGEN layers) or
            ``"graph+layout"``; ``None``: the strongest the folder supports (see the module docstring).
        layout_model: layout model for ``"layout"`` conditioning: a bundled name (``layout-shapes``) or folder
            (``None``: the folder's ``scenegraph_diff.json`` ``layout_model``). Each prompt gets one layout, sampled
            with its own generator (seeded from ``seed`` and the prompt's index), shared by its images.
        grounding_steps_fraction: scheduled sampling: ground the first fraction of the steps (``None``: the
            model's default, else 1).
        grounding_scale: strength of a layout adapter's residuals (``None``: the model's default, else 1).
        guidance_scale: classifier-free guidance (``None``: the model's default — sd-shapes' card, else 7.5).
        graph_scale: strength of the graph offsets with ``conditioning="graph"`` (``None``: the model's default).
        device: where the image model and the refiner run: ``"cpu"`` (default: outputs are bit-reproducible),
            ``"cuda"``, ``"cuda:N"`` or ``"auto"`` (CUDA when available). Parsing stays on CPU, and the noise is
            drawn from a CPU generator seeded with ``seed`` on every device, so CUDA images match the CPU ones up
            to floating-point differences.
        fk_particles: Stable Diffusion models: FK steering with this many particles per image (1 = off; > 1 samples
            with the stochastic variant of the model's scheduler, :func:`~scenegraph_diff.guidance.fk.stochastic_scheduler`).
        fk_reward: FK's reward: ``"checker"`` (the shapes-world checker on the predicted image; shapes-world models
            only) or ``"dc"`` (the Diffusion Classifier's relation verdicts under the model itself).
        cache_interval: Stable Diffusion models: DeepCache, the UNet's deep features refreshed every this many steps
            (1 = off).
        composed: Stable Diffusion models: composed scores, one guided term per relation (Composable Diffusion).
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
    conditioning: str | None = None
    layout_model: str | None = None
    grounding_steps_fraction: float | None = None
    grounding_scale: float | None = None
    guidance_scale: float | None = None
    graph_scale: float | None = None
    fk_particles: int = 1
    fk_reward: str = "checker"
    cache_interval: int = 1
    composed: bool = False

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
        if self.conditioning not in (None, *CONDITIONINGS):
            raise ValueError(f"conditioning must be one of {', '.join(CONDITIONINGS)}, got {self.conditioning!r}")
        if self.grounding_steps_fraction is not None and not 0.0 < self.grounding_steps_fraction <= 1.0:
            raise ValueError(f"grounding_steps_fraction must be in (0, 1], got {self.grounding_steps_fraction!r}")
        if self.grounding_scale is not None and not self.grounding_scale >= 0.0:
            raise ValueError(f"grounding_scale must be >= 0, got {self.grounding_scale!r}")
        if self.conditioning in ("layout", "graph+layout") and (self.fk_particles > 1 or self.composed):
            raise ValueError(f"conditioning={self.conditioning!r} does not combine with "
                             f"{'fk_particles' if self.fk_particles > 1 else 'composed'}: use one of them")
        if self.guidance_scale is not None and not self.guidance_scale >= 0:
            raise ValueError(f"guidance_scale must be >= 0, got {self.guidance_scale!r}")
        if self.graph_scale is not None and not self.graph_scale >= 0:
            raise ValueError(f"graph_scale must be >= 0, got {self.graph_scale!r}")
        for name in ("fk_particles", "cache_interval"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if self.fk_reward not in ("checker", "dc"):
            raise ValueError(f"fk_reward must be 'checker' or 'dc', got {self.fk_reward!r}")
        if self.composed and self.fk_particles > 1:
            raise ValueError("composed scores and FK steering are separate methods: use one of them")
        if self.cache_interval > 1 and self.fk_particles > 1:
            raise ValueError(f"cache_interval={self.cache_interval} with fk_particles={self.fk_particles}: resampling "
                             "reorders the particles under the cached features; use one of them")
        kind = model_kind(self.model)  # a missing folder fails here, not after the imports
        methods = [n for n, on in (("fk_particles", self.fk_particles > 1), ("cache_interval", self.cache_interval > 1),
                                   ("composed", self.composed)) if on]
        if methods and kind == "shapes":
            raise ValueError(f"{methods[0]} is for Stable Diffusion models; {self.model or 'shapes'!r} is a "
                             "ShapesPipeline")
        if self.fk_particles > 1 and self.fk_reward == "checker" and model_settings(self.model).get("world") != "shapes":
            raise ValueError(f"fk_reward='checker' scores shapes-world images; model {self.model!r} does not draw the "
                             "shapes world: use fk_reward='dc'")
        if self.conditioning is not None and kind == "shapes":
            raise ValueError(f"conditioning={self.conditioning!r} is for Stable Diffusion models; {self.model or 'shapes'!r} "
                             "is a ShapesPipeline (it always draws the graph)")
        from .devices import check_device

        check_device(self.device, "device")


def image_name(prompt_index: int, k: int) -> str:
    """``00000.png`` for the first image of a prompt, ``00000_1.png`` ... for the next ones."""
    return f"{prompt_index:05d}.png" if k == 0 else f"{prompt_index:05d}_{k}.png"


def _is_shapes_folder(path: Path) -> bool:
    index = path / "model_index.json"
    try:
        return index.is_file() and json.loads(index.read_text(encoding="utf-8")).get("_class_name") == "ShapesPipeline"
    except (OSError, ValueError, AttributeError):  # unreadable: not a ShapesPipeline (diffusers will say why)
        return False


def _resolve(model: str | None) -> tuple[str, str | Path | None]:
    """``(kind, what to load)``: ``("shapes", None)`` for the bundled model, ``("shapes", folder)`` for a saved
    ``ShapesPipeline``, ``("sd", folder or hub id)`` otherwise. Bundled models are accepted by name."""
    if model is None:
        return "shapes", None
    if not isinstance(model, str) or not model.strip():
        raise ValueError(f"model must be a folder, a bundled model's name or a hub id, got {model!r}")
    from .bundled import resolve_model

    try:
        source = resolve_model(model)
    except FileNotFoundError as e:
        raise ValueError(str(e)) from None
    if Path(source).is_dir():
        return ("shapes" if _is_shapes_folder(Path(source)) else "sd"), Path(source)
    return "sd", source


def model_settings(model: str | None) -> dict:
    """The folder's ``scenegraph_diff.json`` (``{"world": "shapes", "guidance_scale": ..., "steps": ...}``), or ``{}``.
    Torch-free."""
    kind, source = _resolve(model)
    if kind != "sd" or not isinstance(source, Path):
        return {}
    path = source / "scenegraph_diff.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, ValueError):
        raise ValueError(f"model {model!r}: {path} is not valid JSON") from None
    return data if isinstance(data, dict) else {}


def model_kind(model: str | None) -> str:
    """What ``model`` names: ``"shapes"`` (``None``: the bundled model, or a saved ``ShapesPipeline`` folder) or
    ``"sd"`` (another folder, or a hub id for :class:`~scenegraph_diff.pipelines.SceneGraphPipeline`). Torch-free.

    Raises:
        ValueError: ``model`` looks like a local path but is no folder (e.g. ``/nonexistent``).
    """
    return _resolve(model)[0]


def _shapes_problem(graph: SceneGraph) -> SceneGraphError | None:
    """Why the shapes world cannot draw ``graph`` (``None`` when it can). Torch-free."""
    from .parsing.lexicon import SHAPE_PLURALS
    from .shapes.world import COLOURS, validate_shapes_graph

    for i, o in enumerate(graph.objects):
        count = next((a for a in o.attributes if a.isdigit()), None)
        if o.name in SHAPE_PLURALS or count not in (None, "1"):
            colours = [a for a in o.attributes if a in COLOURS]
            what = " ".join([count or "several", *colours, SHAPE_PLURALS.get(o.name, o.name)])
            return SceneGraphError(f"objects[{i}]", f"{what}s: the shapes world draws each (colour, shape) at most "
                                                    "once; name one shape per colour")
    try:
        validate_shapes_graph(graph)
    except SceneGraphError as e:
        return e
    return None


def check_prompts(config: GenerateConfig) -> tuple[list[SceneGraph], list[SceneGraphError | None]]:
    """Parse every prompt and check it against what ``config.model`` can draw, without importing torch.

    Returns:
        the parsed graphs (with their prompt as ``text``; an empty graph for a prompt that is not valid
        Unicode), and for each one ``None`` or the reason the model cannot draw it (a :class:`SceneGraphError`
        naming the graph's field, e.g. ``objects[0].name: unknown shape 'cat' ...``). A Stable Diffusion model
        draws any graph; the shapes model only shapes-world graphs (SHAPES.md).
    """
    from .parsing import load_parser

    kind = model_kind(config.model)
    shapes_world = kind == "shapes" or model_settings(config.model).get("world") == "shapes"
    parser = load_parser(config.parser_backend)
    graphs: list[SceneGraph] = []
    problems: list[SceneGraphError | None] = []
    for i, p in enumerate(config.prompts):
        try:
            g = parser.parse(p)
        except SceneGraphError as e:  # not valid Unicode: no graph can hold it
            graphs.append(SceneGraph())
            problems.append(e)
            continue
        g = g if g.text is not None else SceneGraph(g.objects, g.relations, p)
        graphs.append(g)
        problems.append(_shapes_problem(g) if shapes_world else None)
    return graphs, problems


def _save_png(image: np.ndarray, path: Path, scale: int) -> None:
    from PIL import Image

    if scale > 1:
        image = image.repeat(scale, axis=0).repeat(scale, axis=1)
    Image.fromarray(image).save(path)


def generate(config: GenerateConfig, progress: Callable[[int], None] | None = None,
             on_error: str = "raise",
             checked: tuple[list[SceneGraph], list[SceneGraphError | None]] | None = None) -> dict:
    """Run the generation described by ``config``; return a summary dict (files, graphs, skipped prompts, seconds).

    Args:
        config: what to generate.
        progress: called with ``1`` after each prompt's files are written.
        on_error: what to do with a prompt the model cannot draw (see :func:`check_prompts`): ``"raise"`` its
            :class:`SceneGraphError` (before anything is written), or ``"skip"`` it, listing it in the summary's
            ``skipped`` as ``{"prompt": i, "error": message}`` (when no prompt is left, nothing is written).
        checked: what :func:`check_prompts` returned for ``config``, when the caller already ran it.

    Raises:
        SceneGraphError: ``on_error="raise"`` and a prompt the model cannot draw (field ``prompt[i]. ...``).
        RuntimeError: ``config.device`` names CUDA but CUDA is not available.
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    t0 = time.perf_counter()
    out = Path(config.out)
    graphs, problems = checked if checked is not None else check_prompts(config)  # before torch: fast rejection
    graphs = list(graphs)
    skipped = [{"prompt": i, "error": str(e)} for i, e in enumerate(problems) if e is not None]
    if skipped and on_error == "raise":
        i = skipped[0]["prompt"]
        raise problems[i].with_prefix(f"prompt[{i}]")  # type: ignore[union-attr]
    keep = [i for i, e in enumerate(problems) if e is None]
    summary = {"out": str(out), "images": [], "graphs": str(out / "graphs.jsonl"), "num_prompts": len(graphs),
               "skipped": skipped}
    if not keep:
        return {**summary, "graphs": None, "seconds": round(time.perf_counter() - t0, 3)}
    import torch

    from .devices import resolve_device

    device = resolve_device(config.device, "device")  # fail before any work
    out.mkdir(parents=True, exist_ok=True)
    todo = [graphs[i] for i in keep]
    if config.graph_refiner is not None:
        from .diffusion import SceneGraphRefiner

        refiner = SceneGraphRefiner.from_pretrained(config.graph_refiner).to(device)
        # Its own generator: refining never shifts the image noise.
        todo = refiner.refine(todo, strength=config.refine_strength, num_steps=config.refine_steps,
                              generator=torch.Generator().manual_seed(config.seed + 1))
        for i, g in zip(keep, todo):
            graphs[i] = g
    generator = torch.Generator().manual_seed(config.seed)
    files: list[str] = []
    kind, source = _resolve(config.model)
    if kind == "shapes":
        from .shapes.pipeline import DEFAULT_STEPS, ShapesPipeline

        pipe = ShapesPipeline.from_bundled() if source is None else ShapesPipeline.from_pretrained(source)
        pipe.to(device)
        result = pipe(todo, num_images_per_prompt=config.num_images, generator=generator,
                      num_inference_steps=config.steps or DEFAULT_STEPS, batch_size=config.batch_size,
                      drop_contradictory=True)
        images = list(result.images)
    else:
        images, todo = _generate_sd(config, source, todo, keep, device)
        for i, g in zip(keep, todo):  # with layout conditioning: the graphs with the boxes used
            graphs[i] = g
    for j, i in enumerate(keep):
        for k in range(config.num_images):
            path = out / image_name(i, k)
            _save_png(images[j * config.num_images + k], path, config.scale)
            files.append(str(path))
        (out / f"{i:05d}.json").write_text(graphs[i].to_json() + "\n", encoding="utf-8")
        if progress is not None:
            progress(1)
    from .graph import write_jsonl

    write_jsonl(out / "graphs.jsonl", graphs)
    return {**summary, "images": files, "seconds": round(time.perf_counter() - t0, 3)}


def image_seeds(seed: int, prompt_indices: Sequence[int], num_images: int) -> list[int]:
    """The seed of each image's own CPU generator, prompt-major (``[p0 k0, p0 k1, ..., p1 k0, ...]``), for Stable
    Diffusion models: image ``k`` of prompt ``p`` (its index in the input) gets ``seed * 1_000_003 + 7_919 * p + k``,
    whatever the batching and whichever other prompts were skipped."""
    return [seed * 1_000_003 + 7_919 * p + k for p in prompt_indices for k in range(num_images)]


def _generate_sd(config: GenerateConfig, source: str | Path | None, graphs: Sequence[SceneGraph],
                 prompt_indices: Sequence[int], device: object = "cpu") -> tuple[list[np.ndarray], list[SceneGraph]]:
    """Images from a Stable Diffusion checkpoint through ``SceneGraphPipeline`` (loaded from ``source``: the
    folder or hub id ``config.model`` names) on ``device``, ``config.batch_size`` images per call; and the graphs
    they were drawn from (with boxes under layout conditioning).

    Every image has its own CPU generator (:func:`image_seeds`), so an image does not depend on the other prompts
    and, up to floating-point rounding of other batch shapes (at most one 8-bit level, measured), on the batching."""
    import torch

    try:
        from .pipelines import SceneGraphPipeline
    except ImportError as e:
        raise RuntimeError(f"--model {config.model!r} needs scenegraph_diff.pipelines.SceneGraphPipeline: {e}") from e
    try:
        pipe = SceneGraphPipeline.from_pretrained(str(source)).to(device)
    except (OSError, ValueError) as e:  # not a pipeline folder, hub id not found / offline, ...
        reason = " ".join(str(e).split())
        reason = reason if len(reason) <= 400 else reason[:397] + "..."
        raise RuntimeError(f"model {config.model!r}: cannot load a Stable Diffusion pipeline: {reason}") from None
    pipe.set_progress_bar_config(disable=True)
    settings = model_settings(config.model)
    trained = not pipe.graph_conditioner.is_identity
    layout_name = config.layout_model or settings.get("layout_model")
    groundable = pipe.is_grounded and layout_name is not None and config.fk_particles == 1 and not config.composed
    conditioning = config.conditioning or ("graph+layout" if trained and groundable else "layout" if groundable
                                           else "graph" if trained else "text")
    if "graph" in conditioning and not trained:
        raise RuntimeError(f"model {config.model!r} has no trained graph adapter (graph_encoder/ + graph_conditioner/): "
                           "use --conditioning text or layout, or train one with scenegraph-diff train-rectification")
    grounding = "layout" in conditioning
    if grounding and not pipe.is_grounded:
        raise RuntimeError(f"model {config.model!r} has no box grounding (a layout_adapter/ or grounding/ folder, or a "
                           "GLIGEN UNet): use --conditioning text or graph, or train it with scenegraph-diff "
                           "train-grounding")
    if grounding and layout_name is None:
        raise RuntimeError(f"model {config.model!r} names no layout model: pass --layout-model NAME|DIR")
    graph_scale = 0.0 if "graph" not in conditioning else (
        config.graph_scale if config.graph_scale is not None else float(settings.get("graph_scale", 0.6)))
    graphs = list(graphs)
    if grounding:
        from .layout import load_layout_model

        try:
            layout = load_layout_model(str(layout_name))
        except (OSError, ValueError) as e:
            raise RuntimeError(f"layout model {layout_name!r}: {' '.join(str(e).split())}") from None
        pipe.layout_model = layout
        gens = [torch.Generator().manual_seed(sd) for sd in image_seeds(config.seed + 1, prompt_indices, 1)]
        graphs = [g for at in range(0, len(graphs), 256)  # one layout per prompt, batched, each from its own seed
                  for g in pipe.layout_graphs(graphs[at:at + 256], generator=gens[at:at + 256])]
    kwargs: dict = {"graph_scale": graph_scale, "grounding": grounding,
                    "guidance_scale": config.guidance_scale if config.guidance_scale is not None
                    else float(settings.get("guidance_scale", 7.5))}
    if grounding:
        kwargs["grounding_steps_fraction"] = (config.grounding_steps_fraction if config.grounding_steps_fraction
                                              is not None else float(settings.get("grounding_steps_fraction", 1.0)))
        kwargs["grounding_scale"] = (config.grounding_scale if config.grounding_scale is not None
                                     else float(settings.get("grounding_scale", 1.0)))
    steps = config.steps or settings.get("steps")
    if steps is not None:
        kwargs["num_inference_steps"] = int(steps)
    k = config.num_images
    per_call = max(1, config.batch_size // (k * config.fk_particles))
    seeds = image_seeds(config.seed, prompt_indices, k)
    sample = _sampler(config, pipe, kwargs)
    images: list[np.ndarray] = []
    from .guidance.cache import DeepCache

    with DeepCache(pipe.unet, config.cache_interval):
        for start in range(0, len(graphs), per_call):
            chunk = list(graphs[start:start + per_call])
            chunk_seeds = seeds[start * k:(start + len(chunk)) * k]
            if sample is None:
                gens = [torch.Generator().manual_seed(sd) for sd in chunk_seeds]
                res = pipe(prompt=[g.text or None for g in chunk] if all(g.text for g in chunk) else None,
                           scene_graph=chunk, num_images_per_prompt=k, generator=gens, output_type="np", **kwargs)
                out = list(res.images)
            else:
                out = sample([g for g in chunk for _ in range(k)], chunk_seeds)
            images.extend(np.clip(np.asarray(im) * 255.0 + 0.5, 0, 255).astype(np.uint8) for im in out)
    return images, graphs


def _sampler(config: GenerateConfig, pipe: object, kwargs: dict) -> Callable | None:
    """``sample(graphs, seeds) -> images`` for FK steering or composed scores (``None``: the pipeline's own call).
    FK swaps ``pipe``'s scheduler for its stochastic variant."""
    import torch

    kwargs = {k: v for k, v in kwargs.items() if k != "grounding"}  # FK / composed: never grounded (GenerateConfig)
    if config.fk_particles > 1:
        from .guidance.fk import FKConfig, checker_reward, dc_reward, fk_generate, particle_generators, stochastic_scheduler

        pipe.scheduler, extra = stochastic_scheduler(pipe.scheduler)  # type: ignore[attr-defined]
        reward = checker_reward if config.fk_reward == "checker" else dc_reward(pipe, graph_scale=kwargs["graph_scale"])
        fk = FKConfig(num_particles=config.fk_particles)
        return lambda graphs, seeds: fk_generate(pipe, graphs, reward, fk, particle_generators(seeds, fk.num_particles),
                                                 **kwargs, **extra).images
    if config.composed:
        from .guidance.composed import composed_generate

        call = {n: v for n, v in kwargs.items() if n != "graph_scale"}
        return lambda graphs, seeds: composed_generate(pipe, graphs, [torch.Generator().manual_seed(s) for s in seeds],
                                                       graph_scale=kwargs["graph_scale"], **call)
    return None
