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

    def forward(self, x: Tensor, edge_index: Tensor, pairs: Tensor) -> Tensor:
        return self.decoder(self.encoder(x, edge_index), pairs, edge_index)
