"""The shapes-world generator and renderer (SHAPES.md): exact colours, sizes, relations, captions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from scenegraph_diff.graph import Relation, SceneGraph, SceneGraphError, SceneObject
from scenegraph_diff.shapes import (
    COLOURS, SHAPES, Box, caption, centroid, layout_satisfies, relation_holds, render, render_layout,
    sample_layout, sample_scene, validate_shapes_graph,
)
from scenegraph_diff.shapes.world import margin, shape_mask, side_range


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def obj(colour: str, shape: str) -> SceneObject:
    return SceneObject(shape, (colour,))


def test_palette_is_exact() -> None:
    assert COLOURS["red"] == (220, 40, 40) and COLOURS["cyan"] == (40, 200, 210)
    assert len(COLOURS) == 6 and SHAPES == ("circle", "square", "triangle")


@pytest.mark.parametrize("size", [32, 64])
def test_side_range_scales(size: int) -> None:
    lo, hi = side_range(size)
    assert (lo, hi) == ((7, 11) if size == 32 else (14, 22))
    assert margin(size) == pytest.approx(0.08 * size)


@pytest.mark.parametrize("side", range(7, 23))
def test_shape_fill_ratios(side: int) -> None:
    assert shape_mask("square", side).mean() == 1.0
    assert 0.74 < shape_mask("circle", side).mean() < 0.86
    assert 0.49 < shape_mask("triangle", side).mean() < 0.52


def test_triangle_is_upright() -> None:
    m = shape_mask("triangle", 9)
    assert m[0].sum() == 1 and m[-1].sum() == 9  # apex at the top, base at the bottom
    cx, cy = centroid("triangle", Box(0, 0, 9))
    assert cx == pytest.approx(4.5) and cy > 4.5  # centre of mass below the box centre


def test_relations_on_centroids_with_margin() -> None:
    m = margin(32)
    assert relation_holds("left of", (10.0, 5.0), (10.0 + m + 0.01, 5.0), 32)
    assert not relation_holds("left of", (10.0, 5.0), (10.0 + m, 5.0), 32)
    assert relation_holds("right of", (20.0, 0.0), (10.0, 0.0), 32)
    assert relation_holds("above", (0.0, 3.0), (0.0, 9.0), 32) and relation_holds("below", (0.0, 9.0), (0.0, 3.0), 32)
    with pytest.raises(SceneGraphError, match="unknown predicate 'on'"):
        relation_holds("on", (0.0, 0.0), (1.0, 1.0), 32)


@pytest.mark.parametrize("size", [32, 64])
def test_sample_scene_properties(size: int) -> None:
    g = gen(0)
    seen_counts = set()
    for _ in range(300):
        s = sample_scene(g, size)
        keys = validate_shapes_graph(s)
        assert 1 <= len(keys) <= 3 and 0 <= s.num_relations <= 3
        assert s.text and all(f"{c} {sh}" in s.text for c, sh in keys)
        boxes = [Box.from_fractions(o.box, size) for o in s.objects]
        assert layout_satisfies(s, boxes, size)
        lo, hi = side_range(size)
        assert all(lo <= b.side <= hi for b in boxes)
        seen_counts.add((s.num_objects, s.num_relations))
    assert {(1, 0), (2, 1), (3, 3)} <= seen_counts


def test_render_exact_pixels() -> None:
    g = SceneGraph((obj("red", "square"), obj("blue", "circle")), (Relation(0, "left of", 1),))
    img = render_layout(g, [Box(2, 3, 8), Box(20, 3, 9)], 32)
    assert img.dtype == np.uint8 and img.shape == (32, 32, 3)
    assert (img[3:11, 2:10] == (220, 40, 40)).all()
    colours = {tuple(c) for c in img.reshape(-1, 3)}
    assert colours == {(0, 0, 0), (220, 40, 40), (40, 80, 220)}
    assert (img[0] == 0).all()  # background black


def test_render_satisfies_every_relation_and_is_deterministic() -> None:
    g = SceneGraph((obj("green", "triangle"), obj("yellow", "square"), obj("purple", "circle")),
                   (Relation(0, "above", 1), Relation(2, "below", 1), Relation(0, "left of", 2)))
    a, b = render(g, gen(3)), render(g, gen(3))
    assert np.array_equal(a, b)
    boxes = sample_layout(g, gen(4))
    assert layout_satisfies(g, boxes, 32)


def test_contradictory_relations_raise() -> None:
    g = SceneGraph((obj("red", "circle"), obj("blue", "square")),
                   (Relation(0, "left of", 1), Relation(0, "right of", 1)))
    with pytest.raises(SceneGraphError, match="contradictory relations"):
        render(g, gen(0))


@pytest.mark.parametrize("graph, field", [
    (SceneGraph((obj("red", "star"),)), "objects[0].name"),
    (SceneGraph((SceneObject("circle", ("red", "blue")),)), "objects[0].attributes"),
    (SceneGraph((obj("red", "circle"), obj("red", "circle"))), "objects"),
    (SceneGraph((obj("red", "circle"), obj("blue", "square")), (Relation(0, "on", 1),)), "relations[0].predicate"),
    (SceneGraph(()), "objects"),
])
def test_validate_names_the_bad_field(graph: SceneGraph, field: str) -> None:
    with pytest.raises(SceneGraphError) as e:
        validate_shapes_graph(graph)
    assert e.value.field == field


def test_caption_templates() -> None:
    g = SceneGraph((obj("green", "triangle"), obj("yellow", "square"), obj("purple", "circle")),
                   (Relation(0, "above", 1), Relation(2, "below", 1)))
    assert caption(g) == "a green triangle above a yellow square and a purple circle below the yellow square"
    assert caption(SceneGraph((obj("cyan", "square"),))) == "a cyan square"
    lone = SceneGraph((obj("red", "circle"), obj("blue", "square"), obj("cyan", "triangle")),
                      (Relation(0, "left of", 1),))
    assert caption(lone) == "a red circle to the left of a blue square. a cyan triangle"
    assert caption(SceneGraph(lone.objects)) == "a red circle and a blue square and a cyan triangle"
    phrases = {caption(g, gen(i)).split(" a yellow")[0].split("triangle ")[1] for i in range(40)}
    assert phrases == {"above", "over"}


def test_sample_scene_reproducible() -> None:
    assert sample_scene(gen(5)) == sample_scene(gen(5))


def test_more_than_three_consistent_relations_render_and_check() -> None:
    from scenegraph_diff.shapes import check

    g = SceneGraph((obj("red", "circle"), obj("blue", "square"), obj("green", "triangle")),
                   (Relation(0, "left of", 1), Relation(0, "left of", 2), Relation(1, "above", 2),
                    Relation(2, "below", 0)))
    assert check(render(g, gen(0)), g).all_correct
    with pytest.raises(SceneGraphError, match="at most 3 relations, got 4"):
        validate_shapes_graph(g, max_relations=3)


def test_drop_contradictions_keeps_the_first_named() -> None:
    from scenegraph_diff.shapes.world import drop_contradictions

    g = SceneGraph((obj("red", "circle"), obj("blue", "square"), obj("green", "triangle")),
                   (Relation(0, "left of", 1), Relation(1, "left of", 2), Relation(2, "left of", 0),
                    Relation(0, "above", 2)), text="t")
    kept, dropped = drop_contradictions(g)
    assert dropped == [2] and kept.relations == (g.relations[0], g.relations[1], g.relations[3]) and kept.text == "t"
    assert drop_contradictions(kept) == (kept, [])
