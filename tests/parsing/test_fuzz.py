"""Robustness: arbitrary text never raises, always yields a valid graph with valid spans."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scenegraph_diff.graph import SceneGraph
from scenegraph_diff.parsing import RuleBasedParser, load_parser, weights_available

PARSERS = [RuleBasedParser()] + ([load_parser("learned")] if weights_available() else [])

WORDS = st.sampled_from(
    ["a", "the", "red", "cat", "on", "of", "with", "and", ",", ".", "is", "sitting", "two", "'s", "by", "<b>", "</b>",
     "&amp;", "猫", "🐱", "\x00", "\u200b", "\t", "\n", "left", "to", "which", "there", "are", "surrounded"]
)
TEXTS = st.one_of(st.text(max_size=200), st.lists(WORDS, max_size=40).map(" ".join))


def _check(parser, text):
    g = parser.parse(text)
    assert isinstance(g, SceneGraph) and g.text == text
    assert SceneGraph.from_json(g.to_json()) == g  # valid JSON v1, spans inside the text
    if not text.strip():
        assert g.is_empty()


@pytest.mark.parametrize("parser", PARSERS, ids=lambda p: p.name)
@settings(max_examples=500)
@given(text=TEXTS)
def test_fuzz_500(parser, text):
    _check(parser, text)


@pytest.mark.slow
@pytest.mark.parametrize("parser", PARSERS, ids=lambda p: p.name)
@settings(max_examples=10_000)
@given(text=TEXTS)
def test_fuzz_10000(parser, text):
    _check(parser, text)


_VOCAB = ["a", "the", "red", "blue", "cat", "circle", "circles", "square", "on", "of", "with", "and", ",", ".", "is",
          "sitting", "two", "three", "'s", "by", "left", "right", "to", "above", "which", "there", "are", "<b>",
          "&amp;", "猫", "🐱", "\x00", "\u200b", "\u2028", "\ufeff", "\t", "\n", "\r\n", "-", "--", "'", "’", "s'",
          "1e999", "9" * 400, "[" * 50, "]]]", '{"text": 1}', "NaN", "é", "e\u0301", "ǅ", "\U0001f600" * 3]


def _random_text(rng) -> str:
    kind = rng.random()
    if kind < 0.6:  # word soup from a vocabulary that hits every parser rule
        return " ".join(rng.choice(_VOCAB) for _ in range(rng.randint(0, 30)))
    if kind < 0.996:  # arbitrary code points, surrogates excluded (no graph can hold those)
        chars = []
        for _ in range(rng.randint(0, 60)):
            c = rng.choice([rng.randint(0, 0x7F), rng.randint(0, 0x2FFF), rng.randint(0xE000, 0x10FFFF)])
            chars.append(chr(c))
        return "".join(chars)
    # a few long inputs, some beyond MAX_CHARS (the learned parser takes ~0.1 s per 1,000 caption words)
    return rng.choice(["a red circle ", "a cat on a mat. ", "[", "x"]) * rng.choice([50, 200, 2000])


@pytest.mark.parametrize("parser", PARSERS, ids=lambda p: p.name)
def test_fuzz_5000_seeded_texts(parser):
    """5,000 seeded random texts (word soup, arbitrary Unicode, long runs): a valid graph every time."""
    import random

    rng = random.Random(18)
    texts = [_random_text(rng) for _ in range(5000)]
    graphs = parser.parse_batch(texts)
    assert len(graphs) == len(texts)
    for text, g in zip(texts, graphs):
        assert isinstance(g, SceneGraph) and g.text == text
        assert SceneGraph.from_json(g.to_json()) == g  # valid JSON v1, spans inside the text
        g.to_json().encode("utf-8")
    for text in texts[:500]:  # one at a time agrees with the batch
        assert parser.parse(text) == graphs[texts.index(text)]
