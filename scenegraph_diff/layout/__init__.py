"""Scene graph -> layout: one box per object.

* :class:`LayoutModel` — the common interface: ``sample(graphs, num_samples, generator, resample)`` returns,
  per graph, ``num_samples`` copies with a box on every object (given boxes kept unless ``resample``);
* :class:`RegressionLayoutModel` — the sg2im-style regression baseline (HGCN / R-HGNN encoder + box MLP);
* :class:`DiffusionLayoutModel` — continuous box diffusion conditioned on the typed graph (VP SDE, DDIM,
  <= 20 network evaluations), with completion of partial layouts;
* :func:`load_layout_model` — a bundled model by name (``layout-shapes``, ``layout-vrd``) or a folder;
* :mod:`.train` — ``scenegraph-diff train-layout`` on the shared :class:`~scenegraph_diff.training.Trainer`.

Imports are lazy (the models need diffusers and PyG).
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "LayoutModel": ".base", "LayoutInputs": ".base",
    "RegressionLayoutModel": ".regression", "regression_loss": ".regression",
    "DiffusionLayoutModel": ".diffusion", "diffusion_loss": ".diffusion",
    "LayoutGraphEncoder": ".encoder",
    "boxes_to_params": ".boxes", "params_to_boxes": ".boxes",
    "load_layout_model": ".loading",
    "TrainLayoutConfig": ".train", "train_layout": ".train",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
