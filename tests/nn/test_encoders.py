from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from scenegraph_diff.graph import SceneGraph
from scenegraph_diff.graph.hetero import collate, to_hetero_data
from scenegraph_diff.nn import SceneGraphEncoder
from scenegraph_diff.text import HashingEmbedder

from .conftest import cat_on_dog, permuted, rich_graph

EMB = HashingEmbedder(16)


def _encoder(conv: str, seed: int = 0, **kw) -> SceneGraphEncoder:
    torch.manual_seed(seed)
    return SceneGraphEncoder(in_channels=16, hidden_channels=32, out_channels=24, conv=conv, **kw).eval()


@pytest.mark.parametrize("conv", ["hgcn", "rhgnn"])
def test_output_shapes(conv):
    enc = _encoder(conv)
    out = enc.encode_graphs([rich_graph(), cat_on_dog(), SceneGraph()], EMB)
    assert out.scene_embedding.shape == (3, 24)
    assert out.node_embeddings["object"].shape == (6, 24)
    assert out.node_embeddings["attribute"].shape == (4, 24)
    assert out.graph_tokens.shape == (3, 7, 24)  # rich graph: 4 objects + 3 relations
    assert out.graph_token_mask.sum(1).tolist() == [7, 3, 0]
    assert out.graph_tokens[2].abs().sum() == 0
    # tokens are the object nodes, then the relation nodes, of each graph
    torch.testing.assert_close(out.graph_tokens[1, :2], out.node_embeddings["object"][4:6])
    torch.testing.assert_close(out.graph_tokens[1, 2], out.node_embeddings["relation"][3])


@pytest.mark.parametrize("conv", ["hgcn", "rhgnn"])
def test_direction_untrained(conv):
    enc = _encoder(conv)
    out = enc.encode_graphs([cat_on_dog(), cat_on_dog(swap=True)], EMB)
    assert (out.scene_embedding[0] - out.scene_embedding[1]).abs().max() > 1e-5


@pytest.mark.parametrize("conv", ["hgcn", "rhgnn"])
def test_permutation_equivariance(conv):
    enc = _encoder(conv, 3)
    g, perm = rich_graph(), [1, 3, 2, 0]
    a = enc.encode_graphs([g], EMB)
    b = enc.encode_graphs([permuted(g, perm)], EMB)
    torch.testing.assert_close(b.node_embeddings["object"], a.node_embeddings["object"][perm], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(b.scene_embedding, a.scene_embedding, atol=1e-5, rtol=1e-5)


def test_single_hetero_data_and_batch_agree():
    enc = _encoder("hgcn")
    one = enc(to_hetero_data(rich_graph(), EMB))
    many = enc(collate([cat_on_dog(), rich_graph()], EMB))
    torch.testing.assert_close(many.scene_embedding[1], one.scene_embedding[0], atol=1e-5, rtol=1e-5)
    assert one.graph_tokens.shape == (1, 7, 24)


def test_max_graph_tokens():
    enc = _encoder("hgcn", max_graph_tokens=5)
    out = enc.encode_graphs([rich_graph()], EMB)
    assert out.graph_tokens.shape == (1, 5, 24) and out.graph_token_mask.all()


@pytest.mark.parametrize("conv", ["hgcn", "rhgnn"])
def test_save_load_round_trip(conv, tmp_path):
    enc = _encoder(conv)
    enc.save_pretrained(tmp_path)
    assert (tmp_path / "diffusion_pytorch_model.safetensors").exists()
    loaded = SceneGraphEncoder.from_pretrained(tmp_path).eval()
    a = enc.encode_graphs([rich_graph(), cat_on_dog()], EMB)
    b = loaded.encode_graphs([rich_graph(), cat_on_dog()], EMB)
    assert torch.equal(a.scene_embedding, b.scene_embedding) and torch.equal(a.graph_tokens, b.graph_tokens)
    assert loaded.config.conv == conv


def test_errors():
    with pytest.raises(ValueError, match="conv must be one of"):
        SceneGraphEncoder(conv="gat")
    with pytest.raises(ValueError, match="divisible"):
        SceneGraphEncoder(hidden_channels=30, heads=4)
    enc = _encoder("hgcn")
    with pytest.raises(ValueError, match="embedder.dim is 8"):
        enc.encode_graphs([cat_on_dog()], HashingEmbedder(8))
    with pytest.raises(ValueError, match="x is missing"):
        enc(collate([cat_on_dog()]))


def test_layer_modules_do_not_import_diffusers_at_top_level():
    """Static check (fast): only encoders.py may import diffusers; nn/__init__ imports it lazily."""
    import ast
    from pathlib import Path

    import scenegraph_diff.nn as nn_pkg

    for name in ("__init__.py", "hgcn.py", "rhgnn.py"):
        tree = ast.parse((Path(nn_pkg.__file__).parent / name).read_text())
        for node in tree.body:  # module level only
            if isinstance(node, ast.Import):
                assert not any(a.name.startswith(("diffusers", "transformers")) for a in node.names), name
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not node.module.startswith(("diffusers", "transformers", "encoders")), name


@pytest.mark.slow
def test_nn_import_does_not_pull_diffusers():
    code = "import sys, scenegraph_diff.nn; assert 'diffusers' not in sys.modules, 'diffusers imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")
def test_cuda():
    enc = _encoder("rhgnn").cuda()
    out = enc.encode_graphs([rich_graph(), cat_on_dog()], EMB)
    assert out.scene_embedding.is_cuda
    torch.testing.assert_close(out.scene_embedding.cpu(), _encoder("rhgnn").encode_graphs(
        [rich_graph(), cat_on_dog()], EMB).scene_embedding, atol=1e-4, rtol=1e-4)


def test_encode_graphs_is_differentiable():
    enc = _encoder("hgcn").train()
    out = enc.encode_graphs([rich_graph()], EMB)
    out.graph_tokens.sum().backward()
    assert enc.lin_in["object"].weight.grad is not None
