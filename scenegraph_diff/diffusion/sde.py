"""Forward SDEs (Song et al. 2021) used for node features ``X`` and adjacency ``A``.

Every SDE exposes the same small interface, so samplers and losses never branch on its kind:

* ``marginal(t) -> (alpha, sigma)``: ``x_t = alpha(t) x_0 + sigma(t) ε``;
* ``sde(x, t) -> (drift, diffusion)``: ``dx = f(x, t) dt + g(t) dW``;
* ``prior_sample(shape, generator)``: a draw from ``p_T``;
* ``transition(t, dt) -> (a, s)``: the exact linear map of ``x_{t-dt} -> x_t``'s *drift part*, used by S4.

The adjacency noise must be symmetric with a zero diagonal and zero on padded nodes: use
:func:`symmetric_noise` / :func:`mask_adjacency` (GDSS does the same).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ..devices import randn

__all__ = ["SDE", "VPSDE", "SubVPSDE", "VESDE", "symmetric_noise", "node_noise", "mask_adjacency", "mask_nodes",
           "RowGenerators"]


def mask_adjacency(A: Tensor, node_mask: Tensor) -> Tensor:
    """Zero the diagonal and every pair touching a padded node. ``A [B, N, N]``, ``node_mask [B, N]``."""
    m = node_mask.to(A.dtype)
    pair = m[:, :, None] * m[:, None, :]  # [B, N, N]
    eye = torch.eye(A.shape[-1], dtype=A.dtype, device=A.device)
    return A * pair * (1 - eye)


def mask_nodes(X: Tensor, node_mask: Tensor) -> Tensor:
    """Zero padded rows of ``X [B, N, F]``."""
    return X * node_mask[..., None].to(X.dtype)


def symmetric_noise(node_mask: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Standard normal noise on the strict upper triangle, mirrored; zero diagonal and padding.

    Args:
        node_mask: ``[B, N]`` bool.
    Returns:
        ``[B, N, N]`` symmetric noise.
    """
    B, N = node_mask.shape
    z = randn((B, N, N), generator, node_mask.device)  # drawn on the generator's device
    z = torch.triu(z, diagonal=1)
    return mask_adjacency(z + z.transpose(1, 2), node_mask)


@dataclass(frozen=True)
class RowGenerators:
    """One generator per consecutive group of batch rows, for :func:`node_noise` (diffusers' list-of-generators
    habit): group ``i`` is the next ``rows[i]`` rows and draws from ``generators[i]`` exactly what a batch of those
    rows alone would draw, so a sample does not depend on what it is batched with.

    Attributes:
        generators: ``K`` generators.
        rows: ``K`` positive row counts, summing to the batch size.
    """

    generators: tuple[torch.Generator, ...]
    rows: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.generators) != len(self.rows):
            raise ValueError(f"{len(self.generators)} generators for {len(self.rows)} row groups")
        if any(r < 1 for r in self.rows):
            raise ValueError(f"row groups must be >= 1 row each, got {list(self.rows)}")


def node_noise(node_mask: Tensor, num_features: int,
               generator: torch.Generator | RowGenerators | None = None) -> Tensor:
    """Standard normal noise ``[B, N, F]`` with padded rows zeroed.

    With :class:`RowGenerators`, group ``i`` (``r`` rows, at most ``n`` real nodes among them) gets a
    ``[r, n, F]`` draw from its own generator in its first ``n`` node slots.
    """
    B, N = node_mask.shape
    if not isinstance(generator, RowGenerators):
        return mask_nodes(randn((B, N, num_features), generator, node_mask.device), node_mask)
    if sum(generator.rows) != B:
        raise ValueError(f"RowGenerators cover {sum(generator.rows)} rows, the batch has {B}")
    out = node_mask.new_zeros((B, N, num_features), dtype=torch.float32)
    counts = node_mask.sum(1).tolist()
    at = 0
    for gen, r in zip(generator.generators, generator.rows):
        n = int(max(counts[at:at + r]))
        if n:
            out[at:at + r, :n] = randn((r, n, num_features), gen, node_mask.device)
        at += r
    return mask_nodes(out, node_mask)


def _bcast(v: Tensor, x: Tensor) -> Tensor:
    return v.reshape(-1, *([1] * (x.dim() - 1)))


class SDE:
    """Base class. ``T = 1``; subclasses define the schedule."""

    T: float = 1.0

    def marginal(self, t: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def beta(self, t: Tensor) -> Tensor:
        """``g(t)²`` (the instantaneous noise rate)."""
        raise NotImplementedError

    def drift_coeff(self, t: Tensor) -> Tensor:
        """``c(t)`` with ``f(x, t) = c(t) x``."""
        raise NotImplementedError

    def sde(self, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        return _bcast(self.drift_coeff(t), x) * x, self.beta(t).sqrt()

    def prior_std(self) -> float:
        return float(self.marginal(torch.tensor([self.T]))[1])

    def perturb(self, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """``x_t = alpha(t) x_0 + sigma(t) noise`` (broadcast over the batch dimension)."""
        a, s = self.marginal(t)
        return _bcast(a, x0) * x0 + _bcast(s, x0) * noise

    def transition(self, t: Tensor, dt: float) -> tuple[Tensor, Tensor]:
        """Exact reverse of the linear drift over ``[t - dt, t]``: ``x_{t-dt} ≈ a x_t`` and the added std ``s``
        of the forward transition (GDSS's S4 uses it for its linear part)."""
        a_t, s_t = self.marginal(t)
        a_s, s_s = self.marginal((t - dt).clamp(min=0.0))
        ratio = a_t / a_s
        var = (s_t**2 - ratio**2 * s_s**2).clamp(min=0.0)
        return 1.0 / ratio, var.sqrt()


@dataclass(frozen=True)
class VPSDE(SDE):
    """Variance preserving: ``dx = −½β(t)x dt + √β(t) dW``, ``β(t) = β₀ + t(β₁ − β₀)``."""

    beta_min: float = 0.1
    beta_max: float = 20.0

    def __post_init__(self) -> None:
        if not (0 <= self.beta_min < self.beta_max):
            raise ValueError(f"need 0 <= beta_min < beta_max, got {self.beta_min}, {self.beta_max}")

    def _int_beta(self, t: Tensor) -> Tensor:
        return self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t**2

    def marginal(self, t: Tensor) -> tuple[Tensor, Tensor]:
        ib = self._int_beta(t)
        alpha = torch.exp(-0.5 * ib)
        return alpha, torch.sqrt((1.0 - torch.exp(-ib)).clamp(min=1e-12))

    def beta(self, t: Tensor) -> Tensor:
        return self.beta_min + t * (self.beta_max - self.beta_min)

    def drift_coeff(self, t: Tensor) -> Tensor:
        return -0.5 * self.beta(t)


@dataclass(frozen=True)
class SubVPSDE(VPSDE):
    """sub-VP: same drift as VP, diffusion ``β(t)(1 − e^{−2∫β})``; variance ``(1 − e^{−∫β})²``."""

    def marginal(self, t: Tensor) -> tuple[Tensor, Tensor]:
        ib = self._int_beta(t)
        return torch.exp(-0.5 * ib), (1.0 - torch.exp(-ib)).clamp(min=1e-6)

    def beta(self, t: Tensor) -> Tensor:
        return super().beta(t) * (1.0 - torch.exp(-2.0 * self._int_beta(t)))


@dataclass(frozen=True)
class VESDE(SDE):
    """Variance exploding: ``σ(t) = σ_min (σ_max/σ_min)^t``, ``dx = √(dσ²/dt) dW``."""

    sigma_min: float = 0.2
    sigma_max: float = 1.0

    def __post_init__(self) -> None:
        if not (0 < self.sigma_min < self.sigma_max):
            raise ValueError(f"need 0 < sigma_min < sigma_max, got {self.sigma_min}, {self.sigma_max}")

    def _sigma(self, t: Tensor) -> Tensor:
        return self.sigma_min * (self.sigma_max / self.sigma_min) ** t

    def marginal(self, t: Tensor) -> tuple[Tensor, Tensor]:
        return torch.ones_like(t), self._sigma(t)

    def beta(self, t: Tensor) -> Tensor:
        return self._sigma(t) ** 2 * 2 * math.log(self.sigma_max / self.sigma_min)

    def drift_coeff(self, t: Tensor) -> Tensor:
        return torch.zeros_like(t)
