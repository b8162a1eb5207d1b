"""Where a link predictor's Hits@K misses are: by graph distance, isolated endpoints and feature overlap.

:func:`miss_breakdown` takes a trained model's scores on one evaluation set (positives and their
negatives) and the message-passing graph it was scored on, and says which positives fall below the
K-th best negative (the Hits@K threshold, OGB's definition) and which negatives sit above it, bucketed by
the shortest-path distance between the pair's endpoints. It needs no model: it works on any scores.

``benchmarks/linkpred/diagnose.py`` trains a config row for one seed and prints this breakdown.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

__all__ = ["pair_distances", "miss_breakdown"]


def pair_distances(edge_index: Tensor, num_nodes: int, pairs: Tensor, max_dist: int = 8) -> Tensor:
    """Unweighted shortest-path distance of each pair over ``edge_index`` (read as undirected).

    Args:
        edge_index: ``[2, E]`` message-passing edges.
        num_nodes: N.
        pairs: ``[2, B]`` node pairs.
        max_dist: distances above this are reported as ``-1`` (as are unreachable pairs).

    Returns:
        ``[B]`` int64: the distance (``0`` for ``i == j``), or ``-1`` beyond ``max_dist``/unreachable.
    """
    import numpy as np
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import dijkstra

    if max_dist < 1:
        raise ValueError(f"max_dist must be >= 1, got {max_dist}")
    if pairs.dim() != 2 or pairs.size(0) != 2:
        raise ValueError(f"pairs must have shape [2, B], got {tuple(pairs.shape)}")
    if pairs.numel() == 0:
        return torch.zeros(0, dtype=torch.long)
    ei = edge_index.detach().cpu().numpy()
    adj = coo_matrix((np.ones(ei.shape[1]), (ei[0], ei[1])), shape=(num_nodes, num_nodes)).tocsr()
    src, dst = pairs.detach().cpu().numpy()
    uniq, inv = np.unique(src, return_inverse=True)
    dist = dijkstra(adj, directed=False, unweighted=True, indices=uniq, limit=max_dist + 0.5)
    d = dist[inv, dst]
    out = np.where(np.isfinite(d), d, -1).astype(np.int64)
    return torch.from_numpy(out)


def miss_breakdown(pos: Tensor, neg: Tensor, pos_pairs: Tensor, neg_pairs: Tensor, edge_index: Tensor,
                   num_nodes: int, k: int = 100, max_dist: int = 8, x: Tensor | None = None) -> dict[str, Any]:
    """Bucket Hits@K misses (positives at or below the K-th best negative) by pair distance.

    Args:
        pos, neg: ``[P]`` / ``[Q]`` scores of the positive and negative pairs (higher = more likely).
        pos_pairs, neg_pairs: ``[2, P]`` / ``[2, Q]`` the pairs.
        edge_index: ``[2, E]`` the graph the scores were computed on.
        num_nodes: N.
        k: the K of Hits@K (``Q < K``: every positive is a hit, OGB's convention).
        max_dist: the largest distance with its own bucket; farther or unreachable pairs share ``"far"``.
        x: optional ``[N, F]`` node features: adds the TF-IDF cosine of the missed and hit positives
            and of the negatives above the threshold (medians).

    Returns:
        ``{"k", "threshold", "hits", "positives", "missed", "isolated_missed", "isolated_positives",
        "buckets": [{"dist", "positives", "missed", "negatives", "negatives_above"}, ...],
        "cosine": {...} (with ``x``)}``; ``dist`` is ``1..max_dist`` or ``"far"``.
    """
    if pos.dim() != 1 or neg.dim() != 1:
        raise ValueError(f"pos and neg must be 1-D score vectors, got {tuple(pos.shape)} and {tuple(neg.shape)}")
    if pos_pairs.shape != (2, pos.numel()) or neg_pairs.shape != (2, neg.numel()):
        raise ValueError(f"pairs must be [2, P] / [2, Q] for P={pos.numel()}, Q={neg.numel()}; "
                         f"got {tuple(pos_pairs.shape)} and {tuple(neg_pairs.shape)}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    pos, neg = pos.detach().float().cpu(), neg.detach().float().cpu()
    thr = torch.topk(neg, k).values[-1].item() if neg.numel() >= k else -math.inf
    hit = pos > thr
    above = neg >= thr
    dp = pair_distances(edge_index, num_nodes, pos_pairs, max_dist)
    dn = pair_distances(edge_index, num_nodes, neg_pairs, max_dist)
    buckets = []
    for d in list(range(1, max_dist + 1)) + ["far"]:
        mp = dp == (-1 if d == "far" else d)
        mn = dn == (-1 if d == "far" else d)
        buckets.append({"dist": d, "positives": int(mp.sum()), "missed": int((mp & ~hit).sum()),
                        "negatives": int(mn.sum()), "negatives_above": int((mn & above).sum())})
    deg = torch.bincount(edge_index[0].cpu(), minlength=num_nodes)
    iso = (deg[pos_pairs[0].cpu()] == 0) | (deg[pos_pairs[1].cpu()] == 0)
    out: dict[str, Any] = {
        "k": k, "threshold": thr, "hits": float(hit.float().mean()) if pos.numel() else 0.0,
        "positives": pos.numel(), "missed": int((~hit).sum()),
        "isolated_positives": int(iso.sum()), "isolated_missed": int((iso & ~hit).sum()), "buckets": buckets,
    }
    if x is not None:
        from .data import normalized_rows

        xn = normalized_rows(x.cpu(), tfidf=True)
        cp = (xn[pos_pairs[0].cpu()] * xn[pos_pairs[1].cpu()]).sum(-1)
        cn = (xn[neg_pairs[0].cpu()] * xn[neg_pairs[1].cpu()]).sum(-1)

        def med(t: Tensor) -> float:
            return float(t.median()) if t.numel() else math.nan

        out["cosine"] = {"missed_positives": med(cp[~hit]), "hit_positives": med(cp[hit]),
                         "negatives_above": med(cn[above]), "negatives": med(cn)}
    return out
