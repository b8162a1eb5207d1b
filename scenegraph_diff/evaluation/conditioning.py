"""The conditioning a pipeline gives a scene graph, as ``prompt_embeds`` (shared by the image-side methods).

:func:`graph_prompt_embeds` is what the pipeline's own ``__call__`` would feed its UNet for a graph: the text
encoder's embeddings of the graph's text (``graph.text``, or :func:`~scenegraph_diff.pipelines.describe_graph`),
plus — for a :class:`~scenegraph_diff.pipelines.SceneGraphPipeline` with a trained graph adapter and
``graph_scale > 0`` — its graph offsets / tokens. The Diffusion Classifier and composed scores use it to score
or sample under many candidate graphs with the pipeline's conditioning.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor

from ..graph.scene_graph import SceneGraph

__all__ = ["graph_prompt_embeds", "graph_text", "has_graph_adapter"]


def graph_text(graph: SceneGraph) -> str:
    """``graph.text``, or the graph described in words as the pipelines do (``"a red circle above a blue square"``)."""
    from ..pipelines.graph_pipeline import describe_graph

    return graph.text if graph.text else describe_graph(graph)


def has_graph_adapter(pipe: Any) -> bool:
    """Whether ``pipe`` is a graph pipeline whose ``graph_conditioner`` is trained (not the zero-gated identity)."""
    conditioner = getattr(pipe, "graph_conditioner", None)
    return conditioner is not None and not getattr(conditioner, "is_identity", True)


@torch.no_grad()
def graph_prompt_embeds(pipe: Any, graphs: Sequence[SceneGraph], graph_scale: float = 0.0,
                        texts: Sequence[str] | None = None) -> Tensor:
    """The positive ``prompt_embeds`` of ``graphs`` under ``pipe``'s conditioning.

    Args:
        pipe: a :class:`~diffusers.StableDiffusionPipeline` or a graph pipeline (``condition_prompt_embeds``).
        graphs: ``G`` graphs.
        graph_scale: strength of the graph conditioning (ignored, as 0, by a pipeline without a trained adapter).
        texts: the prompts (default: :func:`graph_text` of each graph).

    Returns:
        ``[G, L, D]`` in the UNet's dtype, on the pipeline's execution device (``L`` grows by the adapter's graph
        tokens, if it appends any).
    """
    if not graphs:
        raise ValueError("graph_prompt_embeds needs at least one graph")
    prompts = list(texts) if texts is not None else [graph_text(g) for g in graphs]
    if len(prompts) != len(graphs):
        raise ValueError(f"{len(prompts)} texts for {len(graphs)} graphs")
    device = pipe._execution_device
    embeds, _ = pipe.encode_prompt(prompts, device, 1, False)
    if graph_scale and has_graph_adapter(pipe):
        embeds = pipe.condition_prompt_embeds(embeds, prompts, list(graphs), scale=graph_scale)
    return embeds.to(pipe.unet.dtype)
