"""`scenegraph-diff parse`: arguments, --input txt/jsonl/csv, --output, order, errors."""

from __future__ import annotations

import json

from scenegraph_diff.cli import main
from scenegraph_diff.graph import SceneGraph, read_jsonl


def _lines(capsys):
    out = capsys.readouterr().out.splitlines()
    return [SceneGraph.from_json(x) for x in out]


def test_args(capsys):
    assert main(["parse", "--backend", "rules", "a black cat sitting on a red sofa next to two lamps", "a dog"]) == 0
    g1, g2 = _lines(capsys)
    assert ("cat", "sit on", "sofa") in g1.triplets()
    assert {o.name: o.attributes for o in g1.objects}["lamps"] == ("2",)
    assert [o.name for o in g2.objects] == ["dog"]


def test_inputs_in_order(tmp_path, capsys):
    texts = ["a cat on a mat", "", "two red cars", "a dog"]
    (tmp_path / "in.txt").write_text("\n".join(texts) + "\n")
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    (tmp_path / "in.csv").write_text("id,caption\n" + "".join(f'{i},"{t}"\n' for i, t in enumerate(texts)))
    for name in ("in.txt", "in.jsonl", "in.csv"):
        assert main(["parse", "--backend", "rules", "--input", str(tmp_path / name)]) == 0
        graphs = _lines(capsys)
        assert [g.text for g in graphs] == texts, name
    out = tmp_path / "out.jsonl"
    assert main(["parse", "--backend", "rules", "-i", str(tmp_path / "in.txt"), "--output", str(out)]) == 0
    assert [g.text for g in read_jsonl(out)] == texts


def test_errors(tmp_path, capsys):
    assert main(["parse"]) == 2
    assert "nothing to parse" in capsys.readouterr().err
    assert main(["parse", "--input", str(tmp_path / "missing.txt")]) == 2
    assert "input file not found" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "a cat"}\n{"txt": 1}\n')
    assert main(["parse", "--input", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "line 2" in err and len(err.strip().splitlines()) == 1
    assert main(["parse", "a", "--input", str(bad)]) == 2
