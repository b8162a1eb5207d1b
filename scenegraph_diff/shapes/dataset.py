"""A PyG-friendly dataset of shapes-world ``(image, graph)`` pairs, generated deterministically on the fly.

    >>> from scenegraph_diff.shapes import ShapesDataset, collate_shapes
    >>> ds = ShapesDataset(1000, seed=0)
    >>> image, graph = ds[3]                       # uint8 [3, 32, 32], SceneGraph (with caption and boxes)
    >>> images, batch = collate_shapes([ds[i] for i in range(8)])   # [8, 3, 32, 32], HeteroDataBatch
    >>> loader = torch.utils.data.DataLoader(ds, batch_size=32, collate_fn=collate_shapes)

Item ``i`` depends only on ``(seed, i, size)``, so any subset, order or worker split is reproducible.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor
from torch.utils.data import Dataset

from ..graph.scene_graph import SceneGraph
from .world import Box, render_layout, sample_scene

__all__ = ["ShapesDataset", "collate_shapes"]


class ShapesDataset(Dataset):
    """``num_scenes`` scenes from :func:`~.world.sample_scene`, each rendered at ``size`` x ``size``.

    Args:
        num_scenes: dataset length.
        seed: base seed; item ``i`` uses ``torch.Generator().manual_seed(seed * 1_000_003 + i)``.
        size: image size (32 or 64).

    Items are ``(image, graph)``: ``image`` is a ``uint8`` tensor ``[3, size, size]``; ``graph`` a
    :class:`SceneGraph` with a caption (``text``) and every object's ground-truth ``box``.
    """

    def __init__(self, num_scenes: int, seed: int = 0, size: int = 32) -> None:
        if num_scenes < 0:
            raise ValueError(f"num_scenes must be >= 0, got {num_scenes}")
        self.num_scenes, self.seed, self.size = num_scenes, seed, size

    def __len__(self) -> int:
        return self.num_scenes

    def graph(self, index: int) -> SceneGraph:
        """The scene graph of item ``index`` (without rendering)."""
        if not -self.num_scenes <= index < self.num_scenes:
            raise IndexError(f"index {index} out of range for {self.num_scenes} scenes")
        index %= max(self.num_scenes, 1)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        return sample_scene(g, self.size)

    def __getitem__(self, index: int) -> tuple[Tensor, SceneGraph]:
        graph = self.graph(index)
        boxes = [Box.from_fractions(o.box, self.size) for o in graph.objects]  # type: ignore[arg-type]
        image = torch.from_numpy(render_layout(graph, boxes, self.size)).permute(2, 0, 1).contiguous()
        return image, graph

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.num_scenes}, seed={self.seed}, size={self.size})"


def collate_shapes(items: Sequence[tuple[Tensor, SceneGraph]], embedder: Any = None) -> tuple[Tensor, Any]:
    """Batch ``(image, graph)`` items: ``images [B, 3, H, W]`` and a PyG ``HeteroDataBatch`` of the graphs.

    ``embedder`` (a :mod:`scenegraph_diff.text` label embedder) fills node features ``x``.
    """
    from ..graph.hetero import collate

    if not items:
        raise ValueError("collate_shapes needs at least one item")
    images = torch.stack([im for im, _ in items])
    return images, collate([g for _, g in items], embedder=embedder)
