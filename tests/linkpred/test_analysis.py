import math

import pytest
import torch

from scenegraph_diff.linkpred.analysis import miss_breakdown, pair_distances
from scenegraph_diff.linkpred.splits import to_undirected

# path 0-1-2-3-4, node 5 isolated
PATH = to_undirected(torch.tensor([[0, 1, 2, 3], [1, 2, 3, 4]]))


def test_pair_distances_on_a_path():
    pairs = torch.tensor([[0, 0, 0, 4, 2, 3], [2, 4, 5, 0, 2, 4]])
    assert pair_distances(PATH, 6, pairs, max_dist=8).tolist() == [2, 4, -1, 4, 0, 1]
    assert pair_distances(PATH, 6, pairs, max_dist=3).tolist() == [2, -1, -1, -1, 0, 1]
    # one-directional edges are read as undirected
    assert pair_distances(torch.tensor([[0, 1, 2, 3], [1, 2, 3, 4]]), 6, pairs[:, :2]).tolist() == [2, 4]


def test_pair_distances_matches_bfs_on_a_random_graph():
    g = torch.Generator().manual_seed(0)
    n = 25
    ei = to_undirected(torch.randint(0, n, (2, 30), generator=g))
    pairs = torch.randint(0, n, (2, 40), generator=g)
    adj = torch.zeros(n, n, dtype=torch.bool)
    adj[ei[0], ei[1]] = True
    want = []
    for s, t in pairs.t().tolist():
        seen, frontier, d = {s}, {s}, 0
        while t not in seen and frontier and d < 5:
            d += 1
            frontier = {v for u in frontier for v in adj[u].nonzero().flatten().tolist()} - seen
            seen |= frontier
        want.append(d if t in seen else -1)
    assert pair_distances(ei, n, pairs, max_dist=5).tolist() == want


def test_miss_breakdown_hand_computed():
    neg = torch.tensor([5.0, 4.0, 3.0, 2.0, 1.0])
    neg_pairs = torch.tensor([[0, 1, 0, 5, 2], [2, 3, 4, 0, 4]])  # distances 2, 2, 4, far, 2
    pos = torch.tensor([4.5, 4.0, 10.0])  # k = 2: threshold 4.0, so 4.0 is a miss (OGB: strictly above)
    pos_pairs = torch.tensor([[0, 5, 1], [3, 1, 4]])  # distances 3, far, 3
    out = miss_breakdown(pos, neg, pos_pairs, neg_pairs, PATH, 6, k=2, max_dist=3)
    assert out["threshold"] == 4.0 and out["missed"] == 1 and out["hits"] == pytest.approx(2 / 3)
    assert out["isolated_positives"] == 1 and out["isolated_missed"] == 1
    by = {b["dist"]: b for b in out["buckets"]}
    assert by[3] == {"dist": 3, "positives": 2, "missed": 0, "negatives": 0, "negatives_above": 0}
    assert by["far"] == {"dist": "far", "positives": 1, "missed": 1, "negatives": 2, "negatives_above": 0}
    assert by[2] == {"dist": 2, "positives": 0, "missed": 0, "negatives": 3, "negatives_above": 2}
    assert sum(b["positives"] for b in out["buckets"]) == 3 and sum(b["negatives"] for b in out["buckets"]) == 5
    # fewer negatives than k: everything is a hit
    assert miss_breakdown(pos, neg, pos_pairs, neg_pairs, PATH, 6, k=10)["threshold"] == -math.inf


def test_miss_breakdown_feature_cosine_and_errors():
    x = torch.eye(6)
    x[1, 0] = 1.0
    out = miss_breakdown(torch.tensor([1.0, 0.0]), torch.tensor([0.5]), torch.tensor([[0, 2], [1, 3]]),
                         torch.tensor([[4], [5]]), PATH, 6, k=1, x=x)
    assert out["cosine"]["hit_positives"] > 0 and out["cosine"]["missed_positives"] == 0.0
    with pytest.raises(ValueError, match="k must be >= 1, got 0"):
        miss_breakdown(torch.ones(2), torch.ones(1), torch.zeros(2, 2, dtype=torch.long), torch.zeros(2, 1, dtype=torch.long), PATH, 6, k=0)
    with pytest.raises(ValueError, match=r"pairs must be \[2, P\] / \[2, Q\] for P=2, Q=1"):
        miss_breakdown(torch.ones(2), torch.ones(1), torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 1, dtype=torch.long), PATH, 6)
    with pytest.raises(ValueError, match="max_dist must be >= 1, got 0"):
        pair_distances(PATH, 6, torch.zeros(2, 1, dtype=torch.long), max_dist=0)


def test_diagnose_script_runs_on_a_small_graph(tmp_path, monkeypatch, capsys):
    import importlib.util
    import json
    from pathlib import Path

    import yaml

    from scenegraph_diff.linkpred import runner

    from ._graphs import random_graph

    root = Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location("diagnose", root / "benchmarks" / "linkpred" / "diagnose.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    monkeypatch.setattr(runner, "load_task_data", lambda cfg, data_root: random_graph())
    cfg = {"task": "planetoid", "dataset": "Cora", "seeds": [0], "select_metric": "auc", "hits_k": [20],
           "models": [{"name": "ncn", "encoder": "puregcn", "decoder": "ncn", "hidden": 16, "num_layers": 1, "jk": True,
                       "batch_size": 32, "mask_targets": True, "epochs": 5, "ensemble": 2}]}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    out = mod.main([str(tmp_path / "c.yaml"), "--row", "ncn", "--ensemble", "1", "--epochs", "2", "--k", "5",
                    "--out", str(tmp_path / "d.json")])
    assert out["ensemble"] == 1 and out["stage"] == "val"
    assert json.loads((tmp_path / "d.json").read_text())["missed"] == out["missed"]
    assert sum(b["positives"] for b in out["buckets"]) == out["positives"]
    assert "| distance | positives |" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="no row named 'nope'"):
        mod.main([str(tmp_path / "c.yaml"), "--row", "nope"])
