"""DeepCache: interval 1 is the uncached UNet bit for bit; deep modules run only on refresh steps."""

from __future__ import annotations

import pytest
import torch
from diffusers import StableDiffusionPipeline

from scenegraph_diff.guidance.cache import DeepCache
from scenegraph_diff.pipelines.testing import tiny_sd_components


@pytest.fixture(scope="module")
def pipe():
    p = StableDiffusionPipeline(**tiny_sd_components(seed=0))
    p.set_progress_bar_config(disable=True)
    return p


def _run(pipe, steps=4):
    gens = [torch.Generator().manual_seed(s) for s in (1, 2)]
    return pipe(["a red circle above a blue square", "a cat on a mat"], num_inference_steps=steps, generator=gens,
                output_type="np").images


def test_interval_one_is_bit_identical_and_hooks_go_away(pipe):
    plain = _run(pipe)
    with DeepCache(pipe.unet, interval=1) as cache:
        cached = _run(pipe)
    assert (cached == plain).all()
    assert cache.full_steps == 4 and cache.cached_steps == 0
    with DeepCache(pipe.unet, interval=3):
        assert not (_run(pipe) == plain).all()
    assert (_run(pipe) == plain).all()  # removed on exit


def test_deep_modules_run_only_on_refresh_steps(pipe):
    calls = {"mid": 0, "conv_out": 0}
    h1 = pipe.unet.mid_block.resnets[0].register_forward_hook(lambda *a: calls.__setitem__("mid", calls["mid"] + 1))
    h2 = pipe.unet.conv_out.register_forward_hook(lambda *a: calls.__setitem__("conv_out", calls["conv_out"] + 1))
    try:
        with DeepCache(pipe.unet, interval=3) as cache:
            _run(pipe, steps=5)
            _run(pipe, steps=5)  # a new call starts with a refresh
    finally:
        h1.remove()
        h2.remove()
    assert calls == {"mid": 4, "conv_out": 10}  # steps 0 and 3 of each call; the shallow branch every step
    assert (cache.full_steps, cache.cached_steps) == (4, 6)


def test_a_cached_pass_reuses_the_deep_features_and_recomputes_the_branch(pipe):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 32, 32, generator=g)
    y = torch.randn(2, 4, 32, 32, generator=g)
    c = torch.randn(2, 7, 32, generator=g)
    unet = pipe.unet
    with torch.no_grad():
        full_x = unet(x, 500, encoder_hidden_states=c).sample
        with DeepCache(unet, interval=2):
            a = unet(x, 500, encoder_hidden_states=c).sample  # refresh
            b = unet(x, 400, encoder_hidden_states=c).sample  # cached: deep features of step t=500
        with DeepCache(unet, interval=2):
            unet(x, 500, encoder_hidden_states=c)
            d = unet(y, 500 - 1, encoder_hidden_states=c).sample  # cached, another input
    assert torch.equal(a, full_x)
    with torch.no_grad():
        assert not torch.equal(b, unet(x, 400, encoder_hidden_states=c).sample)  # not a full pass
    assert not torch.equal(d, a)  # the shallow branch saw the new input


@pytest.mark.parametrize("branch", [1, 2])
def test_branches_cache_fewer_modules_as_they_grow(pipe, branch):
    cache = DeepCache(pipe.unet, interval=2, branch=branch)
    assert repr(cache).startswith(f"DeepCache(interval=2, branch={branch}")
    assert pipe.unet.conv_out not in cache._cached and pipe.unet.mid_block in cache._cached
    assert (pipe.unet.up_blocks[-1].resnets[0] in cache._cached) == (branch == 1)


@pytest.mark.parametrize("kwargs, message", [({"interval": 0}, "interval must be an integer >= 1, got 0"),
                                             ({"interval": 2, "branch": 3}, r"branch must be an integer in \[1, 2\]"),
                                             ({"interval": 2.5}, "got 2.5")])
def test_bad_settings_name_the_value(pipe, kwargs, message):
    with pytest.raises(ValueError, match=message):
        DeepCache(pipe.unet, **kwargs)
