"""Typed graph tensors for :mod:`.scene_graph_diffusion`: from VRD annotations and from ``SceneGraph`` s."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor

from ..graph.scene_graph import Relation, SceneGraph, SceneObject
from ..graph.vocab import Vocabulary
from .scene_graph_diffusion import TypedGraphBatch

__all__ = ["TypedGraph", "load_vrd_graphs", "collate_typed", "scene_graphs_to_typed", "typed_to_scene_graphs"]


@dataclass(frozen=True)
class TypedGraph:
    """One graph: ``classes [n]``, ``boxes [n, 4]`` (x0, y0, x1, y1) or ``None``, and the set of directed
    ``(subject, object, predicate)`` triplets with predicates ``1..P`` (0 is "no edge")."""

    classes: tuple[int, ...]
    boxes: tuple[tuple[float, float, float, float], ...] | None
    triplets: frozenset[tuple[int, int, int]]
    name: str = ""

    @property
    def pairs(self) -> list[tuple[int, int]]:
        return sorted({(s, o) for s, o, _ in self.triplets})


def load_vrd_graphs(data_root: str | Path, split: str) -> tuple[list[TypedGraph], list[str], list[str]]:
    """``<data_root>/vrd/annotations_{split}.json`` -> graphs, object class names and predicate names.

    Built on the VRD reader of :mod:`scenegraph_diff.data.vrd`: one graph per image that has a
    relationship between two distinct objects (sorted by file name); nodes are the distinct
    ``(category, box)`` objects with pixel boxes ``(x0, y0, x1, y1)``; triplets are the distinct
    ``(subject, object, p + 1)`` for predicate id ``p`` (0 is "no edge"), self relationships left out.

    Raises:
        FileNotFoundError: a VRD file is missing.
        ValueError: a malformed image (a class or predicate id outside the class lists, an empty box:
            the message names the image, field and value).
    """
    from ..data.vrd import read_vrd_classes, read_vrd_split

    root = Path(data_root) / "vrd"
    path = root / f"annotations_{split}.json"
    if not path.is_file():
        raise FileNotFoundError(f"VRD annotations not found: {path}")
    objects, predicates = read_vrd_classes(root)
    out = []
    for a in read_vrd_split(path, len(objects), len(predicates)):
        trip = {(s, o, p + 1) for s, o, p in a.triplets() if s != o}
        if not trip:
            continue
        keys = a.distinct_objects()
        out.append(TypedGraph(tuple(k[0] for k in keys), tuple(tuple(map(float, k[1:])) for k in keys),
                              frozenset(trip), a.name))
    return out, objects, predicates


def collate_typed(graphs: Sequence[TypedGraph], num_predicates: int) -> TypedGraphBatch:
    """Pad to the largest graph. ``edge_target`` spreads a pair's mass uniformly over its predicates."""
    B = len(graphs)
    N = max(len(g.classes) for g in graphs)
    classes = torch.zeros(B, N, dtype=torch.long)
    node_mask = torch.zeros(B, N, dtype=torch.bool)
    boxes = torch.zeros(B, N, 4)
    has_box = torch.zeros(B, N, dtype=torch.bool)
    target = torch.zeros(B, N, N, num_predicates + 1)
    for b, g in enumerate(graphs):
        n = len(g.classes)
        classes[b, :n] = torch.tensor(g.classes)
        node_mask[b, :n] = True
        if g.boxes is not None:
            boxes[b, :n] = torch.tensor(g.boxes)
            has_box[b, :n] = True
        for s, o, p in g.triplets:
            target[b, s, o, p] += 1.0
    tot = target.sum(-1, keepdim=True)
    real = node_mask[:, :, None] & node_mask[:, None, :] & ~torch.eye(N, dtype=torch.bool)
    target[..., 0] = torch.where(real & (tot[..., 0] == 0), 1.0, 0.0)
    target = target / target.sum(-1, keepdim=True).clamp(min=1e-12)
    edges = target.argmax(-1)
    return TypedGraphBatch(classes, edges, node_mask, boxes, has_box, target)


def scene_graphs_to_typed(graphs: Sequence[SceneGraph], vocab: Vocabulary) -> list[TypedGraph]:
    """Object names -> class ids, predicates -> ``1 + id`` (vocabulary ids; unknown -> ``<unk>`` = 0)."""
    out = []
    for g in graphs:
        cls = tuple(vocab.indices("object", [o.name for o in g.objects]))
        preds = vocab.indices("predicate", [r.predicate for r in g.relations])
        boxes = tuple(o.box for o in g.objects) if g.objects and all(o.box is not None for o in g.objects) else None
        trip = frozenset((r.subject, r.object, 1 + p) for r, p in zip(g.relations, preds) if r.subject != r.object)
        out.append(TypedGraph(cls, boxes, trip))  # type: ignore[arg-type]
    return out


def typed_to_scene_graphs(classes: Tensor, edges: Tensor, node_mask: Tensor, vocab: Vocabulary,
                          boxes: Tensor | None = None, has_box: Tensor | None = None) -> list[SceneGraph]:
    """Inverse of :func:`scene_graphs_to_typed` for sampled tensors (edge state 0 = no relation)."""
    out = []
    for b in range(classes.shape[0]):
        idx = node_mask[b].nonzero().flatten().tolist()
        pos = {i: k for k, i in enumerate(idx)}
        objs = []
        for i in idx:
            box = tuple(boxes[b, i].tolist()) if boxes is not None and has_box is not None and bool(has_box[b, i]) else None
            objs.append(SceneObject(vocab.label("object", int(classes[b, i])), (), box))
        rels = [Relation(pos[s], vocab.label("predicate", int(p) - 1), pos[o])
                for s, o in (edges[b] > 0).nonzero().tolist() if s in pos and o in pos and s != o
                for p in [edges[b, s, o]]]
        out.append(SceneGraph(tuple(objs), tuple(rels)))
    return out
