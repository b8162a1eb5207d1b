"""Swap-pair training data for relation rectification, rendered on the fly from the shapes world.

RRNet trains on (prompt "A R B", image of A R B, image of B R A). Here every step draws fresh scenes
(1–3 objects, 0–3 relations) from :func:`~.world.sample_scene`; the *positive* image is the scene as sampled
(every named relation holds) and the *negative* image draws the same objects in a layout where every
relation is reversed (:meth:`SceneGraph.swapped`, a layout sampled for the twin). Graphs without a relation
have no negative (``has_negative`` is False for them). One stream covers all four predicates and every
graph size, so one adapter serves them all.

:class:`SwapPairStream` turns the images into what :func:`~scenegraph_diff.conditioning.rectification.rectification_step`
reads, with the frozen parts of a Stable Diffusion pipeline: VAE latents (posterior mean x scaling factor), the
prompts' text-encoder states, the token alignment and the encoder's graph batch. The graphs carry the token
spans of the caption's parse (:func:`with_parsed_spans`), as the graphs of ``generate`` do.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..graph.scene_graph import Relation, SceneGraph, SceneObject
from .evaluation import unboxed_twin
from .world import Box, render_layout, sample_layout, sample_scene

__all__ = ["swap_pair_images", "with_parsed_spans", "SwapPairStream"]


def swap_pair_images(graphs: list[SceneGraph], generator: torch.Generator, size: int = 32) -> tuple[np.ndarray, np.ndarray, list[bool]]:
    """Positive and negative images for ``graphs`` (with ground-truth boxes, as :func:`sample_scene` makes them).

    Returns:
        ``(positive [B, H, W, 3], negative [B, H, W, 3], has_negative)`` (uint8); a graph without relations gets
        its positive image again as a placeholder negative and ``has_negative = False``.
    """
    pos, neg, has = [], [], []
    for g in graphs:
        boxes = [Box.from_fractions(o.box, size) for o in g.objects]  # type: ignore[arg-type]
        p = render_layout(g, boxes, size)
        pos.append(p)
        if g.relations:
            twin = unboxed_twin(g)
            neg.append(render_layout(twin, sample_layout(twin, generator, size), size))
            has.append(True)
        else:
            neg.append(p)
            has.append(False)
    return np.stack(pos), np.stack(neg), has


def with_parsed_spans(graph: SceneGraph, parsed: SceneGraph) -> SceneGraph:
    """``graph`` (a sampled scene) with the token ``span`` s of ``parsed`` (the parser's reading of its caption).

    Sampled scenes know their objects and relations but not where the caption names them; ``generate`` conditions
    on *parsed* prompts, whose spans locate each object's and relation's words (synonyms included: "beneath" for
    ``below``). Objects are matched by (colour, shape), relations by (subject, predicate, object); anything the
    parse does not match keeps ``span=None`` (alignment then falls back on word matches).
    """
    keys = [(o.attributes, o.name) for o in graph.objects]
    spans = {(o.attributes, o.name): o.span for o in parsed.objects}
    objects = tuple(SceneObject(o.name, o.attributes, box=o.box, span=spans.get(k)) for o, k in zip(graph.objects, keys))
    pkeys = [(o.attributes, o.name) for o in parsed.objects]
    rspans = {(pkeys[r.subject], r.predicate, pkeys[r.object]): r.span for r in parsed.relations}
    relations = tuple(Relation(r.subject, r.predicate, r.object,
                               span=rspans.get((keys[r.subject], r.predicate, keys[r.object])))
                      for r in graph.relations)
    return SceneGraph(objects, relations, graph.text)


class SwapPairStream:
    """``batches(step, generator) -> dict`` for the shared Trainer: fresh swap pairs encoded by a frozen pipeline.

    Args:
        pipe: a :class:`~scenegraph_diff.pipelines.SceneGraphPipeline` (its VAE, tokenizer and text encoder are used,
            frozen, under ``no_grad``).
        batch_size: scenes per step.
        size: image size of the shapes world (the pipeline's native size).
        min_relations: draw only graphs with at least this many relations (0: the full 1–3 / 0–3 mix).

    The batch dict has ``graphs`` (the encoder's ``HeteroData``), ``alignment``, ``prompt_embeds [B, L, D]``,
    ``positive`` / ``negative`` latents ``[B, C, h, w]`` and ``negative_mask [B]`` (bool).
    """

    def __init__(self, pipe: Any, batch_size: int, size: int = 32, min_relations: int = 0) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
        if not 0 <= min_relations <= 3:
            raise ValueError(f"min_relations must be in 0..3, got {min_relations!r}")
        self.pipe = pipe
        self.batch_size = batch_size
        self.size = size
        self.min_relations = min_relations
        self.embedder = pipe.token_embedder()

    def _scenes(self, generator: torch.Generator) -> list[SceneGraph]:
        out: list[SceneGraph] = []
        while len(out) < self.batch_size:
            g = sample_scene(generator, self.size)
            if len(g.relations) >= self.min_relations:
                out.append(g)
        return out

    @torch.no_grad()
    def _latents(self, images: np.ndarray) -> Tensor:
        vae = self.pipe.vae
        x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)  # [B, 3, H, W]
        x = x.to(device=vae.device, dtype=vae.dtype)
        return vae.encode(x).latent_dist.mean * vae.config.scaling_factor

    @torch.no_grad()
    def __call__(self, step: int, generator: torch.Generator) -> dict[str, Any]:
        from ..conditioning.alignment import align_batch
        from ..conditioning.graph_batch import graph_batch

        from ..parsing import parse_batch

        cpu = generator if generator.device.type == "cpu" else torch.Generator().manual_seed(
            int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device)))
        graphs = self._scenes(cpu)
        pos, neg, has = swap_pair_images(graphs, cpu, self.size)
        # Condition as generate does: on the caption's parse (token spans of every object and relation word).
        graphs = [with_parsed_spans(g, p) for g, p in zip(graphs, parse_batch([g.text or "" for g in graphs]))]
        prompts = [g.text or "" for g in graphs]
        device = self.pipe.vae.device
        embeds, _ = self.pipe.encode_prompt(prompts, device, 1, False)  # [B, L, D]
        alignment = align_batch(graphs, self.pipe.tokenizer, prompts, max_length=embeds.size(1))
        return {
            "graphs": graph_batch(graphs, self.embedder, embeds, alignment),
            "alignment": alignment,
            "prompt_embeds": embeds,
            "positive": self._latents(pos),
            "negative": self._latents(neg),
            "negative_mask": torch.tensor(has, device=device),
        }
