"""Layout repair, layout maps, conditioner and ShapesPipeline (tiny random weights; no training)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from scenegraph_diff.graph import Relation, SceneGraph, SceneObject
from scenegraph_diff.shapes import PALETTE, layout_satisfies, sample_scene
from scenegraph_diff.shapes.conditioning import ShapesConditioner
from scenegraph_diff.shapes.layout import NUM_LAYOUT_CHANNELS, layout_maps, repair_layout, targets_to_boxes
from scenegraph_diff.shapes.pipeline import ShapesPipeline, make_scheduler, make_unet
from scenegraph_diff.shapes.world import Box


def obj(colour: str, shape: str) -> SceneObject:
    return SceneObject(shape, (colour,))


THREE = SceneGraph((obj("red", "circle"), obj("blue", "square"), obj("green", "triangle")),
                   (Relation(0, "left of", 1), Relation(2, "above", 1), Relation(2, "right of", 0)))


def test_repair_enforces_relations_from_a_collapsed_prediction() -> None:
    pred = torch.full((3, 3), 0.5)  # every object predicted at the centre
    for seed in range(20):
        boxes = repair_layout(THREE, pred, 32, torch.Generator().manual_seed(seed), fallback=False)
        assert layout_satisfies(THREE, boxes, 32)


def test_repair_without_relations_only_separates() -> None:
    pred = torch.tensor([[0.8, 0.5, 0.3], [0.2, 0.5, 0.3], [0.5, 0.8, 0.3]])  # the swapped layout, roughly
    boxes = repair_layout(THREE, pred, 32, torch.Generator().manual_seed(0), jitter=0.0, relations=False)
    assert layout_satisfies(SceneGraph(THREE.objects), boxes, 32)  # inside and apart
    assert not layout_satisfies(THREE, boxes, 32)  # the (wrong) predicted directions are kept


def test_targets_to_boxes_clamps_side() -> None:
    assert targets_to_boxes([[0.5, 0.5, 0.9]], 32) == [Box(10, 10, 11)]  # centre 16 - 5.5, rounded half to even
    assert targets_to_boxes([[0.5, 0.5, 0.01]], 32)[0].side == 7


def test_layout_maps_channels() -> None:
    g = SceneGraph((obj("blue", "triangle"),))
    maps = layout_maps([g], [[Box(4, 6, 8)]], 32)
    assert maps.shape == (1, NUM_LAYOUT_CHANNELS, 32, 32)
    inside = maps[0, :, 6:14, 4:12]
    assert (inside[2] == 1).all() and maps[0, 2].sum() == 64  # blue is colour 2
    assert (inside[6 + 2] == 1).all()  # triangle is shape 2
    assert maps[0, 9, 6, 4] == pytest.approx(-7 / 8) and maps[0, 9, 6, 11] == pytest.approx(7 / 8)  # u in box
    assert maps[0, 9, 0, 0] == 0 and maps[0, 11, 0, 0] == pytest.approx(-31 / 32)  # canvas x


@pytest.fixture(scope="module")
def tiny_pipe() -> ShapesPipeline:
    torch.manual_seed(0)  # test-local: deterministic random init
    unet = make_unet(32, 16, (8, 16, 16))
    cond = ShapesConditioner(encoder="rhgnn", dim=16, embed_dim=16, layout_hidden=16)
    return ShapesPipeline(unet=unet.eval(), conditioner=cond.eval(), scheduler=make_scheduler())


def test_conditioner_is_direction_sensitive(tiny_pipe: ShapesPipeline) -> None:
    g = SceneGraph((obj("red", "circle"), obj("blue", "square")), (Relation(0, "left of", 1),))
    with torch.no_grad():
        a = tiny_pipe.conditioner([g])
        b = tiny_pipe.conditioner([g.swapped()])
    assert a.layout.shape == (2, 3) and a.tokens.shape[0] == 1 and a.token_mask.dtype == torch.bool
    assert not torch.allclose(a.layout, b.layout)


def test_conditioner_is_permutation_equivariant(tiny_pipe: ShapesPipeline) -> None:
    g = SceneGraph((obj("red", "circle"), obj("blue", "square")), (Relation(0, "left of", 1),))
    p = SceneGraph((g.objects[1], g.objects[0]), (Relation(1, "left of", 0),))
    with torch.no_grad():
        a, b = tiny_pipe.conditioner([g]).layout, tiny_pipe.conditioner([p]).layout
    assert torch.allclose(a, b.flip(0), atol=1e-5)


def test_pipeline_outputs_palette_images_deterministically(tiny_pipe: ShapesPipeline, tmp_path) -> None:
    graphs = [sample_scene(torch.Generator().manual_seed(i)) for i in range(3)]
    out = tiny_pipe(graphs, num_images_per_prompt=2, num_inference_steps=2, generator=torch.Generator().manual_seed(1))
    assert out.images.shape == (6, 32, 32, 3) and out.images.dtype == np.uint8
    assert {tuple(c) for c in out.images.reshape(-1, 3)} <= {tuple(c) for c in PALETTE}
    assert out.graphs[0] == out.graphs[1] == graphs[0]
    assert all(layout_satisfies(g, lay, 32) for g, lay in zip(out.graphs, out.layouts))  # relations enforced
    again = tiny_pipe(graphs, num_images_per_prompt=2, num_inference_steps=2,
                      generator=torch.Generator().manual_seed(1))
    assert np.array_equal(out.images, again.images)
    tiny_pipe.save_pretrained(tmp_path / "pipe")
    loaded = ShapesPipeline.from_pretrained(tmp_path / "pipe")
    third = loaded(graphs, num_images_per_prompt=2, num_inference_steps=2, generator=torch.Generator().manual_seed(1))
    assert np.array_equal(out.images, third.images)


def test_pipeline_rejects_bad_input(tiny_pipe: ShapesPipeline) -> None:
    from scenegraph_diff.graph import SceneGraphError

    with pytest.raises(SceneGraphError, match=r"prompt\[0\].objects\[0\].name: unknown shape 'star'"):
        tiny_pipe(SceneGraph((obj("red", "star"),)))
    with pytest.raises(ValueError, match="num_inference_steps must be >= 1, got 0"):
        tiny_pipe(THREE, num_inference_steps=0)
    with pytest.raises(FileNotFoundError, match="not a saved ShapesPipeline"):
        ShapesPipeline.from_pretrained("/nonexistent/folder")
