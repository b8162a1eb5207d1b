"""Scene graphs: the data model, JSON(L) I/O, vocabularies and conversions.

``SceneGraph`` <-> ``HeteroData`` <-> networkx <-> dense ``(X, E, node_mask)``, plus drawing.
Only this package names the HeteroData node and edge types (see :mod:`.hetero`).
The conversions that need torch, networkx or matplotlib are imported lazily on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from .jsonl import atomic_write, iter_jsonl, read_jsonl, write_jsonl
from .scene_graph import Relation, SceneGraph, SceneGraphError, SceneObject, canonical_label
from .vocab import Vocabulary

_LAZY = {
    "to_hetero_data": ".hetero",
    "from_hetero_data": ".hetero",
    "collate": ".hetero",
    "unbatch": ".hetero",
    "NODE_TYPES": ".hetero",
    "EDGE_TYPES": ".hetero",
    "to_networkx": ".nx",
    "from_networkx": ".nx",
    "to_dense": ".dense",
    "from_dense": ".dense",
    "DenseGraph": ".dense",
    "draw": ".draw",
}

__all__ = [
    "SceneGraph", "SceneObject", "Relation", "SceneGraphError", "canonical_label",
    "read_jsonl", "iter_jsonl", "write_jsonl", "atomic_write", "Vocabulary", *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
