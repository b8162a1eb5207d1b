"""An O(N²)-per-layer member of the :class:`~.ppgn.EdgeDenoiser` family, for graphs of hundreds of nodes.

:class:`~.ppgn.EdgeDenoiser` (PPGN-lite) pays ``O(N³ C)`` per layer for its pair-feature matrix products:
at ``N = 361`` (GDSS's grid) a single 8-channel layer costs ~0.4 GFLOP per graph, so only a tiny network
fits a CPU, and it learns nothing but the edge density. :class:`LowRankEdgeDenoiser` keeps the same
interface (noisy adjacency, diffusion time, node mask, optional pair / node conditions → clean-edge
logits) but replaces the ``N³`` products by

* **node states** ``x_i`` updated by *edge-gated aggregation* over all pairs
  (``agg_i = (1/n) Σ_j g(e_ij) ⊙ v(x_j)``, ``O(N² C)``), FiLM-modulated by the time;
* **pair states** ``e_ij`` updated from ``e_ij`` and the symmetric node combinations
  ``a_i + a_j`` and ``b_i ⊙ b_j`` (``O(N² C²)``, no sum over a third node);
* a **low-rank edge head**: ``logit_ij = MLP(e_ij) − ‖U x_i − U x_j‖² / √r`` (rank ``r``, a bilinear form of
  the node embeddings): embeddings that behave like coordinates (for a lattice, its layout) give edges
  between close nodes;
* a time-dependent **skip** ``w(t) A_t,ij + c(t)`` (at low noise the noisy entry alone decides the edge);
* a fixed number of **adjacency powers** ``A_t² / n, A_t³ / n²`` as input pair channels (the only
  ``N³`` work, once per call and one channel each, instead of ``C`` channels per layer).

Global structure (connectivity, positions) comes from the structural features of
:mod:`.structure` (heat kernels of the self-conditioning estimate) through ``edge_cond`` / ``node_cond``
as for the PPGN. Permutation-equivariant and symmetric in ``(i, j)``.

Shapes: ``A_t [B, N, N]`` · ``t [B]`` · ``node_mask [B, N]`` · ``edge_cond [B, N, N, Ce]`` ·
``node_cond [B, N, Cn]`` → logits ``[B, N, N]`` (symmetric; diagonal and padding = ``MASKED_LOGIT``).
"""

from __future__ import annotations

import math

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import Tensor, nn

from ..weights import AlignedLoadingMixin
from .ppgn import MASKED_LOGIT, timestep_embedding

__all__ = ["LowRankEdgeDenoiser"]


class _NodePairLayer(nn.Module):
    def __init__(self, channels: int, pair_channels: int, time_dim: int) -> None:
        super().__init__()
        C, P = channels, pair_channels
        self.gate = nn.Linear(P, P)
        self.value = nn.Linear(C, P)
        self.node_norm = nn.LayerNorm(C + 2 * P)
        self.node_mlp = nn.Sequential(nn.Linear(C + 2 * P, C), nn.SiLU(), nn.Linear(C, C))
        self.node_film = nn.Linear(time_dim, 2 * C)
        self.a = nn.Linear(C, P)
        self.b = nn.Linear(C, P)
        self.pair_norm = nn.LayerNorm(3 * P)
        self.pair_mlp = nn.Sequential(nn.Linear(3 * P, P), nn.SiLU(), nn.Linear(P, P))
        self.pair_film = nn.Linear(time_dim, 2 * P)
        for film in (self.node_film, self.pair_film):
            nn.init.zeros_(film.weight)
            nn.init.zeros_(film.bias)

    def forward(self, x: Tensor, e: Tensor, m: Tensor, pair: Tensor, n: Tensor, temb: Tensor) -> tuple[Tensor, Tensor]:
        # x: [B, N, C]; e: [B, N, N, P]; m: [B, N, 1]; pair: [B, N, N, 1]; n: [B, 1, 1]; temb: [B, T]
        g = torch.sigmoid(self.gate(e)) * pair  # [B, N, N, P]
        v = self.value(x) * m  # [B, N, P]
        agg = torch.einsum("bijp,bjp->bip", g, v) / n  # [B, N, P]
        emean = (e * pair).sum(2) / n  # [B, N, P]
        gamma, beta = self.node_film(temb)[:, None, :].chunk(2, dim=-1)
        x = (x + self.node_mlp(self.node_norm(torch.cat([x, agg, emean], -1))) * (1 + gamma) + beta) * m
        a, b = self.a(x), self.b(x)  # [B, N, P]
        s = a[:, :, None, :] + a[:, None, :, :]
        p = b[:, :, None, :] * b[:, None, :, :]
        gamma, beta = self.pair_film(temb)[:, None, None, :].chunk(2, dim=-1)
        e = (e + self.pair_mlp(self.pair_norm(torch.cat([e, s, p], -1))) * (1 + gamma) + beta) * pair
        return x, e


class LowRankEdgeDenoiser(AlignedLoadingMixin, ModelMixin, ConfigMixin):
    """Clean-edge logits from a noisy adjacency at ``O(N² C²)`` per layer (drop-in for :class:`~.ppgn.EdgeDenoiser`).

    Args:
        channels: node-state width ``C`` (default 64).
        pair_channels: pair-state width ``P`` (default 16).
        num_layers: node/pair layers (default 4).
        time_dim: width of the time embedding (default 64).
        rank: rank ``r`` of the distance edge head (default 16; 0 = pair MLP only).
        num_powers: adjacency powers ``A_t^k``, ``k = 2 .. num_powers + 1``, as input pair channels (default 2).
        edge_cond_dim: extra per-pair input channels ``Ce`` (default 0).
        node_cond_dim: extra per-node input channels ``Cn`` (default 0).
    """

    @register_to_config
    def __init__(self, channels: int = 64, pair_channels: int = 16, num_layers: int = 4, time_dim: int = 64,
                 rank: int = 16, num_powers: int = 2, edge_cond_dim: int = 0, node_cond_dim: int = 0) -> None:
        super().__init__()
        if channels < 1 or pair_channels < 1 or num_layers < 1 or rank < 0 or num_powers < 0:
            raise ValueError(f"need channels, pair_channels, num_layers >= 1 and rank, num_powers >= 0; got "
                             f"{channels}, {pair_channels}, {num_layers}, {rank}, {num_powers}")
        pair_in = 2 + num_powers + edge_cond_dim  # A_t, pair mask, powers, conditions
        self.pair_inp = nn.Linear(pair_in, pair_channels)
        self.node_inp = nn.Linear(2 * pair_in + node_cond_dim + 1, channels)  # row means / row std of inputs, log n
        self.time = nn.Sequential(nn.Linear(time_dim, time_dim), nn.SiLU(), nn.Linear(time_dim, time_dim))
        self.layers = nn.ModuleList([_NodePairLayer(channels, pair_channels, time_dim) for _ in range(num_layers)])
        self.out = nn.Sequential(nn.LayerNorm(pair_channels), nn.Linear(pair_channels, pair_channels), nn.SiLU(),
                                 nn.Linear(pair_channels, 1))
        self.embed = nn.Sequential(nn.LayerNorm(channels), nn.Linear(channels, rank)) if rank > 0 else None
        # time-dependent skip from the noisy entry itself: logit += w(t) A_t + c(t) (zero at init); at low noise A_t
        # alone decides the edge, which the deep path otherwise learns slowly on sparse graphs (density ~1 %)
        self.skip = nn.Linear(time_dim, 2)
        nn.init.zeros_(self.skip.weight)
        nn.init.zeros_(self.skip.bias)

    def forward(self, A_t: Tensor, t: Tensor, node_mask: Tensor, edge_cond: Tensor | None = None,
                node_cond: Tensor | None = None, return_hidden: bool = False):
        """Logits ``[B, N, N]`` (with ``return_hidden``: also the pair states ``[B, N, N, P]``)."""
        B, N, _ = A_t.shape
        cfg = self.config
        if (edge_cond is None) != (cfg.edge_cond_dim == 0) or (node_cond is None) != (cfg.node_cond_dim == 0):
            raise ValueError(f"conditions do not match the config (edge_cond_dim={cfg.edge_cond_dim}, "
                             f"node_cond_dim={cfg.node_cond_dim})")
        mf = node_mask.to(A_t.dtype)
        pair = mf[:, :, None] * mf[:, None, :]
        eye = torch.eye(N, dtype=A_t.dtype, device=A_t.device)
        offdiag = pair * (1 - eye)
        n = mf.sum(1).clamp(min=1.0)  # [B]
        A = A_t * offdiag
        feats = [A, pair]
        power = A
        for k in range(cfg.num_powers):
            power = torch.bmm(power, A) / n[:, None, None]  # A^(k+2) / n^(k+1)
            feats.append(power * offdiag)
        f = torch.stack(feats, -1)
        if edge_cond is not None:
            f = torch.cat([f, edge_cond * pair[..., None]], -1)  # [B, N, N, pair_in]
        pm = pair[..., None]
        nn_ = n[:, None, None]
        fmean = (f * pm).sum(2) / nn_
        fstd = ((f - fmean[:, :, None]) ** 2 * pm).sum(2).div(nn_).clamp(min=1e-8).sqrt()
        node_in = [fmean, fstd, (torch.log(n) / 6.0)[:, None, None].expand(B, N, 1)]  # log n: independent of padding
        if node_cond is not None:
            node_in.append(node_cond)
        m = mf[..., None]
        x = self.node_inp(torch.cat(node_in, -1)) * m  # [B, N, C]
        e = self.pair_inp(f) * pm  # [B, N, N, P]
        temb = self.time(timestep_embedding(t.expand(B) if t.dim() == 0 else t, cfg.time_dim))
        for layer in self.layers:
            x, e = layer(x, e, m, pm, nn_, temb)
        logits = self.out(e).squeeze(-1)
        w, c = self.skip(temb).unbind(-1)  # [B] each
        logits = logits + w[:, None, None] * A + c[:, None, None]
        if self.embed is not None:
            u = self.embed(x) * m  # [B, N, r]: learned node coordinates
            sq = (u * u).sum(-1)
            dist2 = sq[:, :, None] + sq[:, None, :] - 2 * torch.bmm(u, u.transpose(1, 2))
            logits = logits - dist2.clamp(min=0.0) / math.sqrt(cfg.rank)
        logits = 0.5 * (logits + logits.transpose(1, 2))
        logits = logits * offdiag + MASKED_LOGIT * (1 - offdiag)
        return (logits, e) if return_hidden else logits

    def x0_prediction(self, A_t: Tensor, t: Tensor, node_mask: Tensor, **cond: Tensor) -> Tensor:
        """``E[2A₀ − 1] = tanh(logit / 2)`` in the ``{-1, +1}`` scale, zero on the diagonal and padding.

        ``A_t [B, N, N]``, ``t [B]``, ``node_mask [B, N]`` → ``[B, N, N]``."""
        from .sde import mask_adjacency

        return mask_adjacency(torch.tanh(0.5 * self(A_t, t, node_mask, **cond)), node_mask)
