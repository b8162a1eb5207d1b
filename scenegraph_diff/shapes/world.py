"""The relational shapes world (``../shared/SHAPES.md``): constants, scene sampling, captions, rendering.

A scene is 1 to 3 solid shapes (``circle``, ``square``, ``triangle``) in 6 colours on black, with
0 to 3 named relations (``left of``, ``right of``, ``above``, ``below``) judged on the centroids of
the filled pixels with a margin of ``0.08 * width``.

Everything is exact and deterministic given a :class:`torch.Generator`; images are ``uint8`` numpy
arrays ``[H, W, 3]``. Boxes are stored on the objects of the returned :class:`SceneGraph` as
``[x0, y0, x1, y1]`` fractions of the canvas.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

from ..graph.scene_graph import Relation, SceneGraph, SceneGraphError, SceneObject

if TYPE_CHECKING:  # torch is imported where randomness is drawn: checking a graph stays torch-free (fast)
    import torch

__all__ = [
    "COLOURS", "COLOUR_NAMES", "SHAPES", "PREDICATES", "PALETTE", "BACKGROUND",
    "Box", "margin", "side_range", "shape_mask", "centroid", "relation_holds", "layout_satisfies",
    "object_key", "validate_shapes_graph", "drop_contradictions", "sample_layout", "sample_scene", "caption",
    "render", "render_layout",
]

#: Exact sRGB fill values (SHAPES.md).
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 180, 60),
    "blue": (40, 80, 220),
    "yellow": (230, 210, 40),
    "purple": (150, 60, 190),
    "cyan": (40, 200, 210),
}
COLOUR_NAMES: tuple[str, ...] = tuple(COLOURS)
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
PREDICATES: tuple[str, ...] = ("left of", "right of", "above", "below")
BACKGROUND: tuple[int, int, int] = (0, 0, 0)
#: Palette classes: 0 = background, 1..6 = COLOUR_NAMES in order. ``PALETTE[k]`` is the RGB of class k.
PALETTE: np.ndarray = np.array([BACKGROUND, *COLOURS.values()], dtype=np.uint8)

#: Phrasings used in captions for each canonical predicate (SHAPES.md "Text").
_PHRASES: dict[str, tuple[str, ...]] = {
    "left of": ("to the left of", "left of"),
    "right of": ("to the right of", "right of"),
    "above": ("above", "over"),
    "below": ("below", "under", "beneath"),
}


@dataclass(frozen=True)
class Box:
    """An integer pixel box: top-left ``(x0, y0)`` and side ``side`` (the box covers ``[x0, x0+side)``)."""

    x0: int
    y0: int
    side: int

    def fractions(self, size: int) -> tuple[float, float, float, float]:
        """``(x0, y0, x1, y1)`` as fractions of a ``size`` x ``size`` canvas."""
        return (self.x0 / size, self.y0 / size, (self.x0 + self.side) / size, (self.y0 + self.side) / size)

    @classmethod
    def from_fractions(cls, box: Sequence[float], size: int) -> "Box":
        """Inverse of :meth:`fractions` (rounded to whole pixels; the side is the mean of width and height)."""
        x0, y0, x1, y1 = (float(v) * size for v in box)
        side = max(1, int(round(((x1 - x0) + (y1 - y0)) / 2)))
        return cls(int(round(x0)), int(round(y0)), side)


def _check_size(size: int) -> int:
    if isinstance(size, bool) or not isinstance(size, int) or size < 16:
        raise ValueError(f"size must be an integer >= 16 (32 or 64 per SHAPES.md), got {size!r}")
    return size


def margin(size: int) -> float:
    """The relation margin ``m = 0.08 * width`` in pixels."""
    return 0.08 * size


def side_range(size: int) -> tuple[int, int]:
    """Inclusive range of object box sides: 7 to 11 px at 32x32, scaled linearly."""
    return int(round(7 * size / 32)), int(round(11 * size / 32))


@functools.lru_cache(maxsize=None)
def _mask(shape: str, side: int) -> np.ndarray:
    c = (np.arange(side) + 0.5) / side  # pixel centres in [0, 1]
    u = c[None, :]
    v = c[:, None]
    if shape == "square":
        m = np.ones((side, side), dtype=bool)
    elif shape == "circle":
        m = (u - 0.5) ** 2 + (v - 0.5) ** 2 <= 0.25
    elif shape == "triangle":  # upright, apex at the top
        m = np.abs(u - 0.5) <= v / 2
    else:
        raise SceneGraphError("name", f"unknown shape {shape!r} (expected one of {', '.join(SHAPES)})")
    m.setflags(write=False)
    return m


def shape_mask(shape: str, side: int) -> np.ndarray:
    """Boolean mask ``[side, side]`` of a shape drawn in a ``side`` x ``side`` box (read-only, cached)."""
    return _mask(shape, int(side))


@functools.lru_cache(maxsize=None)
def _centroid_offset(shape: str, side: int) -> tuple[float, float]:
    ys, xs = np.nonzero(_mask(shape, side))
    return float(xs.mean() + 0.5), float(ys.mean() + 0.5)


def centroid(shape: str, box: Box) -> tuple[float, float]:
    """Centre of mass ``(cx, cy)`` in pixels (pixel centres at ``i + 0.5``) of ``shape`` drawn in ``box``."""
    dx, dy = _centroid_offset(shape, box.side)
    return box.x0 + dx, box.y0 + dy


def relation_holds(predicate: str, a: tuple[float, float], b: tuple[float, float], size: int) -> bool:
    """Whether ``A predicate B`` holds for centroids ``a`` and ``b`` on a ``size``-wide canvas."""
    m = margin(size)
    if predicate == "left of":
        return a[0] + m < b[0]
    if predicate == "right of":
        return b[0] + m < a[0]
    if predicate == "above":
        return a[1] + m < b[1]
    if predicate == "below":
        return b[1] + m < a[1]
    raise SceneGraphError("predicate", f"unknown predicate {predicate!r} (expected one of {', '.join(PREDICATES)})")


def object_key(obj: SceneObject) -> tuple[str, str]:
    """``(colour, shape)`` of a shapes-world object; raises :class:`SceneGraphError` if it is not one."""
    if obj.name not in SHAPES:
        raise SceneGraphError("name", f"unknown shape {obj.name!r} (expected one of {', '.join(SHAPES)})")
    colours = [a for a in obj.attributes if a in COLOURS]
    if len(colours) != 1:
        raise SceneGraphError(
            "attributes", f"expected exactly one colour of {', '.join(COLOUR_NAMES)}, got {list(obj.attributes)!r}"
        )
    return colours[0], obj.name


def validate_shapes_graph(graph: SceneGraph, max_relations: int | None = None) -> list[tuple[str, str]]:
    """Check that ``graph`` belongs to the shapes world; return its objects' ``(colour, shape)`` keys.

    Raises :class:`SceneGraphError` naming the field: 1 to 3 objects, distinct (colour, shape)
    pairs, relations with canonical predicates (at most ``max_relations`` when given: sampled scenes
    name 0 to 3, but rendering, checking and generation accept any consistent set).
    """
    if not 1 <= graph.num_objects <= 3:
        raise SceneGraphError("objects", f"the shapes world has 1 to 3 objects, got {graph.num_objects}")
    if max_relations is not None and graph.num_relations > max_relations:
        raise SceneGraphError("relations", f"expected at most {max_relations} relations, got {graph.num_relations}")
    keys = []
    for i, o in enumerate(graph.objects):
        try:
            keys.append(object_key(o))
        except SceneGraphError as e:
            raise e.with_prefix(f"objects[{i}]") from None
    if len(set(keys)) != len(keys):
        raise SceneGraphError("objects", f"(colour, shape) pairs must be distinct, got {keys}")
    for k, r in enumerate(graph.relations):
        if r.predicate not in PREDICATES:
            raise SceneGraphError(
                f"relations[{k}].predicate",
                f"unknown predicate {r.predicate!r} (expected one of {', '.join(PREDICATES)})",
            )
    return keys


def _boxes_apart(a: Box, b: Box) -> bool:
    # At least one empty pixel between the boxes along x or along y (so shapes never touch).
    return a.x0 + a.side < b.x0 or b.x0 + b.side < a.x0 or a.y0 + a.side < b.y0 or b.y0 + b.side < a.y0


def layout_satisfies(graph: SceneGraph, boxes: Sequence[Box], size: int) -> bool:
    """Whether ``boxes`` (one per object) lie inside the canvas, do not touch, and satisfy every relation."""
    for b in boxes:
        if b.x0 < 0 or b.y0 < 0 or b.x0 + b.side > size or b.y0 + b.side > size:
            return False
    for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
            if not _boxes_apart(boxes[i], boxes[j]):
                return False
    cents = [centroid(o.name, b) for o, b in zip(graph.objects, boxes)]
    return all(relation_holds(r.predicate, cents[r.subject], cents[r.object], size) for r in graph.relations)


def _has_cycle(n: int, edges: list[tuple[int, int]]) -> bool:
    adj: list[list[int]] = [[] for _ in range(n)]
    for a, b in edges:
        adj[a].append(b)
    state = [0] * n

    def visit(u: int) -> bool:
        state[u] = 1
        for v in adj[u]:
            if state[v] == 1 or (state[v] == 0 and visit(v)):
                return True
        state[u] = 2
        return False

    return any(state[u] == 0 and visit(u) for u in range(n))


def _check_consistent(graph: SceneGraph) -> None:
    xs: list[tuple[int, int]] = []  # (a, b): a strictly left of b
    ys: list[tuple[int, int]] = []  # (a, b): a strictly above b
    for r in graph.relations:
        s, o = r.subject, r.object
        {"left of": xs, "right of": xs, "above": ys, "below": ys}[r.predicate].append(
            (s, o) if r.predicate in ("left of", "above") else (o, s)
        )
    if _has_cycle(graph.num_objects, xs) or _has_cycle(graph.num_objects, ys):
        raise SceneGraphError("relations", f"contradictory relations {graph.triplets()}: no layout satisfies them")


def drop_contradictions(graph: SceneGraph) -> tuple[SceneGraph, list[int]]:
    """Keep the relations of ``graph`` in order, skipping each one that contradicts those kept before it.

    Returns the reduced graph (same objects and text) and the indices of the dropped relations.
    A relation contradicts when it closes a cycle of "left of" (or of "above") constraints.
    """
    kept: list[Relation] = []
    dropped: list[int] = []
    for k, r in enumerate(graph.relations):
        trial = SceneGraph(graph.objects, tuple(kept) + (r,), graph.text)
        try:
            _check_consistent(trial)
        except SceneGraphError:
            dropped.append(k)
            continue
        kept.append(r)
    if not dropped:
        return graph, []
    return SceneGraph(graph.objects, tuple(kept), graph.text), dropped


def _randint(generator: torch.Generator | None, low: int, high: int, n: int) -> list[int]:
    """``n`` integers uniform in ``[low, high]`` (inclusive)."""
    import torch

    return torch.randint(low, high + 1, (n,), generator=generator).tolist()


def sample_layout(graph: SceneGraph, generator: torch.Generator | None = None, size: int = 32,
                  max_tries: int = 10_000) -> list[Box]:
    """Sample boxes for ``graph``'s objects by rejection until every named relation holds.

    Raises :class:`SceneGraphError` if the relations contradict each other or no layout was found.
    """
    import torch

    size = _check_size(size)
    validate_shapes_graph(graph)
    _check_consistent(graph)
    lo, hi = side_range(size)
    n = graph.num_objects
    for _ in range(max_tries):
        sides = _randint(generator, lo, hi, n)
        r = torch.rand(2 * n, generator=generator).tolist()
        boxes = [
            Box(int(r[2 * i] * (size - s + 1)), int(r[2 * i + 1] * (size - s + 1)), s) for i, s in enumerate(sides)
        ]
        if layout_satisfies(graph, boxes, size):
            return boxes
    raise SceneGraphError("relations", f"no layout found for {graph.triplets()} in {max_tries} tries")


def render_layout(graph: SceneGraph, boxes: Sequence[Box], size: int = 32) -> np.ndarray:
    """Draw ``graph``'s objects into ``boxes``: ``uint8`` image ``[size, size, 3]`` on black."""
    size = _check_size(size)
    keys = validate_shapes_graph(graph)
    if len(boxes) != len(keys):
        raise ValueError(f"expected {len(keys)} boxes, got {len(boxes)}")
    img = np.zeros((size, size, 3), dtype=np.uint8)
    for (colour, shape), b in zip(keys, boxes):
        if b.x0 < 0 or b.y0 < 0 or b.x0 + b.side > size or b.y0 + b.side > size:
            raise ValueError(f"box {b} is not inside the {size}x{size} canvas")
        region = img[b.y0 : b.y0 + b.side, b.x0 : b.x0 + b.side]
        region[_mask(shape, b.side)] = COLOURS[colour]
    return img


def render(graph: SceneGraph, generator: torch.Generator | None = None, size: int = 32) -> np.ndarray:
    """Render an image ``[size, size, 3]`` (``uint8``) in which every named relation of ``graph`` holds.

    The layout is sampled by :func:`sample_layout`; if every object of ``graph`` has a ``box`` whose
    layout already satisfies the graph, those boxes are drawn instead.
    """
    size = _check_size(size)
    if graph.objects and all(o.box is not None for o in graph.objects):
        boxes = [Box.from_fractions(o.box, size) for o in graph.objects]  # type: ignore[arg-type]
        if layout_satisfies(graph, boxes, size):
            return render_layout(graph, boxes, size)
    return render_layout(graph, sample_layout(graph, generator, size), size)


def _choice(generator: torch.Generator | None, n: int) -> int:
    import torch

    return int(torch.randint(0, n, (1,), generator=generator))


def caption(graph: SceneGraph, generator: torch.Generator | None = None) -> str:
    """A template caption naming every object and relation of a shapes-world graph.

    ``"a red circle to the left of a blue square"``; relation clauses are joined by "and", later
    mentions use "the"; objects without a relation follow as sentences of their own
    (``"... a blue square. a cyan triangle"``), or are joined by "and" when no relation is named.
    Predicate phrasings are drawn from SHAPES.md's synonyms
    (the first phrasing when ``generator`` is None).
    """
    keys = validate_shapes_graph(graph)
    mentioned = [False] * len(keys)

    def np_(i: int) -> str:
        det = "the" if mentioned[i] else "a"
        mentioned[i] = True
        return f"{det} {keys[i][0]} {keys[i][1]}"

    clauses = []
    for r in graph.relations:
        phrases = _PHRASES[r.predicate]
        phrase = phrases[_choice(generator, len(phrases))] if generator is not None else phrases[0]
        subj = np_(r.subject)
        clauses.append(f"{subj} {phrase} {np_(r.object)}")
    lone = [np_(i) for i in range(len(keys)) if not mentioned[i]]
    if not clauses:
        return " and ".join(lone)
    # Objects outside every relation go into a sentence of their own: "A left of B and C" would read
    # as "A left of B and A left of C".
    return ". ".join([" and ".join(clauses), *lone])


def sample_scene(generator: torch.Generator | None = None, size: int = 32, num_objects: int | None = None,
                 num_relations: int | None = None) -> SceneGraph:
    """Sample a scene: a shapes-world graph with a caption (``text``) and ground-truth ``box`` per object.

    Objects (1 to 3, distinct (colour, shape) pairs) and a non-touching layout are drawn first; then
    0 to 3 relations are picked among those that hold in the layout, so every graph is satisfiable and
    ``render(graph)`` of the boxes satisfies it. ``num_objects`` / ``num_relations`` fix the counts
    (``num_relations`` is capped by what the layout allows).
    """
    import torch

    size = _check_size(size)
    if num_objects is None:
        num_objects = _randint(generator, 1, 3, 1)[0]
    if not 1 <= num_objects <= 3:
        raise ValueError(f"num_objects must be in 1..3, got {num_objects}")
    if num_relations is not None and not 0 <= num_relations <= 3:
        raise ValueError(f"num_relations must be in 0..3, got {num_relations}")
    pairs = [(c, s) for c in COLOUR_NAMES for s in SHAPES]
    perm = torch.randperm(len(pairs), generator=generator)[:num_objects].tolist()
    keys = [pairs[p] for p in perm]
    proto = SceneGraph(tuple(SceneObject(s, (c,)) for c, s in keys))
    boxes = sample_layout(proto, generator, size)
    cents = [centroid(s, b) for (_, s), b in zip(keys, boxes)]
    # Every (subject, object) pair with the predicates that hold for it.
    facts = [(a, p, b) for a in range(num_objects) for b in range(num_objects) if a != b
             for p in PREDICATES if relation_holds(p, cents[a], cents[b], size)]
    if num_relations is None:
        num_relations = _randint(generator, 0, 3, 1)[0] if num_objects > 1 else 0
    rels: list[Relation] = []
    used_pairs: set[frozenset[int]] = set()
    order = torch.randperm(len(facts), generator=generator).tolist() if facts else []
    for k in order:
        if len(rels) >= num_relations:
            break
        a, p, b = facts[k]
        if frozenset((a, b)) in used_pairs:  # one relation per unordered pair: no "A left of B and B right of A"
            continue
        used_pairs.add(frozenset((a, b)))
        rels.append(Relation(a, p, b))
    objs = tuple(SceneObject(s, (c,), box=b.fractions(size)) for (c, s), b in zip(keys, boxes))
    graph = SceneGraph(objs, tuple(rels))
    return SceneGraph(objs, tuple(rels), caption(graph, generator))
