"""Training objectives: x₀-prediction (BCE on clean edges) and GDSS's denoising score matching."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..devices import rand
from .sde import SDE, mask_adjacency, mask_nodes, node_noise, symmetric_noise

__all__ = ["dsm_loss", "edge_x0_loss", "sample_time", "self_condition_inputs"]


def sample_time(batch: int, generator: torch.Generator | None = None, eps: float = 1e-3,
                device: torch.device | str | None = None) -> Tensor:
    """Uniform ``t ∈ [eps, 1]``, ``[batch]``, on ``device`` (drawn on the generator's device)."""
    return eps + (1 - eps) * rand((batch,), generator, device)


def edge_x0_loss(model, sde: SDE, A0: Tensor, node_mask: Tensor, generator: torch.Generator | None = None,
                 eps: float = 1e-3, self_condition: bool = False, structure: bool = False, cycles: bool = False,
                 **cond: Tensor) -> Tensor:
    """Binary cross-entropy of the predicted clean edges, averaged over real node pairs ``i < j``.

    ``A0 [B, N, N]`` in ``{0, 1}``; the diffusion runs on ``2A₀ − 1`` with symmetric noise.
    ``self_condition``: self-conditioning (Chen et al., "Analog Bits", 2023): for half of the graphs the
    network first predicts x̂₀ without gradient and gets it as an extra edge channel (``edge_cond``).
    ``structure`` (needs ``self_condition``): also feed :func:`~.structure.structure_features` of that x̂₀
    (``edge_cond [B, N, N, 1 + 3]``, ``node_cond [B, N, 3]``; zero where x̂₀ is not used).
    ``cycles`` (needs ``structure``): also :func:`~.structure.cycle_features` (``edge_cond [B, N, N, 1 + 3 + 2]``,
    ``node_cond [B, N, 3 + 3]``).
    """
    B, N, _ = A0.shape
    t = sample_time(B, generator, eps, node_mask.device)
    a0 = mask_adjacency(2 * A0 - 1, node_mask)
    a_t = mask_adjacency(sde.perturb(a0, t, symmetric_noise(node_mask, generator)), node_mask)
    if structure and not self_condition:
        raise ValueError("structure=True needs self_condition=True (the features are computed from x̂₀)")
    if cycles and not structure:
        raise ValueError("cycles=True needs structure=True")
    if self_condition:
        with torch.no_grad():
            est = mask_adjacency(torch.tanh(0.5 * model(a_t, t, node_mask, **self_condition_inputs(
                torch.zeros_like(a_t), node_mask, structure, use=False, cycles=cycles))), node_mask)
        use = (rand((B,), generator, a_t.device) < 0.5).to(a_t.dtype)
        cond = {**cond, **self_condition_inputs(est, node_mask, structure, use=use, cycles=cycles)}
    logits = model(a_t, t, node_mask, **cond)
    valid = torch.triu(mask_adjacency(torch.ones_like(A0), node_mask), diagonal=1) > 0
    return F.binary_cross_entropy_with_logits(logits[valid], A0[valid])


def self_condition_inputs(est: Tensor, node_mask: Tensor, structure: bool, use: Tensor | bool = True,
                          cycles: bool = False) -> dict[str, Tensor]:
    """Model inputs from an estimate ``est [B, N, N]`` (in ``[-1, 1]``): ``edge_cond [B, N, N, 1(+3)]`` and, with
    ``structure``, ``node_cond [B, N, 3]``. ``use``: ``[B]`` 0/1 weights (or a bool) zeroing graphs without it.
    ``cycles`` (with ``structure``): the cycle counts appended (``edge_cond [B, N, N, 1 + 3 + 2]``,
    ``node_cond [B, N, 3 + 3]``)."""
    B, N, _ = est.shape
    w = use if isinstance(use, Tensor) else torch.full((B,), float(use), dtype=est.dtype, device=est.device)
    if not structure:
        return {"edge_cond": (w[:, None, None] * est)[..., None]}
    from .structure import (EDGE_CYCLE_DIM, EDGE_STRUCT_DIM, NODE_CYCLE_DIM, NODE_STRUCT_DIM, cycle_features,
                            structure_features)

    if w.any():
        ef, nf = structure_features(est, node_mask)
        if cycles:
            ce, cn = cycle_features(est, node_mask)
            ef, nf = torch.cat([ef, ce], -1), torch.cat([nf, cn], -1)
    else:
        ef = est.new_zeros(B, N, N, EDGE_STRUCT_DIM + (EDGE_CYCLE_DIM if cycles else 0))
        nf = est.new_zeros(B, N, NODE_STRUCT_DIM + (NODE_CYCLE_DIM if cycles else 0))
    return {"edge_cond": w[:, None, None, None] * torch.cat([est[..., None], ef], -1),
            "node_cond": w[:, None, None] * nf}


def dsm_loss(model, sde_x: SDE, sde_a: SDE, X0: Tensor, A0: Tensor, node_mask: Tensor,
             generator: torch.Generator | None = None, eps: float = 1e-5) -> tuple[Tensor, Tensor]:
    """GDSS denoising score matching for a joint ``(X, A)`` model that predicts the noise.

    ``model(X_t, A_t, node_mask) -> (ε̂_X [B, N, F], ε̂_A [B, N, N])`` (GDSS networks take no time);
    the score is ``−ε̂ / σ(t)``, so ``‖ε̂ − ε‖²`` is σ²-weighted DSM. ``A0`` is used in ``{0, 1}`` as in GDSS.
    Returns the two losses (summed over entries, averaged over graphs, as GDSS does).
    """
    B = A0.shape[0]
    t = sample_time(B, generator, eps, node_mask.device)
    zx = node_noise(node_mask, X0.shape[-1], generator)
    za = symmetric_noise(node_mask, generator)
    X_t = mask_nodes(sde_x.perturb(X0, t, zx), node_mask)
    A_t = mask_adjacency(sde_a.perturb(A0, t, za), node_mask)
    ex, ea = model(X_t, A_t, node_mask)
    lx = ((ex - zx) ** 2).reshape(B, -1).sum(-1).mean()
    la = ((ea - za) ** 2).reshape(B, -1).sum(-1).mean()
    return lx, la
