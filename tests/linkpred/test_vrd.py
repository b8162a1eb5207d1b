import json

import pytest
import torch

from scenegraph_diff.linkpred.vrd import (
    NUM_PREDICATES,
    FrequencyBaseline,
    VRDImage,
    VRDPredicateModel,
    collate_vrd,
    flip_batch,
    load_vrd,
    pair_geometry,
    recall_at_n,
)

from ._graphs import FIXTURES


def _image(triplets, n=3):
    boxes = torch.tensor([[0.0, 0, 10, 10], [5, 5, 20, 20], [30, 0, 40, 10]])[:n]
    return VRDImage("x.jpg", torch.arange(n), boxes, torch.tensor(triplets, dtype=torch.long).reshape(-1, 3))


def test_load_fixture_converts_boxes_and_dedups_objects():
    raw = json.loads((FIXTURES / "vrd" / "annotations_train.json").read_text())
    images = load_vrd(FIXTURES, "train")
    assert [im.name for im in images] == sorted(raw)
    im = images[0]
    r = raw[im.name][0]
    y0, y1, x0, x1 = r["subject"]["bbox"]
    s, o, p = im.triplets[(im.triplets[:, 2] == r["predicate"])][0].tolist()
    assert im.boxes[s].tolist() == [x0, y0, x1, y1]
    assert im.classes[s].item() == r["subject"]["category"]
    # Objects are deduplicated: every (class, box) appears once.
    keys = {(c, tuple(b)) for c, b in zip(im.classes.tolist(), im.boxes.tolist())}
    assert len(keys) == im.classes.numel()
    with pytest.raises(ValueError, match="split must be"):
        load_vrd(FIXTURES, "val")


def test_recall_at_n_hand_computed():
    # Two pairs: (0,1) has GT predicates {3, 5}; (1,2) has GT {7}.
    im = _image([[0, 1, 3], [0, 1, 5], [1, 2, 7]])
    b = collate_vrd([im])
    scores = torch.full((2, NUM_PREDICATES), -10.0)
    scores[0, 3], scores[0, 5] = -0.1, -0.2  # pair (0,1): top-1 = 3, second = 5
    scores[1, 9], scores[1, 7] = -0.5, -0.6  # pair (1,2): top-1 = 9 (wrong), second = 7
    assert recall_at_n(scores, b, 50, 1) == (pytest.approx(100 / 3), 1, 3)
    assert recall_at_n(scores, b, 50, 70)[1] == 3  # all predicates per pair: everything recalled
    # n = 2 with k = 70: the two best triplets are (0,1,3) and (0,1,5).
    assert recall_at_n(scores, b, 2, 70)[1] == 2
    assert recall_at_n(scores, b, 1, 1)[1] == 1
    with pytest.raises(ValueError, match="k must be in"):
        recall_at_n(scores, b, 50, 0)


def test_recall_ranks_within_each_image():
    a, c = _image([[0, 1, 3]]), _image([[0, 1, 4]])
    b = collate_vrd([a, c])
    scores = torch.full((2, NUM_PREDICATES), -10.0)
    scores[0, 3] = -0.1
    scores[1, 4] = -5.0  # much lower, but in another image: still in that image's top 1
    assert recall_at_n(scores, b, 1, 1)[1] == 2


def test_frequency_baseline_counts():
    train = [_image([[0, 1, 3], [0, 2, 3]]), _image([[0, 1, 4]])]  # class pairs (0,1): 3, 4; (0,2): 3
    fb = FrequencyBaseline(train, alpha=0.0)
    assert fb.probs[0, 1, 3].item() == pytest.approx(0.5)
    assert fb.probs[0, 2, 3].item() == pytest.approx(1.0)
    test = collate_vrd([_image([[0, 2, 3]])])
    assert recall_at_n(fb(test), test, 50, 1)[1] == 1


def test_geometry_is_direction_sensitive_and_model_shapes():
    b1 = torch.tensor([[0.0, 0, 10, 10]])
    b2 = torch.tensor([[0.0, 20, 10, 30]])  # below b1
    ext = torch.tensor([[40.0, 40.0]])
    g12, g21 = pair_geometry(b1, b2, ext), pair_geometry(b2, b1, ext)
    assert g12.shape == (1, 20) and not torch.allclose(g12, g21)
    assert g12[0, 1] > 0 > g21[0, 1]  # dy in subject units flips sign
    torch.manual_seed(0)
    batch = collate_vrd(load_vrd(FIXTURES, "train"))
    model = VRDPredicateModel(16, num_layers=1, heads=2)
    assert model(batch).shape == (batch.pairs.size(0), NUM_PREDICATES)


def test_flip_batch_mirrors_boxes_and_swaps_left_right():
    im = VRDImage("x.jpg", torch.tensor([0, 1]), torch.tensor([[0.0, 0, 10, 10], [20, 5, 40, 20]]),
                  torch.tensor([[0, 1, 32], [1, 0, 33], [0, 1, 0]]))
    b = collate_vrd([im])
    f = flip_batch(b)
    assert f.boxes.tolist() == [[30.0, 0, 40, 10], [0, 5, 20, 20]]  # extent 40: x -> 40 - x
    assert f.labels[:, 1].tolist() == [33, 32, 0]
    ff = flip_batch(f)
    assert torch.equal(ff.boxes, b.boxes) and torch.equal(ff.labels, b.labels)
    g, gf = pair_geometry(b.boxes[:1], b.boxes[1:], b.extent[:1]), pair_geometry(f.boxes[:1], f.boxes[1:], f.extent[:1])
    assert g[0, 0] > 0 > gf[0, 0] and gf[0, 1] == g[0, 1]  # dx flips sign, dy does not


def test_vrd_sweep_on_fixture(tmp_path):
    from scenegraph_diff.linkpred.config import LinkPredConfig
    from scenegraph_diff.linkpred.runner import run_sweep

    cfg = LinkPredConfig.from_dict({
        "task": "vrd", "dataset": "VRD", "seeds": [0], "select_metric": "r@50", "val_ratio": 0.25,
        "models": [{"name": "frequency", "encoder": "frequency", "epochs": 0},
                   {"name": "ctx", "encoder": "context", "hidden": 16, "heads": 2, "epochs": 2, "batch_size": 4},
                   {"name": "ens", "encoder": "context", "hidden": 16, "heads": 2, "epochs": 2, "batch_size": 4, "ensemble": 2},
                   {"name": "flip", "encoder": "context", "hidden": 16, "heads": 2, "epochs": 2, "batch_size": 4,
                    "flip_augment": True, "label_smoothing": 0.1}],
    })
    summary = run_sweep(cfg, tmp_path, data_root=FIXTURES, progress=False)
    for row in ("frequency", "ctx", "ens", "flip"):
        assert 0 <= summary[row]["r@50"]["mean"] <= summary[row]["r@50_k70"]["mean"] <= 100


def test_cli_bad_config_is_one_line_error(tmp_path, capsys):
    from scenegraph_diff.cli import main

    bad = tmp_path / "bad.yaml"
    bad.write_text("task: planetoid\ndataset: Cora\nmodels:\n  - {name: a, lr_decay: 1}\n")
    assert main(["linkpred", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "lr_decay" in err
    assert main(["linkpred", str(tmp_path / "missing.yaml")]) == 2
    assert "config file not found" in capsys.readouterr().err
