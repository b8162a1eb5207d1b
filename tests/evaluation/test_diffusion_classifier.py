"""Diffusion Classifier relation scores: verdicts flip with the image on a model that knows the relation;
batching and seeds behave; candidates are the relation reversed (and re-predicated)."""

from __future__ import annotations

import types

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionPipeline

from scenegraph_diff.evaluation.conditioning import graph_prompt_embeds
from scenegraph_diff.evaluation.diffusion_classifier import (images_to_latents, relation_candidates,
                                                             relation_scores)
from scenegraph_diff.graph.scene_graph import SceneGraph
from scenegraph_diff.pipelines.graph_pipeline import describe_graph
from scenegraph_diff.pipelines.testing import tiny_sd_components

GRAPH = SceneGraph.from_dict({"text": "a red circle is above a blue square",
                              "objects": [{"name": "circle", "attributes": ["red"]}, {"name": "square",
                                                                                      "attributes": ["blue"]},
                                          {"name": "cat"}],
                              "relations": [{"subject": 0, "predicate": "above", "object": 1},
                                            {"subject": 2, "predicate": "left of", "object": 1}]})


@pytest.fixture(scope="module")
def pipe():
    p = StableDiffusionPipeline(**tiny_sd_components(seed=0))
    p.set_progress_bar_config(disable=True)
    return p


class OracleUNet(torch.nn.Module):
    """The exact denoiser of a model whose data, given condition c, is one image P(c) (a pattern computed from the
    condition's last token state): every condition's image is known, so the classifier must pick it."""

    def __init__(self, pipe):
        super().__init__()
        self.pipe = pipe
        self.proj = torch.nn.Linear(32, 3 * 64 * 64)
        torch.nn.init.normal_(self.proj.weight, std=3.0, generator=torch.Generator().manual_seed(0))
        self.config = types.SimpleNamespace(sample_size=32)
        self.dtype = torch.float32

    def pattern(self, embeds):  # [N, L, D] -> images [N, 3, 64, 64] in [0, 1]
        return torch.sigmoid(self.proj(embeds[:, -1])).view(-1, 3, 64, 64)

    def forward(self, sample, timestep, encoder_hidden_states, return_dict=True):
        mu = images_to_latents(self.pipe, self.pattern(encoder_hidden_states))  # [N, 4, 32, 32]
        acp = self.pipe.scheduler.alphas_cumprod[timestep].view(-1, 1, 1, 1)
        return ((sample - acp.sqrt() * mu) / (1 - acp).sqrt(),)


class OraclePipe:
    def __init__(self, pipe):
        self._pipe, self.unet = pipe, OracleUNet(pipe)

    def __getattr__(self, name):
        return getattr(self._pipe, name)


def test_candidates_reverse_one_relation():
    cands = relation_candidates(GRAPH, 1, predicates=["left of", "right of"])
    assert [(r.subject, r.predicate, r.object) for r in cands[0].relations] == [(0, "above", 1), (1, "left of", 2)]
    assert [(r.subject, r.predicate, r.object) for r in cands[1].relations] == [(0, "above", 1), (2, "right of", 1)]
    assert len(cands) == 2 and all(c.text is None for c in cands)
    with pytest.raises(ValueError, match="relation index 2 out of range"):
        relation_candidates(GRAPH, 2)


def test_verdict_flips_when_the_image_is_swapped(pipe):
    oracle = OraclePipe(pipe)
    twin = relation_candidates(GRAPH, 0)[0]  # only `above` reversed
    with torch.no_grad():
        images = oracle.unet.pattern(graph_prompt_embeds(pipe, [GRAPH, twin], texts=[describe_graph(GRAPH),
                                                                                        describe_graph(twin)]))
    right, wrong = relation_scores(oracle, images, [GRAPH, GRAPH], num_samples=4)
    assert [v.holds for v in right] == [True, True] and all(v.margin > 0 for v in right)
    assert wrong[0].holds is False and wrong[0].margin < 0  # the image shows the reversed relation
    assert right[0].as_dict().keys() == {"subject", "predicate", "object", "holds", "margin"}


def test_batching_and_seeds(pipe):
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), rng.random((40, 40, 3))]  # any size
    graphs = [GRAPH, SceneGraph.from_dict({"objects": [{"name": "cat"}]})]
    a = relation_scores(pipe, images, graphs, num_samples=3, batch_size=64)
    b = relation_scores(pipe, images, graphs, num_samples=3, batch_size=2)
    c = relation_scores(pipe, images, graphs, num_samples=3, generator=torch.Generator().manual_seed(1))
    assert len(a[0]) == 2 and a[1] == []
    assert [(v.subject, v.predicate, v.object) for v in a[0]] == [(0, "above", 1), (2, "left of", 1)]
    assert [v.margin for v in a[0]] == pytest.approx([v.margin for v in b[0]], abs=1e-5)
    assert [v.margin for v in a[0]] != [v.margin for v in c[0]]


def test_bad_input_names_the_value(pipe):
    with pytest.raises(ValueError, match="1 images but 2 graphs"):
        relation_scores(pipe, [np.zeros((64, 64, 3))], [GRAPH, GRAPH])
    with pytest.raises(ValueError, match="num_samples must be an integer >= 1, got 0"):
        relation_scores(pipe, [np.zeros((64, 64, 3))], [GRAPH], num_samples=0)
    with pytest.raises(ValueError, match=r"image 0: expected \[H, W, 3\], got shape \(64, 64\)"):
        relation_scores(pipe, [np.zeros((64, 64))], [GRAPH])


# ---------------------------------------------------------------- layout-grounded scores
SHAPES_GRAPH = SceneGraph.from_dict({"objects": [{"name": "circle", "attributes": ["red"]},
                                                 {"name": "square", "attributes": ["blue"]},
                                                 {"name": "triangle", "attributes": ["green"]}],
                                     "relations": [{"subject": 0, "predicate": "left of", "object": 1},
                                                   {"subject": 2, "predicate": "above", "object": 1}]})


@pytest.fixture(scope="module")
def grounded_pipe():
    """A tiny SceneGraphPipeline with a (trained-like, random) layout adapter and the bundled layout-shapes."""
    from scenegraph_diff.conditioning.layout_adapter import make_layout_adapter
    from scenegraph_diff.layout import load_layout_model
    from scenegraph_diff.pipelines import SceneGraphPipeline

    parts = tiny_sd_components(sd_block_order=True)
    adapter = make_layout_adapter(parts["unet"], in_channels=32, downscale_factor=2)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in adapter.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    p = SceneGraphPipeline(**parts, layout_adapter=adapter, layout_model=load_layout_model("layout-shapes"))
    p.set_progress_bar_config(disable=True)
    return p


def test_reversal_candidates_get_the_same_layouts_with_two_boxes_exchanged(grounded_pipe):
    from scenegraph_diff.evaluation.diffusion_classifier import candidate_grounding

    pipe = grounded_pipe
    laid = []
    pipe.layout_residuals, real = (lambda rows: laid.append(rows) or real(rows)), pipe.layout_residuals
    try:
        cands = [SHAPES_GRAPH] + relation_candidates(SHAPES_GRAPH, 0, predicates=["above"])
        out = candidate_grounding(pipe, [cands], num_layouts=3, grounding_scale=2.0, layout_seed=5)
    finally:
        del pipe.layout_residuals
    rows = laid[0]
    assert len(rows) == 9 and out.num_layouts == 3 and out.gligen is None
    own, rev, other = rows[:3], rows[3:6], rows[6:]
    for o, r in zip(own, rev):  # the reversal of `0 left of 1`: the boxes of objects 0 and 1 exchanged
        assert [x.box for x in r.objects] == [o.objects[1].box, o.objects[0].box, o.objects[2].box]
        assert (r.relations[0].subject, r.relations[0].object) == (1, 0)
    assert len({o.objects[0].box for o in own}) == 3  # three different layouts
    assert [x.box for x in other[0].objects] != [x.box for x in own[0].objects]  # re-predicated: its own layout
    assert out.residuals[0][0].shape[0] == 9
    assert torch.allclose(out.residuals[0][0], 2.0 * real(rows)[0])


def test_grounded_scores_use_the_boxes_and_are_reproducible(grounded_pipe):
    rng = np.random.default_rng(1)
    images = [rng.random((64, 64, 3)), rng.random((64, 64, 3))]
    graphs = [SHAPES_GRAPH, relation_candidates(SHAPES_GRAPH, 0)[0]]
    a = relation_scores(grounded_pipe, images, graphs, num_samples=4, num_layouts=2, grounding_scale=3.0)
    b = relation_scores(grounded_pipe, images, graphs, num_samples=4, num_layouts=2, grounding_scale=3.0,
                        batch_size=3)
    plain = relation_scores(grounded_pipe, images, graphs, num_samples=4, grounding=False)
    off = relation_scores(grounded_pipe, images, graphs, num_samples=4, num_layouts=2, grounding_scale=0.0)
    margins = [v.margin for s in a for v in s]
    assert margins == pytest.approx([v.margin for s in b for v in s], abs=1e-5)
    assert margins != pytest.approx([v.margin for s in plain for v in s], abs=1e-4)  # the boxes matter
    assert [v.margin for s in off for v in s] == pytest.approx([v.margin for s in plain for v in s], abs=1e-6)


def test_grounding_needs_a_grounded_pipeline(pipe, grounded_pipe):
    with pytest.raises(ValueError, match="grounding=True needs a grounded graph pipeline"):
        relation_scores(pipe, [np.zeros((64, 64, 3))], [GRAPH], grounding=True)
    with pytest.raises(ValueError, match="num_layouts must be an integer >= 1, got 0"):
        relation_scores(grounded_pipe, [np.zeros((64, 64, 3))], [SHAPES_GRAPH], num_layouts=0)
    with pytest.raises(ValueError, match="grounding_scale must be >= 0, got -1"):
        relation_scores(grounded_pipe, [np.zeros((64, 64, 3))], [SHAPES_GRAPH], grounding_scale=-1.0)
