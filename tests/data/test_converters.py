"""Dataset converters on hand-written fixtures in the official formats (tests/fixtures/datasets)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from scenegraph_diff.data.captions import CaptionsConfig, prepare_captions
from scenegraph_diff.data.coco import CocoConfig, geometric_predicate, prepare_coco
from scenegraph_diff.data.factual import (
    FactualConfig,
    check_graph_string,
    prepare_factual,
)
from scenegraph_diff.data.shards import iter_manifest_graphs
from scenegraph_diff.data.visual_genome import (
    VisualGenomeConfig,
    load_aliases,
    prepare_visual_genome,
)
from scenegraph_diff.data.vrd import VRDConfig, prepare_vrd
from scenegraph_diff.graph import SceneGraphError, Vocabulary

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "datasets"
SHARED = Path(__file__).resolve().parents[3] / "shared" / "datasets"


def graphs(root, split=None):
    return list(iter_manifest_graphs(root, split, verify=True))


# -- VRD -----------------------------------------------------------------------------------------


def test_vrd_fixture(tmp_path):
    rep = prepare_vrd(VRDConfig(str(FIX / "vrd"), str(tmp_path), progress=False), ["cmd"])
    m = rep.manifest
    assert (m["splits"]["train"]["graphs"], m["splits"]["train"]["relations"]) == (2, 3)
    assert (m["splits"]["test"]["graphs"], m["splits"]["test"]["relations"]) == (1, 1)
    assert rep.skipped == 1 and rep.exit_code == 1
    assert (tmp_path / "skipped.txt").read_text().startswith("annotations_train.json:")
    assert "relationships[0].predicate: 9 out of range (4 predicates)" in (tmp_path / "skipped.txt").read_text()
    (id1, g1), (id2, g2) = graphs(tmp_path, "train")
    assert (id1, id2) == ("img1.jpg", "img2.jpg")
    # identical (category, bbox) -> one node; the self-relation's object gets its own node
    assert [o.name for o in g1.objects] == ["person", "shirt", "horse", "horse"]
    assert g1.triplets() == [("person", "wear", "shirt"), ("person", "ride", "horse"), ("horse", "next to", "horse")]
    assert g1.relations[2].subject != g1.relations[2].object
    assert g2.num_objects == 0  # images without relationships are kept, so image counts match
    assert m["stats"]["self_relations_split"] == 1
    assert Vocabulary.load(tmp_path / "vocab.json").labels("predicate")[1:] == ["wear", "on", "ride", "next to"]


def test_vrd_boxes_with_image_sizes(tmp_path):
    prepare_vrd(VRDConfig(str(FIX / "vrd"), str(tmp_path), image_sizes=str(FIX / "vrd" / "image_sizes.json"), progress=False))
    _, g = graphs(tmp_path, "train")[0]
    # VRD bbox [ymin, ymax, xmin, xmax] = [10, 100, 20, 80] in a 200 x 250 image
    assert g.objects[0].box == (20 / 200, 10 / 250, 80 / 200, 100 / 250)


@pytest.mark.skipif(not (SHARED / "vrd").is_dir(), reason="needs ../shared/datasets/vrd")
def test_vrd_full_counts(tmp_path):
    m = prepare_vrd(VRDConfig(str(SHARED / "vrd"), str(tmp_path), progress=False)).manifest
    assert (m["splits"]["train"]["graphs"], m["splits"]["test"]["graphs"]) == (4000, 1000)
    assert (m["splits"]["train"]["relations"], m["splits"]["test"]["relations"]) == (30355, 7638)
    assert (m["vocab"]["objects"], m["vocab"]["predicates"]) == (100, 70)
    assert m["skipped"] == 0
    # every object has a box, and each image's boxes span its union frame: [0, 1] on both axes
    for _, g in graphs(tmp_path):
        if g.objects:
            b = [o.box for o in g.objects]
            assert (min(x[0] for x in b), min(x[1] for x in b), max(x[2] for x in b), max(x[3] for x in b)) == (0, 0, 1, 1)


# -- Visual Genome ------------------------------------------------------------------------------


def vg_config(out, **kw):
    base = dict(data_root=str(FIX / "vg"), output_dir=str(out), object_aliases=str(FIX / "vg" / "object_alias.txt"),
                predicate_aliases=str(FIX / "vg" / "predicate_alias.txt"), min_object_instances=1,
                min_attribute_instances=1, min_relationship_instances=1, min_object_size=8,
                min_objects_per_image=2, val_fraction=0.0, test_fraction=0.0, progress=False)
    base.update(kw)
    return VisualGenomeConfig(**base)


def test_visual_genome_fixture(tmp_path):
    rep = prepare_visual_genome(vg_config(tmp_path))
    m = rep.manifest
    (i1, g1), (i2, g2) = graphs(tmp_path, "train")
    assert (i1, i2) == ("1", "2")
    # aliases (men -> man, WEARS -> wear), attributes canonicalised and de-duplicated, boxes normalised
    assert [(o.name, o.attributes) for o in g1.objects] == [("man", ("tall",)), ("shirt", ("blue",)), ("tree", ())]
    assert g1.objects[0].box == (0.05, 0.05, 0.3, 0.55)
    assert g1.triplets() == [("man", "wear", "shirt"), ("man", "near", "tree")]
    assert g2.triplets() == [("man", "near", "tree")]  # the 5-pixel button is dropped with its relation
    assert m["stats"]["relations_dropped_self"] == 1 and m["stats"]["objects_dropped_small"] == 1
    assert m["stats"]["relations_dropped_object"] == 1
    assert m["filtered"] == {"too_few_objects": 1}
    assert rep.skipped == 1
    assert (tmp_path / "skipped.txt").read_text() == (
        "relationships.json:161: image #2: relationships[0].subject.object_id: missing\n")


def test_visual_genome_thresholds_and_splits(tmp_path):
    m = prepare_visual_genome(vg_config(tmp_path / "a", min_object_instances=3)).manifest
    assert Vocabulary.load(tmp_path / "a" / "vocab.json").labels("object")[1:] == ["man", "tree"]
    assert m["splits"]["train"]["graphs"] == 2
    assert graphs(tmp_path / "a")[0][1].triplets() == [("man", "near", "tree")]  # "shirt" (1 instance) is out
    assert m["stats"]["objects_dropped_vocab"] == 2  # shirt, button
    splits = tmp_path / "splits.json"
    splits.write_text(json.dumps({"val": [1], "test": [2]}))
    m = prepare_visual_genome(vg_config(tmp_path / "b", splits=str(splits))).manifest
    assert sorted(m["splits"]) == ["test", "val"]


def test_visual_genome_rejects_misaligned_files(tmp_path):
    root = tmp_path / "vg"
    root.mkdir()
    for f in (FIX / "vg").glob("*.json"):
        (root / f.name).write_bytes(f.read_bytes())
    data = json.loads((root / "objects.json").read_text())
    (root / "objects.json").write_text(json.dumps(data[::-1]))
    with pytest.raises(ValueError, match="image_id 4 where relationships.json has 1"):
        prepare_visual_genome(vg_config(tmp_path / "out", data_root=str(root)))


def test_load_aliases(tmp_path):
    p = tmp_path / "a.txt"
    p.write_text("man,men, Guy\nwear,wears\n")
    assert load_aliases(p) == {"man": "man", "men": "man", "guy": "man", "wear": "wear", "wears": "wear"}


# -- COCO ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "s,o,expected",
    [
        ((0.0, 0.0, 1.0, 1.0), (0.4, 0.4, 0.6, 0.6), "surrounding"),
        ((0.4, 0.4, 0.6, 0.6), (0.0, 0.0, 1.0, 1.0), "inside"),
        ((0.0, 0.4, 0.2, 0.6), (0.6, 0.4, 0.8, 0.6), "left of"),
        ((0.6, 0.4, 0.8, 0.6), (0.0, 0.4, 0.2, 0.6), "right of"),
        ((0.4, 0.0, 0.6, 0.2), (0.4, 0.6, 0.6, 0.8), "above"),  # image y grows downwards
        ((0.4, 0.6, 0.6, 0.8), (0.4, 0.0, 0.6, 0.2), "below"),
    ],
)
def test_geometric_predicate_is_direction_sensitive(s, o, expected):
    assert geometric_predicate(s, o) == expected


def test_coco_fixture(tmp_path):
    cfg = CocoConfig(str(FIX / "coco" / "instances.json"), str(tmp_path), stuff=str(FIX / "coco" / "stuff.json"), progress=False)
    rep = prepare_coco(cfg)
    (iid, g), = graphs(tmp_path, "train")
    assert iid == "1"
    # frisbee (0.25 % of the image) and the stuff class "other" are dropped
    assert [o.name for o in g.objects] == ["person", "dog", "grass"]
    assert g.objects[0].box == (0.1, 0.1, 0.4, 0.7)
    assert g.num_relations == 3  # one drawn partner per object
    for s, p, o in [(g.objects[r.subject], r.predicate, g.objects[r.object]) for r in g.relations]:
        assert p == geometric_predicate(s.box, o.box)
    assert rep.manifest["filtered"] == {"too_few_objects": 1}
    skipped = (tmp_path / "skipped.txt").read_text().splitlines()
    assert len(skipped) == 2 and skipped[0].startswith("instances.json:") and "bbox" in skipped[0]
    assert "images[2]: image: bad width/height 0/100" in skipped[1]
    # the draw is seeded per image: same seed, same graph; another seed may differ but stays valid
    prepare_coco(CocoConfig(cfg.instances, str(tmp_path / "again"), stuff=cfg.stuff, progress=False))
    assert graphs(tmp_path / "again") == graphs(tmp_path)


# -- FACTUAL ---------------------------------------------------------------------------------------


def test_factual_fixture(tmp_path):
    rep = prepare_factual(FactualConfig(str(FIX / "factual"), str(tmp_path), progress=False))
    train = graphs(tmp_path, "train")
    assert [i for i, _ in train] == ["2325192/4329398", "2344605/3403001", "2399217/793369", "2316760/1234"]
    g = train[2][1]
    assert g.text == 'two pigs, one "pink"' and g.objects[0].attributes == ("2", "pink")
    assert train[3][1].triplets() == [("tower", "by", "tower")]
    reasons = (tmp_path / "skipped.txt").read_text().splitlines()
    assert [r.split(":")[0] + ":" + r.split(":")[1] for r in reasons] == ["train.csv:5", "train.csv:6", "train.csv:8", "dev.csv:3"]
    assert rep.exit_code == 1


@pytest.mark.parametrize("bad", ["( , on , mat )", "( cat , on , mat", "( a , b )", "( a ) ( b )", "x ( a )"])
def test_check_graph_string_rejects(bad):
    with pytest.raises(SceneGraphError):
        check_graph_string(bad)


def test_check_graph_string_accepts():
    check_graph_string("( stove , is , white ) , ( stove , in , kitchen ) , ( pan )")


# -- captions -----------------------------------------------------------------------------------


def cap_config(inp, out, **kw):
    return CaptionsConfig(str(inp), str(out), parse_fn="standin_parser:parse_batch", progress=False, **kw)


def test_captions_txt_with_standin_parser(tmp_path):
    rep = prepare_captions(cap_config(FIX / "captions" / "captions.txt", tmp_path, batch_size=2))
    got = graphs(tmp_path)
    assert [i for i, _ in got] == ["1", "3", "6"]
    assert got[0][1].triplets() == [("cat", "on", "mat")] and got[0][1].text == "a cat on a mat"
    skipped = (tmp_path / "skipped.txt").read_text().splitlines()
    assert [s.split(": ")[0] for s in skipped] == ["captions.txt:2", "captions.txt:4", "captions.txt:5"]
    assert "parser failed: ValueError" in skipped[2]
    assert rep.exit_code == 1


@pytest.mark.parametrize("name,ids", [("captions.jsonl", ["1", "2", "6"]), ("captions.csv", ["2", "3"])])
def test_captions_jsonl_and_csv(tmp_path, name, ids):
    prepare_captions(cap_config(FIX / "captions" / name, tmp_path))
    assert [i for i, _ in graphs(tmp_path)] == ids


def test_captions_shards_partition_the_corpus(tmp_path):
    src = tmp_path / "c.txt"
    src.write_text("".join(f"thing{i} on mat{i}\n" for i in range(20)))
    ids = []
    for i in range(3):
        prepare_captions(cap_config(src, tmp_path / f"s{i}", shard=(i, 3)))
        ids += [int(x) for x, _ in graphs(tmp_path / f"s{i}")]
    assert sorted(ids) == list(range(1, 21))


def test_captions_with_library_parser(tmp_path):
    src = tmp_path / "c.txt"
    src.write_text("a red circle to the left of a blue square\n")
    prepare_captions(CaptionsConfig(str(src), str(tmp_path / "o"), backend="rules", progress=False))
    (_, g), = graphs(tmp_path / "o")
    assert g.text.startswith("a red circle") and g.num_objects >= 2


def test_config_errors_name_the_value():
    with pytest.raises(ValueError, match=r"shard=\(3, 2\)"):
        CaptionsConfig("x", "y", shard=(3, 2))
    with pytest.raises(ValueError, match="chunk_size=0"):
        VRDConfig("x", "y", chunk_size=0)
    with pytest.raises(ValueError, match="val_fraction"):
        VisualGenomeConfig("x", "y", val_fraction=0.6, test_fraction=0.5)
    assert math.isfinite(CocoConfig("a", "b").min_object_size)
