"""Evaluation metrics: graph-generation MMD (GDSS protocol) and graphlet orbit counts."""

from __future__ import annotations

from .graph_mmd import as_networkx, graph_mmd, mmd2, remove_isolated
from .orbits import NUM_ORBITS, orbit_counts, orbit_counts_bruteforce

__all__ = ["graph_mmd", "mmd2", "as_networkx", "remove_isolated", "orbit_counts", "orbit_counts_bruteforce", "NUM_ORBITS"]
