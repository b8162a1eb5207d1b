"""``HGCNConv``: the heterogeneous, direction-aware graph attention layer of RRNet."""

from __future__ import annotations

from typing import Dict, List, Optional, Union

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

__all__ = ["HGCNConv"]


def _key(edge_type: EdgeType) -> str:
    return "__".join(edge_type)


class HGCNConv(MessagePassing):
    r"""The heterogeneous graph convolution of RRNet, from `"Relation Rectification in Diffusion Model"
    <https://arxiv.org/abs/2403.20249>`_ (Wu et al., CVPR 2024): one graph attention per edge type,
    summed over the edge types that end in a node type.

    For a node :math:`i` of type :math:`\tau` and every edge type :math:`e = (\sigma, \cdot, \tau)`
    ending in :math:`\tau`, a GAT with its own weights attends over the in-neighbours
    :math:`\mathcal{N}_e(i)`; the results are summed over edge types, plus a root term:

    .. math::
        \mathbf{x}^{\prime}_i = \mathbf{W}^{\tau}_{\mathrm{root}} \mathbf{x}_i +
        \sum_{e = (\sigma, \cdot, \tau)} \sum_{j \in \mathcal{N}_e(i)} \alpha^{e}_{i,j}
        \mathbf{W}^{e} \mathbf{x}_j + \mathbf{b}^{\tau},

    .. math::
        \alpha^{e}_{i,j} = \mathrm{softmax}_{j \in \mathcal{N}_e(i)} \Big( \mathrm{LeakyReLU}\big(
        \mathbf{a}^{e\top}_{\mathrm{src}} \mathbf{W}^{e} \mathbf{x}_j +
        \mathbf{a}^{e\top}_{\mathrm{dst}} \mathbf{W}^{e}_{\mathrm{dst}} \mathbf{x}_i \big) \Big),

    computed per head (``heads`` independent copies; outputs concatenated or averaged). Edges are
    directed: a message flows only from source to destination, so in the scene-graph schema
    ``subject -> relation -> object`` the subject and the object of a relation play different roles
    ("a cat on a dog" and "a dog on a cat" give different embeddings). Reverse edges are not needed and
    not added; pass them in ``metadata`` / ``edge_index_dict`` (e.g. via :class:`~torch_geometric.
    transforms.ToUndirected`) if information should also flow backwards. The destination term
    :math:`\mathbf{a}^{e\top}_{\mathrm{dst}} \mathbf{W}^{e}_{\mathrm{dst}}` is stored folded as one
    ``[heads, in]`` matrix per edge type (only the product enters the score).

    All edge types are processed in a single fused :meth:`propagate` call (as in
    :class:`~torch_geometric.nn.conv.HGTConv`), with the softmax taken per (edge type, destination).
    The layer works on any :class:`~torch_geometric.data.HeteroData` and compiles with
    ``torch.compile(fullgraph=True)``.

    Args:
        in_channels (int or Dict[str, int]): Size of each input sample of every node type, or ``-1``
            to derive it lazily from the first forward pass.
        out_channels (int): Size of each output sample per head.
        metadata (Tuple[List[str], List[Tuple[str, str, str]]]): node types and edge types, as given
            by :meth:`torch_geometric.data.HeteroData.metadata`.
        heads (int, optional): Number of attention heads. (default: ``1``)
        concat (bool, optional): If ``True``, head outputs are concatenated (``heads * out_channels``
            features), else averaged (``out_channels``). (default: ``True``)
        negative_slope (float, optional): LeakyReLU slope of the attention score. (default: ``0.2``)
        dropout (float, optional): Dropout probability of the attention coefficients. (default: ``0.0``)
        root_weight (bool, optional): If ``False``, the root term :math:`\mathbf{W}_{\mathrm{root}}
            \mathbf{x}_i` is left out. (default: ``True``)
        bias (bool, optional): If ``False``, no additive bias. (default: ``True``)
        **kwargs (optional): Additional arguments of :class:`~torch_geometric.nn.conv.MessagePassing`.

    Shapes:
        - **input:** ``x_dict`` ``{node_type: [N_t, F_t]}``, ``edge_index_dict``
          ``{edge_type: [2, E_e]}`` (``E_e`` may be 0; edge types may be missing)
        - **output:** ``{node_type: [N_t, heads * out_channels]}`` (or ``[N_t, out_channels]`` if
          ``concat=False``) for *every* node type in ``x_dict``; a node with no incoming edge gets only
          its root term and bias.
    """

    def __init__(
        self,
        in_channels: Union[int, Dict[str, int]],
        out_channels: int,
        metadata: Metadata,
        heads: int = 1,
        concat: bool = True,
        negative_slope: float = 0.2,
        dropout: float = 0.0,
        root_weight: bool = True,
        bias: bool = True,
        **kwargs,
    ) -> None:
        kwargs.setdefault("aggr", "add")
        super().__init__(node_dim=0, **kwargs)
        node_types, edge_types, in_channels = check_hetero_args(in_channels, out_channels, metadata, heads, dropout)

        self.in_channels = in_channels
        self.out_channels = out_channels
        self.heads = heads
        self.concat = concat
        self.negative_slope = negative_slope
        self.dropout = dropout
        self.root_weight = root_weight
        self.node_types: List[NodeType] = node_types
        self.edge_types: List[EdgeType] = edge_types

        # Edge types leaving / entering each node type; ``slot`` = position among them.
        self._src_slot: Dict[EdgeType, int] = {}
        self._dst_slot: Dict[EdgeType, int] = {}
        n_src: Dict[str, int] = {nt: 0 for nt in node_types}
        n_dst: Dict[str, int] = {nt: 0 for nt in node_types}
        for et in edge_types:
            self._src_slot[et] = n_src[et[0]]
            n_src[et[0]] += 1
            self._dst_slot[et] = n_dst[et[2]]
            n_dst[et[2]] += 1
        self._n_src, self._n_dst = n_src, n_dst

        hc = heads * out_channels
        # W^e for every edge type leaving a node type, fused into one matmul per node type.
        self.lin_src = torch.nn.ModuleDict({
            nt: Linear(in_channels[nt], hc * n_src[nt], bias=False, weight_initializer="glorot")
            for nt in node_types if n_src[nt] > 0
        })
        # a_dst^T W_dst for every edge type entering a node type: [heads] scores per edge type.
        self.lin_dst = torch.nn.ModuleDict({
            nt: Linear(in_channels[nt], heads * n_dst[nt], bias=False, weight_initializer="glorot")
            for nt in node_types if n_dst[nt] > 0
        })
        self.att_src = Parameter(torch.empty(max(len(edge_types), 1), heads, out_channels))
        if root_weight:
            self.lin_root = torch.nn.ModuleDict({
                nt: Linear(in_channels[nt], hc, bias=False, weight_initializer="glorot") for nt in node_types
            })
        else:
            self.lin_root = None
        out_dim = hc if concat else out_channels
        if bias:
            self.bias = torch.nn.ParameterDict({nt: Parameter(torch.empty(out_dim)) for nt in node_types})
        else:
            self.bias = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        super().reset_parameters()
        for lin in self.lin_src.values():
            lin.reset_parameters()
        for lin in self.lin_dst.values():
            lin.reset_parameters()
        if self.lin_root is not None:
            for lin in self.lin_root.values():
                lin.reset_parameters()
        glorot(self.att_src)
        if self.bias is not None:
            for b in self.bias.values():
                zeros(b)

    def forward(
        self,
        x_dict: Dict[NodeType, Tensor],
        edge_index_dict: Dict[EdgeType, Tensor],
    ) -> Dict[NodeType, Tensor]:
        r"""Runs the forward pass.

        Args:
            x_dict (Dict[str, Tensor]): node features ``[N_t, F_t]`` per node type.
            edge_index_dict (Dict[Tuple[str, str, str], Tensor]): ``[2, E_e]`` edge indices per edge type
                (types outside ``metadata`` raise; missing types are treated as empty).

        Returns:
            Dict[str, Tensor]: ``[N_t, heads * out_channels]`` (or ``[N_t, out_channels]``) per node type
            of ``x_dict``.
        """
        H, C = self.heads, self.out_channels
        for et in edge_index_dict.keys():
            if et not in self._src_slot:
                raise KeyError(f"edge type {et!r} is not in the metadata of {self.__class__.__name__}")

        # Destination space: all node types of ``x_dict`` one after another.
        dst_offset: Dict[str, int] = {}
        n_dst_total = 0
        for nt, x in x_dict.items():
            dst_offset[nt] = n_dst_total
            n_dst_total += x.size(0)

        # Source space: for every node type, its per-edge-type projections, slot-major.
        src_feats: List[Tensor] = []
        src_type_offset: Dict[str, int] = {}
        proj: Dict[str, Tensor] = {}
        n_src_total = 0
        for nt, lin in self.lin_src.items():
            if nt not in x_dict:
                continue
            x = x_dict[nt]
            k = self._n_src[nt]
            p = lin(x).view(-1, k, H, C)  # [N, k, H, C]
            proj[nt] = p
            src_type_offset[nt] = n_src_total
            src_feats.append(p.transpose(0, 1).reshape(-1, H, C))  # [k * N, H, C]
            n_src_total += k * x.size(0)
        score_dst: Dict[str, Tensor] = {}
        for nt, lin in self.lin_dst.items():
            if nt in x_dict:
                score_dst[nt] = lin(x_dict[nt]).view(-1, self._n_dst[nt], H)  # [N, k, H]

        srcs: List[Tensor] = []
        dsts: List[Tensor] = []
        groups: List[Tensor] = []
        alphas: List[Tensor] = []
        num_groups = 0
        for i, et in enumerate(self.edge_types):
            s, _, d = et
            if et not in edge_index_dict or s not in x_dict or d not in x_dict:
                continue
            edge_index = edge_index_dict[et]
            n_s, n_d = x_dict[s].size(0), x_dict[d].size(0)
            x_src = proj[s][:, self._src_slot[et]]  # [N_s, H, C]
            a_src = (x_src * self.att_src[i]).sum(dim=-1)  # [N_s, H]
            a_dst = score_dst[d][:, self._dst_slot[et]]  # [N_d, H]
            alphas.append(a_src.index_select(0, edge_index[0]) + a_dst.index_select(0, edge_index[1]))
            srcs.append(edge_index[0] + (src_type_offset[s] + self._src_slot[et] * n_s))
            dsts.append(edge_index[1] + dst_offset[d])
            groups.append(edge_index[1] + num_groups)
            num_groups += n_d

        out: Optional[Tensor] = None
        if len(srcs) > 0:
            edge_index = torch.stack([torch.cat(srcs), torch.cat(dsts)])
            out = self.propagate(
                edge_index,
                x=(torch.cat(src_feats, dim=0), None),
                alpha=torch.cat(alphas, dim=0),
                group=torch.cat(groups),
                num_groups=num_groups,
                size=(n_src_total, n_dst_total),
            )  # [N_dst_total, H, C]

        out_dict: Dict[NodeType, Tensor] = {}
        for nt, x in x_dict.items():
            n = x.size(0)
            if out is not None:
                h = out[dst_offset[nt] : dst_offset[nt] + n]
            else:
                h = x.new_zeros(n, H, C)
            if self.lin_root is not None:
                h = h + self.lin_root[nt](x).view(-1, H, C)
            h = h.reshape(n, H * C) if self.concat else h.mean(dim=1)
            if self.bias is not None:
                h = h + self.bias[nt]
            out_dict[nt] = h
        return out_dict

    def message(self, x_j: Tensor, alpha: Tensor, group: Tensor, num_groups: int) -> Tensor:
        # x_j: [E, H, C]; alpha: [E, H]; softmax over the edges of one (edge type, destination).
        alpha = F.leaky_relu(alpha, self.negative_slope)
        alpha = softmax(alpha, group, num_nodes=num_groups)
        alpha = F.dropout(alpha, p=self.dropout, training=self.training)
        return x_j * alpha.unsqueeze(-1)

    def __repr__(self) -> str:
        sizes = set(self.in_channels.values())
        in_channels = sizes.pop() if len(sizes) == 1 else -1
        return (f"{self.__class__.__name__}({in_channels}, {self.out_channels}, heads={self.heads}, "
                f"num_edge_types={len(self.edge_types)})")
