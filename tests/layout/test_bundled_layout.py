"""The bundled layout models (scenegraph_diff/assets/layout-*): they load by name and do their job."""

from __future__ import annotations

import time

import torch

from scenegraph_diff.bundled import bundled_models
from scenegraph_diff.graph import SceneGraph
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


def _vrd_pair(a: str, predicate: str, b: str) -> SceneGraph:
    return SceneGraph.from_dict({"objects": [{"name": a}, {"name": b}],
                                 "relations": [{"subject": 0, "predicate": predicate, "object": 1}]})


def test_layout_vrd_is_listed_and_follows_spatial_predicates_in_both_directions():
    assert "layout-vrd" in {m.name for m in bundled_models()}
    model = load_layout_model("layout-vrd")
    assert isinstance(model, DiffusionLayoutModel)
    assert len(model.config.objects) >= 99 and "on the left of" in model.config.predicates
    assert model.config.num_inference_steps == 2 and model.config.guidance_scale == 1.0  # the documented defaults
    pairs = [("person", "car"), ("dog", "cat"), ("bottle", "cup"), ("chair", "table"), ("bike", "person"),
             ("tree", "building")]
    # each pair both ways round, so a model that ignores the predicate or the direction scores about 50 %
    cases = [(a, p, b, axis, sign) for a, b in pairs for a, b in ((a, b), (b, a))
             for p, axis, sign in (("on the left of", 0, -1), ("on the right of", 0, 1), ("above", 1, -1),
                                   ("below", 1, 1))]
    layouts = model.sample([_vrd_pair(a, p, b) for a, p, b, _, _ in cases], 4, torch.Generator().manual_seed(0),
                           resample=True)
    held = total = 0
    for (_, _, _, axis, sign), per in zip(cases, layouts):
        for lay in per:
            s, o = (lay.objects[i].box for i in (0, 1))
            held += sign * ((s[axis] + s[axis + 2]) - (o[axis] + o[axis + 2])) > 0
            total += 1
    assert held / total >= 0.85, held / total
