"""SceneGraph model: construction, validation errors naming the field, canonicalisation, JSON."""

from __future__ import annotations

import json

import pytest

from scenegraph_diff import SceneGraph, SceneGraphError
from scenegraph_diff.graph import Relation, SceneObject, canonical_label

GOOD = {
    "text": "a red circle to the left of a blue square",
    "objects": [{"name": "circle", "attributes": ["red"], "box": [0.1, 0.4, 0.3, 0.6], "span": [6, 12]},
                {"name": "square", "attributes": ["blue"]}],
    "relations": [{"subject": 0, "predicate": "left of", "object": 1, "span": [13, 27]}],
}


def test_from_dict_to_dict_round_trip():
    g = SceneGraph.from_dict(GOOD)
    assert g.to_dict() == {**GOOD, "objects": [GOOD["objects"][0], {**GOOD["objects"][1]}]}
    assert SceneGraph.from_json(g.to_json()) == g
    assert g.triplets() == [("circle", "left of", "square")]
    assert g.num_objects == 2 and g.num_relations == 1 and g.num_attributes == 2


def test_direction_matters():
    a = SceneGraph.from_triplets([("cat", "on", "dog")])
    b = SceneGraph.from_triplets([("dog", "on", "cat")])
    assert a != b
    assert a.swapped().triplets() == [("dog", "on", "cat")]
    assert a.swapped().swapped() == a


def test_hashable_and_immutable():
    g = SceneGraph.from_dict(GOOD)
    assert hash(g) == hash(SceneGraph.from_dict(GOOD))
    with pytest.raises(AttributeError):
        g.text = "x"  # type: ignore[misc]


def test_from_triplets_merges_names_and_adds_lone_objects():
    g = SceneGraph.from_triplets([("cat", "on", "mat"), ("dog", "near", "cat")], objects=["lamp"],
                                 attributes={"cat": ["black"]})
    assert [o.name for o in g.objects] == ["cat", "mat", "dog", "lamp"]
    assert g.objects[0].attributes == ("black",)


@pytest.mark.parametrize(
    "patch, field, reason",
    [
        ({"objects": "x"}, "objects", "expected a list"),
        ({"relations": {}}, "relations", "expected a list"),
        ({"text": 3}, "text", "expected a string"),
        ({"color": 1}, "color", "unknown key"),
        ({"objects": [{"name": ""}]}, "objects[0].name", "non-empty"),
        ({"objects": [{"name": "  "}]}, "objects[0].name", "non-empty"),
        ({"objects": [{"name": 3}]}, "objects[0].name", "expected a string"),
        ({"objects": [{}]}, "objects[0].name", "missing"),
        ({"objects": [{"name": "a", "extra": 1}]}, "objects[0].extra", "unknown key"),
        ({"objects": [{"name": "a", "attributes": "red"}]}, "objects[0].attributes", "expected a list"),
        ({"objects": [{"name": "a", "attributes": [""]}]}, "objects[0].attributes[0]", "non-empty"),
        ({"objects": [{"name": "a", "box": [0, 0, 1]}]}, "objects[0].box", "expected [x0, y0, x1, y1]"),
        ({"objects": [{"name": "a", "box": [0.5, 0, 0.2, 1]}]}, "objects[0].box", "x0 < x1"),
        ({"objects": [{"name": "a", "box": [0, 0.5, 1, 0.5]}]}, "objects[0].box", "y0 < y1"),
        ({"objects": [{"name": "a", "box": [0, 0, 1.5, 1]}]}, "objects[0].box[2]", "[0, 1]"),
        ({"objects": [{"name": "a", "box": [0, 0, "1", 1]}]}, "objects[0].box[2]", "expected a number"),
        ({"objects": [{"name": "a", "span": [0, 99]}]}, "objects[0].span", "not within the text"),
        ({"text": None, "objects": [{"name": "a", "span": [0, 1]}]}, "objects[0].span", "text is missing"),
        ({"relations": [{"subject": 0, "predicate": "on", "object": 7}]}, "relations[0].object",
         "index 7 out of range (2 objects)"),
        ({"relations": [{"subject": -1, "predicate": "on", "object": 1}]}, "relations[0].subject", "out of range"),
        ({"relations": [{"subject": True, "predicate": "on", "object": 1}]}, "relations[0].subject", "integer"),
        ({"relations": [{"subject": 0, "predicate": "on", "object": 1.0}]}, "relations[0].object", "integer"),
        ({"relations": [{"subject": 0, "object": 1}]}, "relations[0].predicate", "missing"),
        ({"relations": [{"subject": 0, "predicate": "", "object": 1}]}, "relations[0].predicate", "non-empty"),
        ({"relations": [{"subject": 1, "predicate": "on", "object": 1}]}, "relations[0]", "self-relation"),
        ({"relations": [{"subject": 0, "predicate": "on", "object": 1, "weight": 2}]}, "relations[0].weight",
         "unknown key"),
        ({"relations": ["x"]}, "relations[0]", "expected a JSON object"),
    ],
)
def test_invalid_input_names_the_field(patch, field, reason):
    d = json.loads(json.dumps(GOOD))
    d.update(patch)
    if "objects" in patch and "relations" not in patch:
        d["relations"] = []
    with pytest.raises(SceneGraphError) as info:
        SceneGraph.from_dict(d)
    assert info.value.field == field
    assert reason in info.value.reason
    assert str(info.value).startswith(field + ": ")


@pytest.mark.parametrize("bad", [[], "x", 3, None])
def test_top_level_must_be_object(bad):
    with pytest.raises(SceneGraphError, match="^graph: expected a JSON object"):
        SceneGraph.from_dict(bad)


@pytest.mark.parametrize(
    "text, reason",
    [('{"objects": [', "json"), ("NaN", "NaN is not valid JSON"), ('{"objects": [{"name": "a", "box": [0, 0, Infinity, 1]}]}', "Infinity"),
     ("[" * 100000, "json"), ("", "json")],
)
def test_from_json_errors(text, reason):
    with pytest.raises(SceneGraphError) as info:
        SceneGraph.from_json(text)
    assert info.value.field == "json" or reason in str(info.value)


def test_invalid_utf8_is_a_scene_graph_error():
    with pytest.raises(SceneGraphError, match="invalid UTF-8 at byte 12"):
        SceneGraph.from_json(b'{"objects": \xff]}')


def test_constructor_validates_too():
    with pytest.raises(SceneGraphError, match=r"relations\[0\].object: index 2 out of range \(1 objects\)"):
        SceneGraph((SceneObject("a"),), (Relation(0, "on", 2),))
    with pytest.raises(SceneGraphError, match="name"):
        SceneObject("")
    with pytest.raises(SceneGraphError, match="attributes"):
        SceneObject("a", "red")  # a string is not a list of attributes


def test_canonicalize():
    g = SceneGraph.from_dict({"objects": [{"name": "  Red\tCircle ", "attributes": ["BLUE  sky"]}, {"name": "Ｃat"}],
                              "relations": [{"subject": 0, "predicate": "Left   Of", "object": 1}]})
    c = g.canonicalize()
    assert [o.name for o in c.objects] == ["red circle", "ｃat"]
    assert c.objects[0].attributes == ("blue sky",)
    assert c.relations[0].predicate == "left of"
    assert c.canonicalize() == c
    assert g.objects[0].name == "  Red\tCircle "  # never mutates its input
    assert canonical_label("e\u0301") == "\u00e9"  # NFC


def test_repr_is_short():
    g = SceneGraph.from_triplets([(f"o{i}", "near", f"o{i + 1}") for i in range(20)])
    r = repr(g)
    assert r.startswith("SceneGraph(objects=[o0, o1") and "..." in r and len(r) < 200
