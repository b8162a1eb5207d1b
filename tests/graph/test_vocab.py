from __future__ import annotations

import pytest

from scenegraph_diff import SceneGraph, SceneGraphError
from scenegraph_diff.graph import Vocabulary


def corpus():
    return [SceneGraph.from_triplets([("cat", "on", "mat")], attributes={"cat": ["black"]}),
            SceneGraph.from_triplets([("cat", "near", "dog")]),
            SceneGraph.from_triplets([("dog", "on", "sofa")], attributes={"sofa": ["red"]})]


def test_build_with_min_count_and_unknown():
    v = Vocabulary.from_graphs(corpus(), min_count=2)
    assert v.labels("object") == ["<unk>", "cat", "dog"]  # by count, then alphabetically
    assert v.labels("predicate") == ["<unk>", "on"]
    assert v.labels("attribute") == ["<unk>"]
    assert v.index("object", "mat") == 0 and v.index("object", "dog") == 2
    assert v.indices("predicate", ["on", "near"]) == [1, 0]
    assert ("object", "cat") in v and ("object", "mat") not in v


def test_save_load_round_trip(tmp_path):
    v = Vocabulary.from_graphs(corpus())
    v.save(tmp_path / "vocab.json")
    assert Vocabulary.load(tmp_path / "vocab.json") == v
    assert repr(v) == "Vocabulary(objects=5, attributes=3, predicates=3)"


def test_errors():
    with pytest.raises(SceneGraphError, match="duplicate label 'a'"):
        Vocabulary(objects=["a", "a"])
    with pytest.raises(ValueError, match="kind must be one of"):
        Vocabulary().index("verb", "x")
    with pytest.raises(IndexError, match="object id 5 out of range"):
        Vocabulary().label("object", 5)
    with pytest.raises(ValueError, match="min_count must be >= 1, got 0"):
        Vocabulary.from_graphs([], min_count=0)
    with pytest.raises(SceneGraphError, match="unknown key"):
        Vocabulary.from_dict({"verbs": []})
