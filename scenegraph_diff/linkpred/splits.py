"""Leak-free edge splits for link prediction.

* :func:`random_link_split` — the NCN/NCNC protocol for Planetoid: the undirected edges are shuffled
  with a seeded ``torch.Generator`` and cut 70/10/20 into train/val/test; validation and test get one
  negative (a non-edge of the *full* graph) per positive, sampled once, disjoint from each other.
  Training negatives are drawn afresh every step with :func:`sample_negatives`.
* :func:`hetero_link_split` — PyG's ``RandomLinkSplit`` with ``rev_edge_types`` on a ``HeteroData``,
  so that the reverse of a validation/test edge never reaches the training message-passing graph.

Message passing (see :meth:`LinkSplit.message_passing_edges`): training and validation see only the
training edges; test sees the training edges, plus the validation edges when asked
(``with_val=True``, the OGB convention for ``ogbl-collab``; off by default).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

__all__ = [
    "LinkSplit",
    "random_link_split",
    "sample_negatives",
    "undirected_edges",
    "to_undirected",
    "edge_keys",
    "hetero_link_split",
]

EdgeType = tuple[str, str, str]


def undirected_edges(edge_index: Tensor) -> Tensor:
    """Unique undirected edges ``[2, E]`` with ``u < v`` (self-loops dropped), sorted."""
    u, v = edge_index
    lo, hi = torch.minimum(u, v), torch.maximum(u, v)
    keep = lo != hi
    lo, hi = lo[keep], hi[keep]
    n = int(hi.max()) + 1 if hi.numel() else 1
    keys = torch.unique(lo * n + hi)
    return torch.stack([keys // n, keys % n])


def to_undirected(edges: Tensor) -> Tensor:
    """``[2, E]`` -> ``[2, 2E]`` with both directions."""
    return torch.cat([edges, edges.flip(0)], dim=1)


def edge_keys(edges: Tensor, num_nodes: int) -> Tensor:
    """Order-free int64 key of each edge ``[2, E]`` -> ``[E]`` (``min * N + max``)."""
    u, v = edges
    return torch.minimum(u, v) * num_nodes + torch.maximum(u, v)


def sample_negatives(
    num: int,
    num_nodes: int,
    exclude: Tensor,
    generator: torch.Generator | None = None,
    unique: bool = False,
) -> Tensor:
    """Sample ``num`` node pairs ``[2, num]`` (u != v) whose key is not in ``exclude``.

    Args:
        num: how many pairs.
        num_nodes: N.
        exclude: sorted int64 keys (see :func:`edge_keys`) of pairs that must not be drawn.
        generator: the source of randomness.
        unique: draw each unordered pair at most once (val/test negatives).
    """
    if num < 0:
        raise ValueError(f"num must be >= 0, got {num}")
    max_pairs = num_nodes * (num_nodes - 1) // 2 - exclude.numel()
    if unique and num > max_pairs:
        raise ValueError(f"cannot draw {num} unique negatives: only {max_pairs} non-edges among {num_nodes} nodes")
    out: list[Tensor] = []
    seen = exclude
    have = 0
    while have < num:
        m = int((num - have) * 1.2) + 16
        u = torch.randint(0, num_nodes, (m,), generator=generator)
        v = torch.randint(0, num_nodes, (m,), generator=generator)
        pairs = torch.stack([u, v])[:, u != v]
        keys = edge_keys(pairs, num_nodes)
        ok = ~torch.isin(keys, seen)
        pairs, keys = pairs[:, ok], keys[ok]
        if unique:
            keys, first = _first_occurrence(keys)
            pairs = pairs[:, first]
            seen = torch.sort(torch.cat([seen, keys])).values
        pairs = pairs[:, : num - have]
        out.append(pairs)
        have += pairs.size(1)
    return torch.cat(out, dim=1) if out else torch.empty(2, 0, dtype=torch.long)


def _first_occurrence(keys: Tensor) -> tuple[Tensor, Tensor]:
    """Unique keys in order of first occurrence and their positions."""
    uniq, inverse = torch.unique(keys, return_inverse=True)
    pos = torch.full((uniq.numel(),), keys.numel(), dtype=torch.long)
    pos.scatter_reduce_(0, inverse, torch.arange(keys.numel()), reduce="amin")
    pos = torch.sort(pos).values
    return keys[pos], pos


@dataclass(frozen=True)
class LinkSplit:
    """A homogeneous edge split. All edge tensors are ``[2, E]`` undirected pairs (each edge once).

    Attributes:
        num_nodes: N.
        train_pos, val_pos, test_pos: the positive edges of each split (disjoint).
        val_neg, test_neg: one sampled non-edge per positive.
    """

    num_nodes: int
    train_pos: Tensor
    val_pos: Tensor
    val_neg: Tensor
    test_pos: Tensor
    test_neg: Tensor

    def message_passing_edges(self, stage: str, with_val: bool = False) -> Tensor:
        """The directed ``edge_index [2, 2E]`` a model may propagate over at ``stage``.

        ``"train"`` and ``"val"``: training edges only. ``"test"``: training edges, plus validation
        edges when ``with_val`` is true. Test edges never appear.
        """
        if stage in ("train", "val"):
            return to_undirected(self.train_pos)
        if stage == "test":
            edges = torch.cat([self.train_pos, self.val_pos], 1) if with_val else self.train_pos
            return to_undirected(edges)
        raise ValueError(f"stage must be 'train', 'val' or 'test', got {stage!r}")

    def train_exclude_keys(self) -> Tensor:
        """Sorted keys of the training positives (training negatives avoid them)."""
        return torch.sort(edge_keys(self.train_pos, self.num_nodes)).values


def random_link_split(
    edge_index: Tensor,
    num_nodes: int,
    val_ratio: float = 0.1,
    test_ratio: float = 0.2,
    generator: torch.Generator | None = None,
    val_negatives: int = 1,
) -> LinkSplit:
    """The NCN protocol: a random ``1 - val - test`` / ``val`` / ``test`` split of the undirected edges.

    Args:
        edge_index: ``[2, E]`` edges (either or both directions; duplicates and self-loops are dropped).
        num_nodes: N.
        val_ratio, test_ratio: fractions of the undirected edges (``int(ratio * E)`` each, rounded down).
        generator: seeded generator; the same seed gives the same split.
        val_negatives: negatives per validation positive (test always has one per positive). The
            extra ones are drawn after everything else, so the positives, the test negatives and
            the first ``n_val`` validation negatives are those of ``val_negatives=1``. (NCN's split
            code ends up with two per validation positive.)
    """
    if not (0 <= val_ratio < 1 and 0 <= test_ratio < 1 and val_ratio + test_ratio < 1):
        raise ValueError(f"bad ratios: val_ratio={val_ratio}, test_ratio={test_ratio}")
    if val_negatives < 1:
        raise ValueError(f"val_negatives must be >= 1, got {val_negatives}")
    edges = undirected_edges(edge_index)
    e = edges.size(1)
    n_val, n_test = int(val_ratio * e), int(test_ratio * e)
    perm = torch.randperm(e, generator=generator)
    val_pos = edges[:, perm[:n_val]]
    test_pos = edges[:, perm[n_val : n_val + n_test]]
    train_pos = edges[:, perm[n_val + n_test :]]
    all_keys = torch.sort(edge_keys(edges, num_nodes)).values
    neg = sample_negatives(n_val + n_test, num_nodes, all_keys, generator=generator, unique=True)
    val_neg, test_neg = neg[:, :n_val], neg[:, n_val:]
    if val_negatives > 1 and n_val:
        taken = torch.sort(torch.cat([all_keys, edge_keys(neg, num_nodes)])).values
        extra = sample_negatives((val_negatives - 1) * n_val, num_nodes, taken, generator=generator, unique=True)
        val_neg = torch.cat([val_neg, extra], 1)
    return LinkSplit(num_nodes, train_pos, val_pos, val_neg, test_pos, test_neg)


@contextlib.contextmanager
def _seeded(seed: int):
    """Run PyG code that draws from the global RNG with a fixed seed, restoring the RNG afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def hetero_link_split(
    data,
    edge_types: Sequence[EdgeType],
    rev_edge_types: Sequence[EdgeType],
    val_ratio: float = 0.1,
    test_ratio: float = 0.2,
    seed: int = 0,
    disjoint_train_ratio: float = 0.0,
):
    """``RandomLinkSplit`` on a ``HeteroData`` for the target ``edge_types``.

    Returns ``(train, val, test)`` ``HeteroData``: ``edge_index`` of each is its message-passing graph
    (train: training edges; val: training edges; test: training + validation edges, PyG's
    convention) and ``edge_label_index`` / ``edge_label`` the supervision pairs (val/test with one
    negative per positive; training negatives are sampled afresh each step). With
    ``disjoint_train_ratio > 0`` that fraction of the training edges is used for supervision only and
    removed from the training message-passing graph, so the model never sees a training target edge
    in the graph it propagates over (otherwise it learns "the edge is in the graph" — a shortcut that
    fails on held-out edges). The reverse types in
    ``rev_edge_types`` are split together with their forward type, so no held-out edge leaks back.
    The global RNG is used under ``fork_rng`` with ``seed`` and restored afterwards.
    """
    import torch_geometric.transforms as T

    if len(edge_types) != len(rev_edge_types):
        raise ValueError(f"edge_types ({len(edge_types)}) and rev_edge_types ({len(rev_edge_types)}) differ in length")
    for et in list(edge_types) + list(rev_edge_types):
        if tuple(et) not in data.edge_types:
            raise ValueError(f"edge type {tuple(et)} not in the graph; have {data.edge_types}")
    transform = T.RandomLinkSplit(
        num_val=val_ratio,
        num_test=test_ratio,
        is_undirected=False,
        neg_sampling_ratio=1.0,
        add_negative_train_samples=False,
        disjoint_train_ratio=disjoint_train_ratio,
        edge_types=[tuple(e) for e in edge_types],
        rev_edge_types=[tuple(e) for e in rev_edge_types],
    )
    with _seeded(seed):
        return transform(data)
