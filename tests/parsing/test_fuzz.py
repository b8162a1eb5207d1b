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
