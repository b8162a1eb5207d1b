"""Issue 18 on the parsing side: no silent wrong results, and bad input files named by line.

- ``parse_batch`` takes any iterable (an iterator returned ``[]``);
- "X rel X" keeps two objects and the relation (the repeated mention was merged and the relation dropped);
- plural shape nouns ("three red circles") still get the canonical shapes-world predicates;
- text beyond ``MAX_CHARS`` is cut with a warning, not silently;
- ``read_texts``: a BOM is accepted; invalid UTF-8 and JSON nested too deep are errors naming the line.
"""

from __future__ import annotations

import json
import logging

import pytest

from scenegraph_diff import SceneGraphError, parse, parse_batch
from scenegraph_diff.parsing import RuleBasedParser, weights_available
from scenegraph_diff.parsing.io import read_texts
from scenegraph_diff.parsing.tokenize import MAX_CHARS

BACKENDS = ["rules"] + (["learned"] if weights_available() else [])
TEXTS = ["a cat on a mat", "", "a red circle above a blue square"]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("make", [iter, lambda xs: (x for x in xs), tuple], ids=["iterator", "generator", "tuple"])
def test_parse_batch_takes_any_iterable(backend, make):
    expected = [parse(t, backend=backend) for t in TEXTS]
    assert parse_batch(make(TEXTS), backend=backend) == expected
    assert parse_batch(make(TEXTS), backend=backend, progress=True) == expected


def test_parse_batch_still_checks_items_of_an_iterator():
    with pytest.raises(TypeError, match=r"texts\[1\] must be a str"):
        parse_batch(iter(["a cat", 3]), backend="rules")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("text, triplets", [
    ("a red circle left of a red circle", [("circle", "left of", "circle")]),
    ("a blue square above a blue square", [("square", "above", "square")]),
    ("a dog next to a dog", [("dog", "next to", "dog")]),
])
def test_x_rel_x_keeps_two_objects_and_the_relation(backend, text, triplets):
    g = parse(text, backend=backend)
    assert g.num_objects == 2 and g.triplets() == triplets
    assert g.relations[0].subject != g.relations[0].object
    assert [text[slice(*o.span)] for o in g.objects] == [triplets[0][0], triplets[0][2]]


def test_repeated_definite_mentions_are_still_one_object():
    g = RuleBasedParser().parse("a green triangle above a yellow square and a purple circle below the yellow square")
    assert sorted(o.name for o in g.objects) == ["circle", "square", "triangle"]
    assert sorted(g.triplets()) == [("circle", "below", "square"), ("triangle", "above", "square")]


@pytest.mark.parametrize("backend", BACKENDS)
def test_plural_shapes_keep_counts_and_canonical_predicates(backend):
    g = parse("three red circles to the left of a blue square", backend=backend)
    assert [(o.name, o.attributes) for o in g.objects] == [("circles", ("3", "red")), ("square", ("blue",))]
    assert g.triplets() == [("circles", "left of", "square")]


def test_text_beyond_max_chars_is_cut_with_a_warning(caplog):
    long_text = "a cat on a mat. " * (MAX_CHARS // 16 + 10)
    with caplog.at_level(logging.WARNING, logger="scenegraph_diff"):
        g = parse(long_text, backend="rules")
    assert g.text == long_text
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [f"text of {len(long_text)} characters: only its first {MAX_CHARS} are parsed (MAX_CHARS)"]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="scenegraph_diff"):
        parse("a cat on a mat", backend="rules")
    assert not caplog.records


@pytest.mark.parametrize("backend", BACKENDS)
def test_text_that_is_not_unicode_is_a_scene_graph_error(backend):
    with pytest.raises(SceneGraphError, match=r"lone surrogate U\+DCFF at offset 6"):
        parse("a red \udcff\udcfe cat", backend=backend)
    with pytest.raises(SceneGraphError, match=r"^texts\[1\]: contains a lone surrogate"):
        parse_batch(["a cat", "a red \udcff cat"], backend=backend)


@pytest.mark.parametrize("suffix, body", [
    (".txt", "a cat\na dog\n"),
    (".jsonl", '{"text": "a cat"}\n"a dog"\n'),
    (".csv", "caption\na cat\na dog\n"),
])
def test_read_texts_accepts_a_bom(tmp_path, suffix, body):
    path = tmp_path / f"in{suffix}"
    path.write_bytes(b"\xef\xbb\xbf" + body.encode())
    assert read_texts(path) == ["a cat", "a dog"]


@pytest.mark.parametrize("suffix", [".txt", ".jsonl", ".csv"])
def test_read_texts_names_the_line_of_invalid_utf8(tmp_path, suffix):
    path = tmp_path / f"in{suffix}"
    lines = {".txt": [b"a cat", b"a \xff dog"], ".jsonl": [b'"a cat"', b'"a \xff dog"'],
             ".csv": [b"text", b"a cat", b"a \xff dog"]}[suffix]
    path.write_bytes(b"\n".join(lines) + b"\n")
    with pytest.raises(ValueError, match=rf"in{suffix}: line {len(lines)}: invalid UTF-8 \(byte 0xff\)"):
        read_texts(path)


def test_read_texts_deep_json_is_an_error_naming_the_line(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text('"a cat"\n' + "[" * 1000 + "]" * 1000 + "\n")
    with pytest.raises(ValueError, match=r"in.jsonl: line 2: invalid JSON \(nesting too deep\)$"):
        read_texts(path)
    path.write_text('{"text": "a cat"}\n{"text": "a dog", "score": NaN}\n{"text": ' + "9" * 5000 + "}\n")
    with pytest.raises(ValueError, match=r"line 3: invalid JSON \(integer too long \(more than 4300 digits\)\)$"):
        read_texts(path)
    path.write_text('{"text": "a cat"}\n{"text": "a dog", "score": NaN}\n')  # Python's json accepts NaN: so do we
    assert read_texts(path) == ["a cat", "a dog"]


def test_read_texts_jsonl_with_a_deep_text_value(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps({"text": [[["a"]]]}) + "\n")
    with pytest.raises(ValueError, match=r"line 1: expected \{\"text\": str\} or a JSON string"):
        read_texts(path)

