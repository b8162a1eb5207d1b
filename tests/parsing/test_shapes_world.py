"""Every shapes-world phrasing of SHAPES.md parses to the canonical graph (exhaustive over colours,
shapes and relation phrasings), with every backend that is available."""

from __future__ import annotations

import itertools

import pytest

from scenegraph_diff.parsing import RuleBasedParser, load_parser, weights_available
from scenegraph_diff.parsing.lexicon import SHAPE_PREDICATES

COLOURS = ["red", "green", "blue", "yellow", "purple", "cyan"]
SHAPES = ["circle", "square", "triangle"]
PHRASES = {  # surface phrasing -> canonical predicate (SHAPES.md "Text")
    "left of": "left of", "to the left of": "left of", "right of": "right of", "to the right of": "right of",
    "above": "above", "over": "above", "below": "below", "under": "below", "beneath": "below",
}
OBJECTS = list(itertools.product(COLOURS, SHAPES))


def _backends():
    out = [RuleBasedParser()]
    if weights_available():
        out.append(load_parser("learned"))
    return out


BACKENDS = _backends()


def _canon(g):
    return (
        sorted((o.name, o.attributes) for o in g.objects),
        sorted((g.objects[r.subject].attributes + (g.objects[r.subject].name,), r.predicate,
                g.objects[r.object].attributes + (g.objects[r.object].name,)) for r in g.relations),
    )


def test_phrase_table_matches_lexicon():
    for surface, canonical in PHRASES.items():
        assert SHAPE_PREDICATES[surface] == canonical


@pytest.mark.parametrize("parser", BACKENDS, ids=lambda p: p.name)
def test_single_objects(parser):
    for (c, s), det in itertools.product(OBJECTS, ["a", "the"]):
        g = parser.parse(f"{det} {c} {s}")
        assert _canon(g) == ([(s, (c,))], []), (c, s, g)
        assert g.text[slice(*g.objects[0].span)] == s


@pytest.mark.parametrize("parser", BACKENDS, ids=lambda p: p.name)
@pytest.mark.parametrize("phrase", sorted(PHRASES))
def test_two_objects_every_pair(parser, phrase):
    pred = PHRASES[phrase]
    texts, expected = [], []
    for (c1, s1), (c2, s2) in itertools.permutations(OBJECTS, 2):
        for verb in ("", "is "):
            texts.append(f"a {c1} {s1} {verb}{phrase} a {c2} {s2}")
            expected.append((sorted([(s1, (c1,)), (s2, (c2,))]), [((c1, s1), pred, (c2, s2))]))
    graphs = parser.parse_batch(texts)
    for t, g, want in zip(texts, graphs, expected):
        assert _canon(g) == want, (t, g)
        r = g.relations[0]
        assert t[slice(*r.span)] == phrase  # the predicate words


@pytest.mark.parametrize("parser", BACKENDS, ids=lambda p: p.name)
def test_three_objects_all_phrasing_pairs(parser):
    # Fixed objects, every pair of phrasings, both sentence shapes of SHAPES.md.
    (c1, s1), (c2, s2), (c3, s3) = ("green", "triangle"), ("yellow", "square"), ("purple", "circle")
    for p1, p2 in itertools.product(sorted(PHRASES), repeat=2):
        cases = {
            f"a {c1} {s1} {p1} a {c2} {s2} and a {c3} {s3} {p2} the {c2} {s2}":
                [((c1, s1), PHRASES[p1], (c2, s2)), ((c3, s3), PHRASES[p2], (c2, s2))],
            f"a {c1} {s1} {p1} a {c2} {s2}. the {c2} {s2} is {p2} a {c3} {s3}.":
                [((c1, s1), PHRASES[p1], (c2, s2)), ((c2, s2), PHRASES[p2], (c3, s3))],
            f"a {c1} {s1} {p1} a {c2} {s2} and {p2} a {c3} {s3}":
                [((c1, s1), PHRASES[p1], (c2, s2)), ((c1, s1), PHRASES[p2], (c3, s3))],
        }
        for t, rels in cases.items():
            g = parser.parse(t)
            assert _canon(g) == (sorted([(s1, (c1,)), (s2, (c2,)), (s3, (c3,))]), sorted(rels)), (t, g)


@pytest.mark.parametrize("parser", BACKENDS, ids=lambda p: p.name)
def test_three_objects_every_triple(parser):
    # Every ordered triple of distinct objects with the canonical phrasing.
    texts, want = [], []
    for a, b, c in itertools.permutations(OBJECTS, 3):
        texts.append(f"a {a[0]} {a[1]} to the left of a {b[0]} {b[1]} and a {c[0]} {c[1]} below the {b[0]} {b[1]}")
        want.append(sorted([(a, "left of", b), (c, "below", b)]))
    for t, g, w in zip(texts, parser.parse_batch(texts), want):
        got = sorted(((g.objects[r.subject].attributes[0], g.objects[r.subject].name), r.predicate,
                      (g.objects[r.object].attributes[0], g.objects[r.object].name)) for r in g.relations)
        assert got == w and g.num_objects == 3, (t, g)


def test_direction_sensitivity():
    p = RuleBasedParser()
    a = p.parse("a red circle above a blue square")
    b = p.parse("a blue square above a red circle")
    assert a.triplets() == [("circle", "above", "square")]
    assert b.triplets() == [("square", "above", "circle")]
