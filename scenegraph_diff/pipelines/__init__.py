"""diffusers pipelines conditioned on scene graphs.

* :class:`SceneGraphPipeline` — a :class:`diffusers.StableDiffusionPipeline` that also takes a ``scene_graph``;
* :mod:`.testing` — :func:`~.testing.tiny_sd_components`, offline random-weight SD parts for tests and CI.

Imported lazily (diffusers and transformers load on first use).
"""

from __future__ import annotations

from typing import Any

__all__ = ["SceneGraphPipeline", "describe_graph"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import scene_graph

        return getattr(scene_graph, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
