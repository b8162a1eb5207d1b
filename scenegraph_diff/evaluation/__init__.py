"""Label-free evaluation of generated images (the shapes checker stays in :mod:`scenegraph_diff.shapes`).

* :mod:`.diffusion_classifier` — relation verdicts from denoising error (Diffusion Classifier);
* :mod:`.conditioning` — the ``prompt_embeds`` a pipeline gives a scene graph.

Imported lazily (diffusers loads on first use).
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "RelationVerdict": ".diffusion_classifier", "relation_scores": ".diffusion_classifier",
    "relation_candidates": ".diffusion_classifier", "denoising_errors": ".diffusion_classifier",
    "images_to_latents": ".diffusion_classifier",
    "graph_prompt_embeds": ".conditioning", "graph_text": ".conditioning", "has_graph_adapter": ".conditioning",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
