"""Samplers, kept separate from the networks (the diffusers scheduler idea).

Two calling conventions:

* **score samplers** (:class:`PCSampler`, :class:`S4Sampler`) integrate the reverse SDE of a joint state
  ``{"X": [B, N, F], "A": [B, N, N]}`` (either key may be absent) given ``score_fn(state, t) -> scores``;
  each component has its own SDE. They work with GDSS-style networks and, through
  :func:`score_from_x0`, with any x₀-predicting network.
* **x₀ samplers** (:class:`DDIMSampler`) need ``x0_fn(A_t, t) -> E[A₀ | A_t]`` (or, with
  :meth:`DDIMSampler.sample_features`, ``x0_fn(X_t, t)`` for continuous node features such as boxes) and take few steps:
  DDIM (Song et al. 2021) on the VP marginals, deterministic for ``eta = 0``. Each step costs one
  network evaluation, the last step returns the x₀-prediction itself. It also does completion
  (known entries re-imposed at every step, noised to the current level: the "replacement" method)
  and SDEdit refinement (start from a partially noised input at ``t_start < 1``).

Every sampler returns the final state and the number of network evaluations per graph (``nfe``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import torch
from torch import Tensor

from ..devices import rand
from .sde import SDE, VESDE, mask_adjacency, mask_nodes, node_noise, symmetric_noise

__all__ = ["PCSampler", "S4Sampler", "DDIMSampler", "score_from_x0", "time_grid"]

State = dict[str, Tensor]
ScoreFn = Callable[[State, Tensor], State]


def _noise_like(key: str, x: Tensor, node_mask: Tensor, generator: torch.Generator | None) -> Tensor:
    if key == "A":
        return symmetric_noise(node_mask, generator)
    return node_noise(node_mask, x.shape[-1], generator)


def _mask(key: str, x: Tensor, node_mask: Tensor) -> Tensor:
    return mask_adjacency(x, node_mask) if key == "A" else mask_nodes(x, node_mask)


def _norm(x: Tensor) -> Tensor:
    return x.reshape(x.shape[0], -1).norm(dim=-1).clamp(min=1e-12)


def _b(v: Tensor, x: Tensor) -> Tensor:
    return v.reshape(-1, *([1] * (x.dim() - 1)))


def time_grid(num_steps: int, t_start: float = 1.0, t_end: float = 1e-3, spacing: str = "uniform",
              window: tuple[float, float, float] = (0.15, 0.4, 0.5)) -> Tensor:
    """``num_steps + 1`` decreasing times from ``t_start`` to ``t_end``.

    ``spacing``: ``uniform``; ``quadratic`` (denser near ``t_end``, where graph structure is decided); or
    ``window``: piecewise uniform with a fraction ``window[2]`` of the steps inside ``[window[0], window[1]]``
    (where, for VP with β ∈ [0.1, 20], α goes from 0.8 to 0.45 and the edges of a triangle are decided together)
    and the rest split between ``[window[1], t_start]`` and ``[t_end, window[0]]`` in proportion to their lengths.
    """
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    if spacing == "window":
        lo, hi, frac = (float(v) for v in window)
        lo, hi = max(lo, t_end), min(hi, t_start)
        if not (t_end <= lo < hi <= t_start) or not 0.0 < frac < 1.0:
            raise ValueError(f"window {window} must satisfy t_end <= lo < hi <= t_start and 0 < frac < 1")
        segs = [(t_start, hi), (hi, lo), (lo, t_end)]
        segs = [(x, y) for x, y in segs if x > y]
        if num_steps < len(segs):
            return t_start + (t_end - t_start) * torch.linspace(0.0, 1.0, num_steps + 1)  # too few steps: uniform
        inner = segs.index((hi, lo))
        outer = [k for k in range(len(segs)) if k != inner]
        counts = [1] * len(segs)
        counts[inner] = min(max(int(round(frac * num_steps)), 1), num_steps - len(outer))
        rest = num_steps - sum(counts)
        lengths = [segs[k][0] - segs[k][1] for k in outer]
        if outer:
            extra = [int(round(rest * L / sum(lengths))) for L in lengths]
            extra[-1] = rest - sum(extra[:-1])
            for k, e in zip(outer, extra):
                counts[k] += e
        else:
            counts[inner] += rest
        parts = [torch.tensor([t_start], dtype=torch.float32)]
        for (x, y), n in zip(segs, counts):
            parts.append(torch.linspace(x, y, n + 1)[1:])
        return torch.cat(parts)
    u = torch.linspace(0.0, 1.0, num_steps + 1)
    if spacing == "quadratic":
        u = 1 - (1 - u) ** 2
    elif spacing != "uniform":
        raise ValueError(f"unknown spacing {spacing!r}; expected 'uniform', 'quadratic' or 'window'")
    return t_start + (t_end - t_start) * u


def score_from_x0(x0_fn: Callable[[Tensor, Tensor], Tensor], sde: SDE) -> ScoreFn:
    """Score of ``A`` from an x₀-prediction: ``(α x̂₀ − A_t) / σ²``."""

    def score_fn(state: State, t: Tensor) -> State:
        a, s = sde.marginal(t)
        A = state["A"]
        return {"A": (_b(a, A) * x0_fn(A, t) - A) / _b(s, A) ** 2}

    return score_fn


@dataclass(frozen=True)
class PCSampler:
    """Reverse-diffusion predictor + optional Langevin corrector (Song et al. 2021; GDSS's default).

    Args:
        num_steps: predictor steps (GDSS: 1000). NFE per graph = steps × (2 with corrector, else 1).
        snr: corrector signal-to-noise ratio (GDSS: 0.05 for A... per config).
        scale_eps: multiplies the corrector noise (GDSS: 0.7–1.0).
        corrector: run the Langevin corrector.
        t_end: last time (``1e-3``).
    """

    num_steps: int = 1000
    snr: float = 0.05
    scale_eps: float = 1.0
    corrector: bool = True
    t_end: float = 1e-3

    def sample(self, score_fn: ScoreFn, sdes: Mapping[str, SDE], init: State, node_mask: Tensor,
               generator: torch.Generator | None = None) -> tuple[State, int]:
        ts = time_grid(self.num_steps, 1.0, self.t_end).to(node_mask.device)
        x = {k: _mask(k, v, node_mask) for k, v in init.items()}
        nfe = 0
        mean = dict(x)
        for i in range(self.num_steps):
            t, dt = ts[i], float(ts[i] - ts[i + 1])
            tb = t.expand(node_mask.shape[0])
            if self.corrector:
                scores = score_fn(x, tb)
                nfe += 1
                for k, sde in sdes.items():
                    z = _noise_like(k, x[k], node_mask, generator)
                    alpha = 1.0 if isinstance(sde, VESDE) else float(1 - sde.beta(t) * dt)
                    step = 2 * alpha * (self.snr * _norm(z) / _norm(scores[k])) ** 2
                    mean[k] = _mask(k, x[k] + _b(step, x[k]) * scores[k], node_mask)
                    x[k] = mean[k] + _b(torch.sqrt(2 * step), x[k]) * z * self.scale_eps
            scores = score_fn(x, tb)
            nfe += 1
            for k, sde in sdes.items():
                drift, g = sde.sde(x[k], tb)
                g2 = _b(g**2, x[k])
                z = _noise_like(k, x[k], node_mask, generator)
                mean[k] = _mask(k, x[k] - (drift - g2 * scores[k]) * dt, node_mask)
                x[k] = mean[k] + torch.sqrt(g2 * dt) * z
        return mean, nfe


@dataclass(frozen=True)
class S4Sampler:
    """GDSS's S4 solver: one score evaluation per step, reused for a Langevin correction and for the
    reverse step, whose linear drift is integrated exactly (``transition``) and the score term by Euler.

    Args: as :class:`PCSampler`; NFE per graph = ``num_steps``.
    """

    num_steps: int = 1000
    snr: float = 0.05
    scale_eps: float = 1.0
    t_end: float = 1e-3

    def sample(self, score_fn: ScoreFn, sdes: Mapping[str, SDE], init: State, node_mask: Tensor,
               generator: torch.Generator | None = None) -> tuple[State, int]:
        ts = time_grid(self.num_steps, 1.0, self.t_end).to(node_mask.device)
        x = {k: _mask(k, v, node_mask) for k, v in init.items()}
        mean = dict(x)
        for i in range(self.num_steps):
            t, dt = ts[i], float(ts[i] - ts[i + 1])
            tb = t.expand(node_mask.shape[0])
            scores = score_fn(x, tb)
            for k, sde in sdes.items():
                z = _noise_like(k, x[k], node_mask, generator)
                alpha = 1.0 if isinstance(sde, VESDE) else float(1 - sde.beta(t) * dt)
                step = 2 * alpha * (self.snr * _norm(z) / _norm(scores[k])) ** 2
                xc = x[k] + _b(step, x[k]) * scores[k] + _b(torch.sqrt(2 * step), x[k]) * z * self.scale_eps
                a, s = sde.transition(t.reshape(1), dt)
                mean[k] = _mask(k, float(a) * xc + float(sde.beta(t)) * dt * scores[k], node_mask)
                x[k] = mean[k] + float(s) * _noise_like(k, x[k], node_mask, generator)
        return mean, self.num_steps


@dataclass(frozen=True)
class DDIMSampler:
    """DDIM on the VP marginals for an x₀-predicting adjacency model (few steps).

    Args:
        num_steps: network evaluations per graph (default 50).
        eta: 0 = deterministic DDIM (probability-flow-like), 1 = ancestral (DDPM-like).
        spacing: ``"uniform"`` or ``"quadratic"`` time grid.
        t_end: smallest time evaluated; the last update jumps to the x₀-prediction.
        x0_sample: draw a binary ``x₀ ~ Bernoulli((x̂₀ + 1) / 2)`` (symmetric) at every step and plug it into
            the update instead of the mean ``x̂₀``. With ``eta = 1`` this samples the *exact* reverse kernel
            ``p(x_s | x_t) = Σ_{x₀} p(x₀ | x_t) q(x_s | x_t, x₀)`` per entry (a two-component Gaussian mixture
            for binary data) rather than a single Gaussian at the mixture mean, so large steps stay correct
            up to the factorisation of ``p(x₀ | x_t)`` over entries. This is the few-step sampler we use.
        window: ``(lo, hi, fraction)`` of ``spacing="window"`` (see :func:`time_grid`).
        threshold: the returned adjacency is ``x̂₀ > threshold`` (``x̂₀ ∈ [-1, 1]``; 0 = the posterior-mean edge
            probability above 1/2).
    """

    num_steps: int = 50
    eta: float = 0.0
    spacing: str = "uniform"
    t_end: float = 1e-3
    x0_sample: bool = False
    window: tuple[float, float, float] = (0.15, 0.4, 0.5)
    threshold: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.eta <= 1.0:
            raise ValueError(f"eta must be in [0, 1], got {self.eta}")

    def sample(self, x0_fn: Callable[[Tensor, Tensor], Tensor], sde: SDE, node_mask: Tensor,
               generator: torch.Generator | None = None, *, A_init: Tensor | None = None, t_start: float = 1.0,
               known_mask: Tensor | None = None, known_values: Tensor | None = None) -> tuple[Tensor, int]:
        """Sample adjacency in the ``{-1, +1}`` scale, returned thresholded to ``{0, 1}`` ``[B, N, N]``.

        Args:
            x0_fn: ``(A_t [B,N,N], t [B]) -> x̂₀ [B,N,N]`` in ``[-1, 1]``.
            A_init: ``{0,1}`` adjacency to refine (SDEdit): noised to ``t_start`` instead of pure noise.
            t_start: start time (``1.0`` = from the prior).
            known_mask, known_values: ``[B, N, N]`` bool / ``{0,1}`` entries fixed during sampling (completion).
        """
        B = node_mask.shape[0]
        ts = time_grid(self.num_steps, t_start, self.t_end, self.spacing, self.window).to(node_mask.device)
        z = symmetric_noise(node_mask, generator)
        a_T, s_T = sde.marginal(ts[:1])
        if A_init is not None:
            x = float(a_T) * mask_adjacency(2 * A_init - 1, node_mask) + float(s_T) * z
        else:
            x = float(s_T) * z  # the VP prior: alpha(1) ~ 0
        known = None
        if known_mask is not None:
            if known_values is None:
                raise ValueError("known_mask given without known_values")
            known = (known_mask & mask_adjacency(torch.ones_like(known_values), node_mask).bool(),
                     mask_adjacency(2 * known_values - 1, node_mask))
            x = torch.where(known[0], float(a_T) * known[1] + float(s_T) * z, x)
        x0 = x
        for i in range(self.num_steps):
            t = ts[i].expand(B)
            x0 = x0_fn(x, t)
            if i == self.num_steps - 1:
                break
            if self.x0_sample:
                u = rand(x0.shape, generator, x0.device)
                u = torch.triu(u, diagonal=1)
                u = u + u.transpose(1, 2)
                x0 = mask_adjacency(torch.where(u < (x0 + 1) / 2, 1.0, -1.0), node_mask)
            x, c, (a_s, s_s) = self._step(x, x0, sde, ts, i)
            if c > 0:
                x = x + c * symmetric_noise(node_mask, generator)
            x = mask_adjacency(x, node_mask)
            if known is not None:
                zk = symmetric_noise(node_mask, generator)
                x = torch.where(known[0], a_s * known[1] + s_s * zk, x)
        if known is not None:
            x0 = torch.where(known[0], known[1], x0)
        A = (mask_adjacency(x0, node_mask) > self.threshold).float() * mask_adjacency(torch.ones_like(x0), node_mask)
        return A, self.num_steps

    def _step(self, x: Tensor, x0: Tensor, sde: SDE, ts: Tensor, i: int) -> tuple[Tensor, float, tuple[float, float]]:
        """One DDIM update from ``ts[i]`` to ``ts[i + 1]`` without its fresh noise: returns the new state
        (before adding ``c`` times standard noise), ``c``, and the marginal ``(alpha, sigma)`` at ``ts[i + 1]``."""
        a_t, s_t = (float(v) for v in sde.marginal(ts[i : i + 1]))
        a_s, s_s = (float(v) for v in sde.marginal(ts[i + 1 : i + 2]))
        eps = (x - a_t * x0) / s_t
        c = self.eta * (s_s / s_t) * max(1 - (a_t / a_s) ** 2, 0.0) ** 0.5
        return a_s * x0 + max(s_s**2 - c**2, 0.0) ** 0.5 * eps, c, (a_s, s_s)

    def sample_features(self, x0_fn: Callable[[Tensor, Tensor], Tensor], sde: SDE, node_mask: Tensor,
                        num_features: int, generator: torch.Generator | None = None, *,
                        known_mask: Tensor | None = None, known_values: Tensor | None = None) -> tuple[Tensor, int]:
        """Sample continuous node features (e.g. one box per object) with the same DDIM steps.

        The state starts from the prior (standard normal noise times ``sigma(1)``, padded rows zero) and the
        last step returns the x₀-prediction itself, so the result is ``x0_fn``'s output at the final step.
        Completion works as for adjacency: known rows are re-imposed at every step, noised to the current
        level, and returned exactly. (``x0_sample`` applies to binary adjacency only and is refused here.)

        Args:
            x0_fn: ``(X_t [B, N, F], t [B]) -> x̂₀ [B, N, F]``.
            node_mask: ``[B, N]`` bool, real nodes.
            num_features: ``F``.
            known_mask: optional ``[B, N]`` bool, nodes whose features are given.
            known_values: ``[B, N, F]`` features of the known nodes (other rows ignored).

        Returns:
            ``(X [B, N, F], nfe)``: padded rows are zero; ``nfe`` = ``num_steps`` network evaluations.
        """
        if self.x0_sample:
            raise ValueError("DDIMSampler(x0_sample=True) samples binary adjacency; sample_features needs x0_sample=False")
        if num_features < 1:
            raise ValueError(f"num_features must be >= 1, got {num_features}")
        if (known_mask is None) != (known_values is None):
            raise ValueError("known_mask and known_values go together (got only one of them)")
        B = node_mask.shape[0]
        ts = time_grid(self.num_steps, 1.0, self.t_end, self.spacing, self.window).to(node_mask.device)
        a_T, s_T = (float(v) for v in sde.marginal(ts[:1]))
        x = s_T * node_noise(node_mask, num_features, generator)  # the VP prior: alpha(1) ~ 0
        known = None
        if known_mask is not None and known_values is not None:
            if known_mask.shape != node_mask.shape or known_values.shape != (*node_mask.shape, num_features):
                raise ValueError(f"known_mask {tuple(known_mask.shape)} / known_values {tuple(known_values.shape)} "
                                 f"do not match node_mask {tuple(node_mask.shape)} with {num_features} features")
            known = ((known_mask & node_mask)[..., None], mask_nodes(known_values.to(x.dtype), node_mask))
            x = torch.where(known[0], a_T * known[1] + s_T * node_noise(node_mask, num_features, generator), x)
        x0 = x
        for i in range(self.num_steps):
            x0 = mask_nodes(x0_fn(x, ts[i].expand(B)), node_mask)
            if i == self.num_steps - 1:
                break
            x, c, (a_s, s_s) = self._step(x, x0, sde, ts, i)
            if c > 0:
                x = x + c * node_noise(node_mask, num_features, generator)
            x = mask_nodes(x, node_mask)
            if known is not None:
                x = torch.where(known[0], a_s * known[1] + s_s * node_noise(node_mask, num_features, generator), x)
        if known is not None:
            x0 = torch.where(known[0], known[1], x0)
        return x0, self.num_steps
