"""VRD reader (scenegraph_diff.data.vrd): boxes and their frame, the one raw-JSON parser, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scenegraph_diff.data.shards import iter_manifest_graphs
from scenegraph_diff.data.vrd import (
    VRDConfig,
    normalise_box,
    parse_vrd_image,
    prepare_vrd,
    read_image_sizes,
    read_vrd_split,
    union_frame,
)
from scenegraph_diff.graph import SceneGraph, SceneGraphError

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "datasets" / "vrd"

# Hand-computed from tests/fixtures/datasets/vrd/annotations_train.json, img1.jpg. Pixel boxes
# (x0, y0, x1, y1): person (20, 10, 80, 100), shirt (25, 30, 75, 60), horse (10, 50, 150, 200), and the
# horse's twin (self relationship). Union frame (10, 10, 150, 200): W = 140, H = 190.
IMG1_BOXES = [
    (10 / 140, 0 / 190, 70 / 140, 90 / 190),
    (15 / 140, 20 / 190, 65 / 140, 50 / 190),
    (0 / 140, 40 / 190, 140 / 140, 190 / 190),
    (0 / 140, 40 / 190, 140 / 140, 190 / 190),
]


def rel(p, sc, sb, oc, ob):
    return {"predicate": p, "subject": {"category": sc, "bbox": sb}, "object": {"category": oc, "bbox": ob}}


def test_union_frame_and_normalise_by_hand():
    boxes = [(20, 10, 80, 100), (25, 30, 75, 60), (10, 50, 150, 200)]
    assert union_frame(boxes) == (10, 10, 150, 200)
    assert [normalise_box(b, (10, 10, 150, 200)) for b in boxes] == IMG1_BOXES[:3]
    # an explicit frame (the image): not the union
    assert normalise_box((20, 10, 80, 100), (0, 0, 200, 250)) == (0.1, 0.04, 0.4, 0.4)


def test_boxes_survive_prepare_jsonl_scene_graph_round_trip(tmp_path):
    rep = prepare_vrd(VRDConfig(str(FIX), str(tmp_path), progress=False))
    assert rep.manifest["settings"]["box_frame"] == "union"
    line = (tmp_path / "train" / "part-00000.jsonl").read_text().splitlines()[0]
    assert json.loads(line)["objects"][0]["box"] == list(IMG1_BOXES[0])  # written in the JSONL itself
    (_, g1), (_, g2) = iter_manifest_graphs(tmp_path, "train", verify=True)
    assert [o.box for o in g1.objects] == IMG1_BOXES
    assert SceneGraph.from_json(g1.to_json()) == g1 and g2.num_objects == 0
    # test split, img4.jpg: (0, 0, 10, 10) and (0, 5, 100, 50) -> frame (0, 0, 100, 50)
    ((_, g4),) = iter_manifest_graphs(tmp_path, "test")
    assert [o.box for o in g4.objects] == [(0.0, 0.0, 0.1, 0.2), (0.0, 0.1, 1.0, 1.0)]


def test_image_size_wins_over_the_union_frame(tmp_path):
    rep = prepare_vrd(VRDConfig(str(FIX), str(tmp_path), image_sizes=str(FIX / "image_sizes.json"), progress=False))
    assert rep.manifest["settings"]["box_frame"] == "image"
    (_, g1), _ = iter_manifest_graphs(tmp_path, "train")
    # img1.jpg is 200 x 250: the frame is (0, 0, 200, 250), not the union (10, 10, 150, 200)
    assert g1.objects[2].box == (10 / 200, 50 / 250, 150 / 200, 200 / 250)


def test_box_outside_the_image_is_skipped_and_named(tmp_path):
    sizes = tmp_path / "sizes.json"
    sizes.write_text(json.dumps({"img1.jpg": [100, 250], "img2.jpg": [9, 9], "img3.jpg": [9, 9], "img4.jpg": [100, 50]}))
    rep = prepare_vrd(VRDConfig(str(FIX), str(tmp_path / "out"), image_sizes=str(sizes), progress=False))
    skipped = (tmp_path / "out" / "skipped.txt").read_text()
    assert ("image 'img1.jpg': objects[2].box: box (x0, y0, x1, y1) = [10, 50, 150, 200] lies outside the frame "
            "[0.0, 0.0, 100.0, 250.0]") in skipped
    assert rep.skipped == 2 and rep.manifest["splits"]["train"]["graphs"] == 1  # img1 (box) and img3 (predicate)


def test_image_missing_from_image_sizes_is_skipped(tmp_path):
    sizes = tmp_path / "sizes.json"
    sizes.write_text(json.dumps({"img2.jpg": [9, 9], "img3.jpg": [9, 9], "img4.jpg": [100, 50]}))
    prepare_vrd(VRDConfig(str(FIX), str(tmp_path / "out"), image_sizes=str(sizes), progress=False))
    assert "image 'img1.jpg': image: no size in image_sizes" in (tmp_path / "out" / "skipped.txt").read_text()


@pytest.mark.parametrize("frame, msg", [
    ((10, 10, 10, 50), r"degenerate frame \[10, 10, 10, 50\]: width 0, height 40"),
    ((0, 5, 20, 5), r"degenerate frame \[0, 5, 20, 5\]: width 20, height 0"),
    ((0, 0, -3, 4), r"width -3, height 4"),
    ((0, 0, float("inf"), 4), r"width inf"),
])
def test_degenerate_frame_is_refused(frame, msg):
    with pytest.raises(SceneGraphError, match=msg) as e:
        normalise_box((0, 0, 1, 1), frame, "objects[3].box")
    assert e.value.field == "objects[3].box"


def test_union_frame_of_nothing_and_image_without_objects():
    with pytest.raises(ValueError, match="no boxes"):
        union_frame([])
    a = parse_vrd_image("empty.jpg", [])
    assert a.frame() is None and a.to_scene_graph(["x"], ["y"]) == SceneGraph((), ())


@pytest.mark.parametrize("size", [[0, 250], [200, -1], [200], "200x250", [200, True], [float("nan"), 3]])
def test_bad_image_size_names_the_entry(tmp_path, size):
    path = tmp_path / "sizes.json"
    path.write_text(json.dumps({"img1.jpg": size}))
    with pytest.raises(ValueError, match=r"'img1.jpg': size .* is not \[width, height\]") as e:
        read_image_sizes(path)
    assert repr(json.loads(json.dumps(size))) in str(e.value)  # the bad value itself
    with pytest.raises(ValueError, match="'img1.jpg'"):
        prepare_vrd(VRDConfig(str(FIX), str(tmp_path / "out"), image_sizes=str(path), progress=False))


def test_parse_twins_self_relationships_and_keeps_duplicates():
    a = parse_vrd_image("x.jpg", [
        rel(0, 1, [0, 10, 0, 10], 2, [5, 20, 5, 20]),
        rel(0, 1, [0, 10, 0, 10], 2, [5, 20, 5, 20]),  # duplicate: kept
        rel(1, 2, [5, 20, 5, 20], 2, [5, 20, 5, 20]),  # self relationship: a twin for its object
        rel(2, 2, [5, 20, 5, 20], 1, [0, 10, 0, 10]),
    ])
    assert a.categories == (1, 2, 2) and a.twin_of == (0, 1, 1) and a.num_twins == 1
    assert a.boxes[1] == (5, 5, 20, 20)  # [ymin, ymax, xmin, xmax] -> (x0, y0, x1, y1)
    assert a.relationships == ((0, 0, 1), (0, 0, 1), (1, 1, 2), (1, 2, 0))
    assert a.distinct_objects() == [(1, 0, 0, 10, 10), (2, 5, 5, 20, 20)]
    assert a.triplets() == {(0, 1, 0), (1, 1, 1), (1, 0, 2)}


@pytest.mark.parametrize("rels, msg", [
    ({"a": 1}, r"relationships: expected a list, got dict"),
    ([3], r"relationships\[0\]: expected an object, got int"),
    ([{"subject": {}, "object": {}}], r"relationships\[0\].predicate: missing"),
    ([rel(7, 0, [0, 1, 0, 1], 0, [0, 1, 0, 1])], r"relationships\[0\].predicate: 7 out of range \(4 predicates\)"),
    ([rel(True, 0, [0, 1, 0, 1], 0, [0, 1, 0, 1])], r"predicate: True out of range"),
    ([rel(0, 5, [0, 1, 0, 1], 0, [0, 1, 0, 1])], r"relationships\[0\].subject.category: 5 out of range \(5 classes\)"),
    ([rel(0, 0, [0, 1, 0, 1], 0, [0, 1, 0])], r"relationships\[0\].object.bbox: expected \[ymin, ymax, xmin, xmax\].*\[0, 1, 0\]"),
    ([rel(0, 0, [0, 1, 0, float("inf")], 0, [0, 1, 0, 1])], r"subject.bbox: expected .*inf"),
    ([rel(0, 0, [0, 1, 0, 1], 0, [4, 4, 0, 9])], r"relationships\[0\].object.bbox: empty box .* = \[4, 4, 0, 9\]"),
    ([rel(0, 0, [0, 1, 3, 2], 0, [0, 1, 0, 1])], r"subject.bbox: empty box .* = \[0, 1, 3, 2\]"),
])
def test_parse_errors_name_the_field_and_value(rels, msg):
    with pytest.raises(SceneGraphError, match=msg):
        parse_vrd_image("x.jpg", rels, num_objects=5, num_predicates=4)


def test_read_vrd_split_names_file_and_image(tmp_path):
    images = read_vrd_split(FIX / "annotations_train.json")
    assert [a.name for a in images] == ["img1.jpg", "img2.jpg", "img3.jpg"]  # sorted, empty images kept
    with pytest.raises(ValueError, match=r"annotations_train.json: image 'img3.jpg': relationships\[0\].predicate: 9"):
        read_vrd_split(FIX / "annotations_train.json", num_predicates=4)
    (tmp_path / "a.json").write_text("[]")
    with pytest.raises(ValueError, match=r"a.json: expected a JSON object .* got list"):
        read_vrd_split(tmp_path / "a.json")
    with pytest.raises(FileNotFoundError, match="nope.json"):
        read_vrd_split(tmp_path / "nope.json")


# -- the tensor readers, rebuilt on read_vrd_split -----------------------------------------------

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "datasets"
# Outputs of the readers before the merge (the package at 012d2d0); see tests/fixtures/linkpred/PROVENANCE.md.
BEFORE = json.loads((ROOT / "tests" / "fixtures" / "linkpred" / "vrd_readers_before.json").read_text())
# sha256 of the same snapshot on the full VRD splits, computed with the package at 012d2d0
# (`python benchmarks/vrd_reader_merge.py --old-rev 012d2d0`, benchmarks/results/vrd_reader_check.json).
FULL_BEFORE = {
    "linkpred/train": "00cbc7625fecd50f1054efec590f689ec8ef0c62b045a655fde0df093cf5a71e",
    "diffusion/train": "47d62ad2acfa1f9204f291815e3f343c2cd8d24741611fa2482bba704bdf2052",
    "linkpred/test": "542e9654ecd2383548f9bfc45641a2956341fb259e876bc1e7cd5309db868151",
    "diffusion/test": "67a69c33c7b194c4764aee706094c717dfc384c6bc2a60665a2b57f4491344e4",
}


def _merge_check():
    import importlib.util

    spec = importlib.util.spec_from_file_location("vrd_reader_merge", ROOT / "benchmarks" / "vrd_reader_merge.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _json(obj):
    return json.loads(json.dumps(obj, sort_keys=True))  # tuples -> lists, as in the stored file


def _fixture_root(tmp_path, drop=("img3.jpg",)):
    """The hand-written fixture under ``<tmp>/vrd`` (the readers want ``<root>/vrd``), minus ``drop``."""
    (tmp_path / "vrd").mkdir()
    for f in FIX.iterdir():
        (tmp_path / "vrd" / f.name).write_bytes(f.read_bytes())
    train = json.loads((FIX / "annotations_train.json").read_text())
    for name in drop:
        del train[name]
    (tmp_path / "vrd" / "annotations_train.json").write_text(json.dumps(train))
    return tmp_path


def test_rebuilt_readers_give_the_old_output_on_the_fixtures(tmp_path):
    m = _merge_check()
    assert _json(m.snapshot(ROOT / "tests" / "fixtures" / "linkpred")) == BEFORE["linkpred_fixture"]
    # self relationship, duplicate objects and an image without relationships
    assert _json(m.snapshot(_fixture_root(tmp_path))) == BEFORE["datasets_fixture_without_img3"]


def test_rebuilt_readers_views_by_hand(tmp_path):
    from scenegraph_diff.diffusion.scene_graph_data import load_vrd_graphs
    from scenegraph_diff.linkpred.vrd import load_vrd

    root = _fixture_root(tmp_path)
    img1, img2 = load_vrd(root, "train")
    assert (img1.name, img2.name) == ("img1.jpg", "img2.jpg") and img2.classes.numel() == 0  # empty kept
    assert img1.classes.tolist() == [0, 1, 2]  # the twin of the self relationship is not a node here
    assert img1.boxes.tolist() == [[20, 10, 80, 100], [25, 30, 75, 60], [10, 50, 150, 200]]
    assert img1.triplets.tolist() == [[0, 1, 0], [0, 2, 2], [2, 2, 3]]  # the self pair is kept
    (g1,), objects, predicates = load_vrd_graphs(root, "train")  # img2 has no relation: left out
    assert g1.classes == (0, 1, 2) and g1.triplets == {(0, 1, 1), (0, 2, 3)}  # p + 1, no self pair
    assert objects[:2] == ["person", "shirt"] and predicates[-1] == "next to"


def test_rebuilt_readers_reject_bad_ids_naming_them(tmp_path):
    from scenegraph_diff.diffusion.scene_graph_data import load_vrd_graphs
    from scenegraph_diff.linkpred.vrd import load_vrd

    root = _fixture_root(tmp_path, drop=())
    with pytest.raises(ValueError, match=r"image 'img3.jpg': relationships\[0\].predicate: 9 out of range \(4 predicates\)"):
        load_vrd_graphs(root, "train")  # 4 predicates in this fixture's predicates.json
    bad = json.loads((FIX / "annotations_test.json").read_text())
    bad["img4.jpg"][0]["object"]["category"] = 100
    (root / "vrd" / "annotations_test.json").write_text(json.dumps(bad))
    with pytest.raises(ValueError, match=r"image 'img4.jpg': relationships\[0\].object.category: 100 out of range \(100 classes\)"):
        load_vrd(root, "test")


@pytest.mark.skipif(not (SHARED / "vrd").is_dir(), reason="needs ../shared/datasets/vrd")
def test_rebuilt_readers_give_the_old_output_on_full_vrd():
    m = _merge_check()
    assert {k: v["sha256"] for k, v in m.summary(_json(m.snapshot(SHARED))).items()} == FULL_BEFORE
