"""Box parametrisation of the layout models: ``(x0, y0, x1, y1)`` <-> ``(cx, cy, w, h)``.

The models predict (and diffuse) the centre and size of each box, as fractions of the canvas; the
:class:`~scenegraph_diff.graph.SceneGraph` ``box`` field is ``[x0, y0, x1, y1]`` in ``[0, 1]``.
:func:`params_to_boxes` always returns valid boxes: a predicted size is clamped to
``[min_size, 1]`` and the box is moved (not shrunk) into the canvas.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["BOX_PARAMS", "boxes_to_params", "params_to_boxes"]

#: number of box parameters ``(cx, cy, w, h)``
BOX_PARAMS = 4


def _check_last_dim(x: Tensor, name: str) -> None:
    if x.dim() < 1 or x.shape[-1] != BOX_PARAMS:
        raise ValueError(f"{name} must have shape [..., 4], got {tuple(x.shape)}")


def boxes_to_params(boxes: Tensor) -> Tensor:
    """``(x0, y0, x1, y1)`` ``[..., 4]`` -> ``(cx, cy, w, h)`` ``[..., 4]`` (same units)."""
    _check_last_dim(boxes, "boxes")
    x0, y0, x1, y1 = boxes.unbind(-1)
    return torch.stack([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0], -1)


def params_to_boxes(params: Tensor, min_size: float = 1e-3) -> Tensor:
    """``(cx, cy, w, h)`` fractions ``[..., 4]`` -> valid ``(x0, y0, x1, y1)`` boxes ``[..., 4]`` in ``[0, 1]``.

    ``w`` and ``h`` are clamped to ``[min_size, 1]``; the centre is then clamped so that the box lies
    inside the canvas (a box sticking out is shifted in, keeping its size). ``x0 < x1`` and ``y0 < y1``
    always hold.
    """
    _check_last_dim(params, "params")
    if not 0 < min_size <= 0.5:
        raise ValueError(f"min_size must be in (0, 0.5], got {min_size}")
    cx, cy, w, h = params.unbind(-1)
    w, h = w.clamp(min_size, 1.0), h.clamp(min_size, 1.0)
    cx = torch.minimum(torch.maximum(cx, w / 2), 1 - w / 2)
    cy = torch.minimum(torch.maximum(cy, h / 2), 1 - h / 2)
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1).clamp(0.0, 1.0)
