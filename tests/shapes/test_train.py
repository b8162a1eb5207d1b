"""train-shapes: a two-step run on a tiny model writes a loadable pipeline; the step's losses are sane."""

from __future__ import annotations

import json

import pytest
import torch

from scenegraph_diff.shapes import sample_scene
from scenegraph_diff.shapes.pipeline import ShapesPipeline
from scenegraph_diff.shapes.train import (
    TrainShapesConfig, build_model, image_classes, make_batch, shapes_step, train_shapes,
)
from scenegraph_diff.shapes.world import render


def test_image_classes_exact() -> None:
    g = sample_scene(torch.Generator().manual_seed(1))
    img = render(g, torch.Generator().manual_seed(2))
    cls = image_classes(img[None])
    assert cls.shape == (1, 32, 32) and int(cls.max()) <= 6
    assert (cls[0] == 0).sum() == (img.sum(-1) == 0).sum()
    bad = img.copy()
    bad[0, 0] = (1, 2, 3)
    with pytest.raises(ValueError, match="outside the palette"):
        image_classes(bad[None])


def test_step_losses_and_gradients() -> None:
    torch.manual_seed(0)
    cfg = TrainShapesConfig(encoder="hgcn", dim=16, block_out_channels=(8, 16, 16), batch_size=4)
    model = build_model(cfg)
    gen = torch.Generator().manual_seed(0)
    batch = make_batch([sample_scene(gen) for _ in range(4)], 32)
    assert batch["x0"].shape == (4, 7, 32, 32) and batch["maps"].shape[1] == 13
    out = shapes_step(10.0)(model, batch, gen)
    assert set(out) == {"loss", "image_ce", "layout_mse"}
    assert 0.5 < float(out["image_ce"].detach()) < 5.0  # ~log(7) untrained
    out["loss"].backward()
    assert model.conditioner.graph_encoder.lin_out.weight.grad.abs().sum() > 0  # trained through both losses


def test_train_shapes_tiny_run(tmp_path) -> None:
    cfg = TrainShapesConfig(output_dir=str(tmp_path / "run"), encoder="rhgnn", max_steps=2, max_minutes=None,
                            batch_size=4, dim=16, block_out_channels=(8, 16, 16), checkpoint_every=2)
    path = train_shapes(cfg)
    info = json.loads((tmp_path / "run" / "train_info.json").read_text())
    assert info["steps"] == 2 and info["config"]["encoder"] == "rhgnn"
    pipe = ShapesPipeline.from_pretrained(path)
    out = pipe("a red circle to the left of a blue square", parser=_parse, num_inference_steps=1)
    assert out.images.shape == (1, 32, 32, 3)
    with pytest.raises(ValueError, match="encoder must be one of"):
        TrainShapesConfig(encoder="gcn")


def _parse(text: str):
    from scenegraph_diff.parsing import RuleBasedParser

    return RuleBasedParser().parse(text)

