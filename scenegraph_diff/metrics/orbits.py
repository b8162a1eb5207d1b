"""Per-node counts of the 15 graphlet orbits on 2- to 4-node graphlets (ORCA's ``node 4`` output).

Orbit numbering follows Pržulj (2007) / ORCA (Hočevar & Demšar, 2014):

====  ======================  ==========================================
orbit graphlet                node position
====  ======================  ==========================================
0     edge                    either end (orbit 0 = degree)
1, 2  path on 3 nodes         end, middle
3     triangle                any
4, 5  path on 4 nodes         end, inner
6, 7  star (claw)             leaf, centre
8     4-cycle                 any
9-11  paw (tailed triangle)   tail end (deg 1), triangle deg 2, deg 3
12,13 diamond                 deg 2, deg 3
14    4-clique                any
====  ======================  ==========================================

Counts are over *induced* connected subgraphs. :func:`orbit_counts` enumerates every connected
node set of size 2..4 once with the ESU algorithm (Wernicke, 2006), so it scales with the number of
connected 4-sets rather than ``C(n, 4)``; :func:`orbit_counts_bruteforce` checks every subset and is
kept as the reference for tests.
"""

from __future__ import annotations

from itertools import combinations
from typing import Sequence

import numpy as np

__all__ = ["NUM_ORBITS", "orbit_counts", "orbit_counts_bruteforce"]

NUM_ORBITS = 15


def _adjacency_sets(num_nodes: int, edges: Sequence[Sequence[int]]) -> list[set[int]]:
    adj: list[set[int]] = [set() for _ in range(num_nodes)]
    for u, v in edges:
        u, v = int(u), int(v)
        if not (0 <= u < num_nodes and 0 <= v < num_nodes):
            raise ValueError(f"edge ({u}, {v}) out of range for {num_nodes} nodes")
        if u != v:  # self-loops are not part of any graphlet
            adj[u].add(v)
            adj[v].add(u)
    return adj


def _classify(nodes: Sequence[int], adj: list[set[int]], counts: np.ndarray) -> None:
    """Add the orbit of every node of one connected induced subgraph (3 or 4 nodes) to ``counts``."""
    k = len(nodes)
    deg = [sum(1 for w in nodes if w in adj[v]) for v in nodes]
    m = sum(deg) // 2
    if k == 3:
        if m == 2:  # path: end 1, middle 2
            for v, d in zip(nodes, deg):
                counts[v, 1 if d == 1 else 2] += 1
        else:  # triangle
            for v in nodes:
                counts[v, 3] += 1
        return
    if m == 3:
        if max(deg) == 3:  # star
            for v, d in zip(nodes, deg):
                counts[v, 7 if d == 3 else 6] += 1
        else:  # path
            for v, d in zip(nodes, deg):
                counts[v, 4 if d == 1 else 5] += 1
    elif m == 4:
        if max(deg) == 2:  # 4-cycle
            for v in nodes:
                counts[v, 8] += 1
        else:  # paw
            for v, d in zip(nodes, deg):
                counts[v, 8 + d] += 1  # 1 -> 9, 2 -> 10, 3 -> 11
    elif m == 5:  # diamond
        for v, d in zip(nodes, deg):
            counts[v, 10 + d] += 1  # 2 -> 12, 3 -> 13
    else:  # K4
        for v in nodes:
            counts[v, 14] += 1


def orbit_counts(num_nodes: int, edges: Sequence[Sequence[int]]) -> np.ndarray:
    """Count graphlet orbits for every node.

    Args:
        num_nodes: number of nodes ``n`` (nodes are ``0..n-1``; isolated nodes get zero rows).
        edges: undirected edges ``(u, v)``; duplicates and self-loops are ignored.

    Returns:
        ``int64`` array ``[n, 15]``.
    """
    adj = _adjacency_sets(num_nodes, edges)
    counts = np.zeros((num_nodes, NUM_ORBITS), dtype=np.int64)
    for v in range(num_nodes):
        counts[v, 0] = len(adj[v])

    # ESU: every connected set of size <= 4 is reached once, from its smallest node ``v``.
    def extend(sub: list[int], ext: set[int], v: int) -> None:
        if len(sub) >= 3:
            _classify(sub, adj, counts)
        if len(sub) == 4:
            return
        ext = set(ext)
        nbh_sub = set().union(*(adj[u] for u in sub)) | set(sub)
        while ext:
            w = ext.pop()
            excl = {u for u in adj[w] if u > v and u not in nbh_sub}
            extend(sub + [w], ext | excl, v)

    for v in range(num_nodes):
        extend([v], {u for u in adj[v] if u > v}, v)
    return counts


def orbit_counts_bruteforce(num_nodes: int, edges: Sequence[Sequence[int]]) -> np.ndarray:
    """Reference implementation: classify every 3- and 4-subset of nodes. ``O(n^4)``; tests only."""
    adj = _adjacency_sets(num_nodes, edges)
    counts = np.zeros((num_nodes, NUM_ORBITS), dtype=np.int64)
    for v in range(num_nodes):
        counts[v, 0] = len(adj[v])
    for k in (3, 4):
        for nodes in combinations(range(num_nodes), k):
            # connected iff a BFS inside the subset reaches every node
            seen = {nodes[0]}
            stack = [nodes[0]]
            while stack:
                u = stack.pop()
                for w in nodes:
                    if w not in seen and w in adj[u]:
                        seen.add(w)
                        stack.append(w)
            if len(seen) == k:
                _classify(nodes, adj, counts)
    return counts
