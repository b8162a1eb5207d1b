"""DDIMSampler.sample_features: continuous node features (boxes) with the graph sampler's DDIM steps."""

from __future__ import annotations

import pytest
import torch

from scenegraph_diff.diffusion.samplers import DDIMSampler
from scenegraph_diff.diffusion.sde import VPSDE

SDE = VPSDE()
MASK = torch.tensor([[True, True, True], [True, False, False]])


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_exact_denoiser_recovers_the_data_in_one_step():
    target = torch.tensor([0.3, -0.2])

    def x0_fn(x, t):
        return target.expand_as(x).clone()

    x, nfe = DDIMSampler(num_steps=1).sample_features(x0_fn, SDE, MASK, 2, _gen(0))
    assert nfe == 1 and x.shape == (2, 3, 2)
    assert torch.allclose(x[MASK], target.expand(4, 2)) and torch.all(x[~MASK] == 0)


@pytest.mark.parametrize("steps,eta,spacing", [(5, 0.0, "uniform"), (4, 1.0, "quadratic")])
def test_counts_evaluations_and_is_deterministic(steps, eta, spacing):
    calls = []

    def x0_fn(x, t):
        calls.append(float(t[0]))
        return 0.5 * x

    s = DDIMSampler(num_steps=steps, eta=eta, spacing=spacing)
    a, nfe = s.sample_features(x0_fn, SDE, MASK, 4, _gen(1))
    assert nfe == steps == len(calls) and calls == sorted(calls, reverse=True)
    b, _ = s.sample_features(x0_fn, SDE, MASK, 4, _gen(1))
    c, _ = s.sample_features(x0_fn, SDE, MASK, 4, _gen(2))
    assert torch.equal(a, b) and not torch.allclose(a, c)


def test_known_rows_are_returned_exactly_and_seen_noised():
    known = torch.tensor([[True, False, False], [False, False, False]])
    values = torch.zeros(2, 3, 2)
    values[0, 0] = torch.tensor([0.123456, -0.75])
    seen = []

    def x0_fn(x, t):
        seen.append(x[0, 0].clone())
        return torch.zeros_like(x)

    x, _ = DDIMSampler(num_steps=6).sample_features(x0_fn, SDE, MASK, 2, _gen(0), known_mask=known,
                                                    known_values=values)
    assert torch.equal(x[0, 0], values[0, 0]) and torch.all(x[0, 1:] == 0)
    # the state of the known row approaches its value as the noise shrinks
    assert (seen[-1] - values[0, 0]).abs().max() < (seen[0] - values[0, 0]).abs().max()


def test_bad_arguments():
    f = lambda x, t: x  # noqa: E731
    with pytest.raises(ValueError, match="x0_sample"):
        DDIMSampler(num_steps=2, x0_sample=True).sample_features(f, SDE, MASK, 2)
    with pytest.raises(ValueError, match="num_features must be >= 1, got 0"):
        DDIMSampler(num_steps=2).sample_features(f, SDE, MASK, 0)
    with pytest.raises(ValueError, match="go together"):
        DDIMSampler(num_steps=2).sample_features(f, SDE, MASK, 2, known_mask=MASK)
    with pytest.raises(ValueError, match=r"do not match node_mask \(2, 3\)"):
        DDIMSampler(num_steps=2).sample_features(f, SDE, MASK, 2, known_mask=MASK, known_values=torch.zeros(2, 3, 5))
