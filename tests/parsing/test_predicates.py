"""Predicate canonicalisation onto a vocabulary (issue 22, item 2): VRD's 70, Visual Genome's 50, the shapes
world's 4, or a user's list."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from scenegraph_diff import SceneGraph, parse
from scenegraph_diff.graph import Relation, SceneObject
from scenegraph_diff.parsing import (
    SHAPES_PREDICATES, VG50_PREDICATES, VRD_PREDICATES, PredicateVocabulary, canonicalize_predicates,
    match_predicate,
)
from scenegraph_diff.parsing.lexicon import SHAPE_PREDICATES

SHARED_VRD = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "vrd" / "predicates.json"


def _g(*triplets):
    names = sorted({n for s, _, o in triplets for n in (s, o)})
    return SceneGraph(tuple(SceneObject(n) for n in names),
                      tuple(Relation(names.index(s), p, names.index(o)) for s, p, o in triplets))


def test_vocabulary_sizes_and_sources():
    assert len(VRD_PREDICATES) == 70 and len(VG50_PREDICATES) == 50
    assert SHAPES_PREDICATES.entries == ("left of", "right of", "above", "below")
    for v in (VRD_PREDICATES, VG50_PREDICATES, SHAPES_PREDICATES):
        assert v.source and len(set(v.entries)) == len(v.entries)


@pytest.mark.skipif(not SHARED_VRD.is_file(), reason="shared VRD copy not here")
def test_vrd_list_is_the_dataset_list():
    assert list(VRD_PREDICATES.entries) == json.loads(SHARED_VRD.read_text())


@pytest.mark.parametrize("predicate, shapes, vrd, vg", [
    ("on the right side of", "right of", "on the right of", None),
    ("to the right of", "right of", "on the right of", None),
    ("at the left of", "left of", "on the left of", None),
    ("left of", "left of", "on the left of", None),
    ("above", "above", "above", "above"),
    ("on top of", "above", "on the top of", "on"),
    ("over", "above", "over", "over"),
    ("beneath", "below", "beneath", "under"),
    ("underneath", "below", "beneath", "under"),
    ("sit on", None, "sit on", "sitting on"),
    ("have", None, "has", "has"),
    ("wear", None, "wear", "wearing"),
    ("lay on", None, "lying on", "laying on"),
    ("make of", None, None, "made of"),
    ("next to", None, "next to", "near"),
    ("stand behind", None, "stand behind", "behind"),
    ("lean against", None, "against", "against"),
    ("sit on top of", "above", "on the top of", "sitting on"),
    ("walk along", None, "walk", "along"),
    ("kick", None, "kick", None),
])
def test_match(predicate, shapes, vrd, vg):
    for vocab, want in ((SHAPES_PREDICATES, shapes), (VRD_PREDICATES, vrd), (VG50_PREDICATES, vg)):
        m = match_predicate(predicate, vocab)
        assert m.entry == want, (predicate, vocab.name, m)
        assert (m.rule == "none") == (want is None) and (m.reason != "") == (want is None)


def test_shapes_vocabulary_agrees_with_the_shapes_parser():
    for surface, canonical in SHAPE_PREDICATES.items():
        assert match_predicate(surface, SHAPES_PREDICATES).entry == canonical, surface


def test_rules_in_order():
    assert match_predicate("on", VRD_PREDICATES).rule == "exact"
    assert match_predicate("sitting on", VRD_PREDICATES).rule == "exact"  # normalised forms compared
    assert match_predicate("on the right side of", SHAPES_PREDICATES).rule == "synonym"
    m = match_predicate("walk along", VRD_PREDICATES)
    assert m.rule == "overlap" and m.score == pytest.approx(0.5)
    m = match_predicate("kick", SHAPES_PREDICATES)
    assert m.rule == "none" and m.reason == "no entry of 'shapes' matches 'kick' (best token overlap 0.00 < 0.5)"


def test_user_vocabulary_and_fallbacks(caplog):
    g = parse("a laptop to the right of a cup of coffee", backend="rules")
    out = canonicalize_predicates(g, SHAPES_PREDICATES)
    assert ("laptop", "right of", "cup") in out.triplets()
    assert len(out.relations) == len(g.relations)  # unknown="keep": the cup/coffee relation is unchanged
    with caplog.at_level(logging.INFO, logger="scenegraph_diff"):
        dropped = canonicalize_predicates(g, SHAPES_PREDICATES, unknown="drop")
    assert dropped.triplets() == [("laptop", "right of", "cup")]
    assert "dropped relation" in caplog.text and "no entry of 'shapes' matches" in caplog.text
    assert dropped.text == g.text and dropped.objects == g.objects  # objects are kept
    mine = PredicateVocabulary.from_entries(["Holding", "near"], name="mine")
    assert mine.entries == ("holding", "near")
    assert canonicalize_predicates(_g(("man", "hold", "cup"), ("cup", "beside", "plate")), mine).triplets() == [
        ("man", "holding", "cup"), ("cup", "near", "plate")]
    assert canonicalize_predicates(_g(("man", "hold", "cup")), ["carry", "hold"]).triplets() == [("man", "hold", "cup")]


def test_duplicates_after_mapping_are_merged():
    g = _g(("lamp", "to the left of", "bed"), ("lamp", "at the left of", "bed"))
    assert canonicalize_predicates(g, SHAPES_PREDICATES).triplets() == [("lamp", "left of", "bed")]


def test_bad_arguments_name_the_value():
    with pytest.raises(ValueError, match="unknown must be 'keep' or 'drop', got 'skip'"):
        canonicalize_predicates(_g(("a", "on", "b")), SHAPES_PREDICATES, unknown="skip")
    with pytest.raises(ValueError, match="PredicateVocabulary 'empty': no entries"):
        PredicateVocabulary.from_entries([], name="empty")
    with pytest.raises(ValueError, match=r"PredicateVocabulary 'x': entries\[1\] is empty"):
        PredicateVocabulary.from_entries(["on", "  "], name="x")
    with pytest.raises(TypeError, match="entries must be strings, got int 3"):
        PredicateVocabulary.from_entries(["on", 3])
    with pytest.raises(TypeError, match="vocabulary must be a PredicateVocabulary or a list of strings, got str"):
        canonicalize_predicates(_g(("a", "on", "b")), "shapes")
    with pytest.raises(ValueError, match="min_overlap must be in \\(0, 1\\], got 0"):
        match_predicate("on", SHAPES_PREDICATES, min_overlap=0)


def test_deterministic_and_does_not_mutate():
    g = _g(("man", "stand next to", "car"), ("car", "park on", "street"))
    before = g.to_json()
    a = canonicalize_predicates(g, VG50_PREDICATES)
    assert a == canonicalize_predicates(g, VG50_PREDICATES) and g.to_json() == before
    assert a.triplets() == [("man", "near", "car"), ("car", "parked on", "street")]


def test_parse_and_post_processing_import_no_torch():
    import subprocess
    import sys

    code = ("import sys; from scenegraph_diff import parse; "
            "from scenegraph_diff.parsing import expand_counts, canonicalize_predicates, SHAPES_PREDICATES; "
            "g = parse('there is no cat on the mat, two red circles to the right of a cup of coffee'); "
            "g = canonicalize_predicates(expand_counts(g), SHAPES_PREDICATES); "
            "assert 'torch' not in sys.modules, 'torch imported'; print(g.triplets())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "('circle', 'right of', 'cup')" in out.stdout and "cat" not in out.stdout
