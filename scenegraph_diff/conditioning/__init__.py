"""Graph -> Stable Diffusion conditioning, and relation-rectification training.

* :class:`GraphConditioner` — zero-gated offsets on ``prompt_embeds`` (EOT + aligned tokens), optional
  appended graph tokens; untrained it is exactly the identity;
* :func:`align_batch` / :class:`GraphAlignment` — object / relation -> prompt token positions;
* :mod:`.rectification` — RRNet's relation-rectification objective, dataset reader and training entry point.

Modules that need diffusers are imported lazily.
"""

from __future__ import annotations

import importlib
from typing import Any

from .alignment import GraphAlignment, align_batch, align_graph, find_span
from .graph_batch import graph_batch

_LAZY = {
    "GraphConditioner": ".conditioner",
    "RectificationConfig": ".rectification",
    "RectificationDataset": ".rectification",
    "train_rectification": ".rectification",
    "rectification_step": ".rectification",
    "RectificationRunConfig": ".rectification",
    "run_rectification": ".rectification",
}

__all__ = ["GraphAlignment", "align_batch", "align_graph", "find_span", "graph_batch", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
