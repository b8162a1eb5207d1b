"""Behaviour of the rule-based backend and the public parse API."""

from __future__ import annotations

import pytest

import scenegraph_diff
from scenegraph_diff.parsing import RuleBasedParser, load_parser, parse_batch
from scenegraph_diff.parsing.base import Parser
from scenegraph_diff.parsing.tokenize import tokenize


@pytest.fixture(scope="module")
def rules():
    return RuleBasedParser()


def _rels(g):
    return sorted(g.triplets())


def _attrs(g):
    return {o.name: sorted(o.attributes) for o in g.objects}


def test_protocol():
    assert isinstance(RuleBasedParser(), Parser)
    assert isinstance(load_parser("rules"), RuleBasedParser)
    with pytest.raises(ValueError, match="backend must be one of"):
        load_parser("spacy")


def test_issue_example(rules):
    t = "a black cat sitting on a red sofa next to two lamps"
    g = rules.parse(t)
    assert _attrs(g) == {"cat": ["black"], "sofa": ["red"], "lamps": ["2"]}
    assert ("cat", "sit on", "sofa") in g.triplets()
    assert len(g.relations) == 2
    assert t[slice(*g.relations[0].span)] == "sitting on"
    assert [t[slice(*o.span)] for o in g.objects] == ["cat", "sofa", "lamps"]


@pytest.mark.parametrize(
    "text, rels",
    [
        ("a cat and a dog on a sofa", [("cat", "on", "sofa"), ("dog", "on", "sofa")]),
        ("man riding a horse", [("man", "ride", "horse")]),
        ("mirror leaning against the wall", [("mirror", "lean against", "wall")]),
        ("the fire hydrant is next to the sidewalk", [("fire hydrant", "next to", "sidewalk")]),
        ("a man with an umbrella", [("man", "have", "umbrella")]),
        ("the man has a hat", [("man", "have", "hat")]),
        ("leg of the man", [("man", "have", "leg")]),
        ("the man 's hat", [("man", "have", "hat")]),
        ("window surrounded by dark curtains", [("curtains", "surround", "window")]),
        ("the ball was kicked by the boy", [("boy", "kick", "ball")]),
        ("a dog on top of a car", [("dog", "on top of", "car")]),
        ("a lamp in front of a wall", [("lamp", "in front of", "wall")]),
        ("a man who is holding an umbrella", [("man", "hold", "umbrella")]),
        ("the sofa the man is sitting on .", [("man", "sit on", "sofa")]),
    ],
)
def test_relations(rules, text, rels):
    assert _rels(rules.parse(text)) == sorted(rels)


@pytest.mark.parametrize(
    "text, attrs",
    [
        ("there are two plants", {"plants": ["2"]}),
        ("the t-shirt is red", {"t-shirt": ["red"]}),
        ("a large wooden table", {"table": ["large", "wooden"]}),
        ("three small brown dogs", {"dogs": ["3", "brown", "small"]}),
    ],
)
def test_attributes(rules, text, attrs):
    assert _attrs(rules.parse(text)) == attrs


def test_repeated_mentions_one_node(rules):
    g = rules.parse("A red ball is on a table. The red ball is small. The table is next to a chair.")
    names = [o.name for o in g.objects]
    assert names.count("ball") == 1 and names.count("table") == 1
    assert sorted(g.objects[names.index("ball")].attributes) == ["red", "small"]
    assert _rels(g) == [("ball", "on", "table"), ("table", "next to", "chair")]


def test_spans_point_at_words(rules):
    t = "Two  DOGS\tunder a wooden bench."
    g = rules.parse(t)
    assert g.text == t
    assert [t[slice(*o.span)] for o in g.objects] == ["DOGS", "bench"]
    assert t[slice(*g.relations[0].span)] == "under"
    assert _attrs(g) == {"dogs": ["2"], "bench": ["wooden"]}


@pytest.mark.parametrize("text", ["", " ", "\n\t ", "...", "!!! ??"])
def test_empty(rules, text):
    g = rules.parse(text)
    assert g.is_empty() and g.relations == () and g.text == text


def test_deterministic_and_order_preserving(rules):
    texts = ["a cat on a mat", "", "two dogs", "a red circle above a blue square"] * 3
    a = rules.parse_batch(texts)
    assert a == [rules.parse(t) for t in texts]
    assert a == rules.parse_batch(texts)


def test_top_level_api():
    g = scenegraph_diff.parse("a red circle to the left of a blue square", backend="rules")
    assert g.triplets() == [("circle", "left of", "square")]
    out = parse_batch(["a cat", "a dog"], backend="rules")
    assert [o.name for g in out for o in g.objects] == ["cat", "dog"]
    with pytest.raises(TypeError, match="texts must be a sequence"):
        parse_batch("a cat")
    with pytest.raises(TypeError, match=r"texts\[1\] must be a str"):
        parse_batch(["a cat", 3])
    with pytest.raises(TypeError, match="text must be a str"):
        scenegraph_diff.parse(None)
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        parse_batch(["a"], batch_size=0)


def test_tokenizer_offsets():
    t = "The man's red-brick house, 猫 & 🐱!"
    toks = tokenize(t)
    assert all(t[x.start:x.end] == x.text for x in toks)
    assert [x.text for x in toks][:5] == ["The", "man", "'s", "red-brick", "house"]


def test_long_input_bounded(rules):
    import time

    t = "a cat on a mat and " * 600  # ~11,000 characters
    start = time.perf_counter()
    g = rules.parse(t)
    assert time.perf_counter() - start < 5.0
    assert g.num_objects >= 2
