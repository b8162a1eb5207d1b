"""``expand_counts``: a plural object with a count attribute becomes that many objects (issue 22, item 2)."""

from __future__ import annotations

import logging

import pytest

from scenegraph_diff import SceneGraph, parse
from scenegraph_diff.graph import Relation, SceneObject
from scenegraph_diff.parsing import expand_counts
from scenegraph_diff.parsing.lexicon import singular_noun


def _g(objects, relations=(), text=None):
    return SceneGraph(tuple(SceneObject(*o) for o in objects), tuple(Relation(*r) for r in relations), text)


def test_three_red_circles():
    g = expand_counts(parse("three red circles", backend="rules"))
    assert [(o.name, o.attributes) for o in g.objects] == [("circle", ("red",))] * 3
    assert g.relations == ()
    spans = {o.span for o in g.objects}
    assert len(spans) == 1 and g.text[slice(*spans.pop())] == "circles"  # every copy points at the plural


def test_relations_are_copied_to_every_copy():
    g = _g([("circles", ("3", "red")), ("square", ("blue",))], [(0, "left of", 1)])
    out = expand_counts(g)
    assert [o.name for o in out.objects] == ["circle", "circle", "circle", "square"]
    assert [(r.subject, r.predicate, r.object) for r in out.relations] == [(0, "left of", 3), (1, "left of", 3),
                                                                           (2, "left of", 3)]
    # the plural as object, and between two plurals (every pair)
    g = _g([("cat", ()), ("dogs", ("2",)), ("mats", ("2",))], [(0, "chase", 1), (1, "on", 2)])
    out = expand_counts(g)
    assert [o.name for o in out.objects] == ["cat", "dog", "dog", "mat", "mat"]
    assert sorted((r.subject, r.predicate, r.object) for r in out.relations) == [
        (0, "chase", 1), (0, "chase", 2), (1, "on", 3), (1, "on", 4), (2, "on", 3), (2, "on", 4)]


def test_objects_without_a_count_are_unchanged():
    g = _g([("circles", ("red",)), ("cat", ("1",))], [(0, "near", 1)], None)
    out = expand_counts(g)
    assert [(o.name, o.attributes) for o in out.objects] == [("circles", ("red",)), ("cat", ())]
    assert out.relations == g.relations
    plain = _g([("cat", ("black",)), ("mat", ())], [(0, "on", 1)], None)
    assert expand_counts(plain) == plain


def test_zero_removes_the_object_and_its_relations():
    out = expand_counts(_g([("dog", ()), ("cats", ("0",))], [(0, "chase", 1)]))
    assert [o.name for o in out.objects] == ["dog"] and out.relations == ()


def test_keep_plural_names():
    out = expand_counts(_g([("circles", ("2", "red"))]), singular=False)
    assert [(o.name, o.attributes) for o in out.objects] == [("circles", ("red",))] * 2


def test_counts_over_the_cap(caplog):
    g = _g([("birds", ("40",)), ("tree", ())], [(0, "in", 1)])
    with caplog.at_level(logging.WARNING, logger="scenegraph_diff"):
        assert expand_counts(g) == g  # excess="keep": left as one object with its count
    assert "objects[0] 'birds': count 40 exceeds max_count=10; kept as one object" in caplog.text
    clipped = expand_counts(g, max_count=4, excess="clip")
    assert [o.name for o in clipped.objects] == ["bird"] * 4 + ["tree"] and len(clipped.relations) == 4
    with pytest.raises(ValueError, match=r"objects\[0\] 'birds': count 40 exceeds max_count=10"):
        expand_counts(g, excess="raise")
    with pytest.raises(ValueError, match="max_count must be >= 1, got 0"):
        expand_counts(g, max_count=0)
    with pytest.raises(ValueError, match="excess must be one of .* got 'drop'"):
        expand_counts(g, excess="drop")


def test_two_counts_on_one_object_are_left_alone(caplog):
    g = _g([("dogs", ("2", "3"))])
    with caplog.at_level(logging.WARNING, logger="scenegraph_diff"):
        assert expand_counts(g) == g
    assert "objects[0] 'dogs': several counts ['2', '3']" in caplog.text


def test_does_not_mutate_and_type_errors():
    g = _g([("dogs", ("2",))])
    before = g.to_json()
    expand_counts(g)
    assert g.to_json() == before
    with pytest.raises(TypeError, match="graph must be a SceneGraph, got str"):
        expand_counts("two dogs")


@pytest.mark.parametrize("plural, singular", [
    ("circles", "circle"), ("boxes", "box"), ("glasses", "glass"), ("benches", "bench"), ("dishes", "dish"),
    ("men", "man"), ("women", "woman"), ("people", "person"), ("children", "child"), ("feet", "foot"),
    ("puppies", "puppy"), ("cookies", "cookie"), ("leaves", "leaf"), ("knives", "knife"), ("gloves", "glove"),
    ("horses", "horse"), ("buses", "bus"), ("potatoes", "potato"), ("shoes", "shoe"), ("sheep", "sheep"),
    ("grass", "grass"), ("bus", "bus"), ("tennis rackets", "tennis racket"), ("cat", "cat"),
])
def test_singular_noun(plural, singular):
    assert singular_noun(plural) == singular
