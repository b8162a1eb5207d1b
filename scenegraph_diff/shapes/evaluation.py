"""Checker-scored evaluation of any image generator on the shapes world (SHAPES.md "Metrics").

* :func:`held_out_graphs` — a seeded set of shapes-world graphs (1–3 objects, 0–3 relations) with captions,
  drawn from a stream no training run uses;
* :func:`swap_twins` — each graph with a relation, reversed (``A r B`` -> ``B r A``), re-captioned;
* :func:`evaluate_images` — checker verdicts of generated images against their graphs, aggregated into object /
  relation / graph accuracy;
* :func:`evaluate_generator` — both at once for a callable ``generate(graphs) -> images``: accuracy on the graphs,
  swap accuracy (relation accuracy on the twins) and pair accuracy (a relation holds in the image of the graph
  *and* its reverse holds in the twin's image: ~25 % for a model that ignores direction).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch

from ..graph.scene_graph import SceneGraph, SceneObject
from .checker import Verdict, check, score
from .world import caption, sample_scene

__all__ = ["HELD_OUT_SEED", "STRATA", "held_out_graphs", "swap_twins", "evaluate_images", "ShapesEval", "evaluate_generator",
           "prompt_seed", "pipeline_generator", "unboxed_twin"]

#: Seed of the held-out stream (training streams are seeded from ``10_000 * seed + ...`` with small seeds).
HELD_OUT_SEED = 987_654_321


#: (objects, relations) strata cycled by :func:`held_out_graphs`, so every count 1–3 / 0–3 appears.
STRATA: tuple[tuple[int, int], ...] = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2), (3, 3))


def held_out_graphs(num: int, seed: int = HELD_OUT_SEED, size: int = 32) -> list[SceneGraph]:
    """``num`` captioned shapes-world graphs from a seeded held-out stream, cycling through :data:`STRATA`."""
    if isinstance(num, bool) or not isinstance(num, int) or num < 1:
        raise ValueError(f"num must be an integer >= 1, got {num!r}")
    g = torch.Generator().manual_seed(seed)
    return [sample_scene(g, size, num_objects=no, num_relations=nr)
            for no, nr in (STRATA[i % len(STRATA)] for i in range(num))]


def unboxed_twin(graph: SceneGraph) -> SceneGraph:
    """``graph`` with every relation reversed and no boxes, text or spans (the graph's layout is not the twin's)."""
    twin = graph.swapped()
    return SceneGraph(tuple(SceneObject(o.name, o.attributes) for o in twin.objects), twin.relations)


def swap_twins(graphs: Sequence[SceneGraph], seed: int = HELD_OUT_SEED + 1) -> list[tuple[int, SceneGraph]]:
    """``(index, twin)`` for each graph with a relation: every relation reversed, a fresh caption as ``text``.

    Boxes are dropped (the twin's layout is not the graph's).
    """
    g = torch.Generator().manual_seed(seed)
    out = []
    for i, graph in enumerate(graphs):
        if not graph.relations:
            continue
        twin = unboxed_twin(graph)
        out.append((i, SceneGraph(twin.objects, twin.relations, caption(twin, g))))
    return out


def evaluate_images(images: Sequence[Any], graphs: Sequence[SceneGraph]) -> tuple[list[Verdict], dict[str, float]]:
    """Checker verdicts of ``images`` (each ``[H, W, 3]``, uint8 or float in ``[0, 1]``) and the aggregate scores."""
    if len(images) != len(graphs):
        raise ValueError(f"{len(images)} images but {len(graphs)} graphs")
    verdicts = [check(np.asarray(im), g) for im, g in zip(images, graphs)]
    return verdicts, score(verdicts).as_dict()


@dataclass(frozen=True)
class ShapesEval:
    """Scores of one generator (fractions in ``[0, 1]``).

    Attributes:
        object_accuracy, relation_accuracy, graph_accuracy: on the graphs.
        swap_accuracy: relation accuracy on the swapped twins.
        pair_accuracy: fraction of relations that hold in the graph's image *and* whose reverse holds in the
            twin's image.
        num_graphs, num_relations, num_twins: counts.
        verdicts, twin_verdicts: per-image checker verdicts.
    """

    object_accuracy: float
    relation_accuracy: float
    graph_accuracy: float
    swap_accuracy: float
    pair_accuracy: float
    num_graphs: int
    num_relations: int
    num_twins: int
    verdicts: tuple[Verdict, ...] = ()
    twin_verdicts: tuple[Verdict, ...] = ()

    def as_dict(self) -> dict[str, float]:
        """The scores and counts (no verdicts)."""
        return {k: v for k, v in self.__dict__.items() if k not in ("verdicts", "twin_verdicts")}


def evaluate_generator(generate: Callable[[list[SceneGraph]], Sequence[Any]], graphs: Sequence[SceneGraph],
                       batch_size: int = 64, progress: Callable[[int], None] | None = None) -> tuple[ShapesEval, list[Any], list[Any]]:
    """Generate an image for every graph and every swap twin (in batches) and score them with the checker.

    Args:
        generate: ``generate(graphs) -> images`` (``[H, W, 3]`` each); graphs carry their caption as ``text``.
            Called on consecutive batches; it must seed itself (e.g. from the batch's position) to be reproducible.
        graphs: the graphs (with ``text``).
        batch_size: graphs per call.
        progress: called with the number of images done after each batch.

    Returns:
        ``(scores, images, twin_images)``.
    """
    twins = swap_twins(graphs)
    todo = list(graphs) + [t for _, t in twins]
    images: list[Any] = []
    for start in range(0, len(todo), batch_size):
        images.extend(generate(todo[start:start + batch_size]))
        if progress is not None:
            progress(len(images))
    main, twin_images = images[: len(graphs)], images[len(graphs):]
    verdicts, s = evaluate_images(main, graphs)
    twin_verdicts, ts = evaluate_images(twin_images, [t for _, t in twins]) if twins else ([], {"relation_accuracy": 1.0})
    pairs = ok = 0
    for (i, _), tv in zip(twins, twin_verdicts):
        for a, b in zip(verdicts[i].relations, tv.relations):
            pairs += 1
            ok += a and b
    result = ShapesEval(s["object_accuracy"], s["relation_accuracy"], s["graph_accuracy"], ts["relation_accuracy"],
                        ok / pairs if pairs else 1.0, len(graphs), int(s["num_relations"]), len(twins),
                        tuple(verdicts), tuple(twin_verdicts))
    return result, main, twin_images


def prompt_seed(text: str, seed: int = 0) -> int:
    """A per-prompt sampling seed: the same prompt gets the same noise under every method (and in every batch)."""
    import zlib

    return (seed * 1_000_003 + zlib.crc32(text.encode("utf-8"))) % (2**63)


def pipeline_generator(pipe: Any, seed: int = 0, with_graphs: bool = False,
                       **call_kwargs: Any) -> Callable[[list[SceneGraph]], list[np.ndarray]]:
    """``generate(graphs) -> images`` for :func:`evaluate_generator` from a diffusers text-to-image pipeline.

    Each image's noise comes from its own generator seeded by :func:`prompt_seed` of the graph's ``text``, so
    methods compared on the same graphs start from the same latents whatever the batching.

    Args:
        pipe: a ``StableDiffusionPipeline`` (or subclass, e.g. ``SceneGraphPipeline``).
        seed: base seed.
        with_graphs: also pass ``scene_graph=graphs`` (graph-conditioned pipelines).
        **call_kwargs: passed to ``pipe(...)`` (``num_inference_steps``, ``guidance_scale``, ...).

    Returns:
        a callable returning float images ``[H, W, 3]`` in ``[0, 1]``.
    """

    def generate(graphs: list[SceneGraph]) -> list[np.ndarray]:
        prompts = [g.text or "" for g in graphs]
        gens = [torch.Generator().manual_seed(prompt_seed(p, seed)) for p in prompts]
        extra = {"scene_graph": list(graphs)} if with_graphs else {}
        out = pipe(prompts, generator=gens, output_type="np", **extra, **call_kwargs)
        return list(out.images)

    return generate
