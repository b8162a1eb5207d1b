"""``LayoutGraphEncoder``: the graph side shared by the layout models.

Labels (vocabulary ids) -> learnt embeddings per kind; objects add their own per-object features
(known boxes, noisy boxes); every node adds an optional per-graph condition (the diffusion time);
then a :class:`~scenegraph_diff.nn.SceneGraphEncoder` (HGCN or R-HGNN layers, with the schema's
reverse edge types so that a relation's subject hears from its object) and a few layers of
self-attention among the objects of each graph (boxes must not only respect relations but also
avoid objects they have none with). Permutation-equivariant in the objects; direction-aware.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import torch
from torch import Tensor, nn

from ..graph.hetero import ATTRIBUTE, NODE_TYPES, OBJECT, RELATION, SCENE

if TYPE_CHECKING:  # pragma: no cover
    from torch_geometric.data import HeteroData

__all__ = ["LayoutGraphEncoder"]


class LayoutGraphEncoder(nn.Module):
    r"""Embeds a collated scene-graph batch into one vector per object.

    .. math::
        \mathbf{x}_o = E_{obj}[c_o] + \mathrm{MLP}(\mathbf{f}_o) + \mathbf{g}_{b(o)}, \quad
        \mathbf{x}_r = E_{pred}[p_r] + \mathbf{g}_{b(r)}, \quad
        \mathbf{x}_a = E_{attr}[a] + \mathbf{g}_{b(a)}, \quad \mathbf{x}_s = \mathbf{g}_s,

    then ``SceneGraphEncoder`` (``reverse_edges=True``) and ``attn_layers`` pre-norm transformer layers over
    each graph's objects (no positional input, so permuting objects permutes the output).

    Args:
        num_objects, num_attributes, num_predicates: vocabulary sizes (``<unk>`` = id 0 included).
        object_features: size of the per-object input features ``f_o``.
        encoder: ``"hgcn"`` or ``"rhgnn"``.
        dim: width ``D`` of every embedding and layer.
        num_layers: graph layers.
        heads: attention heads (graph layers and object attention).
        attn_layers: object self-attention layers (``0``: none).
        dropout: dropout in the graph and attention layers.

    Shapes:
        ``forward(batch, object_features [No, object_features], cond [G, D] or None)`` -> ``[No, D]``.
    """

    def __init__(self, num_objects: int, num_attributes: int, num_predicates: int, object_features: int,
                 encoder: str = "rhgnn", dim: int = 64, num_layers: int = 2, heads: int = 2, attn_layers: int = 1,
                 dropout: float = 0.0) -> None:
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
        self.dim = dim
        self.emb = nn.ModuleDict({OBJECT: nn.Embedding(num_objects, dim), ATTRIBUTE: nn.Embedding(num_attributes, dim),
                                  RELATION: nn.Embedding(num_predicates, dim)})
        self.object_in = nn.Sequential(nn.Linear(object_features, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.graph = SceneGraphEncoder(in_channels=dim, hidden_channels=dim, out_channels=dim, num_layers=num_layers,
                                       heads=heads, conv=encoder, dropout=dropout, reverse_edges=True)
        self.attn = nn.ModuleList([
            nn.TransformerEncoderLayer(dim, heads, dim_feedforward=2 * dim, dropout=dropout, batch_first=True,
                                       norm_first=True)
            for _ in range(attn_layers)
        ])
        self.norm = nn.LayerNorm(dim)

    def forward(self, batch: "HeteroData", object_features: Tensor, cond: Optional[Tensor] = None) -> Tensor:
        """Object embeddings ``[No, D]``.

        Args:
            batch: collated graphs (:func:`~scenegraph_diff.graph.collate` with a vocabulary: ``label`` on
                object, attribute and relation nodes, ``batch`` vectors). Its ``x`` stores are overwritten.
            object_features: ``[No, object_features]``.
            cond: optional ``[G, D]`` per-graph condition added to every node of the graph.
        """
        from torch_geometric.utils import to_dense_batch

        n_obj = batch[OBJECT].num_nodes
        if object_features.shape != (n_obj, self.object_in[0].in_features):
            raise ValueError(f"object_features has shape {tuple(object_features.shape)}, expected "
                             f"[{n_obj}, {self.object_in[0].in_features}]")
        num_graphs = batch[SCENE].num_nodes
        if cond is not None and cond.shape != (num_graphs, self.dim):
            raise ValueError(f"cond has shape {tuple(cond.shape)}, expected [{num_graphs}, {self.dim}]")
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
        h = self.graph(batch).node_embeddings[OBJECT]  # [No, D]
        if self.attn:
            dense, mask = to_dense_batch(h, batch[OBJECT].batch, batch_size=num_graphs)  # [G, N, D], [G, N]
            for layer in self.attn:
                dense = layer(dense, src_key_padding_mask=~mask)
            h = dense[mask]  # [No, D]
        return self.norm(h)
