"""Link decoders: node embeddings ``h [N, D]`` and query pairs ``pairs [2, B]`` -> logits ``[B]``.

* :class:`DotDecoder` — ``<h_i, h_j>``.
* :class:`DistMultDecoder` — ``<h_i, diag(r), h_j>`` with one learned ``r`` per relation.
* :class:`MLPDecoder` — ``MLP(h_i ⊙ h_j)``.
* :class:`CNDecoder` — Neural Common Neighbour (Wang et al. 2023, https://arxiv.org/abs/2302.00890):
  ``MLP(β · f(Σ_{u ∈ N(i) ∩ N(j)} h_u) + g(h_i ⊙ h_j))``; needs the message-passing ``edge_index``.

Every decoder has the same call signature ``decoder(h, pairs, edge_index=None, rel=None)``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["DotDecoder", "DistMultDecoder", "MLPDecoder", "CNDecoder", "common_neighbors"]


class DotDecoder(nn.Module):
    """``s(i, j) = <h_i, h_j>``."""

    def forward(self, h: Tensor, pairs: Tensor, edge_index: Tensor | None = None, rel: Tensor | None = None) -> Tensor:
        return (h[pairs[0]] * h[pairs[1]]).sum(-1)


class DistMultDecoder(nn.Module):
    """``s(i, r, j) = Σ_d h_i[d] · R_r[d] · h_j[d]`` (Yang et al. 2015).

    Args:
        channels: D.
        num_relations: number of relation types (``rel`` holds ids in ``[0, num_relations)``).
    """

    def __init__(self, channels: int, num_relations: int = 1) -> None:
        super().__init__()
        if num_relations < 1:
            raise ValueError(f"num_relations must be >= 1, got {num_relations}")
        self.rel = nn.Parameter(torch.empty(num_relations, channels))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.ones_(self.rel)

    def forward(self, h: Tensor, pairs: Tensor, edge_index: Tensor | None = None, rel: Tensor | None = None) -> Tensor:
        r = self.rel[0] if rel is None else self.rel[rel]  # [D] or [B, D]
        return (h[pairs[0]] * r * h[pairs[1]]).sum(-1)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.rel.size(1)}, num_relations={self.rel.size(0)})"


def _mlp(channels: int, out: int, num_layers: int, dropout: float, norm: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for _ in range(num_layers - 1):
        layers += [nn.Linear(channels, channels)]
        if norm:
            layers += [nn.LayerNorm(channels)]
        layers += [nn.Dropout(dropout), nn.ReLU()]
    layers += [nn.Linear(channels, out)]
    return nn.Sequential(*layers)


class MLPDecoder(nn.Module):
    """``s(i, j) = MLP(h_i ⊙ h_j)`` (symmetric in i, j)."""

    def __init__(self, channels: int, num_layers: int = 2, dropout: float = 0.0, norm: bool = False) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        self.mlp = _mlp(channels, 1, num_layers, dropout, norm)

    def forward(self, h: Tensor, pairs: Tensor, edge_index: Tensor | None = None, rel: Tensor | None = None) -> Tensor:
        return self.mlp(h[pairs[0]] * h[pairs[1]]).squeeze(-1)


def common_neighbors(edge_index: Tensor, num_nodes: int, pairs: Tensor) -> tuple[Tensor, Tensor]:
    """Common neighbours of each query pair over the directed graph ``edge_index`` (``src -> dst``).

    ``N(i) = {u : (i, u) ∈ edge_index}``. Returns ``(pair_id [C], node [C])``: one entry per
    (query, common neighbour) incidence, so ``index_add(pair_id, h[node])`` sums the CN embeddings.
    Cost is ``O(Σ deg(i) + deg(j))`` (no dense ``[B, N]`` matrix).
    """
    row, col = edge_index
    order = torch.argsort(row * num_nodes + col)
    row, col = row[order], col[order]
    deg = torch.bincount(row, minlength=num_nodes)
    rowptr = torch.zeros(num_nodes + 1, dtype=torch.long)
    rowptr[1:] = torch.cumsum(deg, 0)

    def expand(nodes: Tensor) -> tuple[Tensor, Tensor]:
        d = deg[nodes]  # [B]
        pid = torch.repeat_interleave(torch.arange(nodes.numel()), d)
        start = torch.repeat_interleave(rowptr[nodes] - (torch.cumsum(d, 0) - d), d)
        return pid, col[start + torch.arange(pid.numel())]

    p1, n1 = expand(pairs[0])
    p2, n2 = expand(pairs[1])
    k2 = p2 * num_nodes + n2
    mask = torch.isin(p1 * num_nodes + n1, k2)
    return p1[mask], n1[mask]


class CNDecoder(nn.Module):
    r"""Neural Common Neighbour decoder (NCN, Wang et al. 2023).

    .. math::
        s(i, j) = \mathrm{MLP}_{out}\big(\beta\, \mathrm{MLP}_{cn}(\textstyle\sum_{u \in N(i)\cap N(j)} h_u)
                  + \mathrm{MLP}_{ij}(h_i \odot h_j)\big)

    Args:
        channels: D.
        dropout: dropout inside the MLPs.
        beta: initial weight of the common-neighbour branch (learned).
        norm: LayerNorm inside the MLPs.

    Shapes:
        h ``[N, D]``, pairs ``[2, B]``, edge_index ``[2, E]`` (the message-passing graph; both
        directions) -> ``[B]``.
    """

    def __init__(self, channels: int, dropout: float = 0.0, beta: float = 1.0, norm: bool = True) -> None:
        super().__init__()
        self.channels = channels
        self.cn = _mlp(channels, channels, 3, dropout, norm)
        self.ij = _mlp(channels, channels, 2, dropout, norm)
        self.out = _mlp(channels, 1, 2, dropout, norm)
        self.beta = nn.Parameter(torch.tensor(float(beta)))

    def forward(self, h: Tensor, pairs: Tensor, edge_index: Tensor | None = None, rel: Tensor | None = None) -> Tensor:
        if edge_index is None:
            raise ValueError("CNDecoder needs the message-passing edge_index")
        pid, node = common_neighbors(edge_index, h.size(0), pairs)
        cn = h.new_zeros(pairs.size(1), h.size(1)).index_add_(0, pid, h[node])  # [B, D]
        z = self.beta * self.cn(cn) + self.ij(h[pairs[0]] * h[pairs[1]])
        return self.out(z).squeeze(-1)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.channels})"
