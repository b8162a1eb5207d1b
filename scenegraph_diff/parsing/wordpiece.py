"""BERT-uncased WordPiece for single words, in pure Python (no ``transformers``, no ``tokenizers``).

The accurate parser (:mod:`.accurate`) feeds its encoder the word pieces of the parser's own tokens
(:func:`~.tokenize.tokenize`), one word at a time, so only the per-word half of BERT's tokenizer is needed:
lower-casing, accent stripping, splitting off punctuation characters, then greedy longest-match-first
WordPiece with ``##`` continuations. Results are cached per word.
"""

from __future__ import annotations

import unicodedata
from pathlib import Path
from typing import Sequence

__all__ = ["WordPiece"]


def _is_punct(ch: str) -> bool:
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


class WordPiece:
    """Word -> piece ids under a BERT ``vocab.txt`` vocabulary (uncased).

    Args:
        vocab: the piece strings, index = id (must contain ``[UNK]``, ``[CLS]``, ``[SEP]``, ``[PAD]``).
        max_chars: longer character runs become ``[UNK]`` (as BERT's ``max_input_chars_per_word``).

    Raises:
        ValueError: a special token is missing.
    """

    def __init__(self, vocab: Sequence[str], max_chars: int = 100) -> None:
        self.vocab = list(vocab)
        self.index = {p: i for i, p in enumerate(self.vocab)}
        for special in ("[UNK]", "[CLS]", "[SEP]", "[PAD]"):
            if special not in self.index:
                raise ValueError(f"WordPiece: vocabulary has no {special}")
        self.unk, self.cls, self.sep, self.pad = (self.index[s] for s in ("[UNK]", "[CLS]", "[SEP]", "[PAD]"))
        self.max_chars = max_chars
        self._cache: dict[str, list[int]] = {}

    @classmethod
    def from_file(cls, path: str | Path) -> "WordPiece":
        """Read a ``vocab.txt`` (one piece a line)."""
        return cls(Path(path).read_text(encoding="utf-8").splitlines())

    def __len__(self) -> int:
        return len(self.vocab)

    def _runs(self, word: str) -> list[str]:
        text = unicodedata.normalize("NFD", word.lower())
        text = "".join(c for c in text if unicodedata.category(c) != "Mn")
        runs: list[str] = []
        cur: list[str] = []
        for ch in text:
            if ch.isspace() or unicodedata.category(ch) in ("Cc", "Cf"):
                if cur:
                    runs.append("".join(cur))
                    cur = []
            elif _is_punct(ch):
                if cur:
                    runs.append("".join(cur))
                    cur = []
                runs.append(ch)
            else:
                cur.append(ch)
        if cur:
            runs.append("".join(cur))
        return runs

    def _pieces(self, run: str) -> list[int]:
        if len(run) > self.max_chars:
            return [self.unk]
        out: list[int] = []
        start = 0
        while start < len(run):
            end = len(run)
            found = None
            while start < end:
                sub = run[start:end] if start == 0 else "##" + run[start:end]
                if sub in self.index:
                    found = self.index[sub]
                    break
                end -= 1
            if found is None:
                return [self.unk]
            out.append(found)
            start = end
        return out

    def word(self, word: str) -> list[int]:
        """Piece ids of one word (``[UNK]`` when nothing is left of it, so never empty)."""
        ids = self._cache.get(word)
        if ids is None:
            ids = [i for run in self._runs(word) for i in self._pieces(run)] or [self.unk]
            if len(self._cache) < 200_000:
                self._cache[word] = ids
        return ids
