"""The bundled layout models (scenegraph_diff/assets/layout-*): they load by name and do their job."""

from __future__ import annotations

import time

import torch

from scenegraph_diff.bundled import bundled_models
from scenegraph_diff.layout import DiffusionLayoutModel, load_layout_model
from scenegraph_diff.layout.evaluation import shapes_layout_scores
from scenegraph_diff.shapes.evaluation import held_out_graphs


def test_layout_shapes_is_listed_and_places_held_out_graphs_by_their_relations():
    assert "layout-shapes" in {m.name for m in bundled_models()}
    t0 = time.perf_counter()
    model = load_layout_model("layout-shapes")
    assert isinstance(model, DiffusionLayoutModel)
    assert model.config.num_inference_steps == 20 and model.config.guidance_scale == 2.0  # the documented defaults
    graphs = held_out_graphs(56)  # 8 of each stratum
    layouts = model.sample(graphs, 1, torch.Generator().manual_seed(0), resample=True)
    scores = shapes_layout_scores([per[0] for per in layouts])
    assert scores["relation_accuracy"] >= 0.95, scores
    assert scores["layout_valid"] >= 0.7, scores
    # the same graphs with every relation reversed get the reversed layouts (the model reads directions)
    swapped = model.sample([g.swapped() for g in graphs], 1, torch.Generator().manual_seed(0), resample=True)
    assert shapes_layout_scores([per[0] for per in swapped])["relation_accuracy"] >= 0.95
    assert time.perf_counter() - t0 < 20
