"""A deterministic, dependency-free label embedder (feature hashing of words and character n-grams)."""

from __future__ import annotations

import hashlib

import torch
from torch import Tensor

from .base import CachedEmbedder

__all__ = ["HashingEmbedder"]


class HashingEmbedder(CachedEmbedder):
    """Signed feature hashing of words and character n-grams, L2-normalised.

    The same label gives the same vector in every process and on every machine (BLAKE2b hashing, no
    random state), so it suits tests, offline defaults and bundled models. Labels sharing words or
    spelling get similar vectors ("sit on" and "sitting on" are close; "left of" and "right of" differ).

    Args:
        dim: embedding size (default 64).
        ngram: character n-gram length (default 3); 0 uses words only.
        seed: salt for the hash, to draw an independent embedding family.
    """

    def __init__(self, dim: int = 64, ngram: int = 3, seed: int = 0) -> None:
        super().__init__()
        if dim < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        if ngram < 0:
            raise ValueError(f"ngram must be >= 0, got {ngram}")
        self.dim = dim
        self.ngram = ngram
        self.seed = seed

    def _features(self, label: str) -> list[tuple[str, float]]:
        words = label.lower().split()
        feats = [(f"w:{w}", 1.0) for w in words]
        if self.ngram:
            for w in words:
                padded = f"<{w}>"
                feats += [(f"c:{padded[i:i + self.ngram]}", 0.5) for i in range(max(1, len(padded) - self.ngram + 1))]
        return feats or [("empty", 1.0)]

    def _compute(self, labels: list[str]) -> Tensor:
        out = torch.zeros(len(labels), self.dim)
        salt = str(self.seed).encode()
        for row, label in enumerate(labels):
            for feat, weight in self._features(label):
                h = hashlib.blake2b(feat.encode("utf-8", "surrogatepass"), digest_size=8, salt=salt[:16]).digest()
                v = int.from_bytes(h, "little")
                out[row, v % self.dim] += weight if (v >> 63) & 1 else -weight
        norm = out.norm(dim=1, keepdim=True).clamp_min(1e-12)
        return out / norm

    def __repr__(self) -> str:
        return f"HashingEmbedder(dim={self.dim}, ngram={self.ngram}, seed={self.seed})"

