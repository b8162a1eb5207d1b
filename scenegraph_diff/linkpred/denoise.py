"""A DiffGraph-style latent denoiser for an auxiliary relation view (simplified; Li et al. 2024, HKUDS).

For a node type ``t`` (e.g. ``movie``) the *auxiliary view* ``z_aux [N_t, D]`` is the mean embedding of
the node's neighbours over an auxiliary edge type (e.g. actor -> movie). During training ``z_aux`` is
diffused, ``z_s = sqrt(ᾱ_s) z_aux + sqrt(1 - ᾱ_s) ε`` with ``s ~ U{1..T}``, and a 2-layer MLP denoiser
with a sinusoidal step embedding predicts the *target-view* embedding ``h_t`` (the encoder's output,
detached) from ``z_s``; the loss is the min-SNR-weighted MSE. The prediction is added back to ``h_t``
through a zero-initialised gate, so the module starts as the identity. At evaluation the clean
``z_aux`` (``s = 0``) is denoised.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["RelationViewDenoiser"]


def _timestep_embedding(s: Tensor, dim: int) -> Tensor:
    """Sinusoidal embedding ``[B] -> [B, dim]``."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float, device=s.device) / max(half, 1))
    ang = s.float().unsqueeze(1) * freqs.unsqueeze(0)
    return torch.cat([ang.sin(), ang.cos()], dim=1)


class RelationViewDenoiser(nn.Module):
    """Denoise an auxiliary relation view of ``node_type`` into its target-view embedding space.

    Args:
        channels: D.
        aux_edge_type: the auxiliary relation, given as the forward type ``(t, rel, u)``; messages are
            taken from its reverse ``(u, rel, t)`` when that is present, else from the type itself.
        node_type: t.
        steps: diffusion steps T (linear β from 1e-4 to 0.02 scaled to T).
        weight: weight of the denoising loss.

    Shapes:
        h_dict ``{t: [N_t, D]}`` -> (``{t: [N_t, D]}``, scalar loss).
    """

    def __init__(self, channels: int, aux_edge_type: tuple[str, str, str], node_type: str, steps: int = 50, weight: float = 0.1) -> None:
        super().__init__()
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        self.channels, self.aux_edge_type, self.node_type, self.steps, self.weight = channels, tuple(aux_edge_type), node_type, steps, weight
        betas = torch.linspace(1e-4, 0.02 * 1000 / steps, steps).clamp_max(0.999)
        self.register_buffer("alpha_bar", torch.cat([torch.ones(1), torch.cumprod(1 - betas, 0)]), persistent=False)  # [T+1]
        self.denoiser = nn.Sequential(nn.Linear(2 * channels, channels), nn.SiLU(), nn.Linear(channels, channels))
        self.gate = nn.Parameter(torch.zeros(()))

    def _aux_view(self, h: dict[str, Tensor], edge_index_dict: dict) -> Tensor:
        a, rel, b = self.aux_edge_type
        if (b, rel, a) in edge_index_dict and a == self.node_type:
            src_t, ei = b, edge_index_dict[(b, rel, a)]
        elif b == self.node_type:
            src_t, ei = a, edge_index_dict[self.aux_edge_type]
        else:
            raise ValueError(f"no edges of {self.aux_edge_type} (or its reverse) end in {self.node_type!r}")
        n = h[self.node_type].size(0)
        out = h[src_t].new_zeros(n, self.channels).index_add_(0, ei[1], h[src_t][ei[0]])
        deg = torch.bincount(ei[1], minlength=n).clamp_min(1).unsqueeze(1)
        return out / deg

    def forward(self, h: dict[str, Tensor], edge_index_dict: dict, generator: torch.Generator | None = None) -> tuple[dict[str, Tensor], Tensor]:
        z = self._aux_view(h, edge_index_dict)  # [N_t, D]
        n = z.size(0)
        if self.training:
            gdev = generator.device if generator is not None else z.device
            s = torch.randint(1, self.steps + 1, (n,), generator=generator, device=gdev).to(z.device)
            ab = self.alpha_bar[s].unsqueeze(1)
            z_s = ab.sqrt() * z + (1 - ab).sqrt() * torch.randn(z.shape, generator=generator, device=gdev).to(z.device)
        else:
            s = torch.zeros(n, dtype=torch.long, device=z.device)
            z_s = z
        z_hat = self.denoiser(torch.cat([z_s, _timestep_embedding(s, self.channels)], 1))
        target = h[self.node_type].detach()
        if self.training:
            snr = ab / (1 - ab)
            w = snr.clamp_max(5.0) / snr  # min-SNR weighting
            loss = self.weight * (w * (z_hat - target).pow(2)).mean()
        else:
            loss = F.mse_loss(z_hat, target) * 0.0
        out = dict(h)
        out[self.node_type] = h[self.node_type] + torch.tanh(self.gate) * z_hat
        return out, loss

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.channels}, aux={self.aux_edge_type}, node_type={self.node_type!r}, steps={self.steps})"
