"""Resumable streaming readers (scenegraph_diff.data.readers)."""

from __future__ import annotations

import json
import re

import pytest

from scenegraph_diff.data.readers import (
    JSONStreamError,
    chain_records,
    iter_csv_records,
    iter_json_array,
    iter_json_object,
    iter_jsonl_records,
    iter_lines,
    iter_text_records,
)

ITEMS = [{"id": i, "s": "é✓" * (i % 3), "n": [i * 0.5, 10**15 + i]} for i in range(25)]


@pytest.fixture
def array_file(tmp_path):
    p = tmp_path / "a.json"
    p.write_text(json.dumps(ITEMS, indent=1, ensure_ascii=False), encoding="utf-8")
    return p


@pytest.mark.parametrize("chunk_size", [1, 3, 16, 1 << 20])
def test_json_array_streams_and_resumes_anywhere(array_file, chunk_size):
    recs = list(iter_json_array(array_file, chunk_size=chunk_size))
    assert [r.value for r in recs] == ITEMS
    assert [r.index for r in recs] == list(range(len(ITEMS)))
    lines = array_file.read_text(encoding="utf-8").split("\n")
    for r in recs:  # the reported line is where the element starts
        assert lines[r.line - 1].strip() == "{"
    for k in (0, 7, len(ITEMS) - 1):
        rest = list(iter_json_array(array_file, start=recs[k].position, chunk_size=chunk_size))
        assert [r.value for r in rest] == ITEMS[k + 1 :]
        assert [(r.line, r.index) for r in rest] == [(r.line, r.index) for r in recs[k + 1 :]]


def test_json_array_number_across_chunk_boundary(tmp_path):
    p = tmp_path / "n.json"
    p.write_text("[123456789, 2]")
    assert [r.value for r in iter_json_array(p, chunk_size=2)] == [123456789, 2]


def test_json_array_under_key_skips_other_keys(tmp_path):
    p = tmp_path / "coco.json"
    p.write_text(json.dumps({"info": {"x": [1, {"y": "]"}]}, "images": [1, 2], "annotations": [{"a": 1}]}, indent=2))
    assert [r.value for r in iter_json_array(p, key="annotations", chunk_size=4)] == [{"a": 1}]
    assert [r.value for r in iter_json_array(p, key="images")] == [1, 2]
    with pytest.raises(JSONStreamError, match="key 'nope' not found"):
        list(iter_json_array(p, key="nope"))


def test_json_object_members(tmp_path):
    p = tmp_path / "o.json"
    d = {f"k{i}": [i] * i for i in range(6)}
    p.write_text(json.dumps(d, indent=1))
    recs = list(iter_json_object(p, chunk_size=5))
    assert dict(r.value for r in recs) == d
    assert [r.value[0] for r in iter_json_object(p, start=recs[2].position)] == ["k3", "k4", "k5"]


@pytest.mark.parametrize(
    "text,message",
    [
        ('[{"a": 1},\n{"a": 2,},\n{"a": 3}]', "x.json:2: invalid JSON"),
        ("[1, 2,", "x.json:1: unexpected end of file"),
        ("{}", "expected a JSON array"),
        ("", "empty file"),
        ("[1 2]", "expected ',' or ']'"),
    ],
)
def test_json_syntax_errors_name_file_and_line(tmp_path, text, message):
    p = tmp_path / "x.json"
    p.write_text(text)
    with pytest.raises(JSONStreamError, match=message):
        list(iter_json_array(p))


def test_lines_resume_and_bad_utf8(tmp_path):
    p = tmp_path / "t.txt"
    p.write_bytes(b"one\r\ntwo\n\xff\xfe\nfour")
    recs = list(iter_lines(p))
    assert [r.value for r in recs[:2]] == ["one", "two"] and recs[3].value == "four"
    assert isinstance(recs[2].value, UnicodeDecodeError)
    assert [r.value for r in iter_lines(p, start=recs[1].position)][1:] == ["four"]


def test_csv_quoted_newlines_and_resume(tmp_path):
    p = tmp_path / "c.csv"
    p.write_text('a,b\n1,"x\ny"\n2,z\n3\n4,"q"\n', encoding="utf-8")
    recs = list(iter_csv_records(p))
    assert [r.value for r in recs if isinstance(r.value, dict)] == [{"a": "1", "b": "x\ny"}, {"a": "2", "b": "z"}, {"a": "4", "b": "q"}]
    assert [r.line for r in recs] == [2, 4, 5, 6]
    assert isinstance(recs[2].value, ValueError) and "expected 2 fields, got 1" in str(recs[2].value)
    assert [r.value for r in iter_csv_records(p, start=recs[0].position)][0] == {"a": "2", "b": "z"}


def test_jsonl_records(tmp_path):
    p = tmp_path / "j.jsonl"
    p.write_text('{"text": "a"}\n\n{bad\n"b"\n')
    recs = list(iter_jsonl_records(p))
    assert [r.line for r in recs] == [1, 3, 4]
    assert isinstance(recs[1].value, ValueError)


def test_text_records_formats(tmp_path):
    (tmp_path / "t.csv").write_text("id,caption\n1,hello\n")
    (tmp_path / "t.jsonl").write_text('{"text": "hi"}\n{"text": 1}\n"yo"\n')
    assert [r.value for r in iter_text_records(tmp_path / "t.csv")] == ["hello"]
    vals = [r.value for r in iter_text_records(tmp_path / "t.jsonl")]
    assert vals[0] == "hi" and isinstance(vals[1], ValueError) and vals[2] == "yo"
    with pytest.raises(ValueError, match="no text column 'nope'"):
        list(iter_text_records(tmp_path / "t.csv", column="nope"))


def test_chain_records_resume_across_files(tmp_path):
    for name, items in (("a", [1, 2]), ("b", []), ("c", [3])):
        (tmp_path / f"{name}.json").write_text(json.dumps(items))
    openers = [lambda s, n=n: iter_json_array(tmp_path / f"{n}.json", start=s) for n in "abc"]
    recs = list(chain_records(openers))
    assert [r.value for r in recs] == [(0, 1), (0, 2), (2, 3)]
    assert [r.value for r in chain_records(openers, recs[1].position)] == [(2, 3)]


@pytest.mark.parametrize("bad, message", [("[" * 3000 + "]" * 3000, "nesting too deep"),
                                          ("9" * 5000, r"integer too long \(more than 4300 digits\)")])
def test_json_too_deep_or_too_long_is_a_named_error(tmp_path, bad, message):
    """RecursionError / int-conversion ValueError escaped both readers (a preprocess run crashed)."""
    p = tmp_path / "x.json"
    p.write_text(f'[{{"a": 1}},\n{bad}]')
    with pytest.raises(JSONStreamError, match=f"x.json:2: invalid JSON: {message}"):
        list(iter_json_array(p))
    p = tmp_path / "j.jsonl"
    p.write_text(f'{{"text": "a"}}\n{bad}\n"b"\n')
    recs = list(iter_jsonl_records(p))
    assert [r.value for r in recs[::2]] == [{"text": "a"}, "b"]
    assert isinstance(recs[1].value, ValueError) and re.search(f"invalid JSON: {message}", str(recs[1].value))
