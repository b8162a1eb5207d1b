"""The relational shapes world (``SHAPES.md``): generator, renderer, checker, dataset and the bundled model.

    >>> import torch
    >>> from scenegraph_diff.shapes import sample_scene, render, check
    >>> g = sample_scene(torch.Generator().manual_seed(0))
    >>> check(render(g, torch.Generator().manual_seed(1)), g).all_correct
    True

The model parts (``ShapesPipeline``, training) import torch/diffusers lazily on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from .checker import Component, Scores, Verdict, check, find_components, score, swapped_twins
from .world import (
    COLOUR_NAMES, COLOURS, PALETTE, PREDICATES, SHAPES, Box, caption, centroid, layout_satisfies, relation_holds,
    render, render_layout, sample_layout, sample_scene, validate_shapes_graph,
)

_LAZY = {
    "ShapesDataset": ".dataset",
    "collate_shapes": ".dataset",
    "ShapesPipeline": ".pipeline",
    "ShapesPipelineOutput": ".pipeline",
    "bundled_model_path": ".pipeline",
    "ShapesConditioner": ".conditioning",
    "LayoutHead": ".layout",
    "repair_layout": ".layout",
    "layout_maps": ".layout",
    "TrainShapesConfig": ".train",
    "train_shapes": ".train",
}

__all__ = [
    "COLOURS", "COLOUR_NAMES", "SHAPES", "PREDICATES", "PALETTE", "Box", "sample_scene", "sample_layout", "caption",
    "render", "render_layout", "centroid", "relation_holds", "layout_satisfies", "validate_shapes_graph",
    "check", "score", "find_components", "swapped_twins", "Verdict", "Scores", "Component", *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
