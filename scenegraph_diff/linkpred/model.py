"""``LinkModel``: an encoder and a decoder behind one ``forward`` (one call per step, as DDP wants);
``LinkEnsemble``: K independently initialised ``LinkModel`` s trained side by side."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

__all__ = ["LinkModel", "LinkEnsemble"]


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

    def score(self, x: Tensor, edge_index: Tensor, *pair_sets: Tensor) -> list[Tensor]:
        """Logits of several pair sets ``[2, B_i] -> [B_i]`` from one encoder pass (evaluation)."""
        h = self.encoder(x, edge_index)
        return [self.decoder(h, p, edge_index) for p in pair_sets]

    def encoder_parameters(self) -> list[nn.Parameter]:
        return list(self.encoder.parameters())

    def decoder_parameters(self) -> list[nn.Parameter]:
        return list(self.decoder.parameters())


class LinkEnsemble(nn.Module):
    """``K`` independently initialised :class:`LinkModel` s trained side by side.

    ``forward`` returns the members' logits ``[K, B]`` (each member gets its own loss); ``score``
    averages the members' logits ``[B]``.
    """

    def __init__(self, members: Sequence[LinkModel]) -> None:
        super().__init__()
        if not members:
            raise ValueError("LinkEnsemble needs at least one member")
        self.members = nn.ModuleList(members)

    def forward(self, x: Tensor, edge_index: Tensor | Sequence[Tensor], pairs: Tensor | Sequence[Tensor],
                decoder_edge_index: Tensor | None | Sequence[Tensor | None] = None) -> Tensor:
        """Members' logits ``[K, B]``. Each graph / pair argument is either one tensor that every
        member sees, or a sequence of K (member k gets item k; all pair sets ``[2, B]``)."""
        k = len(self.members)

        def per_member(v: object, what: str) -> list:
            if v is None or isinstance(v, Tensor):
                return [v] * k
            v = list(v)  # type: ignore[call-overload]
            if len(v) != k:
                raise ValueError(f"LinkEnsemble: {what} has {len(v)} items for {k} members")
            return v

        args = zip(per_member(edge_index, "edge_index"), per_member(pairs, "pairs"),
                   per_member(decoder_edge_index, "decoder_edge_index"))
        return torch.stack([m(x, ei, p, dei) for m, (ei, p, dei) in zip(self.members, args)])

    def score(self, x: Tensor, edge_index: Tensor, *pair_sets: Tensor) -> list[Tensor]:
        per = [m.score(x, edge_index, *pair_sets) for m in self.members]
        return [torch.stack([p[i] for p in per]).mean(0) for i in range(len(pair_sets))]

    def encoder_parameters(self) -> list[nn.Parameter]:
        return [p for m in self.members for p in m.encoder_parameters()]

    def decoder_parameters(self) -> list[nn.Parameter]:
        return [p for m in self.members for p in m.decoder_parameters()]
