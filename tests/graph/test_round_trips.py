"""Property tests: lossless JSON <-> SceneGraph <-> HeteroData <-> networkx <-> dense on random graphs
(0-200 objects, 0 relations allowed, repeated names, unicode labels)."""

from __future__ import annotations

from hypothesis import given, settings

from scenegraph_diff import SceneGraph
from scenegraph_diff.graph import (
    Vocabulary, collate, from_dense, from_hetero_data, from_networkx, to_dense, to_hetero_data, to_networkx, unbatch,
)
from scenegraph_diff.graph.dense import dense_canonical
from scenegraph_diff.graph.nx import read_graphml, write_graphml

from .strategies import scene_graphs


@settings(max_examples=40)
@given(scene_graphs())
def test_json_round_trip(g):
    assert SceneGraph.from_json(g.to_json()) == g
    assert SceneGraph.from_dict(g.to_dict()) == g


@settings(max_examples=20)
@given(scene_graphs())
def test_hetero_round_trip(g):
    assert from_hetero_data(to_hetero_data(g)) == g


@settings(max_examples=30)
@given(scene_graphs(max_objects=20, max_relations=30), scene_graphs(max_objects=20, max_relations=30))
def test_batch_round_trip(a, b):
    assert unbatch(collate([a, b, a])) == [a, b, a]


@settings(max_examples=20)
@given(scene_graphs())
def test_networkx_round_trip(g):
    assert from_networkx(to_networkx(g)) == g


@settings(max_examples=12)
@given(scene_graphs(max_objects=8, max_relations=10))
def test_graphml_round_trip(tmp_path_factory, g):
    path = tmp_path_factory.mktemp("gml") / "g.graphml"
    write_graphml(g, path)
    assert read_graphml(path) == g


@settings(max_examples=25)
@given(scene_graphs(max_objects=60, max_relations=80))
def test_dense_round_trip(g):
    v = Vocabulary.from_graphs([g])
    (back,) = from_dense(to_dense([g], v), v)
    assert back == dense_canonical(g, v)
    # with every label in the vocabulary the set view is exact: same names, attribute and relation sets
    assert [o.name for o in back.objects] == [o.name for o in g.objects]
    assert [set(o.attributes) for o in back.objects] == [set(o.attributes) for o in g.objects]
    assert set(back.triplets()) == set(g.triplets())


def test_largest_graph_all_forms():
    """The upper end of the range explicitly: 200 objects with repeated and unicode names, 0 relations and many."""
    names = ["cat", "猫", "😺", "cat", "Ünïcode label"]
    objs = [{"name": names[i % 5], "attributes": [names[(i + 1) % 5]] * (i % 3)} for i in range(200)]
    for rels in ([], [{"subject": i, "predicate": names[i % 5], "object": (i * 7 + 1) % 200} for i in range(199)]):
        g = SceneGraph.from_dict({"text": "x", "objects": objs, "relations": rels})
        assert SceneGraph.from_json(g.to_json()) == g
        assert from_hetero_data(to_hetero_data(g)) == g
        assert from_networkx(to_networkx(g)) == g
        assert unbatch(collate([g, g])) == [g, g]
        v = Vocabulary.from_graphs([g])
        assert from_dense(to_dense([g], v), v) == [dense_canonical(g, v)]
