"""``LinkModel``: an encoder and a decoder behind one ``forward`` (one call per step, as DDP wants)."""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["LinkModel"]


class LinkModel(nn.Module):
    """``logits = decoder(encoder(x, edge_index), pairs, edge_index)``.

    Shapes:
        x ``[N, F]`` (dense or sparse COO), edge_index ``[2, E]`` (message passing), pairs ``[2, B]``
        -> ``[B]``.
    """

    def __init__(self, encoder: nn.Module, decoder: nn.Module) -> None:
        super().__init__()
        self.encoder, self.decoder = encoder, decoder

    def forward(self, x: Tensor, edge_index: Tensor, pairs: Tensor, decoder_edge_index: Tensor | None = None) -> Tensor:
        """``decoder_edge_index`` (default ``edge_index``) is the graph the decoder reads common
        neighbours from (NCN drops some of its edges during training)."""
        h = self.encoder(x, edge_index)
        return self.decoder(h, pairs, edge_index if decoder_edge_index is None else decoder_edge_index)
