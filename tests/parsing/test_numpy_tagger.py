"""Torch-free inference of the learned parser: NumpyTagger must compute what SceneGraphTagger computes."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from scenegraph_diff.parsing import learned, weights_available
from scenegraph_diff.parsing.learned import Featurizer, LearnedParser, NumpyTagger, TaggerConfig, Vocab, _prefix
from scenegraph_diff.parsing.model import SceneGraphTagger
from scenegraph_diff.parsing.model import _prefix as torch_prefix

WORDS = ["<pad>", "<unk>", "a", "cat", "on", "dog", "red", "sofa", "sitting", "the", "next", "to"]
TEXTS = [["a", "cat", "on", "a", "dog"], ["cat"], ["the", "red", "sofa", "next", "to", "a", "zebra", "."],
         ["dog", "sitting", "on", "sofa"], ["a", "cat"]]


def _pair() -> tuple[SceneGraphTagger, NumpyTagger, Featurizer]:
    torch.manual_seed(0)
    cfg = TaggerConfig(num_words=len(WORDS), num_predicates=7, word_dim=12, char_buckets=257, char_dim=6,
                       hidden=10, layers=2, mention_dim=9, pair_hidden=11)
    model = SceneGraphTagger(cfg).eval()
    with torch.no_grad():  # padding row non-zero too: padding must not leak into real states
        model.word.weight.normal_()
    return model, NumpyTagger.from_module(model), Featurizer(Vocab(words=WORDS, predicates=["none"]), 257)


def test_encode_and_heads_match_torch():
    model, net, feat = _pair()
    arrays = feat.arrays(TEXTS)
    with torch.no_grad():
        h_t = model.encode(*(torch.from_numpy(a) for a in arrays))
        h_n = net.encode(*arrays)
        np.testing.assert_allclose(h_n, h_t.numpy(), atol=1e-5)
        assert np.all(h_n[1, 1:] == 0)  # padding
        np.testing.assert_allclose(net.tag_logits(h_n), model.tagger(h_t).numpy(), atol=1e-5)
        np.testing.assert_allclose(_prefix(h_n), torch_prefix(h_t).numpy(), atol=1e-5)
        b, s, e = np.array([0, 0, 2, 3]), np.array([1, 4, 1, 0]), np.array([2, 5, 3, 1])
        span_t = model.span_states(h_t, torch_prefix(h_t), *(torch.from_numpy(x) for x in (b, s, e)))
        span_n = net.span_states(h_n, _prefix(h_n), b, s, e)
        np.testing.assert_allclose(span_n, span_t.numpy(), atol=1e-5)
        m_t, m_n = model.mention(span_t), net.mention(span_n)
        np.testing.assert_allclose(m_n, m_t.numpy(), atol=1e-5)
        q_t, q_n = model.attr_query(span_t), net.attr_query(span_n)
        np.testing.assert_allclose(net.attr_scores(q_n, m_n[None].repeat(4, 0)),
                                   model.attr_scores(q_t, m_t.unsqueeze(0).expand(4, -1, -1)).numpy(), atol=1e-5)
        i, j = torch.tensor([0, 1]), torch.tensor([1, 0])
        pl_t = model.pair_logits(h_t, torch_prefix(h_t), torch.tensor([0, 0]), torch.from_numpy(s)[i],
                                 torch.from_numpy(e)[i], torch.from_numpy(s)[j], torch.from_numpy(e)[j], m_t[i], m_t[j])
        pl_n = net.pair_logits(h_n, _prefix(h_n), np.array([0, 0]), s[[0, 1]], e[[0, 1]], s[[1, 0]], e[[1, 0]],
                               m_n[[0, 1]], m_n[[1, 0]])
        np.testing.assert_allclose(pl_n, pl_t.numpy(), atol=1e-5)


def test_states_do_not_depend_on_batch_companions():
    _, net, feat = _pair()
    full = net.encode(*feat.arrays(TEXTS))
    for k, t in enumerate(TEXTS):
        alone = net.encode(*feat.arrays([t]))
        np.testing.assert_allclose(alone[0], full[k, : len(t)], atol=1e-6)


def test_bad_state_names_the_weight():
    model, net, _ = _pair()
    state = dict(net.state)
    del state["pair.3.bias"]
    with pytest.raises(ValueError, match="'pair.3.bias' missing"):
        NumpyTagger(model.config, state)
    state = {**net.state, "tagger.weight": np.zeros((3, 3), np.float32)}
    with pytest.raises(ValueError, match=r"'tagger.weight' has shape \(3, 3\), expected \(5, 20\)"):
        NumpyTagger(model.config, state)
    with pytest.raises(TypeError, match="NumpyTagger or a SceneGraphTagger"):
        LearnedParser(object(), Vocab(words=WORDS, predicates=["none"]))  # type: ignore[arg-type]


def test_torch_model_weights_are_followed():
    model, _, _ = _pair()
    parser = LearnedParser(model, Vocab(words=WORDS, predicates=["none"] + [f"p{i}" for i in range(7)]))
    first = parser.network()
    assert parser.network() is first  # unchanged weights: no copy
    with torch.no_grad():
        model.lstm.weight_hh_l0.add_(0.5)  # in place, as an optimizer step
    second = parser.network()
    assert second is not first
    np.testing.assert_allclose(second.state["lstm.weight_hh_l0"], model.lstm.weight_hh_l0.detach().numpy())


def test_input_cache_overflow_gives_same_results(monkeypatch):
    model, _, _ = _pair()
    vocab = Vocab(words=WORDS, predicates=["none"] + [f"p{i}" for i in range(7)])
    texts = [" ".join(t) for t in TEXTS]
    expected = LearnedParser(model, vocab).parse_batch(texts)
    monkeypatch.setattr(learned, "_INPUT_CACHE", 2)
    assert LearnedParser(model, vocab).parse_batch(texts) == expected


def test_parsing_does_not_import_torch():
    code = ("import sys; from scenegraph_diff import parse; g = parse('a cat sitting on a red sofa'); "
            "assert 'torch' not in sys.modules, 'torch imported'; print(g.triplets())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    if weights_available():
        assert "sit on" in out.stdout


@pytest.mark.skipif(not weights_available(), reason="no bundled learned-parser weights")
def test_bundled_weights_match_torch():
    parser = LearnedParser.from_pretrained()
    model = SceneGraphTagger(parser.model.config)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in parser.model.state.items()})
    model.eval()
    seqs = [["a", "black", "cat", "sitting", "on", "a", "red", "sofa"], ["two", "men", "."],
            ["a", "man", "riding", "a", "horse", "on", "the", "beach", "next", "to", "the", "sea"]]
    arrays = parser.featurizer.arrays(seqs)
    with torch.no_grad():
        h_t = model.encode(*(torch.from_numpy(a) for a in arrays)).numpy()
    h_n = parser.model.encode(*arrays)
    np.testing.assert_allclose(h_n, h_t, atol=1e-5)
    assert (parser.model.tag_logits(h_n).argmax(-1) == model.tagger(torch.from_numpy(h_t)).argmax(-1).numpy()).all()


def test_parse_command_does_not_import_torch():
    code = ("import sys; from scenegraph_diff.cli import main; rc = main(['parse', 'a cat on a mat', '--threads', '1']); "
            "assert rc == 0 and 'torch' not in sys.modules, 'torch imported'")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert '"name": "cat"' in out.stdout
