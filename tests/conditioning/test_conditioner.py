from __future__ import annotations

import pytest
import torch

from scenegraph_diff.conditioning import GraphConditioner, align_batch
from scenegraph_diff.graph import SceneGraph
from scenegraph_diff.nn import SceneGraphEncoder
from scenegraph_diff.pipelines.testing import tiny_clip_tokenizer
from scenegraph_diff.text import HashingEmbedder

TOK = tiny_clip_tokenizer()
EMB = HashingEmbedder(16)
G1 = SceneGraph.from_dict({"text": "a cat on a dog", "objects": [{"name": "cat"}, {"name": "dog"}],
                           "relations": [{"subject": 0, "predicate": "on", "object": 1}]})
G2 = SceneGraph.from_dict({"text": "a red ball", "objects": [{"name": "ball", "attributes": ["red"]}]})


def _setup(**kw):
    torch.manual_seed(0)
    enc = SceneGraphEncoder(in_channels=16, hidden_channels=32, out_channels=24).eval()
    cond = GraphConditioner(graph_dim=24, embed_dim=20, **kw)
    out = enc.encode_graphs([G1, G2], EMB)
    al = align_batch([G1, G2], TOK, max_length=12)
    pe = torch.randn(2, 12, 20, generator=torch.Generator().manual_seed(1))
    return cond, out, al, pe


def test_untrained_is_bitwise_identity():
    cond, out, al, pe = _setup()
    assert cond.is_identity
    assert torch.equal(cond(pe, out, al, scale=0.6), pe)
    assert torch.equal(cond(pe.repeat_interleave(3, 0), out, al), pe.repeat_interleave(3, 0))


def test_offsets_only_at_eot_and_aligned_tokens():
    cond, out, al, pe = _setup()
    with torch.no_grad():
        cond.gate_eot.fill_(1.0)
        cond.gate_token.fill_(0.5)
    res = cond(pe, out, al)
    changed = (res != pe).any(-1)  # [G, L]
    expected = torch.zeros_like(changed)
    expected[0, [2, 3, 5, 6]] = True  # cat, on, dog, eot
    expected[1, [3, 4]] = True  # ball, eot
    assert torch.equal(changed, expected)
    torch.testing.assert_close(res[0, 6] - pe[0, 6], cond.proj_eot(out.scene_embedding[0]))
    # scale is linear
    torch.testing.assert_close(cond(pe, out, al, scale=0.5) - pe, 0.5 * (res - pe))


def test_repeated_images_are_graph_major():
    cond, out, al, pe = _setup()
    with torch.no_grad():
        cond.gate_eot.fill_(1.0)
    rep = cond(pe.repeat_interleave(2, 0), out, al)
    torch.testing.assert_close(rep[::2], cond(pe, out, al))
    torch.testing.assert_close(rep[1::2], cond(pe, out, al))


def test_append_graph_tokens():
    cond, out, al, pe = _setup(append_graph_tokens=True)
    res = cond(pe, out, al)
    assert res.shape == (2, 12 + 3, 20)
    assert torch.equal(res[:, :12], pe) and res[:, 12:].abs().sum() == 0  # zero gate
    with torch.no_grad():
        cond.gate_append.fill_(1.0)
    res = cond(pe, out, al)
    assert res[0, 12:].abs().sum(-1).gt(0).all() and res[1, 13:].abs().sum() == 0  # graph 2 has 1 token
    assert not cond.is_identity


def test_gradient_reaches_gates_at_init():
    cond, out, al, pe = _setup()
    cond(pe, out, al).pow(2).sum().backward()
    assert cond.gate_eot.grad.abs() > 0 and cond.gate_token.grad.abs() > 0


def test_save_load_round_trip(tmp_path):
    cond, out, al, pe = _setup(append_graph_tokens=True)
    with torch.no_grad():
        for g in (cond.gate_eot, cond.gate_token, cond.gate_append):
            g.fill_(0.7)
    cond.save_pretrained(tmp_path)
    loaded = GraphConditioner.from_pretrained(tmp_path)
    assert torch.equal(loaded(pe, out, al), cond(pe, out, al))


def test_errors():
    cond, out, al, pe = _setup()
    with pytest.raises(ValueError, match=r"expected \[B, L, 20\]"):
        cond(pe[..., :5], out, al)
    with pytest.raises(ValueError, match="not a multiple of the 2 graphs"):
        cond(pe[:1], out, al)
    with pytest.raises(ValueError, match="at least one"):
        GraphConditioner(use_eot=False, use_tokens=False)
