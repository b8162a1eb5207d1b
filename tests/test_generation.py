"""generate on Stable Diffusion folders (scenegraph_diff.generation): text / graph conditioning, world checks."""

import json

import numpy as np
import pytest
import torch

from scenegraph_diff.generation import GenerateConfig, check_prompts, generate, image_seeds


@pytest.fixture(scope="module")
def sd_folder(tmp_path_factory):
    from scenegraph_diff.pipelines import SceneGraphPipeline
    from scenegraph_diff.pipelines.testing import tiny_sd_components

    folder = tmp_path_factory.mktemp("sd") / "pipe"
    SceneGraphPipeline(**tiny_sd_components()).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def adapted_folder(tmp_path_factory):
    from scenegraph_diff.conditioning.rectification import RectificationConfig, RectificationRunConfig, run_rectification

    out = tmp_path_factory.mktemp("rect")
    cfg = RectificationRunConfig(data="shapes", model="tiny", output_dir=str(out), max_steps=2, lr=1e-2,
                                 checkpoint_every=None, device="cpu", progress=False, save_pipeline=True,
                                 objective=RectificationConfig(batch_size=2))
    return run_rectification(cfg)["pipeline"]


PROMPTS = ("a red circle to the left of a blue square", "a cyan triangle above a green square")


def _images(tmp_path, **kw):
    summary = generate(GenerateConfig(prompts=PROMPTS, out=str(tmp_path), steps=2, guidance_scale=3.0, **kw))
    from PIL import Image

    return [np.asarray(Image.open(f)) for f in summary["images"]]


def test_text_conditioning_is_plain_stable_diffusion(sd_folder, tmp_path):
    from diffusers import StableDiffusionPipeline

    ours = _images(tmp_path, model=str(sd_folder), conditioning="text")
    plain = StableDiffusionPipeline.from_pretrained(sd_folder)
    gens = [torch.Generator().manual_seed(s) for s in image_seeds(0, [0, 1], 1)]
    ref = plain(list(PROMPTS), num_inference_steps=2, guidance_scale=3.0, generator=gens, output_type="np").images
    ref = np.clip(ref * 255.0 + 0.5, 0, 255).astype(np.uint8)
    assert all(np.array_equal(a, b) for a, b in zip(ours, ref))


def test_images_do_not_depend_on_the_batching(sd_folder, tmp_path):
    one = _images(tmp_path / "a", model=str(sd_folder), conditioning="text", batch_size=1)
    two = _images(tmp_path / "b", model=str(sd_folder), conditioning="text", batch_size=8)
    # Same noise per image; a different batch shape may round differently in the BLAS kernels (<= 1 level).
    assert all(np.abs(a.astype(int) - b.astype(int)).max() <= 1 for a, b in zip(one, two))
    three = _images(tmp_path / "c", model=str(sd_folder), conditioning="text", batch_size=1)
    assert all(np.array_equal(a, b) for a, b in zip(one, three))


def test_graph_conditioning_needs_a_trained_adapter(sd_folder, tmp_path):
    with pytest.raises(RuntimeError, match="no trained graph adapter"):
        _images(tmp_path, model=str(sd_folder), conditioning="graph")


def test_trained_adapter_is_the_default_and_changes_the_image(adapted_folder, tmp_path):
    graph = _images(tmp_path / "g", model=adapted_folder)
    text = _images(tmp_path / "t", model=adapted_folder, conditioning="text")
    assert not all(np.array_equal(a, b) for a, b in zip(graph, text))


def test_shapes_world_folders_reject_other_prompts_before_torch(sd_folder, tmp_path):
    import shutil

    folder = tmp_path / "world"
    shutil.copytree(sd_folder, folder)
    (folder / "scenegraph_diff.json").write_text(json.dumps({"world": "shapes"}))
    graphs, problems = check_prompts(GenerateConfig(prompts=("a cat on a dog", PROMPTS[0]), out=str(tmp_path),
                                                    model=str(folder)))
    assert problems[0] is not None and "cat" in str(problems[0]) and problems[1] is None
    _, anything = check_prompts(GenerateConfig(prompts=("a cat on a dog",), out=str(tmp_path), model=str(sd_folder)))
    assert anything == [None]


@pytest.mark.parametrize("field,value", [("conditioning", "pixels"), ("guidance_scale", -1.0), ("graph_scale", -0.5)])
def test_bad_settings_name_the_field(tmp_path, sd_folder, field, value):
    with pytest.raises(ValueError, match=field):
        GenerateConfig(prompts=PROMPTS, out=str(tmp_path), model=str(sd_folder), **{field: value})


def test_conditioning_is_refused_for_the_shapes_pipeline(tmp_path):
    with pytest.raises(ValueError, match="ShapesPipeline"):
        GenerateConfig(prompts=PROMPTS, out=str(tmp_path), conditioning="text")
