"""Training and evaluation graphs for the layout models: the shapes world and prepared VRD folders.

* :func:`shapes_layout_graphs` — scenes of the shapes world (:func:`~scenegraph_diff.shapes.world.sample_scene`:
  every box satisfies the graph's relations), from a seeded stream that the held-out evaluation stream
  (:data:`~scenegraph_diff.shapes.evaluation.HELD_OUT_SEED`) never meets;
* :func:`prepared_layout_graphs` — one split of a folder written by ``scenegraph-diff preprocess vrd`` (SceneGraph
  JSONL shards, read with the project's JSONL reader through the folder's manifest); every object must have a box;
* :func:`layout_graphs` — either, from the ``--data`` value of ``scenegraph-diff train-layout``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Union

import torch
from tqdm.auto import tqdm

from ..graph.scene_graph import SceneGraph

__all__ = ["SHAPES_DATA", "shapes_layout_graphs", "prepared_layout_graphs", "layout_graphs"]

#: the ``--data`` value naming the shapes world
SHAPES_DATA = "shapes"

PathLike = Union[str, "os.PathLike[str]"]


def _robust(graph: SceneGraph, size: int, gap: int, slack: float) -> bool:
    """Whether ``graph``'s layout keeps ``gap`` empty pixels between boxes and every relation holds with the
    centroids moved by up to ``slack`` pixels in any direction."""
    from ..shapes.world import Box, centroid, relation_holds

    boxes = [Box.from_fractions(o.box, size) for o in graph.objects]  # type: ignore[arg-type]
    for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
            a, b = boxes[i], boxes[j]
            if not (a.x0 + a.side + gap <= b.x0 or b.x0 + b.side + gap <= a.x0
                    or a.y0 + a.side + gap <= b.y0 or b.y0 + b.side + gap <= a.y0):
                return False
    cents = [centroid(o.name, b) for o, b in zip(graph.objects, boxes)]
    shifts = [(dx, dy) for dx in (-slack, slack) for dy in (-slack, slack)]
    for r in graph.relations:
        (ax, ay), (bx, by) = cents[r.subject], cents[r.object]
        if not all(relation_holds(r.predicate, (ax + sa[0], ay + sa[1]), (bx + sb[0], by + sb[1]), size)
                   for sa in shifts for sb in shifts):
            return False
    return True


def shapes_layout_graphs(num: int, seed: int = 0, size: int = 32, gap: int = 1, slack: float = 0.0,
                         progress: bool = False) -> list[SceneGraph]:
    """``num`` shapes-world scenes (1-3 objects, 0-3 relations, a box on every object), seeded by ``seed``.

    The stream is seeded with ``10_000 * seed + 1_234`` (small seeds never reach the held-out seed). With
    ``gap > 1`` or ``slack > 0`` only scenes whose layout has room to spare are kept: at least ``gap`` empty
    pixels between any two boxes (the world guarantees 1) and every named relation still holding when the
    shapes' centroids move by up to ``slack`` pixels. A model trained on such layouts keeps a safety margin
    where the world's own layouts often sit right at the rules' edges (a sub-pixel error then breaks them).
    """
    if isinstance(num, bool) or not isinstance(num, int) or num < 1:
        raise ValueError(f"num must be an integer >= 1, got {num!r}")
    if isinstance(gap, bool) or not isinstance(gap, int) or gap < 1:
        raise ValueError(f"gap must be an integer >= 1 (pixels), got {gap!r}")
    if not slack >= 0:
        raise ValueError(f"slack must be >= 0 (pixels), got {slack!r}")
    from ..shapes.world import sample_scene

    g = torch.Generator().manual_seed(10_000 * seed + 1_234)
    out: list[SceneGraph] = []
    with tqdm(total=num, desc="shapes scenes", unit="graph", disable=not progress) as bar:
        while len(out) < num:
            scene = sample_scene(g, size)
            if (gap == 1 and slack == 0) or _robust(scene, size, gap, slack):
                out.append(scene)
                bar.update(1)
    return out


def prepared_layout_graphs(root: PathLike, split: str, drop_empty: bool = True) -> list[SceneGraph]:
    """The graphs of ``split`` in a prepared folder (``manifest.json`` + SceneGraph JSONL shards).

    Args:
        root: the folder ``scenegraph-diff preprocess vrd -o ROOT`` wrote.
        split: e.g. ``"train"`` or ``"test"``.
        drop_empty: leave out graphs without objects (VRD images without relationships).

    Raises:
        FileNotFoundError: ``root`` is not a prepared folder.
        KeyError: no such split.
        ValueError: an object without a box (a folder prepared before boxes were kept: prepare it again).
    """
    from ..data.shards import iter_manifest_graphs

    out = []
    for source_id, g in iter_manifest_graphs(root, split):
        for i, o in enumerate(g.objects):
            if o.box is None:
                raise ValueError(f"{root}: {split} graph {source_id!r} objects[{i}] ({o.name!r}) has no box; layout "
                                 "training needs boxes (prepare the folder again with a preprocess that keeps them)")
        if g.num_objects or not drop_empty:
            out.append(g)
    return out


def layout_graphs(data: str, split: str = "train", pool_size: int = 100_000, seed: int = 0, gap: int = 1,
                  slack: float = 0.0, progress: bool = False) -> list[SceneGraph]:
    """Graphs with boxes for ``data``: ``"shapes"`` (``pool_size`` scenes of seed ``seed`` with room ``gap`` /
    ``slack``, see :func:`shapes_layout_graphs`; ``split`` is unused) or a prepared folder (its ``split``)."""
    if data == SHAPES_DATA:
        return shapes_layout_graphs(pool_size, seed, gap=gap, slack=slack, progress=progress)
    path = Path(data)
    if not path.is_dir():
        raise FileNotFoundError(f"--data {data!r}: neither 'shapes' nor a prepared folder (manifest.json + shards)")
    return prepared_layout_graphs(path, split)
