"""The bundled sd-shapes model (scenegraph_diff/assets/sd-shapes): a plain diffusers folder, small, and SD-like."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from scenegraph_diff.bundled import ASSETS, bundled_models

FOLDER = ASSETS / "sd-shapes"
pytestmark = pytest.mark.skipif(not (FOLDER / "model_index.json").is_file(), reason="sd-shapes is not bundled")


@pytest.fixture(scope="module")
def pipe():
    from diffusers import StableDiffusionPipeline

    p = StableDiffusionPipeline.from_pretrained(FOLDER)  # no scenegraph_diff code on the call path
    p.set_progress_bar_config(disable=True)
    return p


def test_everything_bundled_stays_small_and_in_safetensors():
    files = [p for p in ASSETS.rglob("*") if p.is_file()]
    parser = [p for p in files if p.relative_to(ASSETS).parts[0].startswith("parser")]
    models = [p for p in files if p not in parser]
    assert sum(p.stat().st_size for p in models) <= 40 * 2**20  # issue 19: the bundled image / layout models
    assert sum(p.stat().st_size for p in parser) <= 100 * 2**20  # issue 22: the parsers' weights
    weights = [p for p in files if p.suffix in (".safetensors", ".bin", ".pt", ".pth", ".ckpt")]
    assert weights and all(p.suffix == ".safetensors" for p in weights)
    assert (FOLDER / "README.md").is_file() and "sd-shapes" in [m.name for m in bundled_models()]


def test_plain_diffusers_draws_the_objects(pipe):
    from scenegraph_diff.shapes import check, score
    from scenegraph_diff.shapes.evaluation import held_out_graphs, pipeline_generator

    settings = json.loads((FOLDER / "scenegraph_diff.json").read_text())
    graphs = [g for g in held_out_graphs(24, seed=4242) if len(g.objects) <= 2][:12]
    images = pipeline_generator(pipe, num_inference_steps=settings["steps"],
                                guidance_scale=settings["guidance_scale"])(graphs)
    assert images[0].shape == (32, 32, 3)
    s = score(check(im, g) for im, g in zip(images, graphs))
    assert s.object_accuracy >= 0.75  # the benchmark measures >= 90 % on 504 graphs; 12 are noisy


def test_same_generator_same_image(pipe):
    kw = dict(num_inference_steps=4, guidance_scale=4.0, output_type="np")
    a = pipe("a red circle above a blue square", generator=torch.Generator().manual_seed(3), **kw).images
    b = pipe("a red circle above a blue square", generator=torch.Generator().manual_seed(3), **kw).images
    assert np.array_equal(a, b)


def test_generate_cli_runs_the_sd_path(tmp_path):
    from scenegraph_diff.cli import main

    assert main(["generate", "a green triangle left of a cyan circle", "--model", "sd-shapes", "--out", str(tmp_path),
                 "--steps", "4"]) == 0
    assert (tmp_path / "00000.png").is_file()
    assert main(["generate", "a cat on a dog", "--model", "sd-shapes", "--out", str(tmp_path / "x")]) == 1  # skipped


def test_layout_is_the_default_and_fixes_relations_text_gets_wrong(tmp_path):
    """The bundled layout adapter + layout-shapes, through generate's default: relations the checker confirms, on
    prompts and their swapped twins, where text-only conditioning is near chance."""
    from PIL import Image

    from scenegraph_diff.generation import GenerateConfig, generate
    from scenegraph_diff.shapes import check
    from scenegraph_diff.shapes.evaluation import held_out_graphs, swap_twins

    assert json.loads((FOLDER / "scenegraph_diff.json").read_text())["layout_model"] == "layout-shapes"
    graphs = [g for g in held_out_graphs(42, seed=4242) if len(g.relations) == 1][:6]
    graphs += [t for _, t in swap_twins(graphs)]

    def relations_right(conditioning: str | None) -> int:
        out = tmp_path / str(conditioning)
        summary = generate(GenerateConfig(prompts=tuple(g.text for g in graphs), out=str(out), model="sd-shapes",
                                          conditioning=conditioning))
        drawn = [json.loads(line) for line in (out / "graphs.jsonl").read_text().splitlines()]
        if conditioning is None:
            assert all("box" in o for d in drawn for o in d["objects"])  # the layout model's boxes, written out
        images = [np.asarray(Image.open(f), dtype=np.float32) / 255.0 for f in summary["images"]]
        return sum(all(check(im, g).relations) for im, g in zip(images, graphs))

    layout, text = relations_right(None), relations_right("text")
    assert layout >= 9 and layout >= text + 3, (layout, text)
