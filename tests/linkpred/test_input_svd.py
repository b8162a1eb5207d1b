"""input_svd: latent-semantic (TF-IDF SVD) columns appended to the node features."""

import json

import pytest
import torch

from scenegraph_diff.linkpred.data import augment_features, tfidf_svd_features
from scenegraph_diff.linkpred.runner import run_sweep

from ._graphs import random_graph
from .test_runner import _cfg


def _bow(n=30, f=20, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, f, generator=g) < 0.3).float()


def test_svd_features_shape_scale_and_determinism():
    x = _bow()
    z = tfidf_svd_features(x, 5)
    assert z.shape == (30, 5)
    torch.testing.assert_close(z.mean(0), torch.zeros(5), atol=1e-5, rtol=0)
    torch.testing.assert_close(z.std(0), torch.ones(5))
    torch.testing.assert_close(tfidf_svd_features(x.to_sparse(), 5), z)  # sparse input, same result
    torch.manual_seed(123)
    a = torch.rand(3)
    torch.manual_seed(123)
    tfidf_svd_features(x, 5)
    assert torch.equal(torch.rand(3), a)  # the global RNG is left alone


def test_svd_features_span_the_top_singular_directions():
    x = _bow(seed=1)
    df = (x != 0).sum(0).float()
    xt = x * torch.log(30 / (1.0 + df))
    xt = xt / xt.norm(dim=1, keepdim=True)
    u, s, _ = torch.linalg.svd(xt, full_matrices=False)
    z = tfidf_svd_features(x, 3, standardize=False)
    # the same 3-dimensional subspace as the exact SVD (signs/rotation within ties aside)
    proj = u[:, :3] @ (u[:, :3].t() @ z)
    torch.testing.assert_close(proj, z, atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(z.norm(dim=0), s[:3], atol=1e-3, rtol=1e-3)


def test_augment_features_keeps_the_input_and_appends():
    x = _bow()
    out = augment_features(x.to_sparse(), 4)
    assert out.is_sparse and out.shape == (30, 24)
    torch.testing.assert_close(out.to_dense()[:, :20], x)
    torch.testing.assert_close(out.to_dense()[:, 20:], tfidf_svd_features(x, 4))
    assert augment_features(x, 0) is x
    assert augment_features(x, 4).shape == (30, 24) and not augment_features(x, 4).is_sparse


def test_bad_sizes_name_the_value():
    with pytest.raises(ValueError, match=r"k must be in \[1, min\(N, F\)\] = \[1, 20\], got 21"):
        tfidf_svd_features(_bow(), 21)
    with pytest.raises(ValueError, match=r"models\[a\].input_svd must be >= 0, got -1"):
        _cfg(models=[{"name": "a", "input_svd": -1}])
    with pytest.raises(ValueError, match=r"models\[a\].input_svd=8 is for planetoid"):
        _cfg(task="imdb", dataset="IMDB", models=[{"name": "a", "encoder": "rgcn", "input_svd": 8}])


def test_input_svd_row_runs(tmp_path):
    from scenegraph_diff.linkpred.tasks import TASK_CLASSES

    data = random_graph()
    row = {"name": "svd", "encoder": "puregcn", "decoder": "ncn", "hidden": 16, "num_layers": 1, "jk": True,
           "norm": True, "batch_size": 32, "mask_targets": True, "epochs": 4, "input_svd": 4}
    cfg = _cfg(models=[row], seeds=[0], select_metric="auc")
    task = TASK_CLASSES["planetoid"].build(cfg, cfg.models[0], data, 0)
    assert task.x.shape == (60, 12) and task.model.encoder.lin.in_features == 12
    summary = run_sweep(cfg, tmp_path, progress=False, data=data)
    assert json.loads((tmp_path / "svd" / "seed_0.json").read_text())["config"]["model"]["input_svd"] == 4
    assert summary["svd"]["auc"]["mean"] > 0.6
