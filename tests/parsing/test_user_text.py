"""Issue 22, item 2: what users type, each case once seen parsed wrong.

- negation: the negated part is dropped, as FACTUAL's annotators do ("there is no cat on the mat" gave
  ``cat on mat``);
- "X rel X" keeps two objects (also in ``test_bad_input``; here with "to the left of");
- "a laptop to the right of a cup of coffee": one relation between cup and coffee (not both
  ``cup have coffee`` and ``coffee in cup``) and the laptop related to the cup only;
- rules backend: "a man in a hat kicking a ball" gave ``hat kick ball``; "kicks" was read as a noun;
- "while standing under" gave the predicate ``while stand under``.

Counts (``expand_counts``) and predicate vocabularies (``canonicalize_predicates``) have their own files.
"""

from __future__ import annotations

import pytest

from scenegraph_diff import parse
from scenegraph_diff.parsing import weights_available

BACKENDS = ["rules"] + (["learned"] if weights_available() else [])
needs_weights = pytest.mark.skipif(not weights_available(), reason="no bundled learned-parser weights")


def _names(g):
    return sorted(o.name for o in g.objects)


# ---------------------------------------------------------------------------------------------- negation
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("text, names", [
    ("there is no cat on the mat", ["mat"]),
    ("there isn't a cat on the mat", ["mat"]),
    ("there are no people on the beach", ["beach"]),
    ("a man without a hat", ["man"]),
    ("a red car with no wheels", ["car"]),
    ("a dog and no cat", ["dog"]),
])
def test_negated_object_is_dropped_with_its_relations(backend, text, names):
    g = parse(text, backend=backend)
    assert _names(g) == names and g.relations == ()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("text, names", [
    ("a dog is not on the sofa", ["dog"]),
    ("the cat isn't on the mat", ["cat"]),
    ("the cat is never on the mat", ["cat"]),
])
def test_negated_relation_is_dropped_with_its_target(backend, text, names):
    g = parse(text, backend=backend)
    assert _names(g) == names and g.relations == ()


@pytest.mark.parametrize("backend", BACKENDS)
def test_negation_keeps_what_is_not_negated(backend):
    g = parse("a man not wearing a hat kicks a ball", backend=backend)
    assert "hat" not in _names(g) and "man" in _names(g) and "ball" in _names(g)
    assert all(p != "wear" and "not" not in p.split() for _, p, _ in g.triplets())
    g = parse("a dog on a sofa, not a cat", backend=backend)
    assert ("dog", "on", "sofa") in g.triplets() and "cat" not in _names(g)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("text, triplet", [
    ("a parking lot with no cars and one truck", ("parking lot", "truck")),  # "no" negates the cars only
    ("a cat that is not black sitting on a red chair", ("cat", "chair")),  # "not" is the attribute's
    ("the dog never sleeps on the bed", None),
])
def test_negation_scope(backend, text, triplet):
    pairs = [(s, o) for s, _, o in parse(text, backend=backend).triplets()]
    assert pairs == ([triplet] if triplet else [])


@pytest.mark.parametrize("backend", BACKENDS)
def test_negated_attribute_is_dropped(backend):
    g = parse("a cat that is not black", backend=backend)
    assert [(o.name, o.attributes) for o in g.objects] == [("cat", ())]
    g = parse("a black dog next to a cat that is not black", backend=backend)
    assert ("dog", ("black",)) in [(o.name, o.attributes) for o in g.objects]


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_as_part_of_a_sign_is_not_negation(backend):
    g = parse("a no parking sign on a pole", backend=backend)
    assert [(s.split()[-1], p, o) for s, p, o in g.triplets()] == [("sign", "on", "pole")]


# ---------------------------------------------------------------------------------------------- duplicates
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("text", ["a red circle left of a red circle", "a red circle to the left of a red circle",
                                  "a red cat to the left of a red cat"])
def test_two_objects_with_one_name(backend, text):
    g = parse(text, backend=backend)
    assert [(o.name, o.attributes) for o in g.objects] == [(g.objects[0].name, ("red",))] * 2
    assert len(g.relations) == 1 and g.relations[0].subject != g.relations[0].object


# ---------------------------------------------------------------------------------------------- cup of coffee
@needs_weights
def test_cup_of_coffee_one_relation_per_pair():
    g = parse("a laptop to the right of a cup of coffee", backend="learned")
    trip = g.triplets()
    assert ("laptop", "on the right side of", "cup") in trip
    assert len(trip) == 2 and any(t in trip for t in [("cup", "have", "coffee"), ("coffee", "in", "cup")])


@pytest.mark.parametrize("backend", BACKENDS)
def test_container_of_content(backend):
    g = parse("a laptop to the right of a cup of coffee", backend=backend)
    trip = g.triplets()
    assert ("laptop", "on the right side of", "cup") in trip
    assert ("coffee", "have", "cup") not in trip and not any(o == "coffee" and s == "laptop" for s, _, o in trip)


def test_rules_left_and_right_use_factual_predicates():
    assert parse("a lamp to the left of a bed", backend="rules").triplets() == [("lamp", "at the left of", "bed")]
    assert parse("a lamp to the right of a bed", backend="rules").triplets() == [
        ("lamp", "on the right side of", "bed")]


# ---------------------------------------------------------------------------------------------- rules: hat kick ball
@pytest.mark.parametrize("text, rel", [
    ("a man in a hat kicking a ball", ("man", "kick", "ball")),
    ("a boy in a hat kicks a ball", ("boy", "kick", "ball")),
    ("a woman with an umbrella holds a bag", ("woman", "hold", "bag")),
])
def test_rules_verb_after_a_prepositional_phrase_takes_the_head(text, rel):
    g = parse(text, backend="rules")
    assert rel in g.triplets()
    assert not any(s == "hat" for s, _, _ in g.triplets())
    assert all(len(o.name.split()) == 1 for o in g.objects)  # "hat kicks" is not a noun


# ---------------------------------------------------------------------------------------------- "while"
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("text, rel", [
    ("a man kicks a ball while standing under a tree", ("man", "stand under", "tree")),
    ("a man reading while standing under a tree", ("man", "stand under", "tree")),
])
def test_while_is_not_part_of_a_predicate(backend, text, rel):
    g = parse(text, backend=backend)
    assert rel in g.triplets()
    assert all("while" not in p.split() for _, p, _ in g.triplets())
