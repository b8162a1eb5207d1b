"""scenegraph_diff: relation-aware text-to-image generation with heterogeneous scene graphs.

Importing the package is cheap: heavy dependencies (torch, diffusers, transformers, matplotlib) are
imported lazily by the submodules that need them.
"""

from __future__ import annotations

from typing import Any

from .graph.scene_graph import Relation, SceneGraph, SceneGraphError, SceneObject

__version__ = "0.1.0"

__all__ = ["SceneGraph", "SceneObject", "Relation", "SceneGraphError", "parse", "parse_batch", "__version__"]


def __getattr__(name: str) -> Any:
    # Lazy: the parser pulls in its backends only when first used.
    if name in ("parse", "parse_batch"):
        from . import parsing

        return getattr(parsing, name)
    raise AttributeError(f"module 'scenegraph_diff' has no attribute {name!r}")
