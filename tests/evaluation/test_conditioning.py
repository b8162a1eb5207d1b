"""graph_prompt_embeds: the pipeline's text embeddings; graph-conditioned only with a trained adapter."""

from __future__ import annotations

import pytest
import torch
from diffusers import StableDiffusionPipeline

from scenegraph_diff.evaluation.conditioning import graph_prompt_embeds, graph_text, has_graph_adapter
from scenegraph_diff.graph.scene_graph import SceneGraph
from scenegraph_diff.pipelines import SceneGraphPipeline
from scenegraph_diff.pipelines.testing import tiny_sd_components

GRAPH = SceneGraph.from_dict({"objects": [{"name": "cat", "attributes": ["black"]}, {"name": "dog"}],
                              "relations": [{"subject": 0, "predicate": "on", "object": 1}]})


def test_text_embeddings_and_an_untrained_adapter():
    sd = StableDiffusionPipeline(**tiny_sd_components(seed=0))
    ours = SceneGraphPipeline(**tiny_sd_components(seed=0))
    assert graph_text(GRAPH) == "a black cat on a dog"
    expected, _ = sd.encode_prompt(["a black cat on a dog"], "cpu", 1, False)
    assert torch.equal(graph_prompt_embeds(sd, [GRAPH], graph_scale=0.6), expected)
    assert not has_graph_adapter(sd) and not has_graph_adapter(ours)
    assert torch.equal(graph_prompt_embeds(ours, [GRAPH], graph_scale=0.6), expected)  # zero gates: text only


def test_a_trained_adapter_conditions_on_the_graph():
    pipe = SceneGraphPipeline(**tiny_sd_components(seed=0))
    with torch.no_grad():
        for p in (pipe.graph_conditioner.gate_eot, pipe.graph_conditioner.gate_token):
            if p is not None:
                p.fill_(1.0)
    assert has_graph_adapter(pipe)
    text = graph_prompt_embeds(pipe, [GRAPH], graph_scale=0.0)
    graph = graph_prompt_embeds(pipe, [GRAPH], graph_scale=0.6)
    expected = pipe.condition_prompt_embeds(text, ["a black cat on a dog"], [GRAPH], scale=0.6)
    assert not torch.equal(text, graph) and torch.equal(graph, expected)
    with pytest.raises(ValueError, match="1 texts for 2 graphs"):
        graph_prompt_embeds(pipe, [GRAPH, GRAPH], texts=["x"])
