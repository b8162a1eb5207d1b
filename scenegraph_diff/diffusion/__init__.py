"""Graph diffusion: SDEs, score networks, samplers, the PARD family and typed scene-graph diffusion.

* :mod:`.sde` — VP / sub-VP / VE SDEs; symmetric adjacency noise.
* :mod:`.ppgn` — :class:`EdgeDenoiser`, a time-conditioned equivariant x₀-predictor (few-step family).
* :mod:`.lowrank` — :class:`LowRankEdgeDenoiser`, the same interface at ``O(N²)`` per layer (node/pair states,
  distance edge head) for graphs of hundreds of nodes.
* :mod:`.gdss` — GDSS-style score networks for ``X`` and ``A`` (no time input) and their generator.
* :mod:`.losses` — x₀ cross-entropy and denoising score matching.
* :mod:`.samplers` — :class:`PCSampler` (reverse diffusion + Langevin), :class:`S4Sampler`, :class:`DDIMSampler`.
* :mod:`.edge_diffusion` — :class:`EdgeDiffusionGenerator` and its training step.
* :mod:`.pard` — block-autoregressive diffusion with degree-peeling order.
* :mod:`.scene_graph_diffusion` — typed (class/predicate) absorbing diffusion: sampling, completion, refinement.
* :mod:`.scene_graph_refiner` — :class:`SceneGraphRefiner`, ``SceneGraph`` in/out (what ``SceneGraphPipeline(graph_refiner=...)`` uses).
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "VPSDE": ".sde", "SubVPSDE": ".sde", "VESDE": ".sde", "symmetric_noise": ".sde",
    "EdgeDenoiser": ".ppgn", "LowRankEdgeDenoiser": ".lowrank",
    "ScoreNetworkX": ".gdss", "ScoreNetworkA": ".gdss", "GDSSScoreModel": ".gdss", "GDSSGenerator": ".gdss",
    "train_gdss": ".gdss", "GDSSConfig": ".gdss",
    "PCSampler": ".samplers", "S4Sampler": ".samplers", "DDIMSampler": ".samplers",
    "EdgeDiffusionGenerator": ".edge_diffusion", "EdgeDiffusionConfig": ".edge_diffusion",
    "train_edge_diffusion": ".edge_diffusion",
    "PARDGenerator": ".pard", "PARDConfig": ".pard", "PARDModel": ".pard", "train_pard": ".pard",
    "peeling_blocks": ".pard",
    "SceneGraphDenoiser": ".scene_graph_diffusion", "TypedDiffusion": ".scene_graph_diffusion",
    "SceneGraphRefiner": ".scene_graph_refiner",
    "load_graph_dataset": ".data",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
