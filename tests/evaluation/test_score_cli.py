"""`scenegraph-diff score` and the generate flags of issue 21 (--fk-particles, --fk-reward, --cache-interval,
--composed) on a tiny saved Stable Diffusion folder."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from scenegraph_diff.cli import main
from scenegraph_diff.graph import write_jsonl
from scenegraph_diff.graph.scene_graph import SceneGraph


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    from diffusers import StableDiffusionPipeline

    from scenegraph_diff.pipelines.testing import tiny_sd_components

    folder = tmp_path_factory.mktemp("tiny_sd")
    StableDiffusionPipeline(**tiny_sd_components(seed=0)).save_pretrained(folder)
    return folder


def _graphs():
    return [SceneGraph.from_dict({"objects": [{"name": "cat"}, {"name": "mat"}],
                                  "relations": [{"subject": 0, "predicate": "on", "object": 1},
                                                {"subject": 1, "predicate": "under", "object": 0}]}),
            SceneGraph.from_dict({"text": "a dog", "objects": [{"name": "dog"}]})]


def test_score_writes_one_line_per_image(model, tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i, size in enumerate((64, 32)):  # any size
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(images / f"{i:05d}.png")
    write_jsonl(tmp_path / "graphs.jsonl", _graphs())
    argv = ["score", "--images", str(images), "--graphs", str(tmp_path / "graphs.jsonl"), "--model", str(model),
            "--samples", "2"]
    assert main(argv) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [x["image"] for x in lines] == ["00000.png", "00001.png"]
    assert [(r["subject"], r["predicate"], r["object"]) for r in lines[0]["relations"]] == [(0, "on", 1),
                                                                                             (1, "under", 0)]
    assert all(isinstance(r["holds"], bool) and r["holds"] == (r["margin"] > 0) for r in lines[0]["relations"])
    assert lines[1]["relations"] == []
    assert main(argv) == 0
    assert [json.loads(line) for line in capsys.readouterr().out.splitlines()] == lines  # reproducible
    assert main(argv + ["--predicates", "on,under,above"]) == 0  # more competitors: a margin can only shrink
    more = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert all(m["margin"] <= r["margin"] + 1e-6 for m, r in zip(more[0]["relations"], lines[0]["relations"]))


@pytest.mark.parametrize("extra, message", [
    (["--samples", "0"], "--samples must be >= 1, got 0"),
    (["--conditioning", "graph"], "has no trained graph adapter"),
    (["--conditioning", "layout"], "has no box grounding"),
    (["--layouts", "0"], "--layouts must be >= 1, got 0"),
    (["--grounding-scale", "-1"], "--grounding-scale must be >= 0, got -1.0"),
    (["--predicates", "above,,below"], "--predicates 'above,,below': an empty predicate"),
    (["--images-missing"], None),
])
def test_score_bad_input_is_one_line(model, tmp_path, capsys, extra, message):
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(np.zeros((64, 64, 3), dtype=np.uint8)).save(images / "00000.png")
    write_jsonl(tmp_path / "graphs.jsonl", _graphs())
    if extra == ["--images-missing"]:
        extra, message = [], "2 graphs but no image"
    else:
        Image.fromarray(np.zeros((64, 64, 3), dtype=np.uint8)).save(images / "00001.png")
    code = main(["score", "--images", str(images), "--graphs", str(tmp_path / "graphs.jsonl"), "--model", str(model),
                 *extra])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.fixture(scope="module")
def grounded_model(tmp_path_factory):
    """A tiny SD folder (SD's block order) with a random layout adapter that names layout-shapes as its layout model."""
    import torch

    from scenegraph_diff.conditioning.layout_adapter import make_layout_adapter, save_layout_adapter
    from scenegraph_diff.pipelines import SceneGraphPipeline
    from scenegraph_diff.pipelines.testing import tiny_sd_components

    folder = tmp_path_factory.mktemp("tiny_adapter")
    parts = tiny_sd_components(sd_block_order=True)
    SceneGraphPipeline(**parts).save_pretrained(folder)
    adapter = make_layout_adapter(parts["unet"], in_channels=32, downscale_factor=2)
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for prm in adapter.parameters():
            prm.copy_(torch.randn(prm.shape, generator=g) * 0.05)
    save_layout_adapter(adapter, folder / "layout_adapter")
    (folder / "scenegraph_diff.json").write_text(json.dumps({"layout_model": "layout-shapes", "grounding_scale": 2.0}))
    return folder


def test_score_with_layout_conditioning(grounded_model, tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    graph = SceneGraph.from_dict({"objects": [{"name": "circle", "attributes": ["red"]},
                                              {"name": "square", "attributes": ["blue"]}],
                                  "relations": [{"subject": 0, "predicate": "left of", "object": 1}]})
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(images / "00000.png")
    write_jsonl(tmp_path / "graphs.jsonl", [graph])
    argv = ["score", "--images", str(images), "--graphs", str(tmp_path / "graphs.jsonl"), "--model",
            str(grounded_model), "--samples", "4", "--layouts", "2"]
    runs = {}
    for name, extra in (("default", []), ("layout", ["--conditioning", "layout"]),
                        ("text", ["--conditioning", "text"])):
        assert main(argv + extra) == 0, name
        runs[name] = json.loads(capsys.readouterr().out)["relations"][0]["margin"]
    assert runs["default"] == runs["layout"]  # the folder names a layout model: layout is its default
    assert runs["layout"] != pytest.approx(runs["text"], abs=1e-5)


def _generate(model, out, *flags, prompt="a cat on a mat"):
    return main(["generate", prompt, "--model", str(model), "--out", str(out), "--steps", "3",
                 "--parser", "rules", *flags])


def test_generate_flags(model, tmp_path, capsys):
    assert _generate(model, tmp_path / "plain") == 0
    assert _generate(model, tmp_path / "cache1", "--cache-interval", "1") == 0
    assert _generate(model, tmp_path / "cache2", "--cache-interval", "2") == 0
    assert _generate(model, tmp_path / "composed", "--composed", prompt="a cat on a mat and a ball") == 0
    assert _generate(model, tmp_path / "plain2", prompt="a cat on a mat and a ball") == 0
    assert _generate(model, tmp_path / "fk", "--fk-particles", "2", "--fk-reward", "dc") == 0
    plain = np.asarray(Image.open(tmp_path / "plain" / "00000.png"))
    assert (np.asarray(Image.open(tmp_path / "cache1" / "00000.png")) == plain).all()
    for name in ("cache2", "fk"):
        assert not (np.asarray(Image.open(tmp_path / name / "00000.png")) == plain).all(), name
    plain2 = np.asarray(Image.open(tmp_path / "plain2" / "00000.png"))  # two concepts: not plain guidance
    assert not (np.asarray(Image.open(tmp_path / "composed" / "00000.png")) == plain2).all()


@pytest.mark.parametrize("flags, message", [
    (["--fk-particles", "0"], "fk_particles must be an integer >= 1, got 0"),
    (["--cache-interval", "0"], "cache_interval must be an integer >= 1, got 0"),
    (["--fk-particles", "2"], "fk_reward='checker' scores shapes-world images"),
    (["--fk-particles", "2", "--composed", "--fk-reward", "dc"], "composed scores and FK steering are separate"),
    (["--fk-particles", "2", "--cache-interval", "2", "--fk-reward", "dc"], "cache_interval=2 with fk_particles=2"),
])
def test_generate_bad_flags_are_one_line(model, tmp_path, capsys, flags, message):
    assert _generate(model, tmp_path / "x", *flags) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_generate_flags_need_a_stable_diffusion_model(tmp_path, capsys):
    assert main(["generate", "a red circle above a blue square", "--out", str(tmp_path), "--cache-interval", "2"]) == 2
    assert "cache_interval is for Stable Diffusion models" in capsys.readouterr().err
