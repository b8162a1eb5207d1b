"""benchmarks/layout_eval.py: the predicate rules, the VRD scores, the class-mean prior, and a toy-size run of the
whole script (tiny untrained models on the VRD fixture; the real numbers come from the full run)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

from scenegraph_diff.graph import SceneGraph

REPO = Path(__file__).resolve().parents[2]
VRD_FIX = REPO / "tests" / "fixtures" / "datasets" / "vrd"


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        spec = importlib.util.spec_from_file_location("_bench_layout_eval", REPO / "benchmarks" / "layout_eval.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(REPO / "benchmarks"))


def _graph(boxes, relations, names=None) -> SceneGraph:
    names = names or [f"thing{i}" for i in range(len(boxes))]
    return SceneGraph.from_dict({"objects": [{"name": n, "box": list(b)} for n, b in zip(names, boxes)],
                                 "relations": [{"subject": s, "predicate": p, "object": o} for s, p, o in relations]})


def test_rules(bench):
    left, right = (0.0, 0.4, 0.2, 0.6), (0.6, 0.4, 0.8, 0.6)
    top, bottom = (0.4, 0.0, 0.6, 0.2), (0.4, 0.6, 0.6, 0.8)
    R = bench.RULES
    assert R["on the left of"](left, right) and not R["on the left of"](right, left)
    assert R["on the right of"](right, left) and not R["on the right of"](left, right)
    assert R["above"](top, bottom) and R["over"](top, bottom) and not R["above"](bottom, top)
    assert R["below"](bottom, top) and R["under"](bottom, top) and R["beneath"](bottom, top)
    assert R["on"](top, bottom) and not R["on"](bottom, top)
    assert not R["on"]((0.0, 0.0, 0.2, 0.2), bottom)  # above but no horizontal overlap
    assert R["inside"]((0.45, 0.45, 0.55, 0.55), (0.4, 0.4, 0.6, 0.6))
    assert not R["inside"]((0.4, 0.4, 0.6, 0.6), (0.45, 0.45, 0.55, 0.55))
    assert R["next to"](left, (0.25, 0.4, 0.45, 0.6)) and not R["next to"](left, right)  # gap 0.4 > widths 0.2
    assert not R["beside"](top, bottom)  # no vertical overlap
    assert R["taller than"]((0, 0, 0.1, 0.5), (0, 0, 0.5, 0.2)) and not R["taller than"]((0, 0, 0.5, 0.2), (0, 0, 0.1, 0.5))
    assert bench.iou((0, 0, 1, 1), (0, 0, 1, 1)) == 1.0 and bench.iou((0, 0, 0.5, 1), (0.5, 0, 1, 1)) == 0.0
    assert bench.iou((0, 0, 1, 1), (0, 0, 0.5, 1)) == pytest.approx(0.5)


def test_vrd_scores(bench):
    truth = _graph([(0.0, 0.4, 0.2, 0.6), (0.6, 0.4, 0.8, 0.6)],
                   [(0, "on the left of", 1), (0, "wear", 1), (1, "on the right of", 0)])
    flipped = _graph([(0.6, 0.4, 0.8, 0.6), (0.0, 0.4, 0.2, 0.6)],
                     [(0, "on the left of", 1), (0, "wear", 1), (1, "on the right of", 0)])
    s = bench.vrd_scores([truth], [[truth, truth]])
    assert s["consistency"] == 1.0 and s["relations_scored"] == 4  # "wear" has no rule; 2 samples
    assert s["iou_recall_0.3"] == 1.0 and s["iou_recall_0.5"] == 1.0 and s["diversity"] == 0.0
    s = bench.vrd_scores([truth], [[truth, flipped]])
    assert s["consistency"] == 0.5 and s["iou_recall_0.5"] == 0.5 and s["diversity"] == 1.0
    assert s["per_predicate"]["on the left of"] == {"consistency": 0.5, "n": 2}


def test_class_mean_prior(bench):
    train = [_graph([(0.0, 0.0, 0.2, 0.2)], [], ["cup"]), _graph([(0.2, 0.2, 0.6, 0.6)], [], ["cup"]),
             _graph([(0.5, 0.5, 1.0, 1.0)], [], ["table"])]
    prior = bench.class_mean_prior(train)
    (a, b), = prior([_graph([(0, 0, 1, 1), (0, 0, 1, 1)], [(0, "on", 1)], ["cup", "table"])], 2)
    assert a is b  # deterministic
    assert a.objects[0].box == pytest.approx((0.1, 0.1, 0.4, 0.4))  # centre (0.25, 0.25), size 0.3
    assert a.objects[1].box == pytest.approx((0.5, 0.5, 1.0, 1.0))
    (c,), = prior([_graph([(0, 0, 1, 1)], [], ["unseen"])], 1)
    assert all(0.0 <= v <= 1.0 for v in c.objects[0].box)


def test_toy_run_writes_the_tables(bench, tmp_path):
    from scenegraph_diff.data.vrd import VRDConfig, prepare_vrd
    from scenegraph_diff.layout import DiffusionLayoutModel, RegressionLayoutModel
    from scenegraph_diff.layout.data import prepared_layout_graphs

    prepare_vrd(VRDConfig(data_root=str(VRD_FIX), output_dir=str(tmp_path / "vrd"), progress=False))
    graphs = prepared_layout_graphs(tmp_path / "vrd", "train") + prepared_layout_graphs(tmp_path / "vrd", "test")
    vrd = dict(objects=sorted({o.name for g in graphs for o in g.objects}), attributes=[],
               predicates=sorted({r.predicate for g in graphs for r in g.relations}))
    shapes = dict(objects=["circle", "square", "triangle"],
                  attributes=["red", "green", "blue", "yellow", "purple", "cyan"],
                  predicates=["left of", "right of", "above", "below"])
    torch.manual_seed(0)
    small = dict(dim=16, num_layers=1, heads=2, attn_layers=1)
    for name, vocab in (("vrd", vrd), ("shapes", shapes)):
        DiffusionLayoutModel(**vocab, **small, num_inference_steps=2).save_pretrained(tmp_path / f"{name}_diff")
        RegressionLayoutModel(**vocab, **small).save_pretrained(tmp_path / f"{name}_reg")
    out = tmp_path / "res" / "layout_eval"
    rc = bench.main(["--prepared", str(tmp_path / "vrd"), "--vrd-diffusion", str(tmp_path / "vrd_diff"),
                     "--vrd-regression", str(tmp_path / "vrd_reg"), "--shapes-diffusion", str(tmp_path / "shapes_diff"),
                     "--shapes-regression", str(tmp_path / "shapes_reg"), "--num-samples", "2", "--steps", "1,2",
                     "--guided-steps", "1", "--shapes-graphs", "6", "--out", str(out)])
    assert rc == 0
    res = json.loads(out.with_suffix(".json").read_text())
    methods = res["vrd"]["methods"]
    assert list(methods) == ["ground truth", "class-mean prior", "regression", "diffusion 1 NFE", "diffusion 2 NFE",
                             "diffusion + guidance 2, 2 NFE"]
    assert methods["ground truth"]["iou_recall_0.5"] == 1.0 and methods["class-mean prior"]["diversity"] == 0.0
    assert methods["diffusion 2 NFE"]["diversity"] > 0.0
    assert set(res["vrd"]["acceptance"]["diffusion_beats_prior_and_regression_and_reaches_90pct_of_gt"]) == \
        {"diffusion 1 NFE", "diffusion 2 NFE", "diffusion + guidance 2, 2 NFE"}
    assert res["shapes"]["methods"]["ground truth"]["relation_accuracy"] == 1.0
    assert "| regression |" in out.with_suffix(".md").read_text()
    assert (out.parent / "layout_eval_grid.png").stat().st_size > 1000


def test_missing_model_is_one_message(bench, tmp_path):
    from scenegraph_diff.data.vrd import VRDConfig, prepare_vrd

    prepare_vrd(VRDConfig(data_root=str(VRD_FIX), output_dir=str(tmp_path / "vrd"), progress=False))
    with pytest.raises(SystemExit, match="--vrd-diffusion"):
        bench.main(["--prepared", str(tmp_path / "vrd"), "--vrd-diffusion", str(tmp_path / "none"),
                    "--out", str(tmp_path / "o")])


def test_vrd_fit_validation_split(tmp_path):
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        spec = importlib.util.spec_from_file_location("_bench_layout_vrd_split", REPO / "benchmarks" / "layout_vrd_split.py")
        split = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(split)
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    images = list(json.loads((VRD_FIX / "annotations_train.json").read_text()))
    assert split.main(["--data-root", str(VRD_FIX), "--fit", "1", "--output", str(tmp_path / "s")]) == 0
    fit = json.loads((tmp_path / "s" / "annotations_train.json").read_text())
    val = json.loads((tmp_path / "s" / "annotations_test.json").read_text())
    assert list(fit) == images[:1] and list(val) == images[1:]
    assert (tmp_path / "s" / "objects.json").read_bytes() == (VRD_FIX / "objects.json").read_bytes()
    assert split.main(["--data-root", str(VRD_FIX), "--fit", str(len(images)), "--output", str(tmp_path / "t")]) == 2
    assert split.main(["--data-root", str(tmp_path / "none"), "--output", str(tmp_path / "t")]) == 2
