"""``scenegraph-diff generate`` on a tiny random-weight ShapesPipeline (the bundled model is tested in slow tests)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from scenegraph_diff.cli import main
from scenegraph_diff.graph import SceneGraph, read_jsonl


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> str:
    from scenegraph_diff.shapes.conditioning import ShapesConditioner
    from scenegraph_diff.shapes.pipeline import ShapesPipeline, make_scheduler, make_unet

    torch.manual_seed(0)
    pipe = ShapesPipeline(unet=make_unet(32, 16, (8, 16, 16)), conditioner=ShapesConditioner(dim=16, embed_dim=16),
                          scheduler=make_scheduler())
    path = tmp_path_factory.mktemp("tiny") / "pipe"
    pipe.save_pretrained(path)
    return str(path)


def test_generate_one_prompt(tiny_model: str, tmp_path, capsys) -> None:
    rc = main(["generate", "a red circle to the left of a blue square", "--out", str(tmp_path), "--model", tiny_model,
               "--num-images", "2", "--steps", "2", "--parser", "rules"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    assert [p.rsplit("/", 1)[1] for p in summary["images"]] == ["00000.png", "00000_1.png"]
    img = np.asarray(Image.open(tmp_path / "00000.png"))
    assert img.shape == (32, 32, 3)
    g = SceneGraph.from_json((tmp_path / "00000.json").read_text())
    assert g.triplets() == [("circle", "left of", "square")]
    assert list(read_jsonl(tmp_path / "graphs.jsonl")) == [g]


def test_generate_input_file_keeps_order_and_is_seeded(tiny_model: str, tmp_path, capsys) -> None:
    prompts = ["a cyan square", "a green triangle above a yellow square", "a purple circle under a red square"]
    (tmp_path / "p.txt").write_text("\n".join(prompts) + "\n")
    for out in ("a", "b"):
        assert main(["generate", "--input", str(tmp_path / "p.txt"), "--out", str(tmp_path / out), "--model",
                     tiny_model, "--seed", "3", "--steps", "2", "--parser", "rules"]) == 0
    capsys.readouterr()
    graphs = list(read_jsonl(tmp_path / "a" / "graphs.jsonl"))
    assert [g.text for g in graphs] == prompts
    for i in range(3):
        a = np.asarray(Image.open(tmp_path / "a" / f"{i:05d}.png"))
        b = np.asarray(Image.open(tmp_path / "b" / f"{i:05d}.png"))
        assert np.array_equal(a, b)


@pytest.mark.parametrize("argv, message", [
    (["generate", "--out", "x"], "no prompt"),
    (["generate", "a cyan square", "--input", "p.txt", "--out", "x"], "not both"),
    (["generate", "--input", "/nonexistent.txt", "--out", "x"], "input file not found"),
    (["generate", "a cyan square", "--out", "x", "--num-images", "0"], "num_images must be >= 1"),
])
def test_generate_bad_input(argv: list[str], message: str, capsys) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_generate_rejects_a_prompt_outside_the_shapes_world(tiny_model: str, tmp_path, capsys) -> None:
    rc = main(["generate", "a cat on a mat", "--out", str(tmp_path), "--model", tiny_model, "--parser", "rules"])
    assert rc == 2
    assert "unknown shape 'cat'" in capsys.readouterr().err


def test_generate_with_a_stable_diffusion_folder(tmp_path, capsys) -> None:
    from scenegraph_diff.pipelines import SceneGraphPipeline
    from scenegraph_diff.pipelines.testing import tiny_sd_components

    SceneGraphPipeline(**tiny_sd_components()).save_pretrained(tmp_path / "sd")
    rc = main(["generate", "a red circle to the left of a blue square", "--out", str(tmp_path / "o"), "--model",
               str(tmp_path / "sd"), "--steps", "2", "--num-images", "2", "--parser", "rules"])
    assert rc == 0
    capsys.readouterr()
    assert (tmp_path / "o" / "00000_1.png").is_file()
    img = np.asarray(Image.open(tmp_path / "o" / "00000.png"))
    assert img.ndim == 3 and img.shape[-1] == 3
    assert SceneGraph.from_json((tmp_path / "o" / "00000.json").read_text()).triplets() == [
        ("circle", "left of", "square")]


def test_generate_with_graph_refiner(tiny_model: str, tmp_path, capsys) -> None:
    from scenegraph_diff.diffusion import SceneGraphDenoiser, SceneGraphRefiner
    from scenegraph_diff.graph import Vocabulary

    graphs = [SceneGraph.from_triplets([("circle", "left of", "square"), ("square", "above", "triangle")])]
    vocab = Vocabulary.from_graphs(graphs)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = SceneGraphDenoiser(vocab.num_objects, vocab.num_predicates, hidden=16, num_layers=1, heads=2)
    SceneGraphRefiner(model, vocab, [2, 3]).save_pretrained(tmp_path / "refiner")
    prompt = "a red circle to the left of a blue square"
    args = ["generate", prompt, "--model", tiny_model, "--steps", "2", "--parser", "rules",
            "--graph-refiner", str(tmp_path / "refiner"), "--refine-strength", "1.0", "--refine-steps", "2"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0 and main([*args, "--out", str(tmp_path / "b")]) == 0
    capsys.readouterr()
    a = SceneGraph.from_json((tmp_path / "a" / "00000.json").read_text())
    assert a == SceneGraph.from_json((tmp_path / "b" / "00000.json").read_text())  # seeded
    assert a.text == prompt and a.num_objects == 2
    assert np.array_equal(np.asarray(Image.open(tmp_path / "a" / "00000.png")),
                          np.asarray(Image.open(tmp_path / "b" / "00000.png")))
    assert main([*args[:-4], "--refine-strength", "0", "--out", str(tmp_path / "c")]) == 2
    assert "refine_strength must be in (0, 1], got 0.0" in capsys.readouterr().err
