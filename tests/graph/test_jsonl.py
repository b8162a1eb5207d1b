"""JSONL streaming: line-local errors, atomic writes, and a fuzzed reader that only raises SceneGraphError."""

from __future__ import annotations

import io
import json
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scenegraph_diff import SceneGraph, SceneGraphError
from scenegraph_diff.graph import iter_jsonl, read_jsonl, write_jsonl

from .strategies import scene_graphs

G1 = SceneGraph.from_triplets([("cat", "on", "mat")], text=None)
G2 = SceneGraph.from_triplets([("dog", "near", "cat")], attributes={"dog": ["brown"]})


def test_write_read_round_trip(tmp_path):
    path = tmp_path / "g.jsonl"
    assert write_jsonl(path, [G1, G2, SceneGraph()]) == 3
    assert list(read_jsonl(path)) == [G1, G2, SceneGraph()]
    # atomic: no temporary files left behind
    assert os.listdir(tmp_path) == ["g.jsonl"]


def test_bad_lines_are_reported_with_line_numbers(tmp_path):
    path = tmp_path / "g.jsonl"
    lines = [G1.to_json(), '{"objects": [{"name": "a"}], "relations": [{"subject": 0, "predicate": "on", "object": 3}]}',
             "", '{"objects": [', G2.to_json()]
    path.write_bytes(("\n".join(lines) + "\n").encode() + b'{"objects": [{"name": "\xff"}]}\n')
    items = list(iter_jsonl(path))
    assert [n for n, _ in items] == [1, 2, 4, 5, 6]
    errors = [str(e) for _, e in items if isinstance(e, SceneGraphError)]
    assert errors[0] == "line 2: relations[0].object: index 3 out of range (1 objects)"
    assert errors[1].startswith("line 4: json: ")
    assert errors[2].startswith("line 6: json: invalid UTF-8")
    seen = []
    assert list(read_jsonl(path, on_error=lambda n, e: seen.append(n))) == [G1, G2]
    assert seen == [2, 4, 6]
    with pytest.raises(SceneGraphError, match="^line 2: relations"):
        list(read_jsonl(path))


def test_read_from_text_and_binary_streams():
    data = G1.to_json() + "\n" + G2.to_json() + "\n"
    assert list(read_jsonl(io.StringIO(data))) == [G1, G2]
    assert list(read_jsonl(io.BytesIO(data.encode()))) == [G1, G2]


def test_truncated_last_line(tmp_path):
    path = tmp_path / "g.jsonl"
    full = G1.to_json() + "\n" + G2.to_json()
    path.write_text(full[:-5])
    errs = []
    assert list(read_jsonl(path, on_error=lambda n, e: errs.append(str(e)))) == [G1]
    assert errs and errs[0].startswith("line 2: json:")


def test_write_to_open_file():
    buf = io.StringIO()
    write_jsonl(buf, [G1])
    assert buf.getvalue() == G1.to_json() + "\n"


# -- fuzzing: whatever the bytes, the reader raises SceneGraphError or returns a valid graph ------------
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        st.sampled_from(["text", "objects", "relations", "name", "attributes", "box", "span", "subject",
                         "predicate", "object", "x"]), children, max_size=5),
    max_leaves=20,
)


def _check_only_scene_graph_errors(data):
    try:
        g = SceneGraph.from_json(data)
    except SceneGraphError:
        return
    # Anything accepted must round-trip exactly.
    assert SceneGraph.from_json(g.to_json()) == g


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_fuzz_random_bytes(data):
    _check_only_scene_graph_errors(data)


@settings(max_examples=300)
@given(json_values)
def test_fuzz_random_json_structures(value):
    _check_only_scene_graph_errors(json.dumps(value))


@settings(max_examples=200)
@given(scene_graphs(max_objects=6, max_relations=6), st.integers(0, 10_000), st.binary(min_size=1, max_size=3))
def test_fuzz_mutated_valid_documents(graph, pos, junk):
    doc = graph.to_json().encode()
    pos %= len(doc) + 1
    _check_only_scene_graph_errors(doc[:pos] + junk + doc[pos:])
    _check_only_scene_graph_errors(doc[:pos])  # truncated
