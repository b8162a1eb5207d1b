from __future__ import annotations

import pytest
import torch

from scenegraph_diff.graph import SceneGraph


@pytest.fixture
def toy_hetero():
    """A hand-written non-scene-graph HeteroData: 3 authors, 4 papers, 1 venue."""
    from torch_geometric.data import HeteroData

    g = torch.Generator().manual_seed(0)
    data = HeteroData()
    data["author"].x = torch.randn(3, 5, generator=g)
    data["paper"].x = torch.randn(4, 7, generator=g)
    data["venue"].x = torch.randn(1, 3, generator=g)
    data["author", "writes", "paper"].edge_index = torch.tensor([[0, 0, 1, 2], [0, 1, 2, 3]])
    data["paper", "cites", "paper"].edge_index = torch.tensor([[0, 1, 2], [1, 2, 3]])
    data["paper", "in", "venue"].edge_index = torch.tensor([[0, 1, 2, 3], [0, 0, 0, 0]])
    return data


def cat_on_dog(swap: bool = False) -> SceneGraph:
    s, o = (1, 0) if swap else (0, 1)
    return SceneGraph.from_dict({
        "text": "a cat on a dog",
        "objects": [{"name": "cat"}, {"name": "dog"}],
        "relations": [{"subject": s, "predicate": "on", "object": o}],
    })


def rich_graph() -> SceneGraph:
    return SceneGraph.from_dict({
        "objects": [{"name": "cat", "attributes": ["black"]}, {"name": "dog", "attributes": ["small", "brown"]},
                    {"name": "mat"}, {"name": "ball", "attributes": ["red"]}],
        "relations": [{"subject": 0, "predicate": "on", "object": 1}, {"subject": 1, "predicate": "on", "object": 2},
                      {"subject": 3, "predicate": "near", "object": 0}],
    })


def permuted(graph: SceneGraph, perm: list[int]) -> SceneGraph:
    """Reorder objects: new object i is old object perm[i]; relations are remapped."""
    inv = {old: new for new, old in enumerate(perm)}
    d = graph.to_dict()
    d["objects"] = [d["objects"][p] for p in perm]
    for r in d["relations"]:
        r["subject"], r["object"] = inv[r["subject"]], inv[r["object"]]
    return SceneGraph.from_dict(d)
