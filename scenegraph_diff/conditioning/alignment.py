"""Which prompt tokens belong to which object and relation of a scene graph.

A prompt is tokenized the way Stable Diffusion does (``<bos> tokens... <eos> <pad>...``, length
``tokenizer.model_max_length``). For every object and relation, its character span in the text
(``SceneObject.span`` / ``Relation.span``, filled by the parser) is mapped to token positions; when a
span is missing (or the graph's text is not the prompt) the label's words are searched in the prompt
(whole words, case-insensitive, left to right, each occurrence used once per label). Position 0 is
``<bos>``; the EOT position is the first ``<eos>`` (clipped to the last position when truncated).

The mapping is tokenizer-agnostic: the tokens of a span ``[s, e)`` are those of ``text[:e]`` that are
not tokens of ``text[:s]`` (exact for tokenizers that split on whitespace first, as CLIP's does).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import Tensor

from ..graph.scene_graph import SceneGraph

__all__ = ["GraphAlignment", "align_graph", "align_batch", "find_span"]


@dataclass(frozen=True)
class GraphAlignment:
    """Token positions of a batch of graphs in their prompts.

    Attributes:
        eot: ``[G]`` long, the EOT position of each prompt.
        object_index: ``[3, K_o]`` long, rows ``(graph, token position, object node)``; object nodes are
            numbered over the whole batch in :func:`~scenegraph_diff.graph.collate` order.
        relation_index: ``[3, K_r]`` long, the same for relation nodes.
    """

    eot: Tensor
    object_index: Tensor
    relation_index: Tensor

    def to(self, device: torch.device | str) -> "GraphAlignment":
        return GraphAlignment(self.eot.to(device), self.object_index.to(device), self.relation_index.to(device))


def find_span(text: str, label: str, start: int = 0) -> tuple[int, int] | None:
    """Character span of the first whole-word, case-insensitive occurrence of ``label`` at or after ``start``."""
    words = label.split()
    if not words:
        return None
    pattern = r"\b" + r"\s+".join(re.escape(w) for w in words) + r"\b"
    m = re.compile(pattern, re.IGNORECASE).search(text, start)
    return (m.start(), m.end()) if m else None


def _n_tokens(tokenizer: Any, text: str) -> int:
    if not text.strip():
        return 0
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def align_graph(graph: SceneGraph, tokenizer: Any, prompt: str | None = None,
                max_length: int | None = None) -> tuple[int, list[list[int]], list[list[int]]]:
    """Align one graph to its prompt.

    Args:
        graph: the scene graph.
        tokenizer: a Hugging Face tokenizer (the pipeline's).
        prompt: the prompt; defaults to ``graph.text``. Spans are used only when ``prompt`` is
            ``graph.text``; otherwise labels are matched as words.
        max_length: sequence length (default ``tokenizer.model_max_length``); positions past it are dropped.

    Returns:
        ``(eot, object_positions, relation_positions)``: the EOT position and, per object / relation, its
        token positions (possibly empty when its words are not in the prompt).
    """
    text = graph.text if prompt is None else prompt
    if text is None:
        raise ValueError("align_graph: the graph has no text and no prompt was given")
    max_length = tokenizer.model_max_length if max_length is None else max_length
    use_spans = graph.text is not None and graph.text == text
    cache: dict[int, int] = {}

    def n_tok(end: int) -> int:
        if end not in cache:
            cache[end] = _n_tokens(tokenizer, text[:end])
        return cache[end]

    def positions(span: tuple[int, int] | None) -> list[int]:
        if span is None:
            return []
        a, b = n_tok(span[0]), n_tok(span[1])
        return [1 + k for k in range(a, b) if 1 + k < max_length - 1]

    next_start: dict[str, int] = {}

    def locate(label: str, span: tuple[int, int] | None) -> tuple[int, int] | None:
        if use_spans and span is not None:
            return span
        found = find_span(text, label, next_start.get(label, 0))
        if found is None:  # reuse an earlier occurrence rather than nothing
            found = find_span(text, label, 0)
        else:
            next_start[label] = found[1]
        return found

    objects = [positions(locate(o.name, o.span)) for o in graph.objects]
    relations = [positions(locate(r.predicate, r.span)) for r in graph.relations]
    eot = min(1 + n_tok(len(text)), max_length - 1)
    return eot, objects, relations


def align_batch(graphs: Sequence[SceneGraph], tokenizer: Any, prompts: Sequence[str | None] | None = None,
                max_length: int | None = None) -> GraphAlignment:
    """:func:`align_graph` for a batch, as index tensors (see :class:`GraphAlignment`)."""
    if prompts is None:
        prompts = [None] * len(graphs)
    if len(prompts) != len(graphs):
        raise ValueError(f"align_batch: {len(prompts)} prompts for {len(graphs)} graphs")
    eots: list[int] = []
    obj_rows: list[tuple[int, int, int]] = []
    rel_rows: list[tuple[int, int, int]] = []
    o0 = r0 = 0
    for gi, (g, p) in enumerate(zip(graphs, prompts)):
        eot, objs, rels = align_graph(g, tokenizer, p, max_length)
        eots.append(eot)
        obj_rows += [(gi, pos, o0 + k) for k, ps in enumerate(objs) for pos in ps]
        rel_rows += [(gi, pos, r0 + k) for k, ps in enumerate(rels) for pos in ps]
        o0 += len(g.objects)
        r0 += len(g.relations)
    long = torch.long
    return GraphAlignment(
        eot=torch.tensor(eots, dtype=long),
        object_index=torch.tensor(obj_rows, dtype=long).reshape(-1, 3).t().contiguous(),
        relation_index=torch.tensor(rel_rows, dtype=long).reshape(-1, 3).t().contiguous(),
    )
