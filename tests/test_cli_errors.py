"""Issue 18: every bad input to the command line is one line on stderr and a non-zero exit, never a traceback.

Each case of the issue is run through ``cli.main`` (stderr captured); a few also as a real subprocess.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from scenegraph_diff import SceneGraph
from scenegraph_diff.cli import main

GOOD = '{"objects": [{"name": "cat"}, {"name": "mat"}], "relations": [{"subject": 0, "predicate": "on", "object": 1}]}'
HUGE_BOX = '{"objects": [{"name": "cat", "box": [%s, 0, 1, 1]}]}' % ("1" * 400)
DEEP = "[" * 1000 + "]" * 1000


def _one_line_error(capsys, rc: int, expected_rc: int | None = None, contains: str = "") -> str:
    out, err = capsys.readouterr()
    assert rc != 0 if expected_rc is None else rc == expected_rc
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    assert contains in err, err
    assert "json: json:" not in err and " at at " not in err
    return err


@pytest.fixture()
def files(tmp_path):
    (tmp_path / "huge.jsonl").write_text(f"{GOOD}\n{HUGE_BOX}\n{GOOD}\n")
    (tmp_path / "deep.jsonl").write_text(DEEP + "\n")
    (tmp_path / "a.jsonl").write_text(GOOD + "\n")
    (tmp_path / "bom.jsonl").write_bytes(b"\xef\xbb\xbf" + GOOD.encode() + b"\n" + GOOD.encode() + b"\n")
    (tmp_path / "edges.jsonl").write_text('{"num_nodes": 3, "edges": [[0, 1], [1, 2]]}\n' * 3)
    (tmp_path / "nan.jsonl").write_text('{"objects": [{"name": "cat", "box": [NaN, 0, 1, 1]}]}\n')
    return tmp_path


def test_validate_reports_a_huge_integer_and_every_other_line(files, capsys):
    rc = main(["validate", str(files / "huge.jsonl")])
    err = _one_line_error(capsys, rc, 1, "line 2: objects[0].box[0]: must lie in [0, 1], got 1111")
    assert len(err) < 200
    rc = main(["validate", str(files / "huge.jsonl")])
    assert json.loads(capsys.readouterr().out) == {"file": str(files / "huge.jsonl"), "valid": 2, "invalid": 1}


@pytest.mark.parametrize("argv", [["draw", "{f}", "--out", "{d}/png"], ["convert", "{f}", "-o", "{d}/gml"]])
def test_draw_and_convert_report_a_huge_integer(files, capsys, argv):
    argv = [a.format(f=files / "huge.jsonl", d=files) for a in argv]
    _one_line_error(capsys, main(argv), 2, "line 2: objects[0].box[0]: must lie in [0, 1]")


def test_parse_input_nested_too_deep(files, capsys):
    rc = main(["parse", "--backend", "rules", "--input", str(files / "deep.jsonl")])
    _one_line_error(capsys, rc, 2, "deep.jsonl: line 1: invalid JSON (nesting too deep)")


def test_parse_text_that_is_not_utf8(files, capsys):
    rc = main(["parse", "--backend", "rules", "a red \udcff\udcfe cat", "-o", str(files / "x.jsonl")])
    _one_line_error(capsys, rc, 2, "text 1 is not valid UTF-8 (byte 0xff at character 6)")
    assert not (files / "x.jsonl").exists()


def test_convert_onto_itself(files, capsys):
    rc = main(["convert", str(files / "a.jsonl"), "-o", str(files / "a.jsonl")])
    _one_line_error(capsys, rc, 2, "--output")
    assert (files / "a.jsonl").read_text() == GOOD + "\n"


@pytest.mark.parametrize("option, value", [("--dpi", "0"), ("--dpi", "100000"), ("--dpi", "-5"), ("--limit", "-1")])
def test_draw_option_ranges(files, capsys, option, value):
    rc = main(["draw", str(files / "a.jsonl"), "--out", str(files / "png"), option, value])
    _one_line_error(capsys, rc, 2, f"{option} must be")
    assert not (files / "png").exists()


def test_draw_limit_zero_and_one(files, capsys):
    src = files / "two.jsonl"
    src.write_text(GOOD + "\n" + GOOD + "\n")
    assert main(["draw", str(src), "--out", str(files / "png"), "--limit", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["drawn"] == 1


def test_generate_model_that_is_no_folder(files, capsys):
    rc = main(["generate", "a red circle", "--out", str(files / "o"), "--model", "/nonexistent"])
    _one_line_error(capsys, rc, 2, "model '/nonexistent': no such folder")


def test_validate_and_draw_name_an_edge_list_file(files, capsys):
    rc = main(["validate", str(files / "edges.jsonl")])
    _one_line_error(capsys, rc, 2, "an edge-list JSONL file (from sample-graphs), not SceneGraph JSON")
    rc = main(["draw", str(files / "edges.jsonl"), "--out", str(files / "png")])
    _one_line_error(capsys, rc, 2, "an edge-list JSONL file (from sample-graphs), not SceneGraph JSON")


def test_bom_is_accepted(files, capsys):
    assert main(["validate", str(files / "bom.jsonl")]) == 0
    assert json.loads(capsys.readouterr().out)["valid"] == 2


def test_nan_message_is_not_doubled(files, capsys):
    rc = main(["validate", str(files / "nan.jsonl")])
    err = _one_line_error(capsys, rc, 1)
    assert err == "line 1: json: NaN is not valid JSON\n"


def test_an_unexpected_failure_is_one_line_too(files, capsys, monkeypatch):
    import scenegraph_diff.graph.draw as draw_module

    def broken(*args, **kwargs):
        raise ZeroDivisionError("boom\nsecond line")

    monkeypatch.setattr(draw_module, "draw", broken)
    rc = main(["draw", str(files / "a.jsonl"), "--out", str(files / "png")])
    _one_line_error(capsys, rc, 1, "internal error (ZeroDivisionError: boom second line)")


def test_os_errors_are_one_line(files, capsys):
    (files / "blocker").write_text("")
    rc = main(["draw", str(files / "a.jsonl"), "--out", str(files / "blocker" / "png")])
    _one_line_error(capsys, rc, 2, "blocker")


def test_as_a_subprocess_no_traceback(files):
    """The real entry point, with argv bytes that are not UTF-8."""
    cases = [
        [b"parse", b"--backend", b"rules", b"a red \xff\xfe cat", b"-o", str(files / "x.jsonl").encode()],
        [b"validate", str(files / "huge.jsonl").encode()],
        [b"draw", str(files / "a.jsonl").encode(), b"--out", str(files / "png").encode(), b"--dpi", b"0"],
    ]
    for argv in cases:
        p = subprocess.run([sys.executable.encode(), b"-m", b"scenegraph_diff.cli", *argv], capture_output=True)
        assert p.returncode != 0 and b"Traceback" not in p.stderr and len(p.stderr.splitlines()) == 1, p.stderr


def test_valid_input_is_unchanged(files, capsys):
    assert main(["validate", str(files / "a.jsonl")]) == 0
    assert main(["parse", "--backend", "rules", "a cat on a mat", "a dog"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [SceneGraph.from_json(x).triplets() for x in out[1:]] == [[("cat", "on", "mat")], []]


@pytest.mark.parametrize("body", [
    "<graphml><graph",
    '<graphml xmlns="http://graphml.graphdrawing.org/xmlns"><key id="attributes" for="node" attr.name="attributes" '
    'attr.type="string"/><graph edgedefault="directed"><node id="0"><data key="attributes">[[[[[[[[[[[</data></node>'
    "</graph></graphml>",
    '<graphml xmlns="http://graphml.graphdrawing.org/xmlns"><key id="attributes" for="node" attr.name="attributes" '
    'attr.type="string"/><key id="name" for="node" attr.name="name" attr.type="string"/>'
    '<graph edgedefault="directed"><node id="0"><data key="name">cat</data><data key="attributes">5</data></node>'
    "</graph></graphml>",
])
def test_convert_bad_graphml_names_the_file_once(files, capsys, body):
    (files / "bad.graphml").write_text(body)
    rc = main(["convert", str(files / "bad.graphml"), "-o", str(files / "x.jsonl")])
    err = _one_line_error(capsys, rc, 2, f"{files / 'bad.graphml'}: ")
    assert err.count("bad.graphml") == 1


def test_draw_labels_with_dollar_signs_are_plain_text(files, capsys):
    """A valid graph whose labels look like broken mathtext ("$x^{$") made matplotlib raise."""
    g = SceneGraph.from_dict({"text": "costs $5 and $x^{ here", "objects": [{"name": "$x^{$", "attributes": ["$_{$"]},
                                                                       {"name": "dog"}],
                              "relations": [{"subject": 0, "predicate": "$\\sqrt{$", "object": 1}]})
    (files / "dollar.jsonl").write_text(g.to_json() + "\n")
    assert main(["draw", str(files / "dollar.jsonl"), "--out", str(files / "png")]) == 0
    assert (files / "png" / "00000.png").is_file()
