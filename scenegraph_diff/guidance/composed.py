r"""Composed scores (Liu et al., ECCV 2022, Composable Diffusion): one conditional score per relation, summed.

https://arxiv.org/abs/2206.01714 — the AND of concepts :math:`c_1, \dots, c_M` is sampled with

.. math::
    \hat\epsilon(x_t) = \epsilon(x_t, \varnothing) + \sum_{i=1}^{M} w_i \bigl(\epsilon(x_t, c_i) - \epsilon(x_t,
    \varnothing)\bigr).

For a scene graph the concepts are its relations (``"a red circle above a blue square"``, one text per
relation) and the objects that take part in none (``"a green triangle"``); a graph without relations is one
concept, its whole description. With one concept and :math:`w = g` this is plain classifier-free guidance.

:class:`ComposedScores` is a diffusers hook on the UNet: inside a pipeline call with classifier-free guidance it
replaces the conditional half of the ``[negative, positive]`` batch by
:math:`\epsilon_\varnothing + \frac{1}{g} \sum_i w_i (\epsilon_i - \epsilon_\varnothing)` (one batched UNet pass
over the ``B`` unconditional and :math:`\sum_b M_b` conditional rows), so that the pipeline's own guidance step
:math:`\epsilon_\varnothing + g(\cdot - \epsilon_\varnothing)` yields the composed score. The concepts are
conditioned as the pipeline would (:func:`~scenegraph_diff.evaluation.graph_prompt_embeds`: text, or
graph-conditioned sub-graphs with a trained adapter).
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

import numpy as np
import torch
from diffusers.hooks import HookRegistry, ModelHook
from torch import Tensor

from ..evaluation.conditioning import graph_prompt_embeds, graph_text
from ..graph.scene_graph import Relation, SceneGraph, SceneObject

__all__ = ["ComposedScores", "relation_concepts", "composed_generate"]

logger = logging.getLogger(__name__)

_HOOK = "scenegraph_diff_composed_scores"


def relation_concepts(graph: SceneGraph) -> list[SceneGraph]:
    """The concepts of ``graph``: one two-object sub-graph per relation, then one single-object graph per object in
    no relation (the whole graph, text dropped, when it has no relations). No text, boxes or spans."""
    objects = tuple(SceneObject(o.name, o.attributes) for o in graph.objects)
    if not graph.relations:
        return [SceneGraph(objects)]
    out, used = [], set()
    for r in graph.relations:
        out.append(SceneGraph((objects[r.subject], objects[r.object]), (Relation(0, r.predicate, 1),)))
        used.update((r.subject, r.object))
    out += [SceneGraph((o,)) for i, o in enumerate(objects) if i not in used]
    return out


class _ComposeHook(ModelHook):
    def __init__(self, owner: "ComposedScores") -> None:
        super().__init__()
        self.owner = owner

    def new_forward(self, module: torch.nn.Module, sample: Tensor, timestep: Any, encoder_hidden_states: Tensor,
                    *args: Any, **kwargs: Any) -> Any:
        return self.owner._forward(self.fn_ref.original_forward, sample, timestep, encoder_hidden_states, *args,
                                   **kwargs)


class ComposedScores:
    r"""A UNet hook that composes one conditional score per concept, per row of a guided pipeline call.

    Args:
        pipe: the pipeline (its ``unet`` is hooked; its ``guidance_scale`` is read at every step).
        concepts: one tensor ``[M_b, L, D]`` per row ``b`` of the call's batch (``B`` = prompts x images per
            prompt): the concept embeddings of that row.
        weights: :math:`w_i`: one float for every concept, or one sequence ``[M_b]`` per row (default: the
            pipeline's guidance scale :math:`g` for every concept).

    Use it as a context manager around the pipeline call; the call must use classifier-free guidance
    (``guidance_scale > 1``). Cost: ``B + sum(M_b)`` UNet rows per step instead of ``2B``.
    """

    def __init__(self, pipe: Any, concepts: Sequence[Tensor], weights: float | Sequence[Sequence[float]] | None = None
                 ) -> None:
        if not concepts:
            raise ValueError("ComposedScores needs the concepts of at least one row")
        for b, c in enumerate(concepts):
            if c.ndim != 3 or c.size(0) < 1:
                raise ValueError(f"concepts[{b}] must be [M, L, D] with M >= 1, got shape {tuple(c.shape)}")
        if weights is not None and not isinstance(weights, (int, float)):
            weights = [list(w) for w in weights]
            if len(weights) != len(concepts) or any(len(w) != c.size(0) for w, c in zip(weights, concepts)):
                raise ValueError("weights must give one weight per concept of every row")
        self.pipe, self.concepts, self.weights = pipe, list(concepts), weights
        self._enabled = False

    def _row_weights(self, b: int, g: float) -> Tensor:
        m = self.concepts[b].size(0)
        if self.weights is None:
            return torch.full((m,), g)
        if isinstance(self.weights, (int, float)):
            return torch.full((m,), float(self.weights))
        return torch.tensor(self.weights[b], dtype=torch.float32)

    def _forward(self, forward: Any, sample: Tensor, timestep: Any, encoder_hidden_states: Tensor, *args: Any,
                 **kwargs: Any) -> Any:
        rows = len(self.concepts)
        if sample.size(0) != 2 * rows:
            raise ValueError(f"ComposedScores: the UNet batch has {sample.size(0)} rows, expected {2 * rows} "
                             "([negative, positive] of the concepts' rows): use classifier-free guidance")
        g = float(self.pipe.guidance_scale)
        uncond_x, uncond_c = sample[:rows], encoder_hidden_states[:rows]
        counts = [c.size(0) for c in self.concepts]
        index = torch.repeat_interleave(torch.arange(rows, device=sample.device),
                                        torch.tensor(counts, device=sample.device))
        concepts = torch.cat([c.to(encoder_hidden_states) for c in self.concepts])  # [sum M, L', D]
        length = max(uncond_c.size(1), concepts.size(1))
        if uncond_c.size(1) != concepts.size(1):  # graph tokens on one side: pad the other with zeros
            pad = lambda e: torch.cat([e, e.new_zeros(e.size(0), length - e.size(1), e.size(2))], 1)  # noqa: E731
            uncond_c, concepts = (pad(uncond_c) if uncond_c.size(1) < length else uncond_c,
                                  pad(concepts) if concepts.size(1) < length else concepts)
        x = torch.cat([uncond_x, sample[rows:][index]])  # [B + sum M, C, h, w]
        c = torch.cat([uncond_c, concepts])
        t = timestep
        if isinstance(t, Tensor) and t.ndim == 1 and t.numel() == sample.size(0):
            t = torch.cat([t[:rows], t[rows:][index]])
        kwargs["return_dict"] = False
        eps = forward(x, t, c, *args, **kwargs)[0]
        e_u, e_c = eps[:rows], eps[rows:]  # [B, ...], [sum M, ...]
        w = torch.cat([self._row_weights(b, g) for b in range(rows)]).to(e_c).view(-1, *[1] * (e_c.ndim - 1))
        summed = torch.zeros_like(e_u).index_add_(0, index, w * (e_c - e_u[index]))  # [B, ...]
        positive = e_u + summed / g
        return (torch.cat([e_u, positive]),)

    def __enter__(self) -> "ComposedScores":
        HookRegistry.check_if_exists_or_initialize(self.pipe.unet).register_hook(_ComposeHook(self), _HOOK)
        self._enabled = True
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._enabled:
            self.pipe.unet._diffusers_hook.remove_hook(_HOOK, recurse=False)
            self._enabled = False


def composed_generate(pipe: Any, graphs: Sequence[SceneGraph], generator: Sequence[torch.Generator],
                      weight: float | None = None, graph_scale: float = 0.0, **call_kwargs: Any) -> list[np.ndarray]:
    """One image per graph with composed relation scores.

    Args:
        pipe: a Stable Diffusion (or graph) pipeline.
        graphs: ``N`` graphs.
        generator: ``N`` CPU generators (one per image).
        weight: :math:`w` of every concept (default: the call's guidance scale).
        graph_scale: graph conditioning of the concepts, for a pipeline with a trained adapter.
        **call_kwargs: passed to ``pipe(...)`` (``num_inference_steps``, ``guidance_scale`` > 1, ...).

    Returns:
        ``N`` images ``[H, W, 3]`` float in [0, 1].
    """
    graphs = list(graphs)
    if len(generator) != len(graphs):
        raise ValueError(f"{len(generator)} generators for {len(graphs)} graphs")
    per_graph = [relation_concepts(g) for g in graphs]
    flat = [c for cs in per_graph for c in cs]
    embeds = graph_prompt_embeds(pipe, flat, graph_scale)
    concepts, at = [], 0
    for cs in per_graph:
        concepts.append(embeds[at:at + len(cs)])
        at += len(cs)
    prompts = [graph_text(g) for g in graphs]
    extra = {"scene_graph": graphs, "graph_scale": 0.0} if hasattr(pipe, "graph_conditioner") else {}
    with ComposedScores(pipe, concepts, weight):
        out = pipe(prompts, generator=list(generator), output_type="np", **extra, **call_kwargs)
    return list(out.images)
