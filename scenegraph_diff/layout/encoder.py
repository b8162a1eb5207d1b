"""``LayoutGraphEncoder``: the graph side shared by the layout models.

Labels (vocabulary ids) -> learnt embeddings per kind; objects add their own per-object features
(known boxes, noisy boxes); every node adds an optional per-graph condition (the diffusion time);
then a :class:`~scenegraph_diff.nn.SceneGraphEncoder` (HGCN or R-HGNN layers, with the schema's
reverse edge types so that a relation's subject hears from its object), and a few layers of attention
among the objects of each graph (:class:`PairAttentionLayer`) whose scores and messages are biased by
pair features: the graph encoder's embedding of every relation between the two objects (one map for the
subject's view, another for the object's), plus, when boxes are given (a diffusion model's noisy boxes),
their relative geometry. Boxes must not only respect relations but also keep clear of objects they have
none with; this is where objects compare positions. Permutation-equivariant in the objects;
direction-aware.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Optional

import torch
from torch import Tensor, nn

from ..graph.hetero import ATTRIBUTE, NODE_TYPES, OBJ, OBJECT, RELATION, SCENE, SUBJ

if TYPE_CHECKING:  # pragma: no cover
    from torch_geometric.data import HeteroData

__all__ = ["LayoutGraphEncoder", "PairAttentionLayer", "pair_geometry", "GEOMETRY_FEATURES"]

#: size of :func:`pair_geometry`'s features
GEOMETRY_FEATURES = 8


def pair_geometry(params: Tensor) -> Tensor:
    """Relative geometry ``[G, N, N, 8]`` of boxes ``(cx, cy, w, h)`` ``[G, N, 4]``: for the pair ``(i, j)``,
    ``j``'s centre offset from ``i``, both sizes, and the gaps between the boxes along x and y (negative where
    their extents overlap on that axis)."""
    cx, cy, w, h = params.unbind(-1)  # [G, N] each
    dx = cx[:, None, :] - cx[:, :, None]  # [G, N, N]: j relative to i
    dy = cy[:, None, :] - cy[:, :, None]
    gx = dx.abs() - (w[:, None, :] + w[:, :, None]) / 2
    gy = dy.abs() - (h[:, None, :] + h[:, :, None]) / 2
    n = params.shape[1]
    wi, hi = w[:, :, None].expand(-1, n, n), h[:, :, None].expand(-1, n, n)
    wj, hj = w[:, None, :].expand(-1, n, n), h[:, None, :].expand(-1, n, n)
    return torch.stack([dx, dy, gx, gy, wi, hi, wj, hj], -1)


class PairAttentionLayer(nn.Module):
    r"""Pre-norm self-attention among a graph's objects with pair-feature biases, then a feed-forward block.

    .. math::
        \alpha_{ij} = \mathrm{softmax}_j\Big(\frac{\mathbf{q}_i^\top \mathbf{k}_j}{\sqrt{d}} + \mathbf{u}^\top
        \mathbf{p}_{ij}\Big), \quad \mathbf{h}_i \leftarrow \mathbf{h}_i + \mathbf{W}_o \sum_j \alpha_{ij}
        (\mathbf{v}_j + \mathbf{W}_p \mathbf{p}_{ij})

    per head, with pair features :math:`\mathbf{p}_{ij}` ``[G, N, N, D]``.

    Args:
        dim: width ``D``; heads: attention heads; dropout: on the residual branches.

    Shapes:
        ``forward(h [G, N, D], pair [G, N, N, D], mask [G, N])`` -> ``[G, N, D]``.
    """

    def __init__(self, dim: int, heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim ({dim}) must be divisible by heads ({heads})")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.pair_bias = nn.Linear(dim, heads)
        self.pair_value = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)
        self.norm1, self.norm2, self.norm_pair = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, h: Tensor, pair: Tensor, mask: Tensor) -> Tensor:
        G, N, D = h.shape
        H = self.heads
        q, k, v = self.qkv(self.norm1(h)).reshape(G, N, 3, H, D // H).unbind(2)  # [G, N, H, d] each
        p = self.norm_pair(pair)  # [G, N, N, D]
        att = torch.einsum("gihd,gjhd->ghij", q, k) / math.sqrt(D // H) + self.pair_bias(p).permute(0, 3, 1, 2)
        att = att.masked_fill(~mask[:, None, None, :], float("-inf")).softmax(-1)  # [G, H, N, N]
        msg = torch.einsum("ghij,gjhd->gihd", att, v).reshape(G, N, D)
        pv = self.pair_value(p).reshape(G, N, N, H, D // H)
        msg = msg + torch.einsum("ghij,gijhd->gihd", att, pv).reshape(G, N, D)
        h = h + self.drop(self.out(msg))
        h = h + self.drop(self.ff(self.norm2(h)))
        return h * mask[..., None].to(h.dtype)


class LayoutGraphEncoder(nn.Module):
    r"""Embeds a collated scene-graph batch into one vector per object.

    .. math::
        \mathbf{x}_o = E_{obj}[c_o] + \mathrm{MLP}(\mathbf{f}_o) + \mathbf{g}_{b(o)}, \quad
        \mathbf{x}_r = E_{pred}[p_r] + \mathbf{g}_{b(r)}, \quad
        \mathbf{x}_a = E_{attr}[a] + \mathbf{g}_{b(a)}, \quad \mathbf{x}_s = \mathbf{g}_s,

    then ``SceneGraphEncoder`` (``reverse_edges=True``) and ``attn_layers`` :class:`PairAttentionLayer` s over
    each graph's objects, with pair features ``p_ij = Σ_{r: i→j} A h_r + Σ_{r: j→i} B h_r (+ MLP(geometry_ij))``
    (``h_r``: the encoder's relation embeddings; no positional input, so permuting objects permutes the output).

    Args:
        num_objects, num_attributes, num_predicates: vocabulary sizes (``<unk>`` = id 0 included).
        object_features: size of the per-object input features ``f_o``.
        encoder: ``"hgcn"`` or ``"rhgnn"``.
        dim: width ``D`` of every embedding and layer.
        num_layers: graph layers.
        heads: attention heads (graph layers and object attention).
        attn_layers: object attention layers (``0``: none).
        dropout: dropout in the graph and attention layers.
        geometry: the attention layers also read the relative geometry of boxes given to :meth:`forward`.

    Shapes:
        ``forward(batch, object_features [No, F], cond [G, D] or None, boxes [No, 4] or None)`` -> ``[No, D]``.
    """

    def __init__(self, num_objects: int, num_attributes: int, num_predicates: int, object_features: int,
                 encoder: str = "rhgnn", dim: int = 64, num_layers: int = 2, heads: int = 2, attn_layers: int = 1,
                 dropout: float = 0.0, geometry: bool = False) -> None:
        super().__init__()
        for name, v in (("num_objects", num_objects), ("num_attributes", num_attributes),
                        ("num_predicates", num_predicates), ("object_features", object_features), ("dim", dim),
                        ("num_layers", num_layers), ("heads", heads)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        if isinstance(attn_layers, bool) or not isinstance(attn_layers, int) or attn_layers < 0:
            raise ValueError(f"attn_layers must be an integer >= 0, got {attn_layers!r}")
        if dim % heads:
            raise ValueError(f"dim ({dim}) must be divisible by heads ({heads})")
        from ..nn.encoders import CONVS, SceneGraphEncoder

        if encoder not in CONVS:
            raise ValueError(f"encoder must be one of {CONVS}, got {encoder!r}")
        self.dim, self.geometry = dim, geometry
        self.emb = nn.ModuleDict({OBJECT: nn.Embedding(num_objects, dim), ATTRIBUTE: nn.Embedding(num_attributes, dim),
                                  RELATION: nn.Embedding(num_predicates, dim)})
        self.object_in = nn.Sequential(nn.Linear(object_features, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.graph = SceneGraphEncoder(in_channels=dim, hidden_channels=dim, out_channels=dim, num_layers=num_layers,
                                       heads=heads, conv=encoder, dropout=dropout, reverse_edges=True)
        self.rel_subject = nn.Linear(dim, dim)  # pair (subject, object) of a relation
        self.rel_object = nn.Linear(dim, dim)  # pair (object, subject)
        self.geom = nn.Sequential(nn.Linear(GEOMETRY_FEATURES, dim), nn.SiLU(), nn.Linear(dim, dim)) if geometry else None
        self.attn = nn.ModuleList([PairAttentionLayer(dim, heads, dropout) for _ in range(attn_layers)])
        self.norm = nn.LayerNorm(dim)

    def forward(self, batch: "HeteroData", object_features: Tensor, cond: Optional[Tensor] = None,
                boxes: Optional[Tensor] = None) -> Tensor:
        """Object embeddings ``[No, D]``.

        Args:
            batch: collated graphs (:func:`~scenegraph_diff.graph.collate` with a vocabulary: ``label`` on
                object, attribute and relation nodes, ``batch`` and ``ptr`` vectors). Its ``x`` stores are
                overwritten.
            object_features: ``[No, F]``.
            cond: optional ``[G, D]`` per-graph condition added to every node of the graph.
            boxes: ``[No, 4]`` ``(cx, cy, w, h)`` for the pair geometry (required with ``geometry=True``,
                refused otherwise).
        """
        from torch_geometric.utils import to_dense_batch

        n_obj = batch[OBJECT].num_nodes
        if object_features.shape != (n_obj, self.object_in[0].in_features):
            raise ValueError(f"object_features has shape {tuple(object_features.shape)}, expected "
                             f"[{n_obj}, {self.object_in[0].in_features}]")
        num_graphs = batch[SCENE].num_nodes
        if cond is not None and cond.shape != (num_graphs, self.dim):
            raise ValueError(f"cond has shape {tuple(cond.shape)}, expected [{num_graphs}, {self.dim}]")
        if self.geometry != (boxes is not None):
            raise ValueError("boxes are required with geometry=True and refused without it")
        if boxes is not None and boxes.shape != (n_obj, 4):
            raise ValueError(f"boxes has shape {tuple(boxes.shape)}, expected [{n_obj}, 4]")
        for nt in NODE_TYPES:
            if nt == SCENE:
                x = torch.zeros(num_graphs, self.dim, device=object_features.device, dtype=object_features.dtype)
            else:
                x = self.emb[nt](batch[nt].label)  # [N_t, D]
                if nt == OBJECT:
                    x = x + self.object_in(object_features)
            if cond is not None:
                x = x + cond[batch[nt].batch]
            batch[nt].x = x
        nodes = self.graph(batch).node_embeddings
        h = nodes[OBJECT]  # [No, D]
        if not self.attn:
            return self.norm(h)
        obj_batch = batch[OBJECT].batch
        dense, mask = to_dense_batch(h, obj_batch, batch_size=num_graphs)  # [G, N, D], [G, N]
        N = dense.shape[1]
        local = torch.arange(n_obj, device=h.device) - batch[OBJECT].ptr[obj_batch]  # index within its graph
        pair = dense.new_zeros(num_graphs, N, N, self.dim)  # [G, N, N, D]
        n_rel = batch[RELATION].num_nodes
        if n_rel:
            subj = torch.empty(n_rel, dtype=torch.long, device=h.device)  # subject / object of each relation
            obj = torch.empty_like(subj)
            subj[batch[SUBJ].edge_index[1]] = batch[SUBJ].edge_index[0]
            obj[batch[OBJ].edge_index[0]] = batch[OBJ].edge_index[1]
            g = obj_batch[subj]
            h_rel = nodes[RELATION]  # [Nr, D]
            pair = pair.index_put((g, local[subj], local[obj]), self.rel_subject(h_rel), accumulate=True)
            pair = pair.index_put((g, local[obj], local[subj]), self.rel_object(h_rel), accumulate=True)
        if self.geom is not None and boxes is not None:
            dense_boxes, _ = to_dense_batch(boxes, obj_batch, batch_size=num_graphs)  # [G, N, 4]
            pair = pair + self.geom(pair_geometry(dense_boxes))
        for layer in self.attn:
            dense = layer(dense, pair, mask)
        return self.norm(dense[mask])
