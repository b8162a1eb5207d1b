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
    rc = main(["generate", "a cat on a mat", "--out", str(tmp_path / "o"), "--model", tiny_model, "--parser", "rules"])
    assert rc == 1
    out, err = capsys.readouterr()
    assert err == ("prompt 0 'a cat on a mat': objects[0].name: unknown shape 'cat' "
                   "(expected one of circle, square, triangle)\n")
    assert json.loads(out)["skipped"] == [{"prompt": 0, "error": err.split(": ", 1)[1].strip()}]
    assert not (tmp_path / "o").exists()  # nothing to draw: nothing written


def test_several_prompt_arguments_are_several_prompts(tiny_model: str, tmp_path, capsys) -> None:
    """As for `parse`: two arguments are two prompts (they were joined into one)."""
    prompts = ["a red circle", "a blue square above a green triangle"]
    assert main(["generate", *prompts, "--out", str(tmp_path), "--model", tiny_model, "--steps", "1",
                 "--parser", "rules"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["num_prompts"] == 2
    assert [p.rsplit("/", 1)[1] for p in summary["images"]] == ["00000.png", "00001.png"]
    assert [g.text for g in read_jsonl(tmp_path / "graphs.jsonl")] == prompts


def test_bad_prompts_are_skipped_and_reported(tiny_model: str, tmp_path, capsys) -> None:
    """One bad line no longer aborts the batch: every other prompt is drawn, each bad one is one stderr line."""
    lines = ["a cyan square", "a cat on a dog", "", "three red circles", "a red circle left of a red circle",
             "a green triangle"]
    (tmp_path / "p.txt").write_text("\n".join(lines) + "\n")
    rc = main(["generate", "--input", str(tmp_path / "p.txt"), "--out", str(tmp_path / "o"), "--model", tiny_model,
               "--steps", "1", "--parser", "rules"])
    assert rc == 1
    out, err = capsys.readouterr()
    assert err.splitlines() == [
        "line 2 'a cat on a dog': objects[0].name: unknown shape 'cat' (expected one of circle, square, triangle)",
        "line 4 'three red circles': objects[0]: 3 red circles: the shapes world draws each (colour, shape) at most "
        "once; name one shape per colour",
        "line 5 'a red circle left of a red circle': objects: (colour, shape) pairs must be distinct, got "
        "[('red', 'circle'), ('red', 'circle')]",
    ]
    summary = json.loads(out)
    assert [s["prompt"] for s in summary["skipped"]] == [1, 2, 3]
    assert sorted(p.name for p in (tmp_path / "o").glob("*.png")) == ["00000.png", "00004.png"]
    assert sorted(p.name for p in (tmp_path / "o").glob("0*.json")) == ["00000.json", "00004.json"]
    graphs = list(read_jsonl(tmp_path / "o" / "graphs.jsonl"))
    assert [g.text for g in graphs] == [t for t in lines if t]  # one parsed graph per prompt, skipped ones too
    assert graphs[3].num_objects == 2 and graphs[3].triplets() == [("circle", "left of", "circle")]


def test_library_generate_raises_on_a_bad_prompt_before_writing(tiny_model: str, tmp_path) -> None:
    from scenegraph_diff.graph import SceneGraphError
    from scenegraph_diff.generation import GenerateConfig, generate

    config = GenerateConfig(prompts=("a cyan square", "two blue squares"), out=str(tmp_path / "o"), model=tiny_model)
    with pytest.raises(SceneGraphError, match=r"^prompt\[1\]\.objects\[0\]: 2 blue squares: the shapes world"):
        generate(config)
    assert not (tmp_path / "o").exists()
    summary = generate(config, on_error="skip")
    assert [s["prompt"] for s in summary["skipped"]] == [1] and len(summary["images"]) == 1


def test_a_rejected_prompt_never_imports_torch(tmp_path) -> None:
    """The bundled model, a prompt it cannot draw: rejected before torch / diffusers are imported (< 1 s)."""
    import subprocess
    import sys

    code = ("import sys, time; t = time.perf_counter(); from scenegraph_diff.cli import main; "
            f"rc = main(['generate', 'a cat on a dog', 'three red circles', '--out', {str(tmp_path / 'o')!r}]); "
            "print(rc, [m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules], "
            "round(time.perf_counter() - t, 2))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.stdout.strip().splitlines()[-1].startswith("1 []"), (p.stdout, p.stderr)  # exit code 1, no torch
    assert len(p.stderr.splitlines()) == 2 and "Traceback" not in p.stderr


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
