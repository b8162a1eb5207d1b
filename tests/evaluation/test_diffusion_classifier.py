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
