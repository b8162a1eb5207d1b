"""``GraphConditioner``: scene-graph embeddings -> gated offsets on Stable Diffusion's ``prompt_embeds``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import Tensor

from ..weights import AlignedLoadingMixin
from .alignment import GraphAlignment

if TYPE_CHECKING:  # pragma: no cover
    from ..nn.encoders import SceneGraphEncoderOutput

__all__ = ["GraphConditioner"]


class GraphConditioner(AlignedLoadingMixin, ModelMixin, ConfigMixin):
    r"""Writes graph information onto text-encoder embeddings (RRNet-style offsets, optional graph tokens).

    With :math:`\mathbf{P} \in \mathbb{R}^{B \times L \times D}` the prompt embeddings, :math:`w` the
    ``scale`` and :math:`g_\ast` learnt scalar gates (initialised to zero):

    .. math::
        \mathbf{P}_{b,\mathrm{eot}_b} \mathrel{+}= w\, g_{\mathrm{eot}}\, \mathbf{W}_{\mathrm{eot}}\, \mathbf{s}_b,
        \qquad
        \mathbf{P}_{b,p} \mathrel{+}= w\, g_{\mathrm{tok}} \sum_{v \to p} \mathbf{W}_{\mathrm{tok}}\, \mathbf{h}_v,

    where :math:`\mathbf{s}_b` is graph :math:`b`'s scene embedding (RRNet's EOT node) and the second sum
    runs over the object / relation nodes aligned to token position :math:`p`. With
    ``append_graph_tokens=True`` the graph tokens :math:`w\, g_{\mathrm{app}} \mathbf{W}_{\mathrm{app}}
    \mathbf{t}_{b,k}` (masked) are appended along the sequence: ``[B, L + T, D]``.

    Because the gates start at zero, an untrained conditioner returns ``prompt_embeds`` unchanged (exactly,
    bit for bit) when ``append_graph_tokens=False``. Appending tokens changes the sequence length, so it is
    never an exact identity (off by default).

    Args:
        graph_dim: size of the encoder's embeddings (``SceneGraphEncoder.config.out_channels``).
        embed_dim: size of ``prompt_embeds`` (the UNet's ``cross_attention_dim``).
        use_eot: add the scene offset at the EOT position.
        use_tokens: add node offsets at the aligned object / relation token positions.
        append_graph_tokens: append graph tokens.

    Shapes:
        - **input:** ``prompt_embeds [B, L, D]`` with ``B = k * G`` (``k`` images per graph, graph-major),
          the encoder output for ``G`` graphs, a :class:`GraphAlignment`
        - **output:** ``[B, L, D]`` (``[B, L + T, D]`` when appending)
    """

    @register_to_config
    def __init__(
        self,
        graph_dim: int = 32,
        embed_dim: int = 32,
        use_eot: bool = True,
        use_tokens: bool = True,
        append_graph_tokens: bool = False,
    ) -> None:
        super().__init__()
        if graph_dim <= 0 or embed_dim <= 0:
            raise ValueError(f"graph_dim and embed_dim must be positive, got {graph_dim}, {embed_dim}")
        if not (use_eot or use_tokens or append_graph_tokens):
            raise ValueError("GraphConditioner: enable at least one of use_eot, use_tokens, append_graph_tokens")
        self.proj_eot = torch.nn.Linear(graph_dim, embed_dim) if use_eot else None
        self.proj_token = torch.nn.Linear(graph_dim, embed_dim) if use_tokens else None
        self.proj_append = torch.nn.Linear(graph_dim, embed_dim) if append_graph_tokens else None
        self.gate_eot = torch.nn.Parameter(torch.zeros(1)) if use_eot else None
        self.gate_token = torch.nn.Parameter(torch.zeros(1)) if use_tokens else None
        self.gate_append = torch.nn.Parameter(torch.zeros(1)) if append_graph_tokens else None

    def offsets(self, graph_output: "SceneGraphEncoderOutput", alignment: GraphAlignment,
                seq_len: int) -> Tensor:
        """The (ungated-by-``scale``) offsets ``[G, L, D]`` that :meth:`forward` adds."""
        scene = graph_output.scene_embedding.to(self.dtype)  # [G, F]
        num_graphs = scene.size(0)
        alignment = alignment.to(scene.device)
        out = scene.new_zeros(num_graphs, seq_len, self.config.embed_dim)  # [G, L, D]
        if alignment.eot.numel() != num_graphs:
            raise ValueError(f"alignment has {alignment.eot.numel()} graphs, the encoder output {num_graphs}")
        if self.proj_eot is not None:
            g = torch.arange(num_graphs, device=scene.device)
            out = out.index_put((g, alignment.eot), self.gate_eot * self.proj_eot(scene), accumulate=True)
        if self.proj_token is not None:
            nodes = graph_output.node_embeddings
            for key, index in (("object", alignment.object_index), ("relation", alignment.relation_index)):
                if index.size(1) == 0:
                    continue
                values = self.gate_token * self.proj_token(nodes[key].to(self.dtype)[index[2]])  # [K, D]
                out = out.index_put((index[0], index[1]), values, accumulate=True)
        return out

    def forward(
        self,
        prompt_embeds: Tensor,
        graph_output: "SceneGraphEncoderOutput",
        alignment: GraphAlignment,
        scale: float = 1.0,
    ) -> Tensor:
        """Condition ``prompt_embeds [B, L, D]`` on the graphs (see the class docstring)."""
        if prompt_embeds.dim() != 3 or prompt_embeds.size(-1) != self.config.embed_dim:
            raise ValueError(f"prompt_embeds has shape {tuple(prompt_embeds.shape)}, expected [B, L, "
                             f"{self.config.embed_dim}]")
        batch, seq_len, _ = prompt_embeds.shape
        num_graphs = graph_output.scene_embedding.size(0)
        if num_graphs == 0 or batch % num_graphs != 0:
            raise ValueError(f"prompt_embeds has batch {batch}, not a multiple of the {num_graphs} graphs")
        repeat = batch // num_graphs
        out = prompt_embeds
        if self.proj_eot is not None or self.proj_token is not None:
            offsets = self.offsets(graph_output, alignment, seq_len)  # [G, L, D]
            offsets = offsets.repeat_interleave(repeat, dim=0) if repeat > 1 else offsets
            out = out + (scale * offsets).to(out.dtype)
        if self.proj_append is not None:
            tokens = graph_output.graph_tokens.to(self.dtype)  # [G, T, F]
            mask = graph_output.graph_token_mask.unsqueeze(-1).to(self.dtype)  # [G, T, 1]
            extra = scale * self.gate_append * self.proj_append(tokens) * mask  # [G, T, D]
            extra = extra.repeat_interleave(repeat, dim=0) if repeat > 1 else extra
            out = torch.cat([out, extra.to(out.dtype)], dim=1)  # [B, L + T, D]
        return out

    @property
    def is_identity(self) -> bool:
        """``True`` while every gate is zero and no tokens are appended (the untrained state)."""
        gates = [g for g in (self.gate_eot, self.gate_token) if g is not None]
        return self.proj_append is None and all(bool((g == 0).all()) for g in gates)
