"""HeteroData / batching / networkx / GraphML / dense: schema, direction, and exact inverses."""

from __future__ import annotations

import pytest
import torch
from torch_geometric.data import Batch

from scenegraph_diff import SceneGraph, SceneGraphError
from scenegraph_diff.graph import (
    EDGE_TYPES, NODE_TYPES, Vocabulary, collate, from_dense, from_hetero_data, from_networkx, to_dense,
    to_hetero_data, to_networkx, unbatch,
)
from scenegraph_diff.graph.dense import dense_canonical
from scenegraph_diff.graph.nx import read_graphml, write_graphml
from scenegraph_diff.text import HashingEmbedder

CAT_ON_DOG = SceneGraph.from_dict({
    "text": "a black cat on a dog",
    "objects": [{"name": "cat", "attributes": ["black"], "span": [8, 11]}, {"name": "dog", "box": [0, 0.5, 0.5, 1]}],
    "relations": [{"subject": 0, "predicate": "on", "object": 1, "span": [12, 14]}],
})
DOG_ON_CAT = SceneGraph.from_triplets([("dog", "on", "cat")], attributes={"cat": ["black"]})


def test_hetero_schema_hand_checked():
    d = to_hetero_data(CAT_ON_DOG, embedder=HashingEmbedder(8), vocab=Vocabulary.from_graphs([CAT_ON_DOG]))
    assert set(d.node_types) == set(NODE_TYPES)
    assert set(d.edge_types) == set(EDGE_TYPES)
    assert d["object"].x.shape == (2, 8) and d["scene"].x.shape == (1, 8)
    assert d["object"].names == ["cat", "dog"] and d["relation"].names == ["on"]
    # subject -> relation -> object
    assert d["object", "subj", "relation"].edge_index.tolist() == [[0], [0]]
    assert d["relation", "obj", "object"].edge_index.tolist() == [[0], [1]]
    assert d["object", "has", "attribute"].edge_index.tolist() == [[0], [0]]
    assert d["object", "in", "scene"].edge_index.tolist() == [[0, 1], [0, 0]]
    assert d["object"].has_box.tolist() == [False, True]
    assert d["object"].span.tolist() == [[8, 11], [-1, -1]]
    assert d["object"].label.tolist() == [1, 2]
    assert from_hetero_data(d) == CAT_ON_DOG


def test_direction_changes_the_hetero_graph():
    a = to_hetero_data(CAT_ON_DOG.without_text())
    b = to_hetero_data(CAT_ON_DOG.swapped())
    assert a["object", "subj", "relation"].edge_index.tolist() != b["object", "subj", "relation"].edge_index.tolist()


def test_collate_equals_pyg_batch_and_unbatches():
    graphs = [CAT_ON_DOG, SceneGraph(), DOG_ON_CAT, CAT_ON_DOG]
    emb = HashingEmbedder(16)
    ours = collate(graphs, embedder=emb)
    ref = Batch.from_data_list([to_hetero_data(g, embedder=emb) for g in graphs])
    assert ours.num_graphs == ref.num_graphs == 4
    for nt in ref.node_types:
        for key in ref[nt].keys():
            a, b = ours[nt][key], ref[nt][key]
            assert torch.equal(a, b) if isinstance(b, torch.Tensor) else a == b, (nt, key)
    for et in ref.edge_types:
        assert torch.equal(ours[et].edge_index, ref[et].edge_index)
    assert ours["scene"].batch.tolist() == [0, 1, 2, 3]
    assert unbatch(ours) == graphs
    assert [from_hetero_data(d) for d in ours.to_data_list()] == graphs


def test_collate_rejects_non_graphs():
    with pytest.raises(SceneGraphError, match=r"graphs\[1\]: expected SceneGraph, got dict"):
        collate([CAT_ON_DOG, {"objects": []}])


def test_networkx_and_graphml(tmp_path):
    g = to_networkx(CAT_ON_DOG)
    assert g.is_multigraph() and g.is_directed()
    assert list(g.edges(data="predicate")) == [(0, 1, "on")]
    assert from_networkx(g) == CAT_ON_DOG
    write_graphml(CAT_ON_DOG, tmp_path / "g.graphml")
    assert read_graphml(tmp_path / "g.graphml") == CAT_ON_DOG


def test_from_networkx_errors():
    import networkx as nx

    g = nx.MultiDiGraph()
    g.add_node(3, name="x")
    with pytest.raises(SceneGraphError, match="node ids must be 0..0"):
        from_networkx(g)
    g = nx.MultiDiGraph()
    g.add_node(0)
    with pytest.raises(SceneGraphError, match=r"nodes\[0\].name: missing"):
        from_networkx(g)


def test_dense_layout():
    v = Vocabulary(objects=["cat", "dog"], attributes=["black"], predicates=["on"])
    d = to_dense([CAT_ON_DOG, SceneGraph()], v, max_nodes=3)
    assert d.X.shape == (2, 3, 3 + 2) and d.E.shape == (2, 3, 3, 2 + 1)
    assert d.node_mask.tolist() == [[True, True, False], [False, False, False]]
    assert d.X[0, 0].tolist() == [0, 1, 0, 0, 1]  # cat + black
    assert d.E[0, 0, 1].tolist() == [0, 0, 1] and d.E[0, 1, 0].tolist() == [1, 0, 0]  # directed
    assert d.E[0, 2].sum() == 0 and d.E[1].sum() == 0  # padding is all zero
    assert from_dense(d, v) == [dense_canonical(CAT_ON_DOG, v), SceneGraph()]
    with pytest.raises(SceneGraphError, match="max_nodes: 1 is smaller than the largest graph"):
        to_dense([CAT_ON_DOG], v, max_nodes=1)
    with pytest.raises(SceneGraphError, match="X: last dim"):
        from_dense((d.X[..., :2], d.E, d.node_mask), v)


def test_in_memory_dataset_collate_and_separate():
    """Every node type carries a tensor, so PyG's InMemoryDataset can store and slice scene graphs."""
    from torch_geometric.data import InMemoryDataset

    graphs = [CAT_ON_DOG, SceneGraph(), DOG_ON_CAT]

    class Graphs(InMemoryDataset):
        def __init__(self):
            super().__init__(None)
            self.data, self.slices = self.collate([to_hetero_data(g) for g in graphs])

    ds = Graphs()
    assert [from_hetero_data(ds[i]) for i in range(len(ds))] == graphs
