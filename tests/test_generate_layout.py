"""generate with layout conditioning on tiny random-weight folders, as a user with SD 1.5 + GLIGEN or a layout
adapter runs it: prompt -> parse -> graph -> layout model (the bundled layout-shapes) -> grounding -> image, with the
pipeline saved and loaded from a folder."""

import json
import shutil

import numpy as np
import pytest
import torch

from scenegraph_diff.generation import GenerateConfig, generate

PROMPTS = ("a red circle to the left of a blue square", "a cyan triangle above a green square")


def _open(module: torch.nn.Module, keys, seed: int = 1) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if keys(name):
                p.copy_(torch.randn(p.shape, generator=g) * (0.5 if p.ndim == 0 else 0.05))


@pytest.fixture(scope="module")
def gligen_folder(tmp_path_factory):
    """A plain SD folder with GLIGEN layers (trained-like weights) in grounding/."""
    from scenegraph_diff.conditioning.grounding import gated_unet, is_grounding_key, save_grounding
    from scenegraph_diff.pipelines import SceneGraphPipeline
    from scenegraph_diff.pipelines.testing import tiny_sd_components

    folder = tmp_path_factory.mktemp("gligen") / "pipe"
    parts = tiny_sd_components()
    SceneGraphPipeline(**parts).save_pretrained(folder)
    unet = gated_unet(parts["unet"])
    _open(unet, is_grounding_key)
    save_grounding(unet, folder / "grounding")
    return folder


@pytest.fixture(scope="module")
def adapter_folder(tmp_path_factory):
    """A plain SD folder (SD's block order) with a layout adapter (trained-like weights) in layout_adapter/."""
    from scenegraph_diff.conditioning.layout_adapter import make_layout_adapter, save_layout_adapter
    from scenegraph_diff.pipelines import SceneGraphPipeline
    from scenegraph_diff.pipelines.testing import tiny_sd_components

    folder = tmp_path_factory.mktemp("adapter") / "pipe"
    parts = tiny_sd_components(sd_block_order=True)
    SceneGraphPipeline(**parts).save_pretrained(folder)
    adapter = make_layout_adapter(parts["unet"], in_channels=32, downscale_factor=2)
    _open(adapter, lambda name: True)
    save_layout_adapter(adapter, folder / "layout_adapter")
    return folder


def _run(tmp_path, **kw):
    from PIL import Image

    summary = generate(GenerateConfig(prompts=PROMPTS, out=str(tmp_path), steps=2, guidance_scale=3.0, **kw))
    graphs = [json.loads(line) for line in (tmp_path / "graphs.jsonl").read_text().splitlines()]
    return [np.asarray(Image.open(f)) for f in summary["images"]], graphs


@pytest.mark.parametrize("kind", ["gligen", "adapter"])
def test_layout_conditioning_draws_the_predicted_boxes(kind, gligen_folder, adapter_folder, tmp_path):
    folder = str(gligen_folder if kind == "gligen" else adapter_folder)
    images, graphs = _run(tmp_path / "l", model=folder, conditioning="layout", layout_model="layout-shapes")
    assert len(images) == 2 and images[0].shape == (64, 64, 3)
    for g in graphs:  # the layout model's boxes are written with the graphs
        assert all(len(o["box"]) == 4 and 0.0 <= o["box"][0] < o["box"][2] <= 1.0 for o in g["objects"])
    circle, square = graphs[0]["objects"][0]["box"], graphs[0]["objects"][1]["box"]
    assert (circle[0] + circle[2]) < (square[0] + square[2])  # "left of": the layout model's job
    again, _ = _run(tmp_path / "a", model=folder, conditioning="layout", layout_model="layout-shapes")
    assert all(np.array_equal(a, b) for a, b in zip(images, again))
    text, _ = _run(tmp_path / "t", model=folder, conditioning="text")
    assert not all(np.array_equal(a, b) for a, b in zip(images, text))


def test_a_folder_naming_its_layout_model_defaults_to_layout(adapter_folder, tmp_path):
    folder = tmp_path / "pipe"
    shutil.copytree(adapter_folder, folder)
    (folder / "scenegraph_diff.json").write_text(json.dumps({"layout_model": "layout-shapes"}))
    default, graphs = _run(tmp_path / "d", model=str(folder))
    layout, _ = _run(tmp_path / "l", model=str(folder), conditioning="layout")
    assert all(np.array_equal(a, b) for a, b in zip(default, layout)) and "box" in graphs[0]["objects"][0]
    scaled, _ = _run(tmp_path / "s", model=str(folder), conditioning="layout", grounding_scale=0.0)
    text, _ = _run(tmp_path / "t", model=str(folder), conditioning="text")
    assert all(np.array_equal(a, b) for a, b in zip(scaled, text))  # residuals scaled to nothing = text only


def test_layout_needs_grounding_and_a_layout_model(gligen_folder, tmp_path):
    from scenegraph_diff.pipelines import SceneGraphPipeline
    from scenegraph_diff.pipelines.testing import tiny_sd_components

    plain = tmp_path / "plain"
    SceneGraphPipeline(**tiny_sd_components()).save_pretrained(plain)
    with pytest.raises(RuntimeError, match="no box grounding"):
        _run(tmp_path / "a", model=str(plain), conditioning="layout", layout_model="layout-shapes")
    with pytest.raises(RuntimeError, match="names no layout model"):
        _run(tmp_path / "b", model=str(gligen_folder), conditioning="layout")
    with pytest.raises(ValueError, match="does not combine"):
        GenerateConfig(prompts=PROMPTS, out=str(tmp_path), conditioning="layout", fk_particles=2)
    with pytest.raises(ValueError, match="grounding_scale"):
        GenerateConfig(prompts=PROMPTS, out=str(tmp_path), grounding_scale=-1.0)
