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

__all__ = ["DotDecoder", "DistMultDecoder", "MLPDecoder", "CNDecoder", "NCNDecoder", "common_neighbors", "neighbour_overlap",
           "COMPLETION_MODES"]

COMPLETION_MODES = ("detached", "recursive")  # how NCNC scores the missing edges (see NCNDecoder)


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
    csr = _CSR(edge_index, num_nodes)
    p1, n1 = csr.expand(pairs[0])
    p2, n2 = csr.expand(pairs[1])
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


class _CSR:
    """Sorted adjacency of a directed ``edge_index`` (``src -> dst``), for neighbour-list lookups."""

    def __init__(self, edge_index: Tensor, num_nodes: int) -> None:
        row, col = edge_index
        order = torch.argsort(row * num_nodes + col)
        self.col = col[order]
        self.deg = torch.bincount(row, minlength=num_nodes)
        self.rowptr = torch.zeros(num_nodes + 1, dtype=torch.long, device=row.device)
        self.rowptr[1:] = torch.cumsum(self.deg, 0)
        self.num_nodes = num_nodes

    def expand(self, nodes: Tensor) -> tuple[Tensor, Tensor]:
        """``(query_id [C], neighbour [C])``: one entry per neighbour of each of ``nodes [B]``."""
        d = self.deg[nodes]
        pid = torch.repeat_interleave(torch.arange(nodes.numel(), device=nodes.device), d)
        start = torch.repeat_interleave(self.rowptr[nodes] - (torch.cumsum(d, 0) - d), d)
        return pid, self.col[start + torch.arange(pid.numel(), device=nodes.device)]


def _cap_per_query(pid: Tensor, cap: int, generator: torch.Generator | None = None) -> Tensor:
    """Boolean mask keeping at most ``cap`` random entries per query id (``cap <= 0``: keep all)."""
    if cap <= 0 or pid.numel() == 0:
        return torch.ones_like(pid, dtype=torch.bool)
    r = torch.rand(pid.numel(), generator=generator, device=generator.device if generator is not None else pid.device)
    r = r.to(pid.device)
    order = torch.argsort(pid.to(torch.float64) + r.to(torch.float64) * 0.5)  # by query, random within
    sp = pid[order]
    first = torch.ones_like(sp, dtype=torch.bool)
    first[1:] = sp[1:] != sp[:-1]
    ar = torch.arange(sp.numel(), device=sp.device)
    start = torch.cummax(torch.where(first, ar, torch.zeros_like(sp)), 0).values
    rank = ar - start
    keep = torch.zeros_like(pid, dtype=torch.bool)
    keep[order] = rank < cap
    return keep


def neighbour_overlap(edge_index: Tensor, num_nodes: int, pairs: Tensor
                      ) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
    """Split the neighbourhoods of each query pair ``(i, j)`` into common and residual parts.

    Returns ``(cn, res_i, res_j)``, each ``(query_id [C], node [C])``: ``cn`` the common neighbours
    ``N(i) ∩ N(j)``; ``res_i`` the nodes of ``N(i) \\ N(j)``, ``res_j`` those of ``N(j) \\ N(i)`` (the
    query's own endpoints excluded). Shapes: edge_index ``[2, E]``, pairs ``[2, B]``.
    """
    csr = _CSR(edge_index, num_nodes)
    p1, n1 = csr.expand(pairs[0])
    p2, n2 = csr.expand(pairs[1])
    k1, k2 = p1 * num_nodes + n1, p2 * num_nodes + n2
    in2, in1 = torch.isin(k1, k2), torch.isin(k2, k1)
    r1 = ~in2 & (n1 != pairs[1][p1])
    r2 = ~in1 & (n2 != pairs[0][p2])
    return (p1[in2], n1[in2]), (p1[r1], n1[r1]), (p2[r2], n2[r2])


class NCNDecoder(nn.Module):
    r"""NCN / NCNC link predictor (Wang et al. 2023, https://arxiv.org/abs/2302.00890).

    NCN: ``s(i, j) = lin(β · f_cn(Σ_{u ∈ N(i)∩N(j)} z_u) + f_ij(h_i ⊙ h_j))`` with ``z = h + f_x(h)``.

    NCNC (``completion=True``) adds *common-neighbour completion*: a node ``k`` adjacent to only one
    end (say ``k ∈ N(i) \ N(j)``) counts as a soft common neighbour with weight
    ``α · q(k, j)``, where ``q`` is the NCN model's own (no-grad) link probability for the missing
    edge ``(k, j)``, recalibrated as ``p = σ(scale · (logit - offset))``,
    ``q = pt · p / (pt · p + 1 - p)``. At most ``train_resdeg`` / ``test_resdeg`` residual
    neighbours per side are used (random subset).

    ``completion_mode`` says how ``q`` is computed:

    * ``"detached"`` — the NCN score of ``(k, j)`` from the same ``h`` / ``z`` as the query, without
      gradient (the paper's description);
    * ``"recursive"`` — as the NCNC authors' code does it (``IncompleteCN1Predictor``, depth 1, as
      recalled, not checked against it): the predictor calls itself on ``z``, so the inner score is
      ``lin(β · f_cn(Σ_{u ∈ N(k)∩N(j)} z'_u) + f_ij(z_k ⊙ z_j))`` with ``z' = z + f_x(z)``, and the
      gradient flows through the completion weights.

    Args:
        channels: D.
        dropout: dropout inside the MLPs.
        beta: initial weight of the common-neighbour branch (learned).
        norm: LayerNorm inside the MLPs.
        xlin: add the node-wise MLP ``f_x`` to the CN features (``use_xlin``).
        tailact: end ``f_cn`` and ``f_ij`` with an activation instead of a linear layer.
        twolayerlin: two hidden layers in the output MLP.
        completion: NCNC completion.
        alpha, pt, scale, offset: completion weight and probability recalibration.
        train_resdeg, test_resdeg: residual-neighbour caps (``<= 0``: no cap).
        completion_mode: ``"detached"`` or ``"recursive"`` (above).

    Shapes:
        h ``[N, D]``, pairs ``[2, B]``, edge_index ``[2, E]`` (both directions) -> ``[B]``.
    """

    def __init__(self, channels: int, dropout: float = 0.0, beta: float = 1.0, norm: bool = True,
                 xlin: bool = True, tailact: bool = True, twolayerlin: bool = False, completion: bool = False,
                 alpha: float = 1.0, pt: float = 0.5, scale: float = 5.0, offset: float = 3.0,
                 train_resdeg: int = 8, test_resdeg: int = 128, completion_mode: str = "detached") -> None:
        super().__init__()
        if not 0.0 < pt <= 1.0:
            raise ValueError(f"pt must be in (0, 1], got {pt}")
        if completion_mode not in COMPLETION_MODES:
            raise ValueError(f"completion_mode must be 'detached' or 'recursive', got {completion_mode!r}")
        self.completion_mode = completion_mode
        d = channels
        ln = (lambda: nn.LayerNorm(d)) if norm else (lambda: nn.Identity())
        drop = lambda: nn.Dropout(dropout)  # noqa: E731
        self.channels = channels
        self.xlin = nn.Sequential(nn.Linear(d, d), drop(), nn.ReLU(), nn.Linear(d, d), ln(), drop(), nn.ReLU()) if xlin else None
        self.xcnlin = nn.Sequential(nn.Linear(d, d), drop(), nn.ReLU(), nn.Linear(d, d), ln(), drop(), nn.ReLU(),
                                    nn.Identity() if tailact else nn.Linear(d, d))
        self.xijlin = nn.Sequential(nn.Linear(d, d), ln(), drop(), nn.ReLU(), nn.Identity() if tailact else nn.Linear(d, d))
        extra = [nn.Linear(d, d), ln(), drop(), nn.ReLU()] if twolayerlin else []
        self.lin = nn.Sequential(nn.Linear(d, d), ln(), drop(), nn.ReLU(), *extra, nn.Linear(d, 1))
        self.beta = nn.Parameter(torch.tensor(float(beta)))
        self.completion, self.alpha, self.pt, self.scale, self.offset = completion, alpha, pt, scale, offset
        self.train_resdeg, self.test_resdeg = train_resdeg, test_resdeg

    def _score(self, h: Tensor, z: Tensor, pairs: Tensor, cn: Tensor) -> Tensor:
        return self.lin(self.xcnlin(cn) * self.beta + self.xijlin(h[pairs[0]] * h[pairs[1]])).squeeze(-1)

    def _ncn(self, h: Tensor, z: Tensor, pairs: Tensor, edge_index: Tensor) -> Tensor:
        pid, node = common_neighbors(edge_index, h.size(0), pairs)
        cn = z.new_zeros(pairs.size(1), z.size(1)).index_add_(0, pid, z[node])
        return self._score(h, z, pairs, cn)

    def completion_weights(self, logits: Tensor) -> Tensor:
        """Soft common-neighbour weights ``α · q`` from NCN logits of the missing edges ``[C] -> [C]``."""
        p = torch.sigmoid(self.scale * (logits - self.offset))
        return self.alpha * self.pt * p / (self.pt * p + 1.0 - p)

    def forward(self, h: Tensor, pairs: Tensor, edge_index: Tensor | None = None, rel: Tensor | None = None) -> Tensor:
        if edge_index is None:
            raise ValueError("NCNDecoder needs the message-passing edge_index")
        z = h if self.xlin is None else h + self.xlin(h)
        if not self.completion:
            return self._ncn(h, z, pairs, edge_index)
        (pc, nc), (p1, n1), (p2, n2) = neighbour_overlap(edge_index, h.size(0), pairs)
        cap = self.train_resdeg if self.training else self.test_resdeg
        k1, k2 = _cap_per_query(p1, cap), _cap_per_query(p2, cap)
        p1, n1, p2, n2 = p1[k1], n1[k1], p2[k2], n2[k2]
        # probabilities of the missing edges (k, j) and (i, k), NCN's own predictions
        miss = torch.cat([torch.stack([n1, pairs[1][p1]]), torch.stack([pairs[0][p2], n2])], 1)
        if miss.size(1) == 0:
            w = z.new_zeros(0)
        elif self.completion_mode == "recursive":
            zz = z if self.xlin is None else z + self.xlin(z)
            w = self.completion_weights(self._ncn(z, zz, miss, edge_index))
        else:
            with torch.no_grad():
                w = self.completion_weights(self._ncn(h, z, miss, edge_index))
        pid = torch.cat([pc, p1, p2])
        node = torch.cat([nc, n1, n2])
        wt = torch.cat([z.new_ones(pc.numel()), w])
        cn = z.new_zeros(pairs.size(1), z.size(1)).index_add_(0, pid, wt.unsqueeze(-1) * z[node])
        return self._score(h, z, pairs, cn)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.channels}, completion={self.completion})"
