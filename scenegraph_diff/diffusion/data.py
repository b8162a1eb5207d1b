"""Generic graph sets (GDSS's community_small, ego_small, grid, enzymes) as dense adjacency tensors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import Tensor

from ..devices import multinomial

__all__ = ["GRAPH_DATASETS", "load_graph_dataset", "graphs_to_adjacency", "adjacency_to_graphs", "NodeCountSampler",
           "default_data_root"]

GRAPH_DATASETS = ("community_small", "ego_small", "grid", "enzymes")


def default_data_root() -> Path:
    """``../shared/datasets`` relative to the repository root."""
    return Path(__file__).resolve().parents[2].parent / "shared" / "datasets"


def load_graph_dataset(name: str, data_root: str | Path | None = None) -> tuple[list[dict], list[dict]]:
    """Read ``graphs/<name>.jsonl`` and return ``(train, test)`` by its ``split`` field (GDSS's split)."""
    if name not in GRAPH_DATASETS:
        raise ValueError(f"unknown graph dataset {name!r}; expected one of {GRAPH_DATASETS}")
    path = Path(data_root if data_root is not None else default_data_root()) / "graphs" / f"{name}.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"graph dataset file not found: {path}")
    train, test = [], []
    for line in path.read_text().splitlines():
        g = json.loads(line)
        (test if g.get("split") == "test" else train).append({"num_nodes": g["num_nodes"], "edges": g["edges"]})
    return train, test


def graphs_to_adjacency(graphs: Sequence[dict[str, Any]], max_nodes: int | None = None) -> tuple[Tensor, Tensor]:
    """Edge-list dicts -> ``A [B, N, N]`` (0/1 float, symmetric) and ``node_mask [B, N]`` (bool)."""
    n_max = max((int(g["num_nodes"]) for g in graphs), default=0)
    N = n_max if max_nodes is None else max_nodes
    if n_max > N:
        raise ValueError(f"max_nodes={max_nodes} is smaller than the largest graph ({n_max} nodes)")
    A = torch.zeros(len(graphs), N, N)
    mask = torch.zeros(len(graphs), N, dtype=torch.bool)
    for b, g in enumerate(graphs):
        n = int(g["num_nodes"])
        mask[b, :n] = True
        if g["edges"]:
            e = torch.as_tensor(g["edges"], dtype=torch.long)
            A[b, e[:, 0], e[:, 1]] = 1.0
            A[b, e[:, 1], e[:, 0]] = 1.0
    A.diagonal(dim1=1, dim2=2).zero_()
    return A, mask


def adjacency_to_graphs(A: Tensor, node_mask: Tensor) -> list[dict[str, Any]]:
    """``A [B, N, N]`` (0/1, or {-1,+1} thresholded at 0) -> ``{"num_nodes", "edges"}`` dicts (real nodes only;
    isolated nodes are kept here; the metric drops them as GDSS does)."""
    out = []
    for b in range(A.shape[0]):
        idx = node_mask[b].nonzero().flatten()
        sub = A[b][idx][:, idx] > 0.5 if A.min() >= 0 else A[b][idx][:, idx] > 0
        iu = torch.triu(sub, diagonal=1).nonzero().tolist()
        out.append({"num_nodes": int(idx.numel()), "edges": [[int(u), int(v)] for u, v in iu]})
    return out


class NodeCountSampler:
    """Samples node counts from the empirical distribution of a training set."""

    def __init__(self, counts: Sequence[int]) -> None:
        if len(counts) == 0:
            raise ValueError("NodeCountSampler needs at least one count")
        self.max_nodes = int(max(counts))
        hist = torch.bincount(torch.as_tensor(list(counts), dtype=torch.long), minlength=self.max_nodes + 1)
        self.probs = hist.float() / hist.sum()

    def sample(self, num: int, generator: torch.Generator | None = None) -> Tensor:
        """``[num]`` long tensor of node counts."""
        return multinomial(self.probs, num, replacement=True, generator=generator)  # on CPU

    def mask(self, num: int, generator: torch.Generator | None = None) -> Tensor:
        """``node_mask [num, max_nodes]`` with the first ``n_b`` nodes of row ``b`` real."""
        n = self.sample(num, generator)
        return torch.arange(self.max_nodes)[None, :] < n[:, None]
