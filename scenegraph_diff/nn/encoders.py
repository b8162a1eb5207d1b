"""``SceneGraphEncoder``: label embeddings -> HGCN / R-HGNN layers -> node, scene and token embeddings.

API (stable; the shapes world, the conditioner and the pipeline rely on it)::

    encoder = SceneGraphEncoder(in_channels=embedder.dim, out_channels=768, conv="hgcn")
    out = encoder(batch)            # batch: HeteroData from scenegraph_diff.graph.collate(graphs, embedder)
    out.node_embeddings             # {node_type: [N_t, D]}  (object, attribute, relation, scene)
    out.scene_embedding             # [G, D]     the `scene` node of each graph (RRNet's EOT node)
    out.graph_tokens                # [G, T, D]  per graph: its objects, then its relations (triplets), padded
    out.graph_token_mask            # [G, T]     bool, True where a token is real
    out = encoder.encode_graphs(graphs, embedder)   # the same from a list of SceneGraph

``D = out_channels``; ``T`` = the largest number of objects + relations of a graph in the batch (capped by
``max_graph_tokens``). Saved and loaded with ``save_pretrained`` / ``from_pretrained`` (safetensors); loaded
weights sit in owned, 64-byte aligned memory (:mod:`scenegraph_diff.weights`), so a loaded encoder computes
bit for bit what the saved one did.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Dict, Optional, Sequence

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput
from torch import Tensor

from ..graph.hetero import (
    METADATA,
    METADATA_WITH_REVERSE,
    NODE_TYPES,
    OBJECT,
    RELATION,
    SCENE,
    LabelEmbedder,
    collate,
    with_reverse_edges,
)
from ..weights import AlignedLoadingMixin
from .hgcn import HGCNConv
from .rhgnn import RHGNNConv

if TYPE_CHECKING:  # pragma: no cover
    from torch_geometric.data import HeteroData

    from ..graph.scene_graph import SceneGraph

__all__ = ["SceneGraphEncoder", "SceneGraphEncoderOutput"]

CONVS = ("hgcn", "rhgnn")


@dataclass
class SceneGraphEncoderOutput(BaseOutput):
    """Output of :class:`SceneGraphEncoder`.

    Args:
        node_embeddings: ``{node_type: [N_t, D]}`` for object, attribute, relation and scene nodes.
        scene_embedding: ``[G, D]``, one per graph (the graph's ``scene`` node).
        graph_tokens: ``[G, T, D]``, per graph its object nodes then its relation nodes, zero-padded.
        graph_token_mask: ``[G, T]`` bool, ``True`` for real tokens.
    """

    node_embeddings: Dict[str, Tensor]
    scene_embedding: Tensor
    graph_tokens: Tensor
    graph_token_mask: Tensor

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "SceneGraphEncoderOutput":
        """The same output on ``device`` (accelerate's offload hooks move a module's inputs with ``.to``; without
        it they would rebuild this output from its items, which a dataclass with required fields cannot take)."""
        def move(t: Tensor) -> Tensor:
            return t.to(device, non_blocking=non_blocking)

        return SceneGraphEncoderOutput({k: move(v) for k, v in self.node_embeddings.items()}, move(self.scene_embedding),
                                       move(self.graph_tokens), move(self.graph_token_mask))


class SceneGraphEncoder(AlignedLoadingMixin, ModelMixin, ConfigMixin):
    r"""Encodes batched scene graphs (the :mod:`scenegraph_diff.graph.hetero` schema) with a stack of
    :class:`HGCNConv` or :class:`RHGNNConv` layers.

    Per node type a linear map and a learnt type embedding lift the label features (``x``, from a label
    embedder; the scene node's zeros become its type embedding). Then ``num_layers`` layers run:
    HGCN layers with a GELU and a residual connection (``h <- h + GELU(conv(h))``), or R-HGNN layers that
    carry per-relation states and relation embeddings from layer to layer and fuse them in the last one.
    A final linear map (shared by all node types) gives ``out_channels`` features.

    Messages follow the schema's direction (subject -> relation -> object -> scene), so swapping the
    subject and the object of a relation changes the scene embedding even untrained, and node
    embeddings are permutation-equivariant (permuting a graph's objects permutes their embeddings).

    Args:
        in_channels: label feature size (``embedder.dim``).
        hidden_channels: width of the graph layers (divisible by ``heads``).
        out_channels: output size ``D`` (e.g. the UNet's ``cross_attention_dim``).
        num_layers: number of graph layers (>= 1; 2 lets a relation's subject reach the scene node through
            the relation node).
        heads: attention heads per layer.
        conv: ``"hgcn"`` or ``"rhgnn"``.
        dropout: dropout inside the layers.
        rel_channels: relation embedding size (R-HGNN only).
        max_graph_tokens: cap on ``T`` (``None``: no cap); tokens past the cap are dropped.
        reverse_edges: also pass messages against the schema's direction, over the reverse edge types
            (``rev_subj``, ``rev_obj``, ...: types of their own, so direction still matters). Then a
            relation's subject hears from the relation and its object, and an object from its attributes
            (default ``False``: the schema's edges only).
    """

    @register_to_config
    def __init__(
        self,
        in_channels: int = 32,
        hidden_channels: int = 128,
        out_channels: int = 32,
        num_layers: int = 2,
        heads: int = 2,
        conv: str = "hgcn",
        dropout: float = 0.0,
        rel_channels: int = 8,
        max_graph_tokens: Optional[int] = None,
        reverse_edges: bool = False,
    ) -> None:
        super().__init__()
        if conv not in CONVS:
            raise ValueError(f"conv must be one of {CONVS}, got {conv!r}")
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        if hidden_channels % heads != 0:
            raise ValueError(f"hidden_channels ({hidden_channels}) must be divisible by heads ({heads})")
        if in_channels <= 0 or out_channels <= 0:
            raise ValueError(f"in_channels and out_channels must be positive, got {in_channels}, {out_channels}")
        if max_graph_tokens is not None and max_graph_tokens < 1:
            raise ValueError(f"max_graph_tokens must be >= 1 or None, got {max_graph_tokens}")
        self.node_types = list(NODE_TYPES)
        self.lin_in = torch.nn.ModuleDict({nt: torch.nn.Linear(in_channels, hidden_channels) for nt in NODE_TYPES})
        self.type_emb = torch.nn.Parameter(torch.randn(len(NODE_TYPES), hidden_channels) * 0.02)
        per_head = hidden_channels // heads
        metadata = METADATA_WITH_REVERSE if reverse_edges else METADATA
        self.convs = torch.nn.ModuleList()
        for i in range(num_layers):
            if conv == "hgcn":
                self.convs.append(HGCNConv(hidden_channels, per_head, metadata, heads=heads, dropout=dropout))
            else:
                self.convs.append(RHGNNConv(hidden_channels, per_head, metadata, heads=heads,
                                            rel_in_channels=rel_channels, dropout=dropout,
                                            fuse=i == num_layers - 1))
        self.lin_out = torch.nn.Linear(hidden_channels, out_channels)

    def forward(self, batch: "HeteroData") -> SceneGraphEncoderOutput:
        """Encode a batch.

        Args:
            batch: ``HeteroData`` (from :func:`~scenegraph_diff.graph.collate` or
                :func:`~scenegraph_diff.graph.to_hetero_data`) with ``x [N_t, in_channels]`` on every node type.

        Returns:
            :class:`SceneGraphEncoderOutput`.
        """
        for nt in NODE_TYPES:
            if nt not in batch.node_types or "x" not in batch[nt]:
                raise ValueError(f"batch[{nt!r}].x is missing: collate the graphs with a label embedder")
            x = batch[nt].x
            if x.dim() != 2 or x.size(-1) != self.config.in_channels:
                raise ValueError(f"batch[{nt!r}].x has shape {tuple(x.shape)}, expected [N, {self.config.in_channels}]")
        h = {nt: self.lin_in[nt](batch[nt].x.to(self.dtype)) + self.type_emb[i] for i, nt in enumerate(NODE_TYPES)}
        edge_index_dict = {et: batch[et].edge_index for et in METADATA[1] if et in batch.edge_types}
        if self.config.reverse_edges:
            edge_index_dict = with_reverse_edges(edge_index_dict)
        if self.config.conv == "hgcn":
            for conv in self.convs:
                out = conv(h, edge_index_dict)
                h = {nt: h[nt] + torch.nn.functional.gelu(out[nt]) for nt in h}
        else:
            rel = None
            for i, conv in enumerate(self.convs):
                if i < len(self.convs) - 1:
                    h, rel = conv(h, edge_index_dict, rel, return_relations=True)
                    h = {nt: torch.nn.functional.gelu(v) for nt, v in h.items()}
                else:
                    h = conv(h, edge_index_dict, rel)
        node = {nt: self.lin_out(v) for nt, v in h.items()}  # {t: [N_t, D]}

        num_graphs = node[SCENE].size(0)

        def graph_of(nt: str) -> Tensor:
            store = batch[nt]
            if "batch" in store:
                return store.batch
            return torch.zeros(node[nt].size(0), dtype=torch.long, device=node[nt].device)

        tokens, mask = _tokens(node[OBJECT], graph_of(OBJECT), node[RELATION], graph_of(RELATION), num_graphs,
                               self.config.max_graph_tokens)
        return SceneGraphEncoderOutput(node_embeddings=node, scene_embedding=node[SCENE], graph_tokens=tokens,
                                       graph_token_mask=mask)

    def encode_graphs(self, graphs: Sequence["SceneGraph"], embedder: LabelEmbedder) -> SceneGraphEncoderOutput:
        """Collate ``graphs`` with ``embedder`` (``embedder.dim == in_channels``), move them to the encoder's
        device and encode them (gradients flow as usual: wrap in ``torch.no_grad()`` for inference)."""
        if embedder.dim != self.config.in_channels:
            raise ValueError(f"embedder.dim is {embedder.dim}, but the encoder expects in_channels="
                             f"{self.config.in_channels}")
        batch = collate(list(graphs), embedder).to(self.device)
        return self(batch)


def _tokens(obj: Tensor, obj_batch: Tensor, rel: Tensor, rel_batch: Tensor, num_graphs: int,
            max_tokens: Optional[int]) -> tuple[Tensor, Tensor]:
    """Pad each graph's objects then relations to ``[G, T, D]`` with a ``[G, T]`` mask."""
    from torch_geometric.utils import to_dense_batch

    x = torch.cat([obj, rel], dim=0)  # [No + Nr, D]
    b = torch.cat([obj_batch, rel_batch], dim=0)
    order = torch.sort(b, stable=True).indices  # objects before relations within each graph
    if x.size(0) == 0:
        return x.new_zeros(num_graphs, 1, x.size(-1)), torch.zeros(num_graphs, 1, dtype=torch.bool, device=x.device)
    tokens, mask = to_dense_batch(x[order], b[order], batch_size=num_graphs)  # [G, T, D], [G, T]
    if max_tokens is not None and tokens.size(1) > max_tokens:
        tokens, mask = tokens[:, :max_tokens], mask[:, :max_tokens]
    return tokens, mask
