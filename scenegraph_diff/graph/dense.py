"""Dense tensors for graph diffusion: ``X [B, N, F]``, ``E [B, N, N, R+1]``, ``node_mask [B, N]``.

For a vocabulary with ``Co`` object labels, ``Ca`` attribute labels and ``P`` predicates (each table
including ``<unk>`` at id 0):

* ``X[b, i] = onehot(object id, Co) ++ multihot(attribute ids, Ca)``, so ``F = Co + Ca``;
* ``E[b, i, j, 0] = 1`` when no relation goes from ``i`` to ``j``; otherwise ``E[b, i, j, 1 + p] = 1`` for
  every predicate id ``p`` of a relation ``i -> j`` (``R = P``). Direction is kept: ``E`` is not symmetric;
* ``node_mask[b, i]`` marks real (non-padding) nodes; padding rows of ``X`` and ``E`` are zero.
* ``boxes [B, N, 4]`` and ``has_box [B, N]`` carry object boxes.

The dense form is a *set* view of a graph: relation order, duplicate relations, attribute order and
duplicates, text and spans are not represented. ``from_dense(to_dense(gs))`` returns each graph in
:func:`dense_canonical` form, which keeps object order and boxes, sorts attributes and relations by
vocabulary id and drops duplicates.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import torch
from torch import Tensor

from .scene_graph import Relation, SceneGraph, SceneGraphError, SceneObject
from .vocab import Vocabulary

__all__ = ["DenseGraph", "to_dense", "from_dense", "dense_canonical"]


class DenseGraph(NamedTuple):
    """Batched dense scene graphs (see the module docstring for the layout)."""

    X: Tensor  # [B, N, Co + Ca] float
    E: Tensor  # [B, N, N, P + 1] float
    node_mask: Tensor  # [B, N] bool
    boxes: Tensor  # [B, N, 4] float64
    has_box: Tensor  # [B, N] bool


def to_dense(
    graphs: Sequence[SceneGraph], vocab: Vocabulary, max_nodes: int | None = None, dtype: torch.dtype = torch.float
) -> DenseGraph:
    """Pack graphs into padded dense tensors.

    Args:
        graphs: ``B`` scene graphs.
        vocab: gives the label ids (unknown labels map to id 0).
        max_nodes: ``N``; defaults to the largest graph. A larger graph raises :class:`SceneGraphError`.
    """
    B = len(graphs)
    n_max = max((g.num_objects for g in graphs), default=0)
    N = n_max if max_nodes is None else max_nodes
    if n_max > N:
        raise SceneGraphError("max_nodes", f"{max_nodes} is smaller than the largest graph ({n_max} objects)")
    Co, Ca, P = vocab.num_objects, vocab.num_attributes, vocab.num_predicates
    X = torch.zeros(B, N, Co + Ca, dtype=dtype)
    E = torch.zeros(B, N, N, P + 1, dtype=dtype)
    node_mask = torch.zeros(B, N, dtype=torch.bool)
    boxes = torch.zeros(B, N, 4, dtype=torch.float64)  # float64: boxes survive the round trip exactly
    has_box = torch.zeros(B, N, dtype=torch.bool)
    # Gather all indices in Python lists, then scatter once per tensor.
    xb, xi, xc = [], [], []
    eb, es, eo, ec = [], [], [], []
    for b, g in enumerate(graphs):
        n = g.num_objects
        node_mask[b, :n] = True
        obj_ids = vocab.indices("object", [o.name for o in g.objects])
        for i, o in enumerate(g.objects):
            xb.append(b), xi.append(i), xc.append(obj_ids[i])
            for a in vocab.indices("attribute", list(o.attributes)):
                xb.append(b), xi.append(i), xc.append(Co + a)
            if o.box is not None:
                boxes[b, i] = torch.tensor(o.box, dtype=torch.float64)
                has_box[b, i] = True
        for r, p in zip(g.relations, vocab.indices("predicate", [r.predicate for r in g.relations])):
            eb.append(b), es.append(r.subject), eo.append(r.object), ec.append(1 + p)
    if xb:
        X[xb, xi, xc] = 1
    if eb:
        E[eb, es, eo, ec] = 1
    # Channel 0 ("no edge") wherever a real pair has no relation; padding stays all-zero.
    pair_mask = node_mask[:, :, None] & node_mask[:, None, :]
    E[..., 0] = (pair_mask & (E[..., 1:].sum(-1) == 0)).to(dtype)
    return DenseGraph(X, E, node_mask, boxes, has_box)


def from_dense(dense: DenseGraph | tuple, vocab: Vocabulary, threshold: float = 0.5) -> list[SceneGraph]:
    """Decode dense tensors (possibly soft, e.g. sampled probabilities) back to scene graphs.

    Object label = argmax over the ``Co`` object channels; attributes = channels above ``threshold``;
    relation ``i -> j`` with predicate ``p`` wherever ``E[i, j, 1 + p] > threshold`` (``i != j``).
    """
    X, E, node_mask = dense[0], dense[1], dense[2]
    boxes = dense[3] if len(dense) > 3 else None
    has_box = dense[4] if len(dense) > 4 else None
    Co = vocab.num_objects
    if X.shape[-1] != Co + vocab.num_attributes:
        raise SceneGraphError("X", f"last dim {X.shape[-1]} != objects {Co} + attributes {vocab.num_attributes}")
    if E.shape[-1] != vocab.num_predicates + 1:
        raise SceneGraphError("E", f"last dim {E.shape[-1]} != predicates {vocab.num_predicates} + 1")
    out = []
    obj_cls = X[..., :Co].argmax(-1)
    attr_on = X[..., Co:] > threshold
    rel_on = E[..., 1:] > threshold
    for b in range(X.shape[0]):
        idx = node_mask[b].nonzero().flatten().tolist()
        pos = {i: k for k, i in enumerate(idx)}
        objects = []
        for i in idx:
            attrs = tuple(vocab.label("attribute", a) for a in attr_on[b, i].nonzero().flatten().tolist())
            box = None
            if boxes is not None and has_box is not None and bool(has_box[b, i]):
                box = tuple(boxes[b, i].tolist())
            objects.append(SceneObject(vocab.label("object", int(obj_cls[b, i])), attrs, box))
        relations = []
        for s, o, p in rel_on[b].nonzero().tolist():
            if s != o and s in pos and o in pos:
                relations.append(Relation(pos[s], vocab.label("predicate", p), pos[o]))
        out.append(SceneGraph(tuple(objects), tuple(relations)))
    return out


def dense_canonical(graph: SceneGraph, vocab: Vocabulary) -> SceneGraph:
    """The form ``from_dense(to_dense([graph]))`` returns: labels through the vocabulary (unknown ->
    ``<unk>``), attributes and relations sorted by id and de-duplicated, no text or spans."""
    objects = []
    for o in graph.objects:
        ids = sorted(set(vocab.indices("attribute", list(o.attributes))))
        objects.append(SceneObject(vocab.label("object", vocab.index("object", o.name)),
                                   tuple(vocab.label("attribute", a) for a in ids), o.box))
    rels = sorted({(r.subject, r.object, vocab.index("predicate", r.predicate)) for r in graph.relations})
    return SceneGraph(tuple(objects), tuple(Relation(s, vocab.label("predicate", p), o) for s, o, p in rels))
