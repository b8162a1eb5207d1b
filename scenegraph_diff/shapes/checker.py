"""The shapes-world checker (SHAPES.md "Checker"): does an image satisfy its scene graph?

1. classify each pixel to the nearest palette colour, or to background when no colour is within
   ``tolerance`` (Euclidean RGB distance);
2. take the 4-connected components of each colour and discard specks (fewer than ``min_area`` pixels);
3. classify each component's shape by how much of its bounding box it fills
   (square ~ 1.0, circle ~ 0.79, triangle ~ 0.5);
4. match components to the graph's objects by (colour, shape) (the largest component wins);
5. evaluate every relation on the matched components' centroids (a missing object fails its relations).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from ..graph.scene_graph import SceneGraph
from .world import COLOUR_NAMES, PALETTE, relation_holds, validate_shapes_graph

__all__ = ["Component", "Verdict", "Scores", "classify_pixels", "find_components", "check", "score", "swapped_twins"]


@dataclass(frozen=True)
class Component:
    """One coloured blob found in an image."""

    colour: str
    shape: str
    area: int
    centroid: tuple[float, float]  # (cx, cy) in pixels, pixel centres at i + 0.5
    bbox: tuple[int, int, int, int]  # (x0, y0, x1, y1), x1/y1 exclusive
    fill: float


@dataclass(frozen=True)
class Verdict:
    """Per-image result of :func:`check`.

    ``objects[i]`` is True when ``graph.objects[i]`` was found with the right colour and shape;
    ``relations[k]`` is True when ``graph.relations[k]`` holds between the found objects.
    """

    objects: tuple[bool, ...]
    relations: tuple[bool, ...]
    components: tuple[Component, ...]

    @property
    def objects_found(self) -> int:
        return sum(self.objects)

    @property
    def relations_satisfied(self) -> int:
        return sum(self.relations)

    @property
    def all_correct(self) -> bool:
        return all(self.objects) and all(self.relations)


@dataclass(frozen=True)
class Scores:
    """Aggregate accuracies over many verdicts (SHAPES.md "Metrics")."""

    object_accuracy: float
    relation_accuracy: float
    graph_accuracy: float
    num_images: int
    num_objects: int
    num_relations: int

    def as_dict(self) -> dict[str, float]:
        return dict(self.__dict__)


def _as_uint8_hwc(image: object) -> np.ndarray:
    arr = np.asarray(image)
    if arr.ndim != 3:
        raise ValueError(f"expected an image [H, W, 3], got shape {arr.shape}")
    if arr.shape[-1] != 3 and arr.shape[0] == 3:
        arr = np.moveaxis(arr, 0, -1)
    if arr.shape[-1] != 3:
        raise ValueError(f"expected 3 colour channels, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.floating) and arr.size and float(np.nanmax(arr)) <= 1.0:
            arr = arr * 255.0
        arr = np.clip(np.round(arr), 0, 255).astype(np.uint8)
    return arr


def classify_pixels(image: object, tolerance: float = 60.0) -> np.ndarray:
    """Palette class per pixel ``[H, W]`` (``int64``): 0 background, ``k`` = ``COLOUR_NAMES[k-1]``.

    Pixels farther than ``tolerance`` from every palette colour count as background.
    """
    img = _as_uint8_hwc(image).astype(np.float32)
    d = np.linalg.norm(img[:, :, None, :] - PALETTE.astype(np.float32)[None, None], axis=-1)  # [H, W, 7]
    cls = d.argmin(-1)
    cls[d.min(-1) > tolerance] = 0
    return cls


def _shape_of(fill: float) -> str:
    if fill >= 0.9:
        return "square"
    if fill >= 0.64:
        return "circle"
    return "triangle"


def find_components(image: object, tolerance: float = 60.0, min_area: int | None = None) -> list[Component]:
    """All coloured components of ``image`` (4-connected, specks of fewer than ``min_area`` pixels dropped).

    ``min_area`` defaults to 8 px at 32x32, scaled with the image area.
    """
    from scipy import ndimage

    cls = classify_pixels(image, tolerance)
    h, w = cls.shape
    if min_area is None:
        min_area = max(2, int(round(8 * h * w / (32 * 32))))
    out = []
    for k, colour in enumerate(COLOUR_NAMES, start=1):
        lab, n = ndimage.label(cls == k)
        if n == 0:
            continue
        for j, sl in enumerate(ndimage.find_objects(lab), start=1):
            m = lab[sl] == j
            area = int(m.sum())
            if area < min_area:
                continue
            ys, xs = np.nonzero(m)
            y0, x0 = sl[0].start, sl[1].start
            fill = area / float(m.shape[0] * m.shape[1])
            cen = (float(x0 + xs.mean() + 0.5), float(y0 + ys.mean() + 0.5))
            out.append(Component(colour, _shape_of(fill), area, cen,
                                 (x0, y0, sl[1].stop, sl[0].stop), fill))
    return out


def check(image: object, graph: SceneGraph, tolerance: float = 60.0, min_area: int | None = None) -> Verdict:
    """Judge ``image`` (``[H, W, 3]`` uint8, or float in [0, 1], or ``[3, H, W]``) against ``graph``.

    Returns a :class:`Verdict` with one bool per object and per relation of ``graph``.
    """
    keys = validate_shapes_graph(graph)
    img = _as_uint8_hwc(image)
    comps = find_components(img, tolerance, min_area)
    best: dict[tuple[str, str], Component] = {}
    for c in comps:
        k = (c.colour, c.shape)
        if k not in best or c.area > best[k].area:
            best[k] = c
    found = [best.get(k) for k in keys]
    width = img.shape[1]
    rels = []
    for r in graph.relations:
        a, b = found[r.subject], found[r.object]
        ok = a is not None and b is not None and relation_holds(r.predicate, a.centroid, b.centroid, width)
        rels.append(bool(ok))
    return Verdict(tuple(f is not None for f in found), tuple(rels), tuple(comps))


def score(verdicts: Iterable[Verdict]) -> Scores:
    """Object / relation / graph accuracy over ``verdicts`` (relation accuracy is 1.0 when none are named)."""
    n_img = n_obj = n_rel = ok_obj = ok_rel = ok_graph = 0
    for v in verdicts:
        n_img += 1
        n_obj += len(v.objects)
        n_rel += len(v.relations)
        ok_obj += v.objects_found
        ok_rel += v.relations_satisfied
        ok_graph += v.all_correct
    if n_img == 0:
        raise ValueError("score() needs at least one verdict")
    return Scores(ok_obj / max(n_obj, 1), ok_rel / n_rel if n_rel else 1.0, ok_graph / n_img, n_img, n_obj, n_rel)


def swapped_twins(graphs: Sequence[SceneGraph]) -> list[SceneGraph]:
    """For each graph with at least one relation, its twin with every relation reversed (``A r B`` -> ``B r A``)."""
    return [g.swapped() for g in graphs if g.relations]
