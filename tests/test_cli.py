"""The scenegraph-diff command line: validate, draw, convert, demo; errors and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from scenegraph_diff import SceneGraph
from scenegraph_diff.cli import main
from scenegraph_diff.graph import read_jsonl, write_jsonl

G = SceneGraph.from_triplets([("cat", "on", "mat")], attributes={"cat": ["black"]}, text="a black cat on a mat")


def test_version_and_help(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert "scenegraph-diff 0.1.0" in capsys.readouterr().out
    assert main([]) == 2


def test_validate_reports_every_bad_line(tmp_path, capsys):
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join([G.to_json(), '{"objects": [{"name": ""}]}', G.to_json(), "{oops"]) + "\n")
    assert main(["validate", str(path)]) == 1
    out, err = capsys.readouterr()
    assert json.loads(out) == {"file": str(path), "valid": 2, "invalid": 2}
    assert err.splitlines() == ["line 2: objects[0].name: must be a non-empty string, got ''",
                                "line 4: json: Expecting property name enclosed in double quotes at line 1 column 2"]
    write_jsonl(path, [G])
    assert main(["validate", str(path)]) == 0


def test_missing_file_is_a_one_line_error(tmp_path, capsys):
    assert main(["validate", str(tmp_path / "nope.jsonl")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "input file not found" in err


def test_convert_round_trip(tmp_path, capsys):
    src = tmp_path / "in.jsonl"
    write_jsonl(src, [G, SceneGraph()])
    assert main(["convert", str(src), "-o", str(tmp_path / "gml")]) == 0
    assert sorted(p.name for p in (tmp_path / "gml").iterdir()) == ["00000.graphml", "00001.graphml"]
    assert main(["convert", str(tmp_path / "gml"), "-o", str(tmp_path / "back.jsonl")]) == 0
    assert list(read_jsonl(tmp_path / "back.jsonl")) == [G, SceneGraph()]
    assert main(["convert", str(tmp_path / "gml"), "-o", str(tmp_path / "x.txt")]) == 2


def test_draw(tmp_path, capsys):
    src = tmp_path / "in.jsonl"
    write_jsonl(src, [G, SceneGraph()])
    assert main(["draw", str(src), "--out", str(tmp_path / "png")]) == 0
    pngs = sorted((tmp_path / "png").glob("*.png"))
    assert [p.name for p in pngs] == ["00000.png", "00001.png"]
    assert pngs[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_demo(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "demo")]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert all(summary["round_trips_lossless"].values())
    assert summary["batch"]["scene"] == summary["graphs"] == 7
    assert len(list((tmp_path / "demo").glob("graph_*.png"))) == 7


def test_import_is_light():
    """`import scenegraph_diff` must not pull in diffusers, transformers, matplotlib or torch."""
    code = ("import sys, time; t = time.perf_counter(); import scenegraph_diff; dt = time.perf_counter() - t; "
            "print(dt, [m for m in ('diffusers', 'transformers', 'matplotlib', 'torch') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split(maxsplit=1)
    assert out[1].strip() == "[]"
    assert float(out[0]) < 1.5


def test_models_lists_the_bundled_models(capsys):
    from scenegraph_diff.bundled import bundled_models

    assert main(["models", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["name"] for r in rows] == [m.name for m in bundled_models()]
    assert {"shapes", "parser"} <= {r["name"] for r in rows}
    for r in rows:
        assert r["size_bytes"] > 0 and r["description"]
    assert main(["models"]) == 0
    assert "shapes" in capsys.readouterr().out
