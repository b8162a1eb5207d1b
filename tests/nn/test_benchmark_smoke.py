"""Smoke runs of the area's benchmark scripts at toy sizes (the real numbers come from the full runs)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def _load(name: str):
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location(f"_bench_{name}", BENCH / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCH))


def test_hetero_layers_benchmark(tmp_path):
    result = _load("hetero_layers").main(["--graphs", "16", "--repeats", "1", "--dim", "16", "--out",
                                          str(tmp_path / "hl")])
    names = [r["model"] for r in result["rows"]]
    assert names == ["HGCNConv", "RHGNNConv", "HGTConv", "RGCNConv"]
    hgt = next(r for r in result["rows"] if r["model"] == "HGTConv")
    assert hgt["vs_HGTConv"] == 1.0
    assert json.loads((tmp_path / "hl.json").read_text())["graphs"] == 16
    assert (tmp_path / "hl.md").read_text().startswith("Forward+backward")


@pytest.mark.slow
def test_conditioning_overhead_benchmark(tmp_path):
    result = _load("conditioning_overhead").main(["--tiny-unet", "--graphs", "2", "--unet-repeats", "1", "--out",
                                                  str(tmp_path / "co")])
    assert len(result["rows"]) == 4 and all(r["fraction_of_unet_step"] > 0 for r in result["rows"])


def test_sd15_config_has_sd15_parameter_count():
    """The hand-written SD 1.5 UNet config gives SD 1.5's parameter count (checked without allocating:
    on the meta device)."""
    import torch
    from diffusers import UNet2DConditionModel

    co = _load("conditioning_overhead")
    with torch.device("meta"):
        unet = UNet2DConditionModel(**co.SD15_UNET_CONFIG)
    assert sum(p.numel() for p in unet.parameters()) == co.SD15_UNET_PARAMS
