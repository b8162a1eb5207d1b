import json
import statistics

import pytest
import torch

from scenegraph_diff.linkpred import runner as runner_mod
from scenegraph_diff.linkpred.config import LinkPredConfig
from scenegraph_diff.linkpred.runner import run_sweep
from scenegraph_diff.linkpred.splits import edge_keys

from ._graphs import random_graph, random_hetero


def _cfg(**over):
    d = {
        "task": "planetoid",
        "dataset": "Cora",
        "seeds": [0, 1],
        "select_metric": "hits@20",
        "hits_k": [20],
        "models": [
            {"name": "gcn-dot", "encoder": "gcn", "decoder": "dot", "hidden": 16, "epochs": 3},
            {"name": "gcn-cn", "encoder": "gcn", "decoder": "cn", "hidden": 16, "num_layers": 1, "input_linear": True,
             "jk": True, "norm": True, "batch_size": 32, "mask_targets": True, "epochs": 2},
        ],
    }
    d.update(over)
    return LinkPredConfig.from_dict(d)


def test_sweep_writes_seed_files_and_summary(tmp_path):
    data = random_graph()
    summary = run_sweep(_cfg(), tmp_path, progress=False, data=data)
    for row in ("gcn-dot", "gcn-cn"):
        recs = [json.loads((tmp_path / row / f"seed_{s}.json").read_text()) for s in (0, 1)]
        for r in recs:
            assert {"config", "metrics", "val_metrics", "timings", "versions", "best_epoch"} <= set(r)
            assert r["config"]["model"]["name"] == row
            # The validation curve: one entry per evaluation; the selected epoch's entry is val_metrics.
            hist = r["val_history"]
            assert [h["epoch"] for h in hist] == list(range(r["epochs_run"]))
            best = max(hist, key=lambda h: h["hits@20"])  # the first maximum, as the runner keeps
            assert best["epoch"] == r["best_epoch"] and {**best, "epoch": 0} == {**r["val_metrics"], "epoch": 0}
            assert not any(k.startswith("valmp/") for h in hist for k in h)  # no test numbers in it
        vals = [r["metrics"]["hits@20"] for r in recs]
        got = summary[row]["hits@20"]
        assert got["n"] == 2
        assert got["mean"] == pytest.approx(statistics.fmean(vals))
        assert got["std"] == pytest.approx(statistics.stdev(vals))
        assert json.loads((tmp_path / row / "summary.json").read_text())["hits@20"] == got
    table = (tmp_path / "results.md").read_text()
    assert "| gcn-dot |" in table and "| gcn-cn |" in table


def test_resume_skips_finished_seeds(tmp_path, monkeypatch):
    data = random_graph()
    cfg = _cfg(models=[{"name": "gcn-dot", "encoder": "gcn", "decoder": "dot", "hidden": 8, "epochs": 1}], seeds=[0, 1, 2])
    run_sweep(cfg, tmp_path, progress=False, data=data)
    first = json.loads((tmp_path / "gcn-dot" / "seed_1.json").read_text())
    (tmp_path / "gcn-dot" / "seed_1.json").unlink()  # an "interrupted" sweep: seed 1 missing
    calls = []
    real = runner_mod.run_seed

    def spy(cfg, m, data, seed):
        calls.append(seed)
        return real(cfg, m, data, seed)

    monkeypatch.setattr(runner_mod, "run_seed", spy)
    run_sweep(cfg, tmp_path, progress=False, data=data)
    assert calls == [1]
    again = json.loads((tmp_path / "gcn-dot" / "seed_1.json").read_text())
    assert again["metrics"] == first["metrics"]  # same seed, same numbers
    run_sweep(cfg, tmp_path, progress=False, data=data)
    assert calls == [1]  # nothing left to do


def test_resume_refuses_a_different_config(tmp_path):
    data = random_graph()
    cfg = _cfg(models=[{"name": "gcn-dot", "encoder": "gcn", "decoder": "dot", "hidden": 8, "epochs": 1}], seeds=[0])
    run_sweep(cfg, tmp_path, progress=False, data=data)
    cfg2 = _cfg(models=[{"name": "gcn-dot", "encoder": "gcn", "decoder": "dot", "hidden": 8, "epochs": 2}], seeds=[0])
    with pytest.raises(ValueError, match="different config"):
        run_sweep(cfg2, tmp_path, progress=False, data=data)


def test_training_message_passing_excludes_heldout_and_target_edges(monkeypatch):
    """NCN protocol: the graph a model propagates over during training never holds a validation or
    test edge, and (``mask_targets``) never the batch's own target edges."""
    from scenegraph_diff.linkpred.model import LinkModel
    from scenegraph_diff.linkpred.tasks import PlanetoidTask

    data = random_graph()
    cfg = _cfg()
    seen = []
    real_forward = LinkModel.forward

    def spy(self, x, edge_index, pairs, decoder_edge_index=None):
        if self.training:
            seen.append((edge_index.clone(), pairs.clone()))
        return real_forward(self, x, edge_index, pairs, decoder_edge_index)

    monkeypatch.setattr(LinkModel, "forward", spy)
    for m in cfg.models:
        task = PlanetoidTask.build(cfg, m, data, seed=0)
        runner_mod.fit(task, m, cfg.select_metric, seed=0)
        n = data.num_nodes
        held = set(edge_keys(torch.cat([task.split.val_pos, task.split.test_pos], 1), n).tolist())
        train = set(edge_keys(task.split.train_pos, n).tolist())
        assert seen
        for mp, pairs in seen:
            mpk = set(edge_keys(mp, n).tolist())
            assert not (mpk & held)
            if m.mask_targets:
                pos = set(edge_keys(pairs, n).tolist()) & train  # the batch's positive targets
                assert pos and not (mpk & pos)
        seen.clear()


def test_hetero_rows_run(tmp_path):
    cfg = LinkPredConfig.from_dict({
        "task": "imdb", "dataset": "IMDB", "seeds": [0], "select_metric": "auc", "hits_k": [5],
        "models": [
            {"name": "rgcn", "encoder": "rgcn", "decoder": "distmult", "hidden": 8, "epochs": 2},
            {"name": "hgcn", "encoder": "hgcn", "decoder": "distmult", "hidden": 8, "epochs": 2},
            {"name": "rhgnn-dn", "encoder": "rhgnn", "decoder": "distmult", "hidden": 8, "epochs": 2, "denoise": True},
        ],
    })
    summary = run_sweep(cfg, tmp_path, progress=False, data=random_hetero())
    for row in ("rgcn", "hgcn", "rhgnn-dn"):
        assert {"md/auc", "ma/auc", "auc", "mrr", "md/hits@5"} <= set(summary[row])
        assert summary[row]["auc"]["mean"] == pytest.approx((summary[row]["md/auc"]["mean"] + summary[row]["ma/auc"]["mean"]) / 2)


def test_config_errors_name_the_key(tmp_path):
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['lr_decay'\]"):
        _cfg(models=[{"name": "a", "lr_decay": 0.1}])
    with pytest.raises(ValueError, match="task must be one of"):
        _cfg(task="ogb")
    with pytest.raises(ValueError, match="unknown decoder 'bilinear'"):
        run_sweep(_cfg(models=[{"name": "a", "decoder": "bilinear", "epochs": 1}], seeds=[0]), tmp_path, progress=False,
                  data=random_graph())


def test_resume_accepts_files_written_before_a_new_setting_existed(tmp_path):
    data = random_graph()
    cfg = _cfg(models=[{"name": "gcn-dot", "encoder": "gcn", "decoder": "dot", "hidden": 8, "epochs": 1}], seeds=[0])
    run_sweep(cfg, tmp_path, progress=False, data=data)
    path = tmp_path / "gcn-dot" / "seed_0.json"
    rec = json.loads(path.read_text())
    del rec["config"]["model"]["decoder_edge_dropout"]  # as written by an older version
    path.write_text(json.dumps(rec))
    run_sweep(cfg, tmp_path, progress=False, data=data)  # no error, nothing re-run
    assert "decoder_edge_dropout" not in json.loads(path.read_text())["config"]["model"]


def test_ncn_and_ncnc_rows_run_and_learn(tmp_path):
    data = random_graph()
    common = {"encoder": "puregcn", "decoder": "ncn", "hidden": 16, "num_layers": 1, "jk": True, "norm": True,
              "batch_size": 32, "mask_targets": True, "decoder_edge_dropout": 0.2, "tail_dropout": 0.1, "epochs": 4}
    cfg = _cfg(models=[{"name": "ncn", **common}, {"name": "ncnc", **common, "completion": True, "cn_pt": 0.75}], seeds=[0])
    summary = run_sweep(cfg, tmp_path, progress=False, data=data)
    for row in ("ncn", "ncnc"):
        rec = json.loads((tmp_path / row / "seed_0.json").read_text())
        assert rec["config"]["model"]["completion"] == (row == "ncnc")
        assert summary[row]["auc"]["mean"] > 0.6  # the two-block graph is easy; chance is 0.5


def test_planetoid_ensemble_and_ema_rows(tmp_path):
    from scenegraph_diff.linkpred.model import LinkEnsemble
    from scenegraph_diff.linkpred.tasks import TASK_CLASSES

    data = random_graph()
    common = {"encoder": "puregcn", "decoder": "ncn", "hidden": 16, "num_layers": 1, "jk": True, "norm": True,
              "batch_size": 32, "mask_targets": True, "epochs": 6}
    cfg = _cfg(models=[{"name": "ens", **common, "ensemble": 3}, {"name": "ema", **common, "ema_decay": 0.5}], seeds=[0],
               select_metric="auc")
    ens = TASK_CLASSES["planetoid"].build(cfg, cfg.models[0], data, 0)
    assert isinstance(ens.model, LinkEnsemble) and len(ens.model.members) == 3
    w = [mm.encoder.lin.weight for mm in ens.model.members]
    assert not torch.equal(w[0], w[1])  # independently initialised
    # The ensemble's score is the mean of its members' logits.
    s = ens.split
    ens.model.eval()
    got = ens.model.score(ens.x, s.message_passing_edges("val"), s.val_pos)[0]
    want = torch.stack([mm.score(ens.x, s.message_passing_edges("val"), s.val_pos)[0] for mm in ens.model.members]).mean(0)
    torch.testing.assert_close(got, want)
    # Each member gets its own loss: the summed loss's gradient on a member is that member's alone.
    loss = ens.loss(ens.model, torch.arange(16), torch.Generator().manual_seed(0))
    loss.backward()
    assert all(p.grad is not None for p in ens.model.parameters() if p.requires_grad and p.dim() > 1)
    summary = run_sweep(cfg, tmp_path, progress=False, data=data)
    assert summary["ens"]["auc"]["mean"] > 0.6 and summary["ema"]["auc"]["mean"] > 0.6
    with pytest.raises(ValueError, match="ema_decay must be in"):
        _cfg(models=[{"name": "a", "ema_decay": 1.0}])
    with pytest.raises(ValueError, match="models\\[a\\].completion_mode must be 'detached' or 'recursive', got 'deep'"):
        _cfg(models=[{"name": "a", "completion_mode": "deep"}])


def test_planetoid_ensemble_with_independent_member_data(tmp_path):
    """``ensemble_data: independent``: member k trains on its own batch order, negatives and edge
    dropout; its loss term is exactly a single model's loss on those inputs."""
    from scenegraph_diff.linkpred.model import LinkEnsemble
    from scenegraph_diff.linkpred.tasks import TASK_CLASSES, bce_loss

    data = random_graph()
    common = {"encoder": "puregcn", "decoder": "ncn", "hidden": 16, "num_layers": 1, "jk": True, "norm": True,
              "batch_size": 32, "mask_targets": True, "epochs": 4, "ensemble": 3, "decoder_edge_dropout": 0.3}
    cfg = _cfg(models=[{"name": "ind", **common, "ensemble_data": "independent"}, {"name": "shared", **common}],
               seeds=[0], select_metric="auc")
    ind = TASK_CLASSES["planetoid"].build(cfg, cfg.models[0], data, 0)
    n = ind.split.train_pos.size(1)
    batches = list(ind.batches(torch.Generator().manual_seed(1)))
    assert all(b.shape[0] == 3 for b in batches)
    for k in range(3):  # each member's batches are a permutation of all training positives
        assert torch.equal(torch.cat([b[k] for b in batches]).sort().values, torch.arange(n))
    assert not torch.equal(batches[0][0], batches[0][1])  # and the members' orders differ
    shared = TASK_CLASSES["planetoid"].build(cfg, cfg.models[1], data, 0)
    assert all(b.dim() == 1 for b in shared.batches(torch.Generator().manual_seed(1)))

    # The summed loss = the members' single-model losses on their own inputs, drawn in member order.
    ind.model.eval()  # no dropout: the two computations see the same weights and masks
    batch = batches[0]
    got = ind.loss(ind.model, batch, torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)
    want = 0.0
    for k, member in enumerate(ind.model.members):
        mp, pairs, dec_mp, p = ind._step_inputs(batch[k], g)
        lg = member(ind.x, mp, pairs, dec_mp)
        want = want + bce_loss(lg[:p], lg[p:])
    torch.testing.assert_close(got, want)
    with pytest.raises(ValueError, match="edge_index has 2 items for 3 members"):
        ind.model(ind.x, [mp, mp], pairs)
    assert isinstance(ind.model, LinkEnsemble)

    summary = run_sweep(cfg, tmp_path, progress=False, data=data)
    assert summary["ind"]["auc"]["mean"] > 0.6
    a = json.loads((tmp_path / "ind" / "seed_0.json").read_text())
    b = json.loads((tmp_path / "shared" / "seed_0.json").read_text())
    assert a["metrics"] != b["metrics"]  # different training data streams, different models
    again = run_sweep(cfg, tmp_path / "again", progress=False, data=data)
    assert again["ind"]["auc"]["mean"] == summary["ind"]["auc"]["mean"]  # seeded: reproducible
    with pytest.raises(ValueError, match="val_negatives=2 is for planetoid"):
        LinkPredConfig.from_dict({"task": "vrd", "dataset": "VRD", "val_negatives": 2, "models": [{"name": "a"}]})
    with pytest.raises(ValueError, match="ensemble_data must be one of"):
        _cfg(models=[{"name": "a", "ensemble_data": "bagged"}])
    with pytest.raises(ValueError, match="ensemble_data='independent' is for planetoid"):
        LinkPredConfig.from_dict({"task": "vrd", "dataset": "VRD", "models": [{"name": "a", "ensemble_data": "independent"}]})


def test_more_validation_negatives_leave_training_unchanged(tmp_path):
    """``val_negatives`` changes the validation set only: with one evaluation (so one candidate
    epoch) the tested model, hence the test metrics, are identical."""
    data = random_graph()
    row = {"name": "ncn", "encoder": "puregcn", "decoder": "ncn", "hidden": 16, "num_layers": 1, "jk": True,
           "batch_size": 32, "mask_targets": True, "epochs": 2, "eval_every": 2, "dropout": 0.3}
    recs = []
    for k in (1, 2):
        run_sweep(_cfg(models=[row], seeds=[0], val_negatives=k), tmp_path / str(k), progress=False, data=data)
        recs.append(json.loads((tmp_path / str(k) / "ncn" / "seed_0.json").read_text()))
    assert recs[0]["metrics"] == recs[1]["metrics"]
    assert recs[0]["val_metrics"] != recs[1]["val_metrics"]


def test_ema_row_tests_the_averaged_weights(tmp_path, monkeypatch):
    """With ``ema_decay`` the kept (and tested) state is the moving average, not the last weights."""
    data = random_graph()
    cfg = _cfg(models=[{"name": "ema", "encoder": "gcn", "decoder": "dot", "hidden": 8, "epochs": 3, "lr": 0.05, "batch_size": 16,
                        "ema_decay": 0.5}], seeds=[0])
    from scenegraph_diff.linkpred.tasks import TASK_CLASSES

    task = TASK_CLASSES["planetoid"].build(cfg, cfg.models[0], data, 0)
    states = []
    orig = task.evaluate

    def spy(model, stage):
        states.append({k: v.clone() for k, v in model.state_dict().items()})
        return orig(model, stage)

    raw = {}
    monkeypatch.setattr(task, "evaluate", spy)
    orig_loss = task.loss

    def loss_spy(model, batch, gen):  # the raw weights just before the last step's update
        raw.update({k: v.detach().clone() for k, v in task.model.state_dict().items()})
        return orig_loss(model, batch, gen)

    monkeypatch.setattr(task, "loss", loss_spy)
    runner_mod.fit(task, cfg.models[0], "auc", 0)
    final = task.model.state_dict()
    assert any(all(torch.equal(final[k], st[k]) for k in final) for st in states[:-1])  # kept = a validated EMA state
    assert not all(torch.equal(final[k], v) for k, v in raw.items())  # ... not the raw weights of any step


def test_parallel_jobs_write_the_same_records(tmp_path):
    data = random_graph()
    cfg = _cfg(models=[{"name": "gcn-dot", "encoder": "gcn", "decoder": "dot", "hidden": 8, "epochs": 2},
                       {"name": "gcn-cn", "encoder": "gcn", "decoder": "cn", "hidden": 8, "num_layers": 1,
                        "batch_size": 32, "mask_targets": True, "epochs": 2}])
    one = run_sweep(cfg, tmp_path / "one", progress=False, data=data)
    two = run_sweep(cfg, tmp_path / "two", progress=False, data=data, jobs=2)
    for row in ("gcn-dot", "gcn-cn"):
        for s in (0, 1):
            a = json.loads((tmp_path / "one" / row / f"seed_{s}.json").read_text())
            b = json.loads((tmp_path / "two" / row / f"seed_{s}.json").read_text())
            assert a["metrics"] == b["metrics"] and a["best_epoch"] == b["best_epoch"]
    assert {r: {k: v["mean"] for k, v in s.items() if not k.endswith("_s")} for r, s in one.items()} == \
           {r: {k: v["mean"] for k, v in s.items() if not k.endswith("_s")} for r, s in two.items()}
    with pytest.raises(ValueError, match="jobs must be >= 1, got 0"):
        run_sweep(cfg, tmp_path / "bad", progress=False, data=data, jobs=0)


def test_parallel_jobs_keep_finished_seeds_when_one_fails(tmp_path):
    """Records are written as runs end: a failing row stops the sweep, but what finished is kept."""
    cfg = _cfg(models=[{"name": "ok", "encoder": "gcn", "decoder": "dot", "hidden": 8, "epochs": 2},
                       {"name": "bad", "encoder": "hgcn", "decoder": "dot", "hidden": 8, "epochs": 1}],
               seeds=[0, 1, 2])
    with pytest.raises(ValueError, match="'hgcn' is not a homogeneous encoder"):
        run_sweep(cfg, tmp_path, progress=False, data=random_graph(), jobs=2)
    assert (tmp_path / "ok" / "seed_0.json").exists()  # ran beside the failing run, then written
    assert not list((tmp_path / "bad").glob("seed_*.json"))
