"""`scenegraph-diff layout`, `draw --layout` and `train-layout`: outputs, and one-line errors for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from scenegraph_diff.cli import main
from scenegraph_diff.graph import SceneGraph, read_jsonl
from scenegraph_diff.layout import DiffusionLayoutModel, RegressionLayoutModel, load_layout_model

VOCAB = dict(objects=["circle", "square"], attributes=["red", "blue"], predicates=["left of", "above"])
G1 = {"text": "a red circle left of a blue square",
      "objects": [{"name": "circle", "attributes": ["red"]}, {"name": "square", "attributes": ["blue"],
                                                              "box": [0.5, 0.5, 0.75, 0.75]}],
      "relations": [{"subject": 0, "predicate": "left of", "object": 1}]}
G2 = {"objects": [{"name": "square", "attributes": ["red"]}]}


def run(argv: list[str]) -> int:
    """``main(argv)``, with argparse's usage errors (SystemExit) as exit codes."""
    try:
        return main(argv)
    except SystemExit as e:
        return int(e.code or 0)


def _one_line_error(capsys, rc: int, contains: str) -> str:
    out, err = capsys.readouterr()
    assert rc == 2, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert contains in err, err
    return err


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    DiffusionLayoutModel(**VOCAB, dim=16, num_layers=1, num_inference_steps=2).save_pretrained(root / "diffusion")
    RegressionLayoutModel(**VOCAB, dim=16, num_layers=1).save_pretrained(root / "regression")
    return root


@pytest.fixture()
def graphs(tmp_path):
    path = tmp_path / "g.jsonl"
    path.write_text(json.dumps(G1) + "\n" + json.dumps(G2) + "\n")
    return path


def test_layout_writes_k_lines_per_graph_and_keeps_given_boxes(models, graphs, tmp_path, capsys):
    out = tmp_path / "out.jsonl"
    assert main(["layout", str(graphs), "-o", str(out), "--model", str(models / "diffusion"), "--num-samples", "3",
                 "--seed", "1"]) == 0
    got = list(read_jsonl(out))
    assert len(got) == 6
    for k, g in enumerate(got):
        src = SceneGraph.from_dict(G1 if k < 3 else G2)
        assert g.relations == src.relations and g.text == src.text and all(o.box for o in g.objects)
    assert all(g.objects[1].box == (0.5, 0.5, 0.75, 0.75) for g in got[:3])
    assert got[0].objects[0].box != got[1].objects[0].box  # samples of one graph differ
    # the same seed gives the same file; stdout when no -o
    capsys.readouterr()
    assert main(["layout", str(graphs), "--model", str(models / "diffusion"), "--num-samples", "3", "--seed", "1"]) == 0
    assert [SceneGraph.from_json(line) for line in capsys.readouterr().out.splitlines()] == got


def test_layout_resample_and_steps(models, graphs, capsys):
    assert main(["layout", str(graphs), "--model", str(models / "diffusion"), "--resample", "--steps", "1"]) == 0
    first = SceneGraph.from_json(capsys.readouterr().out.splitlines()[0])
    assert first.objects[1].box != (0.5, 0.5, 0.75, 0.75)


@pytest.mark.parametrize("args,contains", [
    (["--num-samples", "0"], "--num-samples must be >= 1, got 0"),
    (["--seed", "-1"], "--seed must be >= 0, got -1"),
    (["--steps", "99"], "--steps must be in 1..50, got 99"),
    (["--model", "{m}/regression", "--steps", "3"], "RegressionLayoutModel, which has no sampler steps"),
    (["--model", "{m}/nope"], "no such folder"),
    (["--model", "{m}"], "no config.json"),
])
def test_layout_bad_arguments(models, graphs, capsys, args, contains):
    args = [a.format(m=models) for a in args]
    if "--model" not in args:
        args += ["--model", str(models / "diffusion")]
    _one_line_error(capsys, main(["layout", str(graphs), *args]), contains)


def test_layout_bad_files(models, tmp_path, capsys):
    _one_line_error(capsys, main(["layout", str(tmp_path / "missing.jsonl")]), "input file not found")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(G2) + "\n" + '{"objects": [{"name": "x", "box": [0.5, 0, 0.2, 1]}]}\n')
    _one_line_error(capsys, main(["layout", str(bad), "--model", str(models / "diffusion"), "-o",
                                  str(tmp_path / "o.jsonl")]), "line 2: objects[0].box: needs x0 < x1")
    assert not (tmp_path / "o.jsonl").exists()


def test_draw_layout(models, graphs, tmp_path, capsys):
    filled = tmp_path / "filled.jsonl"
    assert main(["layout", str(graphs), "-o", str(filled), "--model", str(models / "regression")]) == 0
    assert main(["draw", str(filled), "--layout", "--out", str(tmp_path / "png"), "--dpi", "30"]) == 0
    pngs = sorted((tmp_path / "png").glob("*.png"))
    assert [p.name for p in pngs] == ["00000.png", "00001.png"]
    assert pngs[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    capsys.readouterr()
    _one_line_error(capsys, main(["draw", str(graphs), "--layout", "--out", str(tmp_path / "x")]),
                    "graph 1: objects[0] ('circle') has no box")


def test_train_layout_cli(tmp_path, capsys):
    rc = main(["train-layout", "--model", "regression", "--encoder", "hgcn", "--output", str(tmp_path / "run"),
               "--max-steps", "2", "--max-minutes", "0", "--batch-size", "4", "--dim", "16", "--num-layers", "1",
               "--pool-size", "16", "--no-progress"])
    assert rc == 0
    result = json.loads(capsys.readouterr().out)
    assert type(load_layout_model(result["model"])) is RegressionLayoutModel


@pytest.mark.parametrize("args,contains", [
    (["--data", "{t}/missing"], "neither 'shapes' nor a folder"),
    (["--batch-size", "0"], "batch_size must be an integer >= 1, got 0"),
    (["--model", "gan"], "invalid choice: 'gan'"),
    (["--device", "tpu"], "tpu"),
])
def test_train_layout_bad_arguments(tmp_path, capsys, args, contains):
    args = [a.format(t=tmp_path) for a in args]
    rc = run(["train-layout", "--output", str(tmp_path / "run"), "--max-steps", "1", "--no-progress", *args])
    _one_line_error(capsys, rc, contains)


@pytest.mark.slow
def test_train_layout_under_two_gloo_processes(tmp_path):
    """`train-layout` as torchrun starts it (RANK / WORLD_SIZE / MASTER_* in the environment): DDP on gloo."""
    import os
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    argv = [sys.executable, "-m", "scenegraph_diff.cli", "train-layout", "--model", "diffusion", "--output",
            str(tmp_path / "run"), "--max-steps", "3", "--batch-size", "4", "--dim", "16", "--num-layers", "1",
            "--pool-size", "32", "--no-progress"]
    procs = []
    for rank in range(2):
        env = dict(os.environ, WORLD_SIZE="2", RANK=str(rank), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                   MASTER_PORT=str(port), OMP_NUM_THREADS="1")
        log = (tmp_path / f"rank{rank}.err").open("w")
        procs.append((subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=log), log))
    for p, log in procs:
        p.wait(timeout=300)
        log.close()
        assert p.returncode == 0, Path(log.name).read_text()[-3000:]
    info = json.loads((tmp_path / "run" / "train_info.json").read_text())
    assert info["world_size"] == 2 and info["steps"] == 3
