"""PyG layers for heterogeneous (scene) graphs and the scene-graph encoder.

* :class:`HGCNConv` — RRNet's heterogeneous graph attention (one GAT per edge type, summed per node type);
* :class:`RHGNNConv` — one R-HGNN layer (relation-specific convolution, cross-relation message passing,
  relation update, semantic fusion);
* :class:`SceneGraphEncoder` — a diffusers ``ModelMixin`` stacking either layer over the scene-graph
  schema; returns node embeddings, a scene embedding and graph tokens (imported lazily: it needs diffusers).
"""

from __future__ import annotations

from typing import Any

from .hgcn import HGCNConv
from .rhgnn import RHGNNConv

__all__ = ["HGCNConv", "RHGNNConv", "SceneGraphEncoder", "SceneGraphEncoderOutput"]


def __getattr__(name: str) -> Any:
    if name in ("SceneGraphEncoder", "SceneGraphEncoderOutput"):
        from . import encoders

        return getattr(encoders, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
