"""Hostile input to SceneGraph.from_dict / from_json / the JSONL reader: only SceneGraphError, short messages.

Issue 18: a 400-digit integer in a box raised OverflowError; deep nesting, huge integers and lone surrogates
must all be reported as ``SceneGraphError`` naming the field, in one short line. The seeded fuzz test at the
bottom mutates valid documents 20,000 times (huge numbers and deep nesting included).
"""

from __future__ import annotations

import copy
import io
import json
import os
import random
import stat
import sys

import pytest

from scenegraph_diff import SceneGraph, SceneGraphError
from scenegraph_diff.graph import atomic_write, iter_jsonl, read_jsonl, write_jsonl

GOOD = {
    "text": "a red circle to the left of a blue square",
    "objects": [{"name": "circle", "attributes": ["red"], "box": [0.1, 0.4, 0.3, 0.6], "span": [6, 12]},
                {"name": "square", "attributes": ["blue"]}],
    "relations": [{"subject": 0, "predicate": "left of", "object": 1, "span": [13, 27]}],
}
HUGE = int("9" * 400)
TOO_LONG_FOR_STR = 10 ** 5000  # str() of it raises ValueError (sys.int_info.str_digits_check_threshold)


def _patched(path: tuple, value: object) -> dict:
    d = copy.deepcopy(GOOD)
    node = d
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return d


@pytest.mark.parametrize("path, value, field", [
    (("objects", 0, "box", 0), HUGE, "objects[0].box[0]"),
    (("objects", 0, "box", 2), -HUGE, "objects[0].box[2]"),
    (("objects", 0, "box", 1), TOO_LONG_FOR_STR, "objects[0].box[1]"),
    (("objects", 0, "span", 1), HUGE, "objects[0].span"),
    (("relations", 0, "object"), HUGE, "relations[0].object"),
    (("relations", 0, "subject"), TOO_LONG_FOR_STR, "relations[0].subject"),
    (("objects", 0, "name"), TOO_LONG_FOR_STR, "objects[0].name"),
    (("objects", 0, "attributes", 0), TOO_LONG_FOR_STR, "objects[0].attributes[0]"),
    (("objects", 0, "box"), [TOO_LONG_FOR_STR], "objects[0].box"),
], ids=lambda v: "".join(map(str, v)) if isinstance(v, tuple) else "value" if not isinstance(v, str) else v)
def test_huge_integers_are_scene_graph_errors(path, value, field):
    with pytest.raises(SceneGraphError) as e:
        SceneGraph.from_dict(_patched(path, value))
    assert e.value.field == field
    assert len(str(e.value)) < 200 and "\n" not in str(e.value)


def test_huge_integer_in_a_jsonl_box_leaves_other_lines_alone():
    doc = json.dumps(GOOD)
    bad = json.dumps(_patched(("objects", 0, "box", 0), HUGE))
    items = list(iter_jsonl(io.StringIO(f"{doc}\n{bad}\n{doc}\n")))
    assert [type(x) for _, x in items] == [SceneGraph, SceneGraphError, SceneGraph]
    assert str(items[1][1]).startswith("line 2: objects[0].box[0]: must lie in [0, 1], got 999")


def _nested(depth: int, leaf: object = 0.5) -> object:
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize("depth", [50, 5000, 100_000])
def test_deep_nesting_in_a_dict_is_a_scene_graph_error(depth):
    for path in (("objects", 0, "box"), ("objects", 0, "name"), ("relations", 0, "subject"),
                 ("objects", 0, "attributes")):
        with pytest.raises(SceneGraphError) as e:
            SceneGraph.from_dict(_patched(path, _nested(depth)))
        assert len(str(e.value)) < 200


@pytest.mark.parametrize("depth", [1000, 100_000])
def test_deep_nesting_in_json_is_a_scene_graph_error(depth):
    with pytest.raises(SceneGraphError, match="^json: nesting too deep$"):
        SceneGraph.from_json("[" * depth + "]" * depth)


def test_messages_do_not_repeat_their_prefix():
    with pytest.raises(SceneGraphError) as e:
        SceneGraph.from_json('{"objects": [{"name": "cat", "box": [NaN, 0, 1, 1]}]}')
    assert str(e.value) == "json: NaN is not valid JSON"
    items = list(iter_jsonl(io.StringIO('{"objects": [\n{"x":\n')))
    assert [str(x) for _, x in items] == ["line 1: json: Expecting value at line 1 column 14",
                                          "line 2: json: Expecting value at line 1 column 6"]


def test_utf8_bom_is_accepted():
    doc = json.dumps(GOOD)
    assert SceneGraph.from_json("\ufeff" + doc) == SceneGraph.from_dict(GOOD)
    assert SceneGraph.from_json(b"\xef\xbb\xbf" + doc.encode()) == SceneGraph.from_dict(GOOD)
    data = b"\xef\xbb\xbf" + doc.encode() + b"\n" + doc.encode() + b"\n"
    assert len(list(read_jsonl(io.BytesIO(data)))) == 2


@pytest.mark.parametrize("path", [("text",), ("objects", 0, "name"), ("objects", 1, "attributes", 0),
                                  ("relations", 0, "predicate")])
def test_lone_surrogates_are_rejected(path):
    """A graph must always be writable as UTF-8 (a lone surrogate made write_jsonl raise UnicodeEncodeError)."""
    d = _patched(path, "a red \udcff\udcfe cat")
    with pytest.raises(SceneGraphError, match="lone surrogate U\\+DCFF"):
        SceneGraph.from_dict(d)
    with pytest.raises(SceneGraphError, match="lone surrogate"):
        SceneGraph.from_json(json.dumps(d))


def test_edge_list_records_are_named():
    with pytest.raises(SceneGraphError, match="edge-list record .* sample-graphs, not SceneGraph JSON"):
        SceneGraph.from_json('{"num_nodes": 3, "edges": [[0, 1], [1, 2]]}')


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_write_respects_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        atomic_write(tmp_path / "a.txt", "x")
        write_jsonl(tmp_path / "b.jsonl", [SceneGraph()])
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == mode
    assert stat.S_IMODE((tmp_path / "b.jsonl").stat().st_mode) == mode


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
def test_atomic_write_keeps_the_mode_of_a_file_it_replaces(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("old")
    path.chmod(0o640)
    atomic_write(path, "new")
    assert path.read_text() == "new" and stat.S_IMODE(path.stat().st_mode) == 0o640


# -- seeded fuzzing: 20,000 mutations of valid documents -----------------------------------------------------
_WILD = [None, True, False, 0, -1, 1, 2, 7, 0.5, -0.0, 1.5, 1e308, -1e308, HUGE, -HUGE, TOO_LONG_FOR_STR,
         float("nan"), float("inf"), "", " ", "cat", "\udcff", "\x00", "猫", "[]", "{}"]
_KEYS = ["text", "objects", "relations", "name", "attributes", "box", "span", "subject", "predicate", "object",
         "num_nodes", "edges", "x", 3]


_DEEP = [_nested(900), _nested(3000), _nested(20_000), _nested(40, {"a": 1})]  # shared, never mutated
_DEEP_IDS = {id(v) for v in _DEEP}


def _wild(rng: random.Random) -> object:
    """A hostile value: a constant, a fresh small container, or one of the shared deeply nested lists."""
    r = rng.random()
    if r < 0.7:
        return rng.choice(_WILD)
    if r < 0.8:
        return rng.choice(_DEEP)
    return rng.choice([
        lambda: [], lambda: {}, lambda: [0.1, 0.2, 0.3, 0.4], lambda: [1, 0], lambda: [HUGE, 0, 1, 1],
        lambda: {"name": "x"}, lambda: {"subject": 0, "predicate": "on", "object": 1}, lambda: _nested(10),
    ])()


def _paths(value: object, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if len(prefix) >= 6 or id(value) in _DEEP_IDS:  # never walk down (or mutate) the deep shared values
        return out
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, prefix + (i,))
    return out


def _mutate(rng: random.Random, doc: dict) -> object:
    d = copy.deepcopy(doc)
    for _ in range(rng.randint(1, 3)):
        paths = _paths(d)
        path = rng.choice(paths)
        if not path:
            d = _wild(rng) if rng.random() < 0.1 else d
            continue
        parent = d
        for key in path[:-1]:
            parent = parent[key]
        last = path[-1]
        r = rng.random()
        if r < 0.6:
            parent[last] = _wild(rng)
        elif r < 0.75 and isinstance(parent, dict):
            parent[rng.choice(_KEYS)] = _wild(rng)
        elif r < 0.9:
            del parent[last]
        else:
            parent[last] = _nested(rng.choice([2, 10, 1200]), parent[last])
    return d


def _only_scene_graph_errors(call, arg) -> SceneGraph | None:
    try:
        return call(arg)
    except SceneGraphError as e:
        message = str(e)
        assert "\n" not in message and len(message) < 400, message[:500]
        return None


def _corrupt(rng: random.Random, data: bytes) -> bytes:
    """Byte-level damage: truncation, junk bytes, a 5,000-digit number, a BOM, a doubled line."""
    r = rng.random()
    pos = rng.randint(0, len(data))
    if r < 0.3:
        return data[:pos]
    if r < 0.4:  # longer than int_max_str_digits where a number is (or is not) expected
        at = data.find(b"0.") if rng.random() < 0.7 else pos
        return data[:max(at, 0)] + b"9" * 5000 + data[max(at, 0):]
    if r < 0.7:
        return data[:pos] + bytes(rng.randrange(256) for _ in range(rng.randint(1, 4))) + data[pos:]
    if r < 0.85:
        return b"\xef\xbb\xbf" + data
    return data + b"\r\n" + data


def test_fuzz_20000_mutations_of_valid_documents():
    """20,000 seeded mutations, each through from_dict, from_json and the JSONL reader (with byte damage)."""
    rng = random.Random(18)
    docs = [GOOD, {"objects": [{"name": "cat"}, {"name": "dog", "box": [0, 0, 1, 1]}],
                   "relations": [{"subject": 1, "predicate": "on", "object": 0}]}]
    accepted = 0
    for i in range(20_000):
        d = _mutate(rng, docs[i % 2])
        g = _only_scene_graph_errors(SceneGraph.from_dict, d)
        try:
            data = json.dumps(d, allow_nan=True).encode()
        except (ValueError, RecursionError):  # not serialisable (an integer too long for str(), deep nesting)
            data = json.dumps(docs[i % 2]).encode()
        g2 = _only_scene_graph_errors(SceneGraph.from_json, data)
        if g is not None and b"NaN" not in data and b"Infinity" not in data:
            assert g2 == g  # the JSON text of an accepted dict is accepted, as the same graph
        damaged = _corrupt(rng, data)
        items = list(iter_jsonl(io.BytesIO(data + b"\n" + damaged + b"\n")))
        assert all(isinstance(item, (SceneGraph, SceneGraphError)) for _, item in items)
        assert all("\n" not in str(item) for _, item in items if isinstance(item, SceneGraphError))
        if g is not None:
            accepted += 1
            assert SceneGraph.from_json(g.to_json()) == g
            g.to_json().encode("utf-8")  # always writable
    assert 500 < accepted < 19_000  # the mutations reach both outcomes
