"""Link-prediction metrics with OGB's definitions.

All functions take scores of positive edges ``pos [P]`` and negative edges ``neg [M]`` (or
``neg [P, M]`` for per-positive negatives, as in ``ogbl-citation2``) and return Python floats.

* ``hits_at_k`` — OGB ``ogbl-collab/ppa/ddi``: the fraction of positives scored *strictly* above the
  K-th highest negative score (1.0 when there are fewer than K negatives).
* ``mrr`` — OGB ``ogbl-citation2``: each positive is ranked against its negatives, ties count half
  (rank = 1 + #(neg > pos) + 0.5 · #(neg == pos)), the mean of 1 / rank. With a shared 1-D ``neg``
  every positive is ranked against all negatives.
* ``auc`` — the area under the ROC curve (Mann–Whitney statistic, ties count half).
* ``average_precision`` — scikit-learn's definition: Σ_n (R_n − R_{n−1}) P_n over the distinct
  score thresholds in decreasing order (tied scores form one threshold).
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import Tensor

__all__ = ["hits_at_k", "mrr", "auc", "average_precision", "evaluate_scores"]


def _check(pos: Tensor, neg: Tensor) -> None:
    if pos.dim() != 1 or pos.numel() == 0:
        raise ValueError(f"pos must be a non-empty 1-D tensor, got shape {tuple(pos.shape)}")
    if neg.numel() == 0:
        raise ValueError(f"neg must be non-empty, got shape {tuple(neg.shape)}")


def hits_at_k(pos: Tensor, neg: Tensor, k: int) -> float:
    """OGB Hits@K: ``mean(pos > kth_largest(neg))``; ``neg`` is flattened (shared negatives)."""
    _check(pos, neg)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    neg = neg.reshape(-1)
    if neg.numel() < k:
        return 1.0
    kth = torch.topk(neg, k).values[-1]
    return float((pos > kth).float().mean())


def mrr(pos: Tensor, neg: Tensor) -> float:
    """OGB MRR. ``neg`` is ``[P, M]`` (per-positive negatives) or ``[M]`` (shared by all positives)."""
    _check(pos, neg)
    if neg.dim() == 1:
        neg = neg.unsqueeze(0)  # [1, M], broadcast against pos [P, 1]
    elif neg.dim() != 2 or neg.size(0) != pos.size(0):
        raise ValueError(f"neg must be [M] or [P, M] with P={pos.size(0)}, got shape {tuple(neg.shape)}")
    p = pos.unsqueeze(1)  # [P, 1]
    optimistic = (neg > p).sum(dim=1).double()
    pessimistic = (neg >= p).sum(dim=1).double()
    rank = 0.5 * (optimistic + pessimistic) + 1.0
    return float((1.0 / rank).mean())


def _labels_scores(pos: Tensor, neg: Tensor) -> tuple[Tensor, Tensor]:
    scores = torch.cat([pos.reshape(-1), neg.reshape(-1)]).double()
    labels = torch.cat([torch.ones(pos.numel()), torch.zeros(neg.numel())]).double()
    return scores, labels


def auc(pos: Tensor, neg: Tensor) -> float:
    """ROC AUC = P(score(pos) > score(neg)) + 0.5 · P(tie), via average ranks."""
    _check(pos, neg)
    scores, labels = _labels_scores(pos, neg)
    # Average ranks (1-based) with ties sharing the mean rank.
    uniq, inverse, counts = torch.unique(scores, return_inverse=True, return_counts=True)
    ends = torch.cumsum(counts, 0).double()
    avg_rank = ends - (counts.double() - 1.0) / 2.0  # [U]
    ranks = avg_rank[inverse]
    n_pos, n_neg = float(pos.numel()), float(neg.numel())
    u = ranks[labels == 1].sum() - n_pos * (n_pos + 1.0) / 2.0
    return float(u / (n_pos * n_neg))


def average_precision(pos: Tensor, neg: Tensor) -> float:
    """Average precision, scikit-learn's step-wise definition (no interpolation)."""
    _check(pos, neg)
    scores, labels = _labels_scores(pos, neg)
    order = torch.argsort(scores, descending=True, stable=True)
    scores, labels = scores[order], labels[order]
    tp = torch.cumsum(labels, 0)
    fp = torch.cumsum(1.0 - labels, 0)
    # Keep only the last index of each run of equal scores (one threshold per distinct score).
    last = torch.ones_like(scores, dtype=torch.bool)
    last[:-1] = scores[1:] != scores[:-1]
    tp, fp = tp[last], fp[last]
    precision = tp / (tp + fp)
    recall = tp / tp[-1]
    prev = torch.cat([recall.new_zeros(1), recall[:-1]])
    return float(((recall - prev) * precision).sum())


def evaluate_scores(pos: Tensor, neg: Tensor, ks: Iterable[int] = (10, 20, 50, 100)) -> dict[str, float]:
    """All metrics at once: ``{"auc", "ap", "mrr", "hits@K"...}`` (Hits and MRR in percent, as in
    papers; AUC and AP as fractions)."""
    pos, neg = pos.detach().float().cpu(), neg.detach().float().cpu()
    out = {"auc": auc(pos, neg), "ap": average_precision(pos, neg), "mrr": 100.0 * mrr(pos, neg)}
    for k in ks:
        out[f"hits@{k}"] = 100.0 * hits_at_k(pos, neg, k)
    return out
