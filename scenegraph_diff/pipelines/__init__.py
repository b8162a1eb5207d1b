"""diffusers pipelines conditioned on scene graphs.

* :class:`SceneGraphPipeline` — a :class:`diffusers.StableDiffusionPipeline` that also takes a ``scene_graph``;
* :class:`GraphPipelineMixin` — what every such pipeline shares: graph modules, ``from_pretrained`` (dtypes,
  aligned weights), ``from_pipe``, CPU offloading, step callbacks;
* :class:`GraphCutoffCallback` — graph conditioning for the first steps only (``callback_on_step_end``);
  :class:`GroundingCutoffCallback` — the same for GLIGEN box grounding;
* :mod:`.testing` — :func:`~.testing.tiny_sd_components`, offline random-weight SD parts for tests and CI.

Imported lazily (diffusers and transformers load on first use).
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "SceneGraphPipeline": ".scene_graph",
    "describe_graph": ".graph_pipeline",
    "GraphPipelineMixin": ".graph_pipeline",
    "GRAPH_MODULES": ".graph_pipeline",
    "GraphCutoffCallback": ".callbacks",
    "GroundingCutoffCallback": ".callbacks",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
