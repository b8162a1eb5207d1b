"""Build the encoder's input batch for prompts: label features + the prompt's EOT state on the scene node."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import torch
from torch import Tensor

from ..graph.hetero import SCENE, collate
from ..graph.scene_graph import SceneGraph
from .alignment import GraphAlignment

if TYPE_CHECKING:  # pragma: no cover
    from torch_geometric.data import HeteroData

__all__ = ["graph_batch"]


def graph_batch(graphs: Sequence[SceneGraph], embedder: Any, prompt_embeds: Tensor | None = None,
                alignment: GraphAlignment | None = None) -> "HeteroData":
    """``collate(graphs, embedder)`` with, as in RRNet, each graph's ``scene`` node (its EOT node) carrying the
    text encoder's output state at the prompt's EOT token (when ``prompt_embeds [G, L, D]`` and ``alignment``
    are given and ``D == embedder.dim``; otherwise the scene node keeps ``collate``'s zeros).

    The batch lives on ``prompt_embeds``' device (CPU without it).
    """
    batch = collate(list(graphs), embedder)
    if prompt_embeds is None or alignment is None:
        return batch
    batch = batch.to(prompt_embeds.device)
    if prompt_embeds.size(-1) == batch[SCENE].x.size(-1):
        rows = torch.arange(prompt_embeds.size(0), device=prompt_embeds.device)
        eot = prompt_embeds[rows, alignment.eot.to(prompt_embeds.device)]  # [G, D]
        batch[SCENE].x = eot.to(batch[SCENE].x.dtype)
    return batch
