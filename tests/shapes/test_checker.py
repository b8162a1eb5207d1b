"""The checker (SHAPES.md): 100 % on generated scenes, catches every swapped relation, exact verdicts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from scenegraph_diff.graph import Relation, SceneGraph, SceneObject
from scenegraph_diff.shapes import Box, check, find_components, render, render_layout, sample_scene, score


def obj(colour: str, shape: str) -> SceneObject:
    return SceneObject(shape, (colour,))


def test_checker_scores_100_percent_and_catches_every_swap_on_2000_scenes() -> None:
    g = torch.Generator().manual_seed(2024)
    verdicts, swapped, n_rel = [], [], 0
    for _ in range(2000):
        s = sample_scene(g)
        img = render(s, g)
        verdicts.append(check(img, s))
        if s.relations:
            sw = check(img, s.swapped())
            swapped.append(sw)
            n_rel += s.num_relations
    sc = score(verdicts)
    assert sc.num_images == 2000 and sc.num_relations > 1500
    assert (sc.object_accuracy, sc.relation_accuracy, sc.graph_accuracy) == (1.0, 1.0, 1.0)
    assert sum(v.relations_satisfied for v in swapped) == 0  # every reversed relation is caught
    assert len(swapped) > 1000


def test_checker_at_64() -> None:
    g = torch.Generator().manual_seed(7)
    for _ in range(200):
        s = sample_scene(g, 64)
        assert check(render(s, g, 64), s).all_correct


def test_shapes_classified_by_fill() -> None:
    g = SceneGraph((obj("red", "square"), obj("green", "circle"), obj("blue", "triangle")))
    img = render_layout(g, [Box(1, 1, 7), Box(12, 1, 11), Box(1, 15, 9)], 32)
    comps = {(c.colour, c.shape) for c in find_components(img)}
    assert comps == {("red", "square"), ("green", "circle"), ("blue", "triangle")}


def test_wrong_colour_or_shape_or_missing_object_fails() -> None:
    g = SceneGraph((obj("red", "square"), obj("blue", "circle")), (Relation(0, "left of", 1),))
    img = render_layout(g, [Box(2, 10, 8), Box(20, 10, 9)], 32)
    v = check(img, g)
    assert v.objects == (True, True) and v.relations == (True,) and v.all_correct
    other = SceneGraph((obj("red", "circle"), obj("blue", "circle")), (Relation(0, "left of", 1),))
    v = check(img, other)
    assert v.objects == (False, True) and v.relations == (False,) and not v.all_correct
    blank = np.zeros_like(img)
    v = check(blank, g)
    assert v.objects_found == 0 and v.relations_satisfied == 0


def test_relation_needs_the_margin() -> None:
    g = SceneGraph((obj("red", "square"), obj("blue", "square")), (Relation(0, "above", 1),))
    # Centroids 2 px apart vertically (< 0.08 * 32 = 2.56): not "above"; 12 px apart: "above".
    near = render_layout(g, [Box(2, 10, 8), Box(20, 12, 8)], 32)
    far = render_layout(g, [Box(2, 2, 8), Box(20, 14, 8)], 32)
    assert check(near, g).relations == (False,)
    assert check(far, g).relations == (True,)


def test_tolerance_and_specks() -> None:
    g = SceneGraph((obj("yellow", "square"),))
    img = render_layout(g, [Box(5, 5, 9)], 32).astype(np.int16)
    noisy = np.clip(img + np.random.default_rng(0).integers(-20, 21, img.shape), 0, 255).astype(np.uint8)
    assert check(noisy, g).all_correct  # near-palette pixels still count
    speck = np.zeros((32, 32, 3), np.uint8)
    speck[3:5, 3:5] = (230, 210, 40)  # 4 px: a speck, discarded
    assert check(speck, g).objects == (False,)
    assert check(img.astype(np.float32) / 255.0, g).all_correct  # float images in [0, 1]
    assert check(np.moveaxis(img.astype(np.uint8), -1, 0), g).all_correct  # CHW


def test_score_aggregates() -> None:
    g = SceneGraph((obj("red", "square"), obj("blue", "circle")), (Relation(0, "left of", 1),))
    img = render_layout(g, [Box(2, 10, 8), Box(20, 10, 9)], 32)
    sc = score([check(img, g), check(np.zeros_like(img), g)])
    assert (sc.object_accuracy, sc.relation_accuracy, sc.graph_accuracy) == (0.5, 0.5, 0.5)
    with pytest.raises(ValueError, match="at least one verdict"):
        score([])
