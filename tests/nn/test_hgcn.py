from __future__ import annotations

import pytest
import torch

from scenegraph_diff.graph.hetero import METADATA, collate
from scenegraph_diff.nn import HGCNConv
from scenegraph_diff.text import HashingEmbedder

from .conftest import cat_on_dog, permuted, rich_graph

EMB = HashingEmbedder(16)


def _two_layers(seed: int = 0, **kw):
    torch.manual_seed(seed)
    return HGCNConv(16, 8, METADATA, heads=2, **kw), HGCNConv(16, 8, METADATA, heads=2, **kw)


def _run(convs, batch):
    h = batch.x_dict
    for i, conv in enumerate(convs):
        h = conv(h, batch.edge_index_dict)
        if i < len(convs) - 1:
            h = {k: v.relu() for k, v in h.items()}
    return h


def test_shapes_and_repr(toy_hetero):
    conv = HGCNConv(-1, 4, toy_hetero.metadata(), heads=3)
    out = conv(toy_hetero.x_dict, toy_hetero.edge_index_dict)
    assert {k: tuple(v.shape) for k, v in out.items()} == {"author": (3, 12), "paper": (4, 12), "venue": (1, 12)}
    assert repr(conv) == "HGCNConv(-1, 4, heads=3, num_edge_types=3)"
    assert repr(HGCNConv(16, 8, METADATA, heads=2)) == "HGCNConv(16, 8, heads=2, num_edge_types=6)"
    conv = HGCNConv({"author": 5, "paper": 7, "venue": 3}, 4, toy_hetero.metadata(), heads=3, concat=False)
    assert repr(conv).startswith("HGCNConv(-1, 4,")
    out = conv(toy_hetero.x_dict, toy_hetero.edge_index_dict)
    assert out["paper"].shape == (4, 4)


def test_equals_manual_gat_sum(toy_hetero):
    """One edge type, one head, no root: the output is a GAT over that edge type, computed by hand."""
    et = ("author", "writes", "paper")
    meta = (["author", "paper"], [et])
    torch.manual_seed(0)
    conv = HGCNConv({"author": 5, "paper": 7}, 3, meta, root_weight=False, bias=False)
    x = {"author": toy_hetero["author"].x, "paper": toy_hetero["paper"].x}
    # Paper 0 has a second author to make the softmax non-trivial.
    ei = torch.tensor([[0, 1, 1, 2], [0, 0, 2, 3]])
    out = conv(x, {et: ei})["paper"]
    w = conv.lin_src["author"].weight  # [3, 5]
    z = x["author"] @ w.t()  # [3, 3]
    a_s = z @ conv.att_src[0, 0]
    a_d = x["paper"] @ conv.lin_dst["paper"].weight.t()  # [4, 1]
    e = torch.nn.functional.leaky_relu(a_s[[0, 1]] + a_d[0, 0], 0.2).softmax(0)
    torch.testing.assert_close(out[0], e[0] * z[0] + e[1] * z[1])
    torch.testing.assert_close(out[2], z[1])
    torch.testing.assert_close(out[1], torch.zeros(3))  # no incoming edge, no root, no bias


def test_missing_edge_type_and_empty_types(toy_hetero):
    conv = HGCNConv(-1, 4, toy_hetero.metadata())
    ei = dict(toy_hetero.edge_index_dict)
    del ei[("paper", "cites", "paper")]
    out = conv(toy_hetero.x_dict, ei)
    assert out["paper"].shape == (4, 4)
    batch = collate([cat_on_dog()], EMB)  # no attributes at all
    conv = HGCNConv(16, 4, METADATA)
    out = conv(batch.x_dict, batch.edge_index_dict)
    assert out["attribute"].shape == (0, 4)


def test_direction_changes_scene_embedding():
    convs = _two_layers()
    a = _run(convs, collate([cat_on_dog()], EMB))["scene"]
    b = _run(convs, collate([cat_on_dog(swap=True)], EMB))["scene"]
    assert (a - b).abs().max() > 1e-4


def test_permutation_equivariance():
    convs = _two_layers(1)
    g = rich_graph()
    perm = [2, 0, 3, 1]
    out = _run(convs, collate([g], EMB))
    out_p = _run(convs, collate([permuted(g, perm)], EMB))
    torch.testing.assert_close(out_p["object"], out["object"][perm], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out_p["scene"], out["scene"], atol=1e-5, rtol=1e-5)


def test_batching_is_independent():
    convs = _two_layers(2)
    g1, g2 = rich_graph(), cat_on_dog()
    both = _run(convs, collate([g1, g2], EMB))["scene"]
    torch.testing.assert_close(both[0], _run(convs, collate([g1], EMB))["scene"][0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(both[1], _run(convs, collate([g2], EMB))["scene"][0], atol=1e-5, rtol=1e-5)


def test_reset_parameters_and_grad(toy_hetero):
    conv = HGCNConv(-1, 4, toy_hetero.metadata(), heads=2)
    out = conv(toy_hetero.x_dict, toy_hetero.edge_index_dict)
    sum(v.sum() for v in out.values()).backward()
    assert conv.att_src.grad is not None and conv.att_src.grad.abs().sum() > 0
    before = conv.att_src.detach().clone()
    conv.reset_parameters()
    assert not torch.equal(before, conv.att_src)


@pytest.mark.parametrize("kwargs,match", [
    (dict(out_channels=0), "out_channels"),
    (dict(heads=0), "heads"),
    (dict(dropout=1.0), "dropout"),
])
def test_bad_arguments(kwargs, match):
    args = dict(in_channels=4, out_channels=4, metadata=METADATA)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        HGCNConv(**args)


def test_bad_metadata_and_unknown_edge_type(toy_hetero):
    with pytest.raises(ValueError, match="does not connect"):
        HGCNConv(4, 4, (["a"], [("a", "to", "b")]))
    conv = HGCNConv(-1, 4, (["author", "paper", "venue"], [("author", "writes", "paper")]))
    with pytest.raises(KeyError, match="cites"):
        conv(toy_hetero.x_dict, toy_hetero.edge_index_dict)


@pytest.mark.parametrize("backend", ["eager", pytest.param("inductor", marks=pytest.mark.slow)])
def test_compile_fullgraph(backend):
    """``fullgraph=True`` fails on any graph break; ``eager`` checks tracing only (fast), inductor codegen too."""
    torch._dynamo.reset()
    conv = HGCNConv(16, 4, METADATA, heads=2).eval()
    batch = collate([rich_graph(), cat_on_dog()], EMB)
    compiled = torch.compile(conv, fullgraph=True, dynamic=False, backend=backend)
    expected = conv(batch.x_dict, batch.edge_index_dict)
    got = compiled(batch.x_dict, batch.edge_index_dict)
    for k in expected:
        torch.testing.assert_close(got[k], expected[k], atol=1e-5, rtol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")
def test_cuda_matches_cpu():
    conv = HGCNConv(16, 4, METADATA, heads=2).eval()
    batch = collate([rich_graph(), cat_on_dog()], EMB)
    cpu = conv(batch.x_dict, batch.edge_index_dict)
    gpu = conv.cuda()(batch.cuda().x_dict, batch.cuda().edge_index_dict)
    for k in cpu:
        torch.testing.assert_close(gpu[k].cpu(), cpu[k], atol=1e-4, rtol=1e-4)
