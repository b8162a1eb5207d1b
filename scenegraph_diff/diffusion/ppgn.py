"""A time-conditioned, permutation-equivariant denoiser over dense adjacency (PPGN-lite).

Each layer mixes pair features with a per-channel matrix product (the 2-FWL / PPGN update of
Maron et al. 2019), which sees triangles, paths and community structure that message passing
misses, and is FiLM-modulated by an embedding of the diffusion time. The network predicts the
*clean* adjacency as per-pair logits (x₀-prediction), which every sampler in :mod:`.samplers`
turns into a score or a DDIM update. This is the "stronger equivariant option": unlike GDSS's
networks it knows ``t``, which is what makes few-step samplers work.

Update (per layer ``l``, pair ``(i, j)``, channels ``c``)::

    m¹ = W¹ h,  m² = W² h
    p_ijc = (1/n) Σ_k m¹_ikc m²_kjc
    h ← h + MLP(LN([h, p])) ⊙ (1 + γ(t)) + β(t)

Shapes:
    A_t ``[B, N, N]`` · t ``[B]`` · node_mask ``[B, N]`` · edge_cond ``[B, N, N, Ce]`` · node_cond
    ``[B, N, Cn]`` → logits ``[B, N, N]`` (symmetric, masked entries = ``-inf``-like constant).
"""

from __future__ import annotations

import math

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import Tensor, nn

from ..weights import AlignedLoadingMixin

__all__ = ["EdgeDenoiser", "timestep_embedding"]

MASKED_LOGIT = -30.0


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10_000.0) -> Tensor:
    """Sinusoidal embedding of ``t ∈ [0, 1]`` (scaled by 1000). ``[B] -> [B, dim]``."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = 1000.0 * t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class _PPGNLayer(nn.Module):
    def __init__(self, channels: int, time_dim: int) -> None:
        super().__init__()
        self.m1 = nn.Linear(channels, channels)
        self.m2 = nn.Linear(channels, channels)
        self.norm = nn.LayerNorm(2 * channels)
        self.mlp = nn.Sequential(nn.Linear(2 * channels, channels), nn.SiLU(), nn.Linear(channels, channels))
        self.film = nn.Linear(time_dim, 2 * channels)
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)

    def forward(self, h: Tensor, pair_mask: Tensor, n: Tensor, temb: Tensor) -> Tensor:
        # h: [B, N, N, C]; pair_mask: [B, N, N, 1]; n: [B, 1, 1, 1]; temb: [B, T]
        m1 = (self.m1(h) * pair_mask).permute(0, 3, 1, 2)  # [B, C, N, N]
        m2 = (self.m2(h) * pair_mask).permute(0, 3, 1, 2)
        p = torch.matmul(m1, m2).permute(0, 2, 3, 1) / n  # [B, N, N, C]
        gamma, beta = self.film(temb)[:, None, None, :].chunk(2, dim=-1)
        upd = self.mlp(self.norm(torch.cat([h, p], dim=-1)))
        return (h + upd * (1 + gamma) + beta) * pair_mask


class EdgeDenoiser(AlignedLoadingMixin, ModelMixin, ConfigMixin):
    """Predicts clean-edge logits from a noisy adjacency, the diffusion time and optional conditions.

    Args:
        channels: pair-feature width ``C`` (default 32).
        num_layers: PPGN layers (default 4).
        time_dim: width of the time embedding (default 64).
        edge_cond_dim: extra per-pair input channels ``Ce`` (e.g. PARD's "known edge" maps; default 0).
        node_cond_dim: extra per-node input channels ``Cn``, broadcast to pairs (default 0).
    """

    @register_to_config
    def __init__(self, channels: int = 32, num_layers: int = 4, time_dim: int = 64,
                 edge_cond_dim: int = 0, node_cond_dim: int = 0) -> None:
        super().__init__()
        if channels < 1 or num_layers < 1:
            raise ValueError(f"channels and num_layers must be >= 1, got {channels}, {num_layers}")
        in_dim = 3 + edge_cond_dim + 2 * node_cond_dim  # A_t, diagonal flag, pair mask, conditions
        self.inp = nn.Linear(in_dim, channels)
        self.time = nn.Sequential(nn.Linear(time_dim, time_dim), nn.SiLU(), nn.Linear(time_dim, time_dim))
        self.layers = nn.ModuleList([_PPGNLayer(channels, time_dim) for _ in range(num_layers)])
        self.out = nn.Sequential(nn.LayerNorm(channels), nn.Linear(channels, channels), nn.SiLU(), nn.Linear(channels, 1))

    def forward(self, A_t: Tensor, t: Tensor, node_mask: Tensor, edge_cond: Tensor | None = None,
                node_cond: Tensor | None = None, return_hidden: bool = False):
        B, N, _ = A_t.shape
        cfg = self.config
        if (edge_cond is None) != (cfg.edge_cond_dim == 0) or (node_cond is None) != (cfg.node_cond_dim == 0):
            raise ValueError(f"conditions do not match the config (edge_cond_dim={cfg.edge_cond_dim}, "
                             f"node_cond_dim={cfg.node_cond_dim})")
        m = node_mask.to(A_t.dtype)
        pair = (m[:, :, None] * m[:, None, :])[..., None]  # [B, N, N, 1]
        eye = torch.eye(N, dtype=A_t.dtype, device=A_t.device).expand(B, N, N)[..., None]
        feats = [A_t[..., None], eye, pair]
        if edge_cond is not None:
            feats.append(edge_cond)
        if node_cond is not None:
            feats += [node_cond[:, :, None, :].expand(B, N, N, -1), node_cond[:, None, :, :].expand(B, N, N, -1)]
        h = self.inp(torch.cat(feats, dim=-1)) * pair  # [B, N, N, C]
        temb = self.time(timestep_embedding(t.expand(B) if t.dim() == 0 else t, cfg.time_dim))
        n = m.sum(1).clamp(min=1.0)[:, None, None, None]
        for layer in self.layers:
            h = layer(h, pair, n, temb)
        logits = self.out(h).squeeze(-1)  # [B, N, N]
        logits = 0.5 * (logits + logits.transpose(1, 2))
        offdiag = pair.squeeze(-1) * (1 - eye.squeeze(-1))
        logits = logits * offdiag + MASKED_LOGIT * (1 - offdiag)
        return (logits, h) if return_hidden else logits

    def x0_prediction(self, A_t: Tensor, t: Tensor, node_mask: Tensor, **cond: Tensor) -> Tensor:
        """MMSE estimate of the clean adjacency in the ``{-1, +1}`` scale: ``E[2A₀ − 1] = tanh(logit/2)``,
        zero on the diagonal and padding. ``[B, N, N]``."""
        logits = self(A_t, t, node_mask, **cond)
        from .sde import mask_adjacency

        return mask_adjacency(torch.tanh(0.5 * logits), node_mask)
