"""Training objectives: x₀-prediction (BCE on clean edges) and GDSS's denoising score matching."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .sde import SDE, mask_adjacency, mask_nodes, node_noise, symmetric_noise

__all__ = ["edge_x0_loss", "dsm_loss", "sample_time"]


def sample_time(batch: int, generator: torch.Generator | None = None, eps: float = 1e-3) -> Tensor:
    """Uniform ``t ∈ [eps, 1]``, ``[batch]``."""
    return eps + (1 - eps) * torch.rand(batch, generator=generator)


def edge_x0_loss(model, sde: SDE, A0: Tensor, node_mask: Tensor, generator: torch.Generator | None = None,
                 eps: float = 1e-3, self_condition: bool = False, **cond: Tensor) -> Tensor:
    """Binary cross-entropy of the predicted clean edges, averaged over real node pairs ``i < j``.

    ``A0 [B, N, N]`` in ``{0, 1}``; the diffusion runs on ``2A₀ − 1`` with symmetric noise.
    ``self_condition``: self-conditioning (Chen et al., "Analog Bits", 2023): for half of the graphs the
    network first predicts x̂₀ without gradient and gets it as an extra edge channel (``edge_cond``).
    """
    B, N, _ = A0.shape
    t = sample_time(B, generator, eps)
    a0 = mask_adjacency(2 * A0 - 1, node_mask)
    a_t = mask_adjacency(sde.perturb(a0, t, symmetric_noise(node_mask, generator)), node_mask)
    if self_condition:
        prev = torch.zeros_like(a_t)
        with torch.no_grad():
            est = mask_adjacency(torch.tanh(0.5 * model(a_t, t, node_mask, edge_cond=prev[..., None])), node_mask)
        use = (torch.rand(B, generator=generator) < 0.5).to(a_t.dtype)[:, None, None]
        cond = {**cond, "edge_cond": (use * est)[..., None]}
    logits = model(a_t, t, node_mask, **cond)
    valid = torch.triu(mask_adjacency(torch.ones_like(A0), node_mask), diagonal=1) > 0
    return F.binary_cross_entropy_with_logits(logits[valid], A0[valid])


def dsm_loss(model, sde_x: SDE, sde_a: SDE, X0: Tensor, A0: Tensor, node_mask: Tensor,
             generator: torch.Generator | None = None, eps: float = 1e-5) -> tuple[Tensor, Tensor]:
    """GDSS denoising score matching for a joint ``(X, A)`` model that predicts the noise.

    ``model(X_t, A_t, node_mask) -> (ε̂_X [B, N, F], ε̂_A [B, N, N])`` (GDSS networks take no time);
    the score is ``−ε̂ / σ(t)``, so ``‖ε̂ − ε‖²`` is σ²-weighted DSM. ``A0`` is used in ``{0, 1}`` as in GDSS.
    Returns the two losses (summed over entries, averaged over graphs, as GDSS does).
    """
    B = A0.shape[0]
    t = sample_time(B, generator, eps)
    zx = node_noise(node_mask, X0.shape[-1], generator)
    za = symmetric_noise(node_mask, generator)
    X_t = mask_nodes(sde_x.perturb(X0, t, zx), node_mask)
    A_t = mask_adjacency(sde_a.perturb(A0, t, za), node_mask)
    ex, ea = model(X_t, A_t, node_mask)
    lx = ((ex - zx) ** 2).reshape(B, -1).sum(-1).mean()
    la = ((ea - za) ** 2).reshape(B, -1).sum(-1).mean()
    return lx, la
