"""FeatureCosine: the learned-weight raw-feature similarity term of a LinkModel."""

import json
import math

import pytest
import torch

from scenegraph_diff.linkpred.decoders import MLPDecoder
from scenegraph_diff.linkpred.encoders import PureGCNEncoder
from scenegraph_diff.linkpred.model import FeatureCosine, LinkModel
from scenegraph_diff.linkpred.runner import run_sweep
from scenegraph_diff.linkpred.splits import to_undirected

from ._graphs import random_graph
from .test_runner import _cfg

# 4 nodes, 3 binary features; node 3 has none.
X = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 1.0], [0.0, 1.0, 1.0], [0.0, 0.0, 0.0]])


def _hand_tfidf_cos(i: int, j: int) -> float:
    n = 4
    df = [2, 2, 2]  # nodes with each feature
    idf = [math.log(n / (1 + d)) for d in df]
    a = [X[i, f].item() * idf[f] for f in range(3)]
    b = [X[j, f].item() * idf[f] for f in range(3)]
    na, nb = math.sqrt(sum(v * v for v in a)), math.sqrt(sum(v * v for v in b))
    return 0.0 if na == 0 or nb == 0 else sum(u * v for u, v in zip(a, b)) / (na * nb)


def test_matches_hand_computed_tfidf_cosine_dense_and_sparse():
    pairs = torch.tensor([[0, 0, 1, 3, 2], [1, 0, 2, 0, 2]])
    term = FeatureCosine("tfidf", weight=2.0)
    want = torch.tensor([2.0 * _hand_tfidf_cos(i, j) for i, j in pairs.t().tolist()])
    torch.testing.assert_close(term(X, pairs), want)
    torch.testing.assert_close(FeatureCosine("tfidf", weight=2.0)(X.to_sparse(), pairs), want)
    # the zero row scores 0 with everything, a non-zero row 1 with itself (times the weight)
    assert term(X, pairs)[3].item() == 0.0 and term(X, pairs)[1].item() == pytest.approx(2.0)


def test_raw_weighting_is_plain_cosine():
    x = torch.tensor([[3.0, 4.0], [4.0, 3.0]])
    got = FeatureCosine("raw", weight=1.0)(x, torch.tensor([[0], [1]]))
    assert got.item() == pytest.approx(24.0 / 25.0)


def test_symmetric_and_permutation_equivariant():
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(12, 7, generator=g) < 0.4).float()
    pairs = torch.randint(0, 12, (2, 20), generator=g)
    term = FeatureCosine("tfidf")
    s = term(x, pairs)
    torch.testing.assert_close(term(x, pairs.flip(0)), s)
    perm = torch.randperm(12, generator=g)
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(12)
    torch.testing.assert_close(FeatureCosine("tfidf")(x[perm], inv[pairs]), s)


def test_learned_weight_gets_gradient_and_fixed_weight_is_a_buffer():
    pairs = torch.tensor([[0, 1], [1, 2]])
    learned = FeatureCosine("tfidf", weight=1.0, learn=True)
    learned(X, pairs).sum().backward()
    assert learned.weight.grad is not None and learned.weight.grad.item() != 0.0
    fixed = FeatureCosine("tfidf", weight=8.0, learn=False)
    assert list(fixed.parameters()) == [] and "weight" in fixed.state_dict()
    assert "_xn" not in learned.state_dict()  # the cache is not saved


def test_cache_follows_the_input():
    term = FeatureCosine("raw")
    pairs = torch.tensor([[0], [1]])
    a = term(X, pairs)
    y = X.clone()
    y[1] = torch.tensor([1.0, 1.0, 0.0])  # now equal to node 0
    assert term(y, pairs).item() == pytest.approx(1.0) and a.item() != pytest.approx(1.0)


def test_bad_arguments_name_the_value():
    with pytest.raises(ValueError, match="weighting must be one of .* got 'bm25'"):
        FeatureCosine("bm25")
    with pytest.raises(ValueError, match=r"expects x of shape \[N, F\], got \(4,\)"):
        FeatureCosine()(torch.ones(4), torch.tensor([[0], [1]]))
    with pytest.raises(ValueError, match=r"models\[a\].feature_cosine must be 'none' or one of .* got 'cos'"):
        _cfg(models=[{"name": "a", "feature_cosine": "cos"}])
    with pytest.raises(ValueError, match=r"models\[a\].feature_cosine='tfidf' is for planetoid"):
        _cfg(task="imdb", dataset="IMDB", models=[{"name": "a", "encoder": "rgcn", "feature_cosine": "tfidf"}])


def test_link_model_adds_the_term_and_trains_its_weight():
    torch.manual_seed(0)
    enc, dec = PureGCNEncoder(3, 8, num_layers=1), MLPDecoder(8)
    model = LinkModel(enc, dec, FeatureCosine("tfidf", weight=3.0)).eval()
    ei = to_undirected(torch.tensor([[0, 1], [1, 2]]))
    pairs = torch.tensor([[0, 1, 2], [2, 3, 1]])
    want = dec(enc(X, ei), pairs) + model.feature_term(X, pairs)
    torch.testing.assert_close(model(X, ei, pairs), want)
    torch.testing.assert_close(model.score(X, ei, pairs)[0], want)
    assert any(p is model.feature_term.weight for p in model.decoder_parameters())


def test_feature_cosine_row_runs(tmp_path):
    data = random_graph()
    common = {"encoder": "puregcn", "decoder": "ncn", "hidden": 16, "num_layers": 1, "jk": True, "norm": True,
              "batch_size": 32, "mask_targets": True, "epochs": 4}
    cfg = _cfg(models=[{"name": "fc", **common, "feature_cosine": "tfidf", "ensemble": 2}], seeds=[0], select_metric="auc")
    summary = run_sweep(cfg, tmp_path, progress=False, data=data)
    rec = json.loads((tmp_path / "fc" / "seed_0.json").read_text())
    assert rec["config"]["model"]["feature_cosine"] == "tfidf"
    assert summary["fc"]["auc"]["mean"] > 0.6


def test_cache_sees_in_place_changes():
    term = FeatureCosine("raw")
    pairs = torch.tensor([[0], [1]])
    x = X.clone()
    a = term(x, pairs).item()
    x[1] = x[0]
    assert term(x, pairs).item() == pytest.approx(1.0) != a


def test_ensemble_members_share_one_normalized_copy():
    a, b = FeatureCosine("tfidf"), FeatureCosine("tfidf")
    x = X.clone()
    assert a.normalized_features(x) is b.normalized_features(x)
    assert FeatureCosine("raw").normalized_features(x) is not a.normalized_features(x)  # other weighting
