"""SceneGraphEncoder(reverse_edges=True): messages also flow object -> subject, attribute -> object."""

from __future__ import annotations

import pytest
import torch

from scenegraph_diff.graph import SceneGraph
from scenegraph_diff.graph.hetero import EDGE_TYPES, REVERSE_EDGE_TYPES, with_reverse_edges
from scenegraph_diff.nn import SceneGraphEncoder
from scenegraph_diff.text import HashingEmbedder

EMB = HashingEmbedder(16)


def _graph(obj: str) -> SceneGraph:
    return SceneGraph.from_dict({"objects": [{"name": "cat"}, {"name": obj}],
                                 "relations": [{"subject": 0, "predicate": "on", "object": 1}]})


def _subject_embedding(conv: str, reverse: bool, obj: str) -> torch.Tensor:
    torch.manual_seed(0)
    enc = SceneGraphEncoder(in_channels=16, hidden_channels=32, out_channels=8, conv=conv,
                            reverse_edges=reverse).eval()
    with torch.no_grad():
        return enc.encode_graphs([_graph(obj)], EMB).node_embeddings["object"][0]


def test_reverse_types_are_distinct_and_flip_the_edges():
    assert len(set(REVERSE_EDGE_TYPES) | set(EDGE_TYPES)) == 2 * len(EDGE_TYPES)
    assert ("relation", "rev_subj", "object") in REVERSE_EDGE_TYPES
    ei = {EDGE_TYPES[1]: torch.tensor([[0, 2], [1, 0]])}
    out = with_reverse_edges(ei)
    assert torch.equal(out[REVERSE_EDGE_TYPES[1]], torch.tensor([[1, 0], [0, 2]]))
    assert set(ei) == {EDGE_TYPES[1]}  # input untouched


@pytest.mark.parametrize("conv", ["hgcn", "rhgnn"])
def test_subject_hears_from_its_object_only_with_reverse_edges(conv):
    # Without reverse edges no message reaches a relation's subject: its embedding ignores the object.
    a, b = _subject_embedding(conv, False, "dog"), _subject_embedding(conv, False, "horse")
    assert torch.allclose(a, b, atol=1e-6)
    a, b = _subject_embedding(conv, True, "dog"), _subject_embedding(conv, True, "horse")
    assert (a - b).abs().max() > 1e-4
