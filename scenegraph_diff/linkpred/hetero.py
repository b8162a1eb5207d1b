"""Heterogeneous node encoders for typed link prediction (IMDB movie–director / movie–actor).

:class:`HeteroEncoder` projects each node type's (sparse) features to ``hidden`` and stacks
``num_layers`` layers of one kind:

* ``"hgcn"`` — :class:`scenegraph_diff.nn.HGCNConv` (RRNet: a GAT per edge type, summed);
* ``"rhgnn"`` — :class:`scenegraph_diff.nn.RHGNNConv` (R-HGNN: per-relation node states and relation
  embeddings carried between layers, semantic fusion after the last);
* ``"hgt"`` — PyG ``HGTConv``;
* ``"rgcn"`` — PyG ``RGCNConv`` on the homogenised graph (one relation per edge type).
"""

from __future__ import annotations

from typing import Dict

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["HeteroEncoder", "HETERO_KINDS"]

EdgeType = tuple[str, str, str]
HETERO_KINDS = ("hgcn", "rhgnn", "hgt", "rgcn")


class HeteroEncoder(nn.Module):
    """Per-type input projection + ``num_layers`` heterogeneous layers.

    Args:
        kind: one of :data:`HETERO_KINDS`.
        metadata: ``(node_types, edge_types)``.
        in_channels: ``{node_type: F_t}``.
        hidden: D (divisible by ``heads`` for ``hgcn``/``rhgnn``/``hgt``).
        num_layers: L >= 1.
        heads: attention heads.
        dropout: dropout on the projected input and between layers.

    Shapes:
        x_dict ``{t: [N_t, F_t]}`` (dense or sparse COO), edge_index_dict ``{e: [2, E_e]}`` ->
        ``{t: [N_t, D]}``.
    """

    def __init__(
        self,
        kind: str,
        metadata: tuple[list[str], list[EdgeType]],
        in_channels: Dict[str, int],
        hidden: int = 64,
        num_layers: int = 2,
        heads: int = 2,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if kind not in HETERO_KINDS:
            raise ValueError(f"kind must be one of {HETERO_KINDS}, got {kind!r}")
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        if kind != "rgcn" and hidden % heads:
            raise ValueError(f"hidden ({hidden}) must be divisible by heads ({heads}) for {kind}")
        self.kind, self.hidden, self.num_layers, self.dropout = kind, hidden, num_layers, dropout
        self.node_types, self.edge_types = list(metadata[0]), [tuple(e) for e in metadata[1]]
        self.lin = nn.ModuleDict({t: nn.Linear(in_channels[t], hidden) for t in self.node_types})
        self.convs = nn.ModuleList()
        for i in range(num_layers):
            if kind == "hgcn":
                from ..nn import HGCNConv

                self.convs.append(HGCNConv(hidden, hidden // heads, metadata, heads=heads))
            elif kind == "rhgnn":
                from ..nn import RHGNNConv

                last = i == num_layers - 1
                self.convs.append(RHGNNConv(hidden, hidden // heads, metadata, heads=heads, fuse=last))
            elif kind == "hgt":
                from torch_geometric.nn import HGTConv

                self.convs.append(HGTConv(hidden, hidden, metadata, heads=heads))
            else:
                from torch_geometric.nn import RGCNConv

                self.convs.append(RGCNConv(hidden, hidden, num_relations=len(self.edge_types)))

    def _project(self, x_dict: Dict[str, Tensor]) -> Dict[str, Tensor]:
        out = {}
        for t, x in x_dict.items():
            lin = self.lin[t]
            if x.is_sparse:
                if self.training and self.dropout > 0:
                    x = x.coalesce()
                    x = torch.sparse_coo_tensor(x.indices(), F.dropout(x.values(), self.dropout, True), x.shape, check_invariants=False)
                h = torch.sparse.mm(x, lin.weight.t()) + lin.bias
            else:
                h = lin(F.dropout(x, self.dropout, self.training))
            out[t] = F.relu(h)
        return out

    def forward(self, x_dict: Dict[str, Tensor], edge_index_dict: Dict[EdgeType, Tensor]) -> Dict[str, Tensor]:
        h = self._project(x_dict)
        if self.kind == "rgcn":
            return self._rgcn(h, edge_index_dict)
        rel = None
        for i, conv in enumerate(self.convs):
            if self.kind == "rhgnn":
                h, rel = conv(h, edge_index_dict, rel_dict=rel, return_relations=True)
            else:
                h = conv(h, edge_index_dict)
            if i < self.num_layers - 1:
                h = {t: F.dropout(F.relu(v), self.dropout, self.training) for t, v in h.items()}
        return h

    def _rgcn(self, h: Dict[str, Tensor], edge_index_dict: Dict[EdgeType, Tensor]) -> Dict[str, Tensor]:
        offsets, n = {}, 0
        for t in self.node_types:
            offsets[t] = n
            n += h[t].size(0)
        x = torch.cat([h[t] for t in self.node_types], 0)  # [N, D]
        eis, ets = [], []
        for r, et in enumerate(self.edge_types):
            if et not in edge_index_dict:
                continue
            ei = edge_index_dict[et]
            eis.append(torch.stack([ei[0] + offsets[et[0]], ei[1] + offsets[et[2]]]))
            ets.append(torch.full((ei.size(1),), r, dtype=torch.long, device=ei.device))
        ei, et = torch.cat(eis, 1), torch.cat(ets)
        for i, conv in enumerate(self.convs):
            x = conv(x, ei, et)
            if i < self.num_layers - 1:
                x = F.dropout(F.relu(x), self.dropout, self.training)
        return {t: x[offsets[t] : offsets[t] + h[t].size(0)] for t in self.node_types}

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.kind}, {self.hidden}, num_layers={self.num_layers})"
