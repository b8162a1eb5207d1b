"""Node encoders for link prediction.

Homogeneous: :class:`GCNEncoder`, :class:`SAGEEncoder` (PyG ``GCNConv`` / ``SAGEConv`` stacks with an
optional input projection, input/feature dropout, LayerNorm and a jumping-knowledge sum). ``x`` may be a
sparse COO tensor (bag-of-words features): the input projection then runs as a sparse matmul.

Heterogeneous encoders (HGCN, R-HGNN, RGCN, HGT) live in :mod:`.hetero`.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["GCNEncoder", "SAGEEncoder", "PureGCNEncoder", "gcn_norm_propagate", "sparse_dropout"]


def _check_sizes(num_layers: int, hidden_channels: int) -> None:
    if num_layers < 1:
        raise ValueError(f"num_layers must be >= 1, got {num_layers}")
    if hidden_channels < 1:
        raise ValueError(f"hidden_channels must be >= 1, got {hidden_channels}")


def sparse_dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """Dropout on the stored values of a sparse COO tensor (dense tensors: plain dropout)."""
    if not training or p == 0.0:
        return x
    if not x.is_sparse:
        return F.dropout(x, p, training)
    x = x.coalesce()
    return torch.sparse_coo_tensor(x.indices(), F.dropout(x.values(), p, True), x.shape, check_invariants=False)


class _HomoEncoder(nn.Module):
    """Shared body: ``x -> [Lin] -> conv_1 .. conv_L`` with ReLU/dropout between layers.

    Args:
        in_channels: F.
        hidden_channels: D (also the output width).
        num_layers: number of message-passing layers L.
        dropout: dropout between layers.
        input_dropout: dropout on the input features (applied to the stored values of sparse input).
        input_linear: project the input to D before message passing.
        jk: output the sum of all layer outputs (jumping knowledge, "sum" mode).
        norm: LayerNorm after each layer.

    Shapes:
        x ``[N, F]`` (dense or sparse COO), edge_index ``[2, E]`` -> ``[N, D]``.
    """

    sparse_input = False  # whether the first conv accepts a sparse COO ``x`` directly

    def __init__(
        self,
        conv: Callable[[int, int], nn.Module],
        in_channels: int,
        hidden_channels: int,
        num_layers: int = 2,
        dropout: float = 0.0,
        input_dropout: float = 0.0,
        input_linear: bool = False,
        jk: bool = False,
        norm: bool = False,
    ) -> None:
        super().__init__()
        _check_sizes(num_layers, hidden_channels)
        self.in_channels, self.hidden_channels, self.num_layers = in_channels, hidden_channels, num_layers
        self.dropout, self.input_dropout, self.jk = dropout, input_dropout, jk
        self.lin = nn.Linear(in_channels, hidden_channels) if input_linear else None
        first = hidden_channels if input_linear else in_channels
        self.convs = nn.ModuleList(conv(first if i == 0 else hidden_channels, hidden_channels) for i in range(num_layers))
        self.norms = nn.ModuleList(nn.LayerNorm(hidden_channels) if norm else nn.Identity() for _ in range(num_layers))

    def reset_parameters(self) -> None:
        for m in self.modules():
            if m is not self and hasattr(m, "reset_parameters"):
                m.reset_parameters()

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        x = sparse_dropout(x, self.input_dropout, self.training)
        if self.lin is not None:
            x = torch.sparse.mm(x, self.lin.weight.t()) + self.lin.bias if x.is_sparse else self.lin(x)
            x = F.dropout(x, self.dropout, self.training)
        elif x.is_sparse and not self.sparse_input:
            x = x.to_dense()
        out = 0
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms)):
            x = norm(conv(x, edge_index))
            if i < self.num_layers - 1:
                x = F.dropout(F.relu(x), self.dropout, self.training)
            if self.jk:
                out = out + x
        return out if self.jk else x

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.in_channels}, {self.hidden_channels}, num_layers={self.num_layers})"


class GCNEncoder(_HomoEncoder):
    """A stack of ``GCNConv`` (Kipf & Welling 2017). See :class:`_HomoEncoder` for the arguments."""

    sparse_input = True

    def __init__(self, in_channels: int, hidden_channels: int, **kwargs) -> None:
        from torch_geometric.nn import GCNConv

        super().__init__(lambda i, o: GCNConv(i, o), in_channels, hidden_channels, **kwargs)


class SAGEEncoder(_HomoEncoder):
    """A stack of mean-aggregation ``SAGEConv`` (Hamilton et al. 2017)."""

    def __init__(self, in_channels: int, hidden_channels: int, **kwargs) -> None:
        from torch_geometric.nn import SAGEConv

        super().__init__(lambda i, o: SAGEConv(i, o), in_channels, hidden_channels, **kwargs)


def gcn_norm_propagate(x: Tensor, edge_index: Tensor) -> Tensor:
    """One weight-free GCN propagation ``D^-1/2 (A + I) D^-1/2 x`` (``A`` binarised, self-loops added).

    Shapes:
        x ``[N, D]``, edge_index ``[2, E]`` (directed ``src -> dst``; pass both directions for an
        undirected graph) -> ``[N, D]``.
    """
    n = x.size(0)
    if edge_index.numel() and (int(edge_index.min()) < 0 or int(edge_index.max()) >= n):
        raise ValueError(f"edge_index has node ids outside [0, {n}): min {int(edge_index.min())}, max {int(edge_index.max())}")
    keys = torch.unique(edge_index[1] * n + edge_index[0])  # one entry per (dst, src), duplicates merged
    dst, src = keys // n, keys % n
    keep = dst != src
    dst, src = dst[keep], src[keep]
    norm = torch.rsqrt(1.0 + torch.bincount(dst, minlength=n).to(x.dtype)).unsqueeze(-1)  # [N, 1]
    xs = norm * x
    out = xs.index_add(0, dst, xs[src])
    return norm * out


class PureGCNEncoder(nn.Module):
    """NCN's "pure GCN": an input projection followed by weight-free GCN propagations.

    ``h = Σ_l w_l · drop_tail(Â^l · drop(W · drop_in(x)))`` (jumping knowledge with learned scalars
    ``w_l`` when ``jk``, ``l = 1..L``, or ``l = 0..L`` with ``jk_input``; otherwise the last layer only).
    The weights live only in the input projection, so the embedding is a smoothed linear function of the
    features; with many steps and ``jk_input`` it is a learned polynomial filter of ``Â`` (GPR-GNN).

    Args:
        in_channels: F.
        hidden_channels: D.
        num_layers: propagation steps L (>= 1).
        dropout: dropout after the input projection.
        input_dropout: dropout on the input features (stored values of sparse input).
        tail_dropout: dropout on the output of the last propagation.
        jk: learned weighted sum over the L propagation outputs.
        jk_input: also include the propagation input (``l = 0``) in that sum (needs ``jk``).

    Shapes:
        x ``[N, F]`` (dense or sparse COO), edge_index ``[2, E]`` -> ``[N, D]``.
    """

    def __init__(self, in_channels: int, hidden_channels: int, num_layers: int = 1, dropout: float = 0.0,
                 input_dropout: float = 0.0, tail_dropout: float = 0.0, jk: bool = True, jk_input: bool = False) -> None:
        super().__init__()
        _check_sizes(num_layers, hidden_channels)
        if jk_input and not jk:
            raise ValueError("jk_input=True needs jk=True")
        self.in_channels, self.hidden_channels, self.num_layers = in_channels, hidden_channels, num_layers
        self.dropout, self.input_dropout, self.tail_dropout, self.jk = dropout, input_dropout, tail_dropout, jk
        self.jk_input = jk_input
        self.lin = nn.Linear(in_channels, hidden_channels)
        self.jk_weight = nn.Parameter(torch.ones(num_layers + int(jk_input))) if jk else None

    def reset_parameters(self) -> None:
        self.lin.reset_parameters()
        if self.jk_weight is not None:
            nn.init.ones_(self.jk_weight)

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        x = sparse_dropout(x, self.input_dropout, self.training)
        x = torch.sparse.mm(x, self.lin.weight.t()) + self.lin.bias if x.is_sparse else self.lin(x)
        x = F.dropout(x, self.dropout, self.training)
        outs = [x] if self.jk_input else []
        for i in range(self.num_layers):
            x = gcn_norm_propagate(x, edge_index)
            if i == self.num_layers - 1:
                x = F.dropout(x, self.tail_dropout, self.training)
            outs.append(x)
        if self.jk_weight is None:
            return x
        return sum(w * o for w, o in zip(self.jk_weight, outs))

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.in_channels}, {self.hidden_channels}, num_layers={self.num_layers})"
