"""Box grounding through a layout-map T2I-Adapter (scenegraph_diff.conditioning.layout_adapter) and
SceneGraphPipeline's use of it, on tiny random-weight components (the code path of SD 1.5 + a T2I-Adapter)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from scenegraph_diff.conditioning.layout_adapter import (
    LAYOUT_ADAPTER_FOLDER, LayoutAdapterForTraining, layout_maps, load_layout_adapter, make_layout_adapter,
    save_layout_adapter,
)
from scenegraph_diff.graph.scene_graph import Relation, SceneGraph, SceneObject
from scenegraph_diff.pipelines.testing import tiny_sd_components

LEFT = (0.05, 0.3, 0.4, 0.7)
RIGHT = (0.6, 0.3, 0.95, 0.7)
CALL = dict(num_inference_steps=2, guidance_scale=3.0, output_type="np", graph_scale=0.0)


def _graph(a_box=LEFT, b_box=RIGHT) -> SceneGraph:
    return SceneGraph((SceneObject("cat", ("black",), box=a_box), SceneObject("dog", (), box=b_box)),
                      (Relation(0, "left of", 1),), "a black cat left of a dog")


def _parts() -> dict:
    """tiny_sd_components with SD's block order (cross-attention blocks first), which a T2I-Adapter fits."""
    return tiny_sd_components(sd_block_order=True)


def _adapter(unet, trained: bool = True):
    adapter = make_layout_adapter(unet, in_channels=unet.config.cross_attention_dim, downscale_factor=2)
    if trained:  # what training would do: non-zero weights everywhere
        g = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for p in adapter.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    return adapter.eval()


def _pipe(trained: bool = True):
    from scenegraph_diff.pipelines import SceneGraphPipeline

    parts = _parts()
    pipe = SceneGraphPipeline(**parts, layout_adapter=_adapter(parts["unet"], trained))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _run(pipe, graphs, seed: int = 0, **kw):
    kw.setdefault("generator", torch.Generator().manual_seed(seed))
    return pipe(scene_graph=graphs, **{**CALL, **kw}).images


# ------------------------------------------------------------------ maps
def test_layout_maps_paint_each_box_with_its_phrase() -> None:
    boxes = torch.tensor([[[0.0, 0.0, 0.5, 0.5], [0.25, 0.25, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0]]])
    emb = torch.tensor([[[3.0, 0.0], [0.0, -2.0], [5.0, 5.0]]])
    masks = torch.tensor([[1.0, 1.0, 0.0]])  # the third object is padding
    m = layout_maps(boxes, emb, masks, 4)
    assert m.shape == (1, 2, 4, 4)
    s = 2 ** 0.5  # each embedding rescaled to norm sqrt(D)
    assert torch.allclose(m[0, :, 0, 0], torch.tensor([s, 0.0]))  # only the first box
    assert torch.allclose(m[0, :, 3, 3], torch.tensor([0.0, -s]))  # only the second
    assert torch.allclose(m[0, :, 1, 1], torch.tensor([s, -s]))  # overlap adds
    assert torch.allclose(m[0, :, 0, 3], torch.zeros(2))  # inside neither (y = 0.125 < 0.25)
    assert layout_maps(boxes, emb, masks, 6, 2).shape == (1, 2, 6, 2)


def test_layout_maps_bad_shapes_name_them() -> None:
    with pytest.raises(ValueError, match=r"\[B, N, 4\]"):
        layout_maps(torch.zeros(1, 2, 3), torch.zeros(1, 2, 4), torch.ones(1, 2), 8)
    with pytest.raises(ValueError, match="size"):
        layout_maps(torch.zeros(1, 2, 4), torch.zeros(1, 2, 4), torch.ones(1, 2), 0)


def test_adapter_for_a_plain_downsampling_first_block_is_refused() -> None:
    unet = tiny_sd_components()["unet"]  # DownBlock2D (with a downsampler) first
    with pytest.raises(ValueError, match="down block 0"):
        make_layout_adapter(unet, in_channels=32, downscale_factor=2)


# ------------------------------------------------------------------ the pipeline
def test_untrained_adapter_and_grounding_off_are_plain_stable_diffusion() -> None:
    from diffusers import StableDiffusionPipeline

    parts = _parts()
    plain = StableDiffusionPipeline(**parts, requires_safety_checker=False)
    plain.set_progress_bar_config(disable=True)
    ref = plain(_graph().text, generator=torch.Generator().manual_seed(0), num_inference_steps=2, guidance_scale=3.0,
                output_type="np").images
    from scenegraph_diff.pipelines import SceneGraphPipeline

    for adapter, grounding in ((_adapter(parts["unet"], trained=False), True), (_adapter(parts["unet"]), False)):
        pipe = SceneGraphPipeline(**parts, layout_adapter=adapter)
        pipe.set_progress_bar_config(disable=True)
        assert pipe.is_grounded
        assert np.array_equal(_run(pipe, [_graph()], grounding=grounding), ref)


def test_boxes_move_the_image_deterministically_and_per_image() -> None:
    pipe = _pipe()
    a = _run(pipe, [_graph()])
    assert np.array_equal(a, _run(pipe, [_graph()]))
    swapped = _run(pipe, [_graph(RIGHT, LEFT)])
    assert np.abs(a - swapped).max() > 1e-3
    batch = _run(pipe, [_graph(), _graph(RIGHT, LEFT)],
                 generator=[torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)])
    assert np.allclose(batch[0], a[0], atol=1e-5) and np.allclose(batch[1], swapped[0], atol=1e-5)
    assert not pipe.unet._forward_pre_hooks  # the residual hook is gone after the call


def test_steps_fraction_switches_the_residuals_off() -> None:
    pipe = _pipe()
    full = _run(pipe, [_graph()], num_inference_steps=4)
    part = _run(pipe, [_graph()], num_inference_steps=4, grounding_steps_fraction=0.5)
    off = _run(pipe, [_graph()], num_inference_steps=4, grounding=False)
    assert np.abs(full - part).max() > 1e-4 and np.abs(part - off).max() > 1e-4
    assert np.array_equal(full, _run(pipe, [_graph()], num_inference_steps=4))  # back on after the call


def test_matches_diffusers_adapter_pipeline_on_the_layout_map() -> None:
    """Our grounding mode = diffusers' StableDiffusionAdapterPipeline given the same layout map as its image."""
    from diffusers import StableDiffusionAdapterPipeline

    from scenegraph_diff.conditioning.grounding import PhraseEncoder, grounding_inputs

    pipe = _pipe()
    ours = _run(pipe, [_graph()])
    theirs = StableDiffusionAdapterPipeline(
        vae=pipe.vae, text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer, unet=pipe.unet,
        adapter=pipe.layout_adapter, scheduler=pipe.scheduler, safety_checker=None, feature_extractor=None,
        requires_safety_checker=False)
    theirs.set_progress_bar_config(disable=True)
    g = grounding_inputs([_graph()], PhraseEncoder(pipe.text_encoder, pipe.tokenizer))
    image = layout_maps(g["boxes"], g["positive_embeddings"], g["masks"], 64)
    ref = theirs(_graph().text, image=image, height=64, width=64, generator=torch.Generator().manual_seed(0),
                 num_inference_steps=2, guidance_scale=3.0, output_type="np").images
    assert np.abs(ours - ref).max() < 1e-5


def test_save_load_round_trip_through_a_pipeline_folder(tmp_path) -> None:
    from diffusers import StableDiffusionPipeline, T2IAdapter

    from scenegraph_diff.pipelines import SceneGraphPipeline

    pipe = _pipe()
    ref = _run(pipe, [_graph()])
    StableDiffusionPipeline(**{k: v for k, v in _parts().items()}, requires_safety_checker=False).save_pretrained(
        tmp_path / "sd")
    save_layout_adapter(pipe.layout_adapter, tmp_path / "sd" / LAYOUT_ADAPTER_FOLDER, info={"steps": 3})
    assert isinstance(T2IAdapter.from_pretrained(tmp_path / "sd" / LAYOUT_ADAPTER_FOLDER), T2IAdapter)  # diffusers'
    loaded = SceneGraphPipeline.from_pretrained(tmp_path / "sd")
    loaded.set_progress_bar_config(disable=True)
    assert loaded.layout_adapter is not None and loaded.is_grounded
    assert np.allclose(_run(loaded, [_graph()]), ref, atol=1e-5)
    again = SceneGraphPipeline.from_pipe(loaded)
    assert again.layout_adapter is loaded.layout_adapter
    half = save_layout_adapter(pipe.layout_adapter, tmp_path / "half", dtype=torch.float16)
    assert next(load_layout_adapter(half, dtype=torch.float16).parameters()).dtype == torch.float16
    assert next(pipe.layout_adapter.parameters()).dtype == torch.float32  # the saved module is left as it was
    with pytest.raises(FileNotFoundError, match="layout adapter folder"):
        load_layout_adapter(tmp_path / "sd" / "unet")


def test_training_module_trains_only_the_adapter() -> None:
    parts = _parts()
    unet = parts["unet"]
    model = LayoutAdapterForTraining(unet, _adapter(unet, trained=False), image_size=64)
    assert all(not p.requires_grad for p in model.unet.parameters())
    g = torch.Generator().manual_seed(0)
    args = (torch.randn(2, 4, 32, 32, generator=g), torch.tensor([10, 500]), torch.randn(2, 7, 32, generator=g),
            torch.tensor([[LEFT, RIGHT], [RIGHT, LEFT]]), torch.randn(2, 2, 32, generator=g), torch.ones(2, 2))
    base = unet(*args[:3]).sample
    out = model(*args)
    assert torch.equal(out, base)  # zero-initialised: the base UNet's output
    out.square().mean().backward()
    assert model.adapter.adapter.conv_in.weight.grad.abs().sum() > 0


def test_grounding_scale_scales_the_residuals() -> None:
    pipe = _pipe()
    assert np.array_equal(_run(pipe, [_graph()], grounding_scale=0.0), _run(pipe, [_graph()], grounding=False))
    assert np.abs(_run(pipe, [_graph()], grounding_scale=2.0) - _run(pipe, [_graph()])).max() > 1e-4
    with pytest.raises(ValueError, match="grounding_scale"):
        _run(pipe, [_graph()], grounding_scale=-1.0)
