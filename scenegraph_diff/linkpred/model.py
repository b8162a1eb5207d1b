"""``LinkModel``: an encoder and a decoder behind one ``forward`` (one call per step, as DDP wants);
``LinkEnsemble``: K independently initialised ``LinkModel`` s trained side by side; ``FeatureCosine``:
a learned-weight raw-feature similarity term a ``LinkModel`` can add to its decoder's logits."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from .data import normalized_rows

__all__ = ["LinkModel", "LinkEnsemble", "FeatureCosine", "FEATURE_WEIGHTINGS"]

FEATURE_WEIGHTINGS = ("tfidf", "raw")  # FeatureCosine.weighting

# (x, x._version, tfidf, normalized rows) of the last input seen by any FeatureCosine
_NORM_CACHE: list[tuple[Tensor, int, bool, Tensor] | None] = [None]


def _normalized_cached(x: Tensor, tfidf: bool) -> Tensor:
    c = _NORM_CACHE[0]
    if c is None or c[0] is not x or c[1] != x._version or c[2] != tfidf:
        c = (x, x._version, tfidf, normalized_rows(x, tfidf=tfidf))
        _NORM_CACHE[0] = c
    return c[3]


class FeatureCosine(nn.Module):
    r"""Raw-feature similarity term ``s(i, j) = a · cos(x̃_i, x̃_j)`` with a learned scalar ``a``.

    ``x̃ = x ⊙ idf`` (``weighting="tfidf"``; ``idf_f = log(N / (1 + df_f))``, ``df_f`` the number of
    nodes with a non-zero feature ``f``) or ``x̃ = x`` (``"raw"``). Nodes whose ``x̃`` is all zero
    have similarity 0 with every node.

    Why: a link predictor scores a pair with an isolated (or differently-connected) endpoint from
    its features alone, through a learned low-rank bilinear form (``MLP(h_i ⊙ h_j)``). The full-rank
    lexical overlap of bag-of-words features is a strong, cheap signal for such pairs (the feature
    counterpart of the graph heuristics SEAL / BUDDY add); this term hands it to the model, which
    learns how much to trust it.

    The row-normalised ``x̃`` (dense ``[N, F]``) is computed once per input ``x`` and kept in a
    one-entry cache shared by all instances (the members of an ensemble read the same copy; nothing
    goes into ``state_dict``), keyed on the tensor object ``x`` and its in-place version counter.

    Args:
        weighting: ``"tfidf"`` or ``"raw"``.
        weight: initial ``a``.
        learn: learn ``a`` (else it stays at ``weight``).

    Shapes:
        x ``[N, F]`` (dense or sparse COO), pairs ``[2, B]`` -> ``[B]``.
    """

    def __init__(self, weighting: str = "tfidf", weight: float = 1.0, learn: bool = True) -> None:
        super().__init__()
        if weighting not in FEATURE_WEIGHTINGS:
            raise ValueError(f"weighting must be one of {FEATURE_WEIGHTINGS}, got {weighting!r}")
        self.weighting = weighting
        w = torch.tensor(float(weight))
        if learn:
            self.weight = nn.Parameter(w)
        else:
            self.register_buffer("weight", w)

    def normalized_features(self, x: Tensor) -> Tensor:
        """Row-normalised (TF-IDF-weighted) features ``[N, F] -> [N, F]`` (dense float32; cached)."""
        return _normalized_cached(x, self.weighting == "tfidf")

    def forward(self, x: Tensor, pairs: Tensor) -> Tensor:
        if x.dim() != 2:
            raise ValueError(f"FeatureCosine expects x of shape [N, F], got {tuple(x.shape)}")
        xn = self.normalized_features(x)
        return self.weight * (xn[pairs[0]] * xn[pairs[1]]).sum(-1)

    def extra_repr(self) -> str:
        return f"weighting={self.weighting!r}, learn={isinstance(self.weight, nn.Parameter)}"


class LinkModel(nn.Module):
    """``logits = decoder(encoder(x, edge_index), pairs, edge_index)`` (``+ feature_term(x, pairs)``
    when a :class:`FeatureCosine` term is given).

    Shapes:
        x ``[N, F]`` (dense or sparse COO), edge_index ``[2, E]`` (message passing), pairs ``[2, B]``
        -> ``[B]``.
    """

    def __init__(self, encoder: nn.Module, decoder: nn.Module, feature_term: nn.Module | None = None) -> None:
        super().__init__()
        self.encoder, self.decoder = encoder, decoder
        self.feature_term = feature_term

    def _decode(self, x: Tensor, h: Tensor, pairs: Tensor, edge_index: Tensor) -> Tensor:
        out = self.decoder(h, pairs, edge_index)
        return out if self.feature_term is None else out + self.feature_term(x, pairs)

    def forward(self, x: Tensor, edge_index: Tensor, pairs: Tensor, decoder_edge_index: Tensor | None = None) -> Tensor:
        """``decoder_edge_index`` (default ``edge_index``) is the graph the decoder reads common
        neighbours from (NCN drops some of its edges during training)."""
        h = self.encoder(x, edge_index)
        return self._decode(x, h, pairs, edge_index if decoder_edge_index is None else decoder_edge_index)

    def score(self, x: Tensor, edge_index: Tensor, *pair_sets: Tensor) -> list[Tensor]:
        """Logits of several pair sets ``[2, B_i] -> [B_i]`` from one encoder pass (evaluation)."""
        h = self.encoder(x, edge_index)
        return [self._decode(x, h, p, edge_index) for p in pair_sets]

    def encoder_parameters(self) -> list[nn.Parameter]:
        return list(self.encoder.parameters())

    def decoder_parameters(self) -> list[nn.Parameter]:
        extra = [] if self.feature_term is None else list(self.feature_term.parameters())
        return list(self.decoder.parameters()) + extra


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
