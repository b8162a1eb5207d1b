"""``RHGNNConv``: one layer of the relation-aware heterogeneous GNN R-HGNN."""

from __future__ import annotations

import math
from typing import Dict, List, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn import Parameter
from torch_geometric.nn.conv import MessagePassing
from torch_geometric.nn.dense.linear import Linear
from torch_geometric.nn.inits import glorot, zeros
from torch_geometric.typing import EdgeType, Metadata, NodeType
from torch_geometric.utils import softmax

from ._checks import check_hetero_args

__all__ = ["RHGNNConv"]


class RHGNNConv(MessagePassing):
    r"""One layer of R-HGNN, from `"Heterogeneous Graph Representation Learning with Relation Awareness"
    <https://arxiv.org/abs/2105.11122>`_ (Yu et al., TKDE 2022), with all four of its parts.

    Every node :math:`v` of type :math:`\tau` keeps one state per relation (edge type)
    :math:`r \in \mathcal{R}_\tau` ending in :math:`\tau`: :math:`\mathbf{h}_{v,r} \in \mathbb{R}^{H d}`,
    and every relation has an embedding :math:`\mathbf{r} \in \mathbb{R}^{d_r}`.

    1. **Relation-specific convolution** guided by the relation embedding (per head):

       .. math::
           \mathbf{z}_u = \mathbf{W}_{\phi(u)} \bar{\mathbf{h}}_u, \quad
           \mathbf{z}_{v,r} = \mathbf{W}_\tau \mathbf{h}_{v,r}, \quad
           [\mathbf{a}_{\mathrm{dst}} \| \mathbf{a}_{\mathrm{src}}] = \mathbf{r}\,\mathbf{U}_r,

       .. math::
           \alpha_{uv} = \mathrm{softmax}_{u \in \mathcal{N}_r(v)} \mathrm{LeakyReLU}(
           \mathbf{a}_{\mathrm{dst}}^\top \mathbf{z}_{v,r} + \mathbf{a}_{\mathrm{src}}^\top \mathbf{z}_u),
           \quad \hat{\mathbf{h}}_{v,r} = \mathrm{ReLU}\Big(\sum_u \alpha_{uv} \mathbf{z}_u\Big),

       with the gated residual :math:`\hat{\mathbf{h}}_{v,r} \leftarrow \sigma(\beta_\tau)
       \hat{\mathbf{h}}_{v,r} + (1 - \sigma(\beta_\tau)) \mathrm{Lin}_\tau(\mathbf{h}_{v,r})`.
       :math:`\bar{\mathbf{h}}_u` is the mean of the source's relation states (its input features in
       the first layer).
    2. **Cross-relation message passing**:
       :math:`\mathbf{h}^{\prime}_{v,r} = \sum_{r' \in \mathcal{R}_\tau} \mathrm{softmax}_{r'}\big(
       \mathrm{LeakyReLU}(\mathbf{c}_r^\top \hat{\mathbf{h}}_{v,r'})\big) \hat{\mathbf{h}}_{v,r'}`.
    3. **Relation update**: :math:`\mathbf{r}^{\prime} = \mathrm{Lin}_r(\mathbf{r})`.
    4. **Semantic fusion** (``fuse=True``, for the last layer):
       :math:`\beta_{v,r} = \mathrm{softmax}_r \mathrm{LeakyReLU}\big((\mathbf{M}_r \mathbf{h}^{\prime}_{v,r})^\top
       (\mathbf{N}_r \mathbf{r}^{\prime})\big)`, :math:`\mathbf{h}_v = \sum_r \beta_{v,r} \mathbf{M}_r
       \mathbf{h}^{\prime}_{v,r}`.

    Stack layers with ``fuse=False, return_relations=True`` and finish with ``fuse=True``, passing the
    relation embeddings on (``rel_dict``); a single ``fuse=True`` layer is an ordinary hetero layer
    (``x_dict`` in, ``x_dict`` out). A node type that no edge type enters keeps a single state
    :math:`\mathrm{Lin}_\tau(\mathbf{h}_v)` (or :math:`\mathbf{W}_\tau \mathbf{h}_v` with
    ``residual=False``). Edges are directed, as in :class:`HGCNConv`.

    Args:
        in_channels (int or Dict[str, int]): input size per node type, or ``-1`` (lazy).
        out_channels (int): size per head :math:`d`; node states have ``heads * out_channels`` features.
        metadata (Tuple[List[str], List[Tuple[str, str, str]]]): node types and edge types.
        heads (int, optional): number of heads :math:`H`. (default: ``8``)
        rel_in_channels (int, optional): size :math:`d_r` of the incoming relation embeddings (the
            layer's own learnt initial embeddings are used when ``rel_dict`` is not given). (default: ``8``)
        rel_out_channels (int, optional): size of the updated relation embeddings. (default:
            ``rel_in_channels``)
        dropout (float, optional): dropout of attention coefficients and of the output. (default: ``0.0``)
        negative_slope (float, optional): LeakyReLU slope. (default: ``0.2``)
        residual (bool, optional): use the gated residual of part 1. (default: ``True``)
        fuse (bool, optional): apply semantic fusion (part 4) and return one state per node.
            (default: ``True``)

    Shapes:
        - **input:** ``x_dict`` ``{t: [N_t, F_t]}`` or per-relation states ``{t: [N_t, R_t, F_t]}`` (the
          output of a ``fuse=False`` layer); ``edge_index_dict`` ``{e: [2, E_e]}``; optional ``rel_dict``
          ``{e: [d_r]}``
        - **output:** ``{t: [N_t, H * d]}`` if ``fuse`` else ``{t: [N_t, R_t, H * d]}`` (``R_t`` = number of
          edge types entering ``t`` in the metadata, at least 1); with ``return_relations=True`` also
          ``{e: [rel_out_channels]}``.
    """

    def __init__(
        self,
        in_channels: Union[int, Dict[str, int]],
        out_channels: int,
        metadata: Metadata,
        heads: int = 8,
        rel_in_channels: int = 8,
        rel_out_channels: Optional[int] = None,
        dropout: float = 0.0,
        negative_slope: float = 0.2,
        residual: bool = True,
        fuse: bool = True,
        **kwargs,
    ) -> None:
        kwargs.setdefault("aggr", "add")
        super().__init__(node_dim=0, **kwargs)
        if rel_in_channels <= 0:
            raise ValueError(f"'rel_in_channels' must be positive (got {rel_in_channels})")
        if len(metadata[1]) == 0:
            raise ValueError("'metadata' has no edge types")
        node_types, edge_types, in_channels = check_hetero_args(in_channels, out_channels, metadata, heads, dropout)
        rel_out_channels = rel_in_channels if rel_out_channels is None else rel_out_channels

        self.in_channels = in_channels
        self.out_channels = out_channels
        self.heads = heads
        self.rel_in_channels = rel_in_channels
        self.rel_out_channels = rel_out_channels
        self.dropout = dropout
        self.negative_slope = negative_slope
        self.residual = residual
        self.fuse = fuse
        self.node_types: List[NodeType] = node_types
        self.edge_types: List[EdgeType] = edge_types
        self._edge_index_of = {et: i for i, et in enumerate(edge_types)}
        # Edge types entering each node type, in metadata order: the node type's relation states.
        self._in_rels: Dict[str, List[int]] = {nt: [] for nt in node_types}
        for i, et in enumerate(edge_types):
            self._in_rels[et[2]].append(i)

        E, H, d, hd = len(edge_types), heads, out_channels, heads * out_channels
        self.lin = torch.nn.ModuleDict({
            nt: Linear(in_channels[nt], hd, bias=False, weight_initializer="glorot") for nt in node_types
        })
        self.rel_emb = Parameter(torch.empty(E, rel_in_channels))  # initial relation embeddings
        self.rel_att = Parameter(torch.empty(E, rel_in_channels, 2 * hd))  # U_r
        if residual:
            self.lin_res = torch.nn.ModuleDict({
                nt: Linear(in_channels[nt], hd, bias=True, weight_initializer="glorot") for nt in node_types
            })
            self.res_weight = Parameter(torch.empty(len(node_types)))  # beta_tau
        else:
            self.lin_res = None
            self.register_parameter("res_weight", None)
        self.cross_att = Parameter(torch.empty(E, H, d))  # c_r
        self.rel_lin_weight = Parameter(torch.empty(E, rel_in_channels, rel_out_channels))
        self.rel_lin_bias = Parameter(torch.empty(E, rel_out_channels))
        if fuse:
            self.fuse_node = Parameter(torch.empty(E, H, d, d))  # M_r (per head)
            self.fuse_rel = Parameter(torch.empty(E, rel_out_channels, hd))  # N_r
        else:
            self.register_parameter("fuse_node", None)
            self.register_parameter("fuse_rel", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        super().reset_parameters()
        for lin in self.lin.values():
            lin.reset_parameters()
        if self.lin_res is not None:
            for lin in self.lin_res.values():
                lin.reset_parameters()
            zeros(self.res_weight)
        torch.nn.init.normal_(self.rel_emb, std=1.0 / math.sqrt(self.rel_in_channels))
        glorot(self.rel_att)
        glorot(self.cross_att)
        glorot(self.rel_lin_weight)
        zeros(self.rel_lin_bias)
        if self.fuse_node is not None:
            glorot(self.fuse_node)
            glorot(self.fuse_rel)

    def forward(
        self,
        x_dict: Dict[NodeType, Tensor],
        edge_index_dict: Dict[EdgeType, Tensor],
        rel_dict: Optional[Dict[EdgeType, Tensor]] = None,
        return_relations: bool = False,
    ) -> Union[Dict[NodeType, Tensor], Tuple[Dict[NodeType, Tensor], Dict[EdgeType, Tensor]]]:
        r"""Runs the forward pass.

        Args:
            x_dict (Dict[str, Tensor]): ``[N_t, F_t]`` features or ``[N_t, R_t, F_t]`` relation states.
            edge_index_dict (Dict[Tuple[str, str, str], Tensor]): ``[2, E_e]`` per edge type (missing = empty).
            rel_dict (Dict[Tuple[str, str, str], Tensor], optional): relation embeddings ``[d_r]`` from the
                previous layer; defaults to this layer's learnt initial embeddings.
            return_relations (bool, optional): also return the updated relation embeddings.
        """
        H, d = self.heads, self.out_channels
        hd = H * d
        for et in edge_index_dict.keys():
            if et not in self._edge_index_of:
                raise KeyError(f"edge type {et!r} is not in the metadata of {self.__class__.__name__}")
        if rel_dict is None:
            rel = self.rel_emb
        else:
            rel = torch.stack([rel_dict[et] for et in self.edge_types])  # [E, d_r]
        att = torch.einsum("ef,efk->ek", rel, self.rel_att).view(-1, 2, H, d)  # [E, 2, H, d]

        # Source projections (one per node type) and destination projections (one per relation state).
        src_feats: List[Tensor] = []
        src_offset: Dict[str, int] = {}
        z_src: Dict[str, Tensor] = {}
        z_dst: Dict[str, Tensor] = {}
        n_src_total = 0
        for nt, x in x_dict.items():
            x_mean = x.mean(dim=1) if x.dim() == 3 else x
            z = self.lin[nt](x_mean).view(-1, H, d)  # [N, H, d]
            z_src[nt] = z
            z_dst[nt] = self.lin[nt](x).view(x.size(0), x.size(1), H, d) if x.dim() == 3 else z.unsqueeze(1)  # [N, R|1, H, d]
            src_offset[nt] = n_src_total
            src_feats.append(z)
            n_src_total += x.size(0)

        # Part 1: one fused propagate; each (relation, destination) pair is one aggregation slot.
        srcs: List[Tensor] = []
        slots: List[Tensor] = []
        alphas: List[Tensor] = []
        slot_offset: Dict[EdgeType, int] = {}
        num_slots = 0
        for i, et in enumerate(self.edge_types):
            s, _, t = et
            if t not in x_dict:
                continue
            slot_offset[et] = num_slots
            n_t = x_dict[t].size(0)
            if et in edge_index_dict and s in x_dict:
                edge_index = edge_index_dict[et]
                r = self._in_rels[t].index(i)
                zd = z_dst[t][:, r] if z_dst[t].size(1) > 1 else z_dst[t][:, 0]  # [N_t, H, d]
                a_dst = (zd * att[i, 0]).sum(-1)  # [N_t, H]
                a_src = (z_src[s] * att[i, 1]).sum(-1)  # [N_s, H]
                alphas.append(a_src.index_select(0, edge_index[0]) + a_dst.index_select(0, edge_index[1]))
                srcs.append(edge_index[0] + src_offset[s])
                slots.append(edge_index[1] + num_slots)
            num_slots += n_t
        if len(srcs) > 0:
            out = self.propagate(
                torch.stack([torch.cat(srcs), torch.cat(slots)]),
                x=(torch.cat(src_feats, dim=0), None),
                alpha=torch.cat(alphas, dim=0),
                size=(n_src_total, num_slots),
            ).relu()  # [num_slots, H, d]
        else:
            out = src_feats[0].new_zeros(num_slots, H, d)

        # New relation embeddings (part 3), needed by the fusion.
        rel_new = torch.einsum("ef,efo->eo", rel, self.rel_lin_weight) + self.rel_lin_bias  # [E, d_r']

        out_dict: Dict[NodeType, Tensor] = {}
        for k, (nt, x) in enumerate(x_dict.items()):
            n = x.size(0)
            rels = self._in_rels[nt]
            if len(rels) == 0:  # no relation enters this node type: a single "self" state
                x_mean = x.mean(dim=1) if x.dim() == 3 else x
                h = self.lin_res[nt](x_mean) if self.lin_res is not None else z_src[nt].reshape(n, hd)
                h = h.unsqueeze(1)  # [N, 1, H*d]
                h = F.dropout(h, p=self.dropout, training=self.training)
                out_dict[nt] = h[:, 0] if self.fuse else h
                continue
            states = [out[slot_offset[self.edge_types[i]] : slot_offset[self.edge_types[i]] + n] for i in rels]
            h_hat = torch.stack(states, dim=1)  # [N, R, H, d]
            if self.lin_res is not None:
                gate = torch.sigmoid(self.res_weight[self.node_types.index(nt)])
                res = self.lin_res[nt](x).view(n, x.size(1) if x.dim() == 3 else 1, H, d)  # [N, R|1, H, d]
                h_hat = gate * h_hat + (1 - gate) * res
            # Part 2: cross-relation message passing (softmax over the source relation r').
            c = self.cross_att[rels]  # [R, H, d]
            score = torch.einsum("nqhd,rhd->nrqh", h_hat, c)  # [N, R, R', H]
            score = F.leaky_relu(score, self.negative_slope).softmax(dim=2)
            h = torch.einsum("nrqh,nqhd->nrhd", score, h_hat)  # [N, R, H, d]
            h = F.dropout(h, p=self.dropout, training=self.training)
            if self.fuse:
                # Part 4: semantic fusion guided by the updated relation embeddings.
                m = torch.einsum("nrhd,rhde->nrhe", h, self.fuse_node[rels])  # [N, R, H, d]
                q = torch.einsum("rf,rfk->rk", rel_new[rels], self.fuse_rel[rels]).view(1, -1, H, d)
                beta = F.leaky_relu((m * q).sum(-1), self.negative_slope).softmax(dim=1)  # [N, R, H]
                out_dict[nt] = (beta.unsqueeze(-1) * m).sum(dim=1).reshape(n, hd)
            else:
                out_dict[nt] = h.reshape(n, len(rels), hd)

        if return_relations:
            return out_dict, {et: rel_new[i] for i, et in enumerate(self.edge_types)}
        return out_dict

    def message(self, x_j: Tensor, alpha: Tensor, index: Tensor, ptr: Optional[Tensor],
                size_i: Optional[int]) -> Tensor:
        # x_j: [E, H, d]; alpha: [E, H]; softmax over the sources of one (relation, destination) slot.
        alpha = F.leaky_relu(alpha, self.negative_slope)
        alpha = softmax(alpha, index, ptr, size_i)
        alpha = F.dropout(alpha, p=self.dropout, training=self.training)
        return x_j * alpha.unsqueeze(-1)

    def __repr__(self) -> str:
        sizes = set(self.in_channels.values())
        in_channels = sizes.pop() if len(sizes) == 1 else -1
        return (f"{self.__class__.__name__}({in_channels}, {self.out_channels}, heads={self.heads}, "
                f"num_relations={len(self.edge_types)}, fuse={self.fuse})")
