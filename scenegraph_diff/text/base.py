"""The label-embedder protocol and a caching base class."""

from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

import torch
from torch import Tensor

__all__ = ["LabelEmbedder", "CachedEmbedder"]


@runtime_checkable
class LabelEmbedder(Protocol):
    """Maps labels (object names, attributes, predicates) to vectors.

    Attributes:
        dim: the embedding size ``D``.
    """

    dim: int

    def embed(self, labels: Sequence[str]) -> Tensor:
        """Return ``[len(labels), dim]`` float32 embeddings (on CPU, no grad)."""
        ...


class CachedEmbedder:
    """Base class: subclasses implement ``_compute(labels) -> Tensor [n, dim]``; ``embed`` caches per label.

    Every label is computed once per embedder instance, so embedding the labels of a dataset costs one
    call per distinct label.
    """

    dim: int

    def __init__(self) -> None:
        self._cache: dict[str, Tensor] = {}

    def _compute(self, labels: list[str]) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def embed(self, labels: Sequence[str]) -> Tensor:
        if isinstance(labels, str):
            raise TypeError(f"embed() takes a sequence of labels, got the string {labels!r}")
        labels = list(labels)
        for i, lab in enumerate(labels):
            if not isinstance(lab, str):
                raise TypeError(f"labels[{i}] must be a string, got {type(lab).__name__}")
        missing = [lab for lab in dict.fromkeys(labels) if lab not in self._cache]
        if missing:
            with torch.no_grad():
                vecs = self._compute(missing).detach().to("cpu", torch.float32)
            if vecs.shape != (len(missing), self.dim):
                raise RuntimeError(f"{type(self).__name__} computed {tuple(vecs.shape)}, expected ({len(missing)}, {self.dim})")
            for lab, v in zip(missing, vecs):
                self._cache[lab] = v
        if not labels:
            return torch.zeros(0, self.dim)
        return torch.stack([self._cache[lab] for lab in labels])

    def clear_cache(self) -> None:
        self._cache.clear()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(dim={self.dim})"
