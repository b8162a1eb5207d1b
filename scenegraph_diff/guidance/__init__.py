"""Sampling-time methods on any frozen diffusers text-to-image pipeline (DESIGN.md "The image side on one route").

* :mod:`.fk` — FK steering: particles resampled on a reward of the predicted image (``callback_on_step_end``);
* :mod:`.composed` — composed scores: one conditional score per relation, summed (a UNet hook);
* :mod:`.cache` — DeepCache: the UNet's deep features reused across steps (diffusers hooks).

Imported lazily (diffusers loads on first use).
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "FKConfig": ".fk", "FKSteering": ".fk", "FKResult": ".fk", "fk_generate": ".fk", "particle_generators": ".fk",
    "stochastic_scheduler": ".fk", "checker_reward": ".fk", "dc_reward": ".fk",
    "ComposedScores": ".composed", "composed_generate": ".composed", "relation_concepts": ".composed",
    "DeepCache": ".cache",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
