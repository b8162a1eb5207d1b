"""Composed scores: one concept at weight g is plain guidance; several sum their guided differences."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionPipeline

from scenegraph_diff.evaluation.conditioning import graph_prompt_embeds
from scenegraph_diff.graph.scene_graph import SceneGraph
from scenegraph_diff.guidance.composed import ComposedScores, composed_generate, relation_concepts
from scenegraph_diff.pipelines.testing import tiny_sd_components

TWO = SceneGraph.from_dict({"objects": [{"name": "circle", "attributes": ["red"]}, {"name": "square"},
                                        {"name": "cat"}, {"name": "ball"}],
                            "relations": [{"subject": 0, "predicate": "above", "object": 1},
                                          {"subject": 1, "predicate": "left of", "object": 2}]})


@pytest.fixture(scope="module")
def pipe():
    p = StableDiffusionPipeline(**tiny_sd_components(seed=0))
    p.set_progress_bar_config(disable=True)
    return p


def test_concepts_are_relations_then_lone_objects():
    concepts = relation_concepts(TWO)
    assert [(len(c.objects), len(c.relations)) for c in concepts] == [(2, 1), (2, 1), (1, 0)]
    assert concepts[1].relations[0].predicate == "left of" and concepts[1].objects[0].name == "square"
    assert concepts[2].objects[0].name == "ball"
    assert relation_concepts(SceneGraph.from_dict({"objects": [{"name": "cat"}, {"name": "dog"}]}))[0].objects[1].name == "dog"


def test_one_concept_at_the_guidance_weight_is_plain_guidance(pipe):
    g = SceneGraph.from_dict({"objects": [{"name": "cat"}, {"name": "mat"}],
                              "relations": [{"subject": 0, "predicate": "on", "object": 1}]})
    plain = pipe(["a cat on a mat"], generator=[torch.Generator().manual_seed(5)], num_inference_steps=3,
                 guidance_scale=3.0, output_type="np").images[0]
    composed = composed_generate(pipe, [g], [torch.Generator().manual_seed(5)], num_inference_steps=3,
                                 guidance_scale=3.0)[0]
    assert np.abs(composed - plain).max() < 1e-4
    assert np.abs(composed_generate(pipe, [g], [torch.Generator().manual_seed(5)], weight=1.0, num_inference_steps=3,
                                    guidance_scale=3.0)[0] - plain).max() > 1e-3


def test_the_hook_sums_guided_differences(pipe):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, 32, 32, generator=gen)
    concepts = graph_prompt_embeds(pipe, relation_concepts(TWO))  # [3, L, D]
    negative = graph_prompt_embeds(pipe, [SceneGraph()], texts=[""])
    unet = pipe.unet
    with torch.no_grad():
        e_u = unet(x, 300, encoder_hidden_states=negative).sample
        e_i = unet(x.expand(3, -1, -1, -1), 300, encoder_hidden_states=concepts).sample
        pipe._guidance_scale = 2.0
        weights = [[0.5, 1.0, 2.0]]
        with ComposedScores(pipe, [concepts], weights):
            out = unet(torch.cat([x, x]), 300, encoder_hidden_states=torch.cat([negative, negative]),
                       return_dict=False)[0]
    expected = e_u + (0.5 * (e_i[0] - e_u) + 1.0 * (e_i[1] - e_u) + 2.0 * (e_i[2] - e_u)) / 2.0
    assert torch.allclose(out[:1], e_u, atol=1e-5) and torch.allclose(out[1:], expected, atol=1e-5)
    assert not hasattr(unet, "_diffusers_hook") or not unet._diffusers_hook.hooks  # removed


def test_needs_guidance(pipe):
    with pytest.raises(ValueError, match="UNet batch has 1 rows, expected 2"):
        composed_generate(pipe, [TWO], [torch.Generator().manual_seed(0)], num_inference_steps=2, guidance_scale=1.0)
    with pytest.raises(ValueError, match="2 generators for 1 graphs"):
        composed_generate(pipe, [TWO], [torch.Generator()] * 2)


def test_the_packages_export_their_names():
    import scenegraph_diff.evaluation as evaluation
    import scenegraph_diff.guidance as guidance

    for module in (guidance, evaluation):
        for name in module.__all__:
            assert getattr(module, name) is not None
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        guidance.nope  # noqa: B018
