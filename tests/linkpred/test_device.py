"""Link prediction on CPU and CUDA: the ``device`` setting, its errors, and CUDA runs (skipped
without a GPU) that must give the CPU's evaluation for the same weights."""

import json
import math

import pytest
import torch

from scenegraph_diff.linkpred.config import LinkPredConfig
from scenegraph_diff.linkpred.runner import resolve_device, run_sweep
from scenegraph_diff.linkpred.tasks import TASK_CLASSES

from ._graphs import FIXTURES, random_graph, random_hetero

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")

NCN = {"encoder": "puregcn", "decoder": "ncn", "hidden": 16, "num_layers": 1, "jk": True, "norm": True,
       "batch_size": 32, "mask_targets": True, "decoder_edge_dropout": 0.2, "tail_dropout": 0.1, "epochs": 3}


def _planetoid(**over):
    d = {"task": "planetoid", "dataset": "Cora", "seeds": [0], "select_metric": "hits@20", "hits_k": [20],
         "models": [{"name": "gcn-dot", "encoder": "gcn", "decoder": "dot", "hidden": 16, "epochs": 3},
                    {"name": "ncn", **NCN}, {"name": "ncnc", **NCN, "completion": True}]}
    d.update(over)
    return LinkPredConfig.from_dict(d)


@pytest.mark.parametrize("bad", ["gpu", "cuda:x", "", "CPU"])
def test_bad_device_is_rejected_naming_the_value(bad):
    with pytest.raises(ValueError, match=f"device={bad!r}: expected 'cpu', 'cuda', 'cuda:N' or 'auto'"):
        _planetoid(device=bad)
    with pytest.raises(ValueError, match=repr(bad)):
        resolve_device(bad)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_a_clear_error(tmp_path):
    with pytest.raises(RuntimeError, match="device='cuda' but CUDA is not available"):
        run_sweep(_planetoid(device="cuda"), tmp_path, progress=False, data=random_graph())
    assert resolve_device("auto") == torch.device("cpu")


def test_device_is_recorded_and_not_part_of_the_row_identity(tmp_path):
    data = random_graph()
    cfg = _planetoid(models=[{"name": "gcn-dot", "encoder": "gcn", "decoder": "dot", "hidden": 8, "epochs": 1}])
    run_sweep(cfg, tmp_path, progress=False, data=data)
    path = tmp_path / "gcn-dot" / "seed_0.json"
    rec = json.loads(path.read_text())
    assert rec["device"] == "cpu" and "device" not in rec["config"]
    before = path.stat().st_mtime_ns
    run_sweep(LinkPredConfig.from_dict({**cfg.to_dict(), "models": [m.__dict__ for m in cfg.models],
                                        "device": "auto"}), tmp_path, progress=False, data=data)
    assert path.stat().st_mtime_ns == before  # resumed: the finished seed was reused


# ------------------------------------------------------------------------------------------- CUDA
def _finite(summary):
    return all(math.isfinite(v["mean"]) for row in summary.values() for v in row.values())


@cuda
def test_planetoid_rows_run_on_cuda(tmp_path):
    summary = run_sweep(_planetoid(device="cuda"), tmp_path, progress=False, data=random_graph())
    assert _finite(summary)
    for row in ("gcn-dot", "ncn", "ncnc"):
        rec = json.loads((tmp_path / row / "seed_0.json").read_text())
        assert rec["device"].startswith("cuda:")
    assert summary["ncn"]["auc"]["mean"] > 0.6


@cuda
@pytest.mark.parametrize("row", ["gcn-dot", "ncn", "ncnc"])
def test_cuda_evaluation_matches_cpu_for_the_same_weights(row):
    cfg = _planetoid()
    m = next(r for r in cfg.models if r.name == row)
    data = random_graph()
    torch.manual_seed(0)
    cpu = TASK_CLASSES["planetoid"].build(cfg, m, data, 0, device="cpu")
    gpu = TASK_CLASSES["planetoid"].build(cfg, m, data, 0, device="cuda")
    gpu.model.load_state_dict(cpu.model.state_dict())
    cpu.model.eval(), gpu.model.eval()
    a, b = cpu.evaluate(cpu.model, "test"), gpu.evaluate(gpu.model, "test")
    for k in ("auc", "ap"):
        assert b[k] == pytest.approx(a[k], abs=1e-4), k
    loss = gpu.loss(gpu.model, next(iter(gpu.batches(torch.Generator().manual_seed(0)))), torch.Generator().manual_seed(1))
    loss.backward()
    assert torch.isfinite(loss) and all(p.grad is None or torch.isfinite(p.grad).all() for p in gpu.model.parameters())


@cuda
def test_hetero_rows_run_on_cuda(tmp_path):
    cfg = LinkPredConfig.from_dict({
        "task": "imdb", "dataset": "IMDB", "seeds": [0], "select_metric": "auc", "hits_k": [5], "device": "cuda",
        "models": [{"name": "rgcn", "encoder": "rgcn", "decoder": "distmult", "hidden": 8, "epochs": 2},
                   {"name": "hgt", "encoder": "hgt", "decoder": "distmult", "hidden": 8, "epochs": 2},
                   {"name": "hgcn", "encoder": "hgcn", "decoder": "distmult", "hidden": 8, "epochs": 2},
                   {"name": "rhgnn-dn", "encoder": "rhgnn", "decoder": "distmult", "hidden": 8, "epochs": 2,
                    "denoise": True}],
    })
    assert _finite(run_sweep(cfg, tmp_path, progress=False, data=random_hetero()))


@cuda
def test_vrd_rows_run_on_cuda(tmp_path):
    cfg = LinkPredConfig.from_dict({
        "task": "vrd", "dataset": "VRD", "seeds": [0], "select_metric": "r@50", "val_ratio": 0.25, "device": "cuda",
        "models": [{"name": "frequency", "encoder": "frequency", "epochs": 0},
                   {"name": "flip-ens", "encoder": "context", "hidden": 16, "heads": 2, "epochs": 2, "batch_size": 4,
                    "ensemble": 2, "flip_augment": True}],
    })
    cpu = run_sweep(LinkPredConfig.from_dict({**cfg.to_dict(), "models": [m.__dict__ for m in cfg.models],
                                              "device": "cpu"}), tmp_path / "cpu", data_root=FIXTURES, progress=False)
    gpu = run_sweep(cfg, tmp_path / "gpu", data_root=FIXTURES, progress=False)
    assert _finite(gpu)
    assert gpu["frequency"]["r@50"]["mean"] == pytest.approx(cpu["frequency"]["r@50"]["mean"])  # no training: equal
