"""Layouts for the shapes model: a learned box head, a deterministic repair step, and spatial maps.

The image model is conditioned "layout first" (sg2im, GLIGEN; SHAPES.md route 1):

1. :class:`LayoutHead` predicts one box per object (centre and side) from per-object embeddings that
   a graph (or text) encoder produced;
2. :func:`repair_layout` jitters the predicted boxes and then moves them apart deterministically
   until they lie inside the canvas and do not touch; with ``relations=True`` it also pushes the two
   objects of every violated named relation apart along its axis (the graph is known, so its relations
   can be enforced on boxes);
3. :func:`layout_maps` turns boxes into per-pixel input channels for the UNet: colour one-hot (6),
   shape one-hot (3) and the pixel's position inside its box (2) within each box, plus the pixel's
   position on the canvas (2).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from ..graph.scene_graph import SceneGraph
from .world import (
    COLOUR_NAMES, SHAPES, Box, centroid, layout_satisfies, margin, relation_holds, sample_layout, side_range,
    validate_shapes_graph,
)

__all__ = ["LayoutHead", "boxes_to_targets", "targets_to_boxes", "repair_layout", "layout_maps",
           "NUM_LAYOUT_CHANNELS"]

#: colour one-hot (6) + shape one-hot (3) + in-box (u, v) (2) + canvas (x, y) (2)
NUM_LAYOUT_CHANNELS = len(COLOUR_NAMES) + len(SHAPES) + 4


class LayoutHead(nn.Module):
    r"""Predicts a box per object: ``(cx, cy, side)`` as fractions of the canvas.

    .. math::
        (c_x, c_y, s) = \sigma(\mathrm{MLP}(\mathbf{h}_i))

    Args:
        in_dim: size of the per-object embeddings.
        hidden: hidden width (default 128).

    Shapes:
        input ``[No, in_dim]`` -> output ``[No, 3]`` in ``(0, 1)``.
    """

    def __init__(self, in_dim: int, hidden: int = 128) -> None:
        super().__init__()
        if in_dim < 1 or hidden < 1:
            raise ValueError(f"in_dim and hidden must be >= 1, got {in_dim}, {hidden}")
        self.in_dim, self.hidden = in_dim, hidden
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                                 nn.Linear(hidden, 3))

    def forward(self, h: Tensor) -> Tensor:
        return torch.sigmoid(self.mlp(h))

    def __repr__(self) -> str:
        return f"LayoutHead({self.in_dim}, hidden={self.hidden})"


def boxes_to_targets(graphs: Sequence[SceneGraph]) -> Tensor:
    """Ground-truth ``(cx, cy, side)`` fractions ``[No, 3]`` from the objects' ``box`` fields (all required)."""
    rows = []
    for gi, g in enumerate(graphs):
        for i, o in enumerate(g.objects):
            if o.box is None:
                raise ValueError(f"graphs[{gi}].objects[{i}] has no box: layout targets need ground-truth boxes")
            x0, y0, x1, y1 = o.box
            rows.append(((x0 + x1) / 2, (y0 + y1) / 2, ((x1 - x0) + (y1 - y0)) / 2))
    return torch.tensor(rows, dtype=torch.float).reshape(-1, 3)


def targets_to_boxes(pred: Sequence[Sequence[float]], size: int) -> list[Box]:
    """``(cx, cy, side)`` fractions -> integer :class:`Box` es (side clamped to the allowed range)."""
    lo, hi = side_range(size)
    out = []
    for cx, cy, s in pred:
        side = int(min(hi, max(lo, round(s * size))))
        out.append(Box(int(round(cx * size - side / 2)), int(round(cy * size - side / 2)), side))
    return out


def _violations(graph: SceneGraph, xs: list[float], ys: list[float], sides: list[int], size: int,
                relations: bool, gap: int) -> bool:
    """One repair sweep on float top-left corners (in place). Returns True if anything moved."""
    moved = False
    n = len(xs)
    for i in range(n):  # inside the canvas
        nx, ny = min(max(xs[i], 0.0), size - sides[i]), min(max(ys[i], 0.0), size - sides[i])
        moved |= nx != xs[i] or ny != ys[i]
        xs[i], ys[i] = nx, ny
    if relations:
        m = margin(size) + 0.75
        for r in graph.relations:
            a, b = r.subject, r.object
            ca = centroid(graph.objects[a].name, Box(round(xs[a]), round(ys[a]), sides[a]))
            cb = centroid(graph.objects[b].name, Box(round(xs[b]), round(ys[b]), sides[b]))
            if relation_holds(r.predicate, ca, cb, size):
                continue
            if r.predicate in ("left of", "right of"):
                lo_i, hi_i = (a, b) if r.predicate == "left of" else (b, a)
                ca_, cb_ = (ca, cb) if lo_i == a else (cb, ca)
                d = (ca_[0] + m - cb_[0]) / 2 + 0.5
                xs[lo_i] -= d
                xs[hi_i] += d
            else:
                lo_i, hi_i = (a, b) if r.predicate == "above" else (b, a)
                ca_, cb_ = (ca, cb) if lo_i == a else (cb, ca)
                d = (ca_[1] + m - cb_[1]) / 2 + 0.5
                ys[lo_i] -= d
                ys[hi_i] += d
            moved = True
    for i in range(n):  # apart: at least ``gap`` empty pixels between boxes along x or y
        for j in range(i + 1, n):
            bi = Box(round(xs[i]), round(ys[i]), sides[i])
            bj = Box(round(xs[j]), round(ys[j]), sides[j])
            ox = min(bi.x0 + bi.side, bj.x0 + bj.side) - max(bi.x0, bj.x0) + gap  # pixels to move apart along x
            oy = min(bi.y0 + bi.side, bj.y0 + bj.side) - max(bi.y0, bj.y0) + gap
            if ox <= 0 or oy <= 0:
                continue
            if ox <= oy:
                d = ox / 2 + 0.25
                sgn = 1.0 if xs[i] + sides[i] / 2 <= xs[j] + sides[j] / 2 else -1.0
                xs[i] -= sgn * d
                xs[j] += sgn * d
            else:
                d = oy / 2 + 0.25
                sgn = 1.0 if ys[i] + sides[i] / 2 <= ys[j] + sides[j] / 2 else -1.0
                ys[i] -= sgn * d
                ys[j] += sgn * d
            moved = True
    return moved


def _gaps_ok(boxes: Sequence[Box], gap: int) -> bool:
    for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
            a, b = boxes[i], boxes[j]
            if not (a.x0 + a.side + gap <= b.x0 or b.x0 + b.side + gap <= a.x0
                    or a.y0 + a.side + gap <= b.y0 or b.y0 + b.side + gap <= a.y0):
                return False
    return True


def repair_layout(graph: SceneGraph, pred: Tensor, size: int = 32, generator: torch.Generator | None = None,
                  jitter: float = 0.06, relations: bool = True, max_sweeps: int = 60, max_tries: int = 8,
                  fallback: bool = True, gap: int = 2) -> list[Box]:
    """Turn predicted ``(cx, cy, side)`` fractions ``[n, 3]`` into a valid integer layout.

    Each try adds Gaussian jitter (``jitter`` x canvas, drawn from ``generator``) to the predicted
    centres and runs repair sweeps (clamp into the canvas; with ``relations``, push apart the objects
    of every violated relation; push touching boxes apart along their smaller overlap) until nothing
    moves. Boxes are kept ``gap`` empty pixels apart (2 by default: one more than the generator
    guarantees, so that a slightly blurred edge never merges two shapes of one colour). The first try
    whose result is valid is returned. If none is and ``fallback`` is set, the
    layout is drawn by the generator's rejection sampler (:func:`~.world.sample_layout`) when
    ``relations`` is set; otherwise the last try is returned as is (it may break relations or touch).
    """
    validate_shapes_graph(graph)
    pred = pred.detach().float().reshape(-1, 3)
    if pred.shape[0] != graph.num_objects:
        raise ValueError(f"expected {graph.num_objects} predicted boxes, got {pred.shape[0]}")
    base = targets_to_boxes(pred.tolist(), size)
    sides = [b.side for b in base]
    boxes = base
    for t in range(max_tries):
        noise = (torch.randn(len(base), 2, generator=generator) * jitter * size * (1 + t / 2)).tolist()
        xs = [b.x0 + nz[0] for b, nz in zip(base, noise)]
        ys = [b.y0 + nz[1] for b, nz in zip(base, noise)]
        for _ in range(max_sweeps):
            if not _violations(graph, xs, ys, sides, size, relations, gap):
                break
        boxes = [Box(min(max(round(x), 0), size - s), min(max(round(y), 0), size - s), s)
                 for x, y, s in zip(xs, ys, sides)]
        target = graph if relations else SceneGraph(graph.objects)
        if layout_satisfies(target, boxes, size) and _gaps_ok(boxes, gap):
            return boxes
    if fallback and relations:
        for _ in range(50):
            boxes = sample_layout(graph, generator, size)
            if _gaps_ok(boxes, gap):
                break
    return boxes


def layout_maps(graphs: Sequence[SceneGraph], layouts: Sequence[Sequence[Box]], size: int = 32) -> Tensor:
    """Per-pixel layout channels ``[B, NUM_LAYOUT_CHANNELS, size, size]`` for a batch of layouts.

    Channels: colour one-hot (6) and shape one-hot (3) inside each object's box (0 elsewhere), the
    pixel's position inside its box ``(u, v)`` in ``[-1, 1]`` (0 outside boxes), and the pixel's
    position on the canvas ``(x, y)`` in ``[-1, 1]``.
    """
    if len(graphs) != len(layouts):
        raise ValueError(f"{len(graphs)} graphs but {len(layouts)} layouts")
    nc, ns = len(COLOUR_NAMES), len(SHAPES)
    out = torch.zeros(len(graphs), NUM_LAYOUT_CHANNELS, size, size)
    lin = (torch.arange(size, dtype=torch.float) + 0.5) / size * 2 - 1
    out[:, nc + ns + 2] = lin[None, None, :]
    out[:, nc + ns + 3] = lin[None, :, None]
    for bi, (g, boxes) in enumerate(zip(graphs, layouts)):
        keys = validate_shapes_graph(g)
        if len(boxes) != len(keys):
            raise ValueError(f"graphs[{bi}] has {len(keys)} objects but {len(boxes)} boxes")
        for (colour, shape), b in zip(keys, boxes):
            x0, y0, x1, y1 = max(b.x0, 0), max(b.y0, 0), min(b.x0 + b.side, size), min(b.y0 + b.side, size)
            if x0 >= x1 or y0 >= y1:
                continue
            out[bi, COLOUR_NAMES.index(colour), y0:y1, x0:x1] = 1.0
            out[bi, nc + SHAPES.index(shape), y0:y1, x0:x1] = 1.0
            c = (torch.arange(b.side, dtype=torch.float) + 0.5) / b.side * 2 - 1  # [side]
            out[bi, nc + ns, y0:y1, x0:x1] = c[None, x0 - b.x0 : x1 - b.x0]
            out[bi, nc + ns + 1, y0:y1, x0:x1] = c[y0 - b.y0 : y1 - b.y0, None]
    return out

