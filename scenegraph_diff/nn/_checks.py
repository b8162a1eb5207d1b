"""Argument checks shared by the heterogeneous layers (they fail at construction, naming the value)."""

from __future__ import annotations

from typing import Dict, List, Tuple, Union

from torch_geometric.typing import EdgeType, Metadata, NodeType


def check_hetero_args(
    in_channels: Union[int, Dict[str, int]], out_channels: int, metadata: Metadata, heads: int, dropout: float
) -> Tuple[List[NodeType], List[EdgeType], Dict[str, int]]:
    """Validate a hetero layer's common arguments; return ``(node_types, edge_types, in_channels per type)``."""
    node_types, edge_types = list(metadata[0]), [tuple(e) for e in metadata[1]]
    if out_channels <= 0:
        raise ValueError(f"'out_channels' must be positive (got {out_channels})")
    if heads <= 0:
        raise ValueError(f"'heads' must be positive (got {heads})")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"'dropout' must be in [0, 1) (got {dropout})")
    for et in edge_types:
        if len(et) != 3 or et[0] not in node_types or et[2] not in node_types:
            raise ValueError(f"edge type {et!r} does not connect node types of the metadata {node_types}")
    if not isinstance(in_channels, dict):
        in_channels = {nt: in_channels for nt in node_types}
    missing = [nt for nt in node_types if nt not in in_channels]
    if missing:
        raise ValueError(f"'in_channels' has no size for node types {missing}")
    return node_types, edge_types, in_channels
