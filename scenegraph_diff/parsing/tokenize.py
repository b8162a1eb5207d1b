"""A small, dependency-free word tokenizer that keeps character offsets.

Every parser backend works on the same :class:`Token` list, so the ``span`` of an object or relation
always points at the original characters of the input text.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from dataclasses import dataclass

__all__ = ["Token", "tokenize", "split_sentences", "clean_text", "MAX_CHARS"]

# Words (letters/digits, inner hyphens and apostrophes), the possessive clitic, or one symbol.
_TOKEN = re.compile(r"['’]s\b|\w+(?:-\w+|['’](?!s\b)\w+)*|[^\w\s]", re.UNICODE)
_SENTENCE_END = frozenset({".", "!", "?", ";", "\n"})

#: Inputs longer than this many characters are parsed in their first ``MAX_CHARS`` characters only
#: (bounded time on pathological input; captions are far shorter). :func:`tokenize` logs a warning
#: when it cuts a text; the graph keeps the whole text, and its spans all lie in the parsed part.
MAX_CHARS = 20_000

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Token:
    """One word of the input: the original ``text``, its lower-cased ``lower`` form and its offsets.

    ``text == source[start:end]`` always holds.
    """

    text: str
    lower: str
    start: int
    end: int


def clean_text(text: str) -> str:
    """Replace control and format characters by spaces (same length, so offsets are unchanged).

    Raises:
        TypeError: if ``text`` is not a string.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__} {text!r:.60}")
    if text.isascii() and text.isprintable():
        return text
    return "".join(
        c if c == "\n" or unicodedata.category(c)[0] not in "CZ" or c == " " else " " for c in text
    )


def tokenize(text: str) -> list[Token]:
    """Split ``text`` into :class:`Token` s with character offsets (``text[t.start:t.end] == t.text``).

    Only the first :data:`MAX_CHARS` characters are tokenized; a longer text logs a warning.

    Example:
        >>> [t.text for t in tokenize("The man's red-brick house.")]
        ['The', 'man', "'s", 'red-brick', 'house', '.']
    """
    text = clean_text(text)
    if len(text) > MAX_CHARS:
        logger.warning("text of %d characters: only its first %d are parsed (MAX_CHARS)", len(text), MAX_CHARS)
        text = text[:MAX_CHARS]
    out: list[Token] = []
    for m in _TOKEN.finditer(text):
        s = m.group(0)
        out.append(Token(s, s.lower().replace("’", "'"), m.start(), m.end()))
    return out


def split_sentences(tokens: list[Token], text: str | None = None, max_tokens: int = 64) -> list[list[Token]]:
    """Group tokens into sentences at ``. ! ? ;`` and line breaks; long runs are cut every ``max_tokens``.

    The final punctuation token stays with its sentence.
    """
    sentences: list[list[Token]] = []
    cur: list[Token] = []
    prev_end = 0
    for tok in tokens:
        if cur and text is not None and "\n" in text[prev_end:tok.start]:
            sentences.append(cur)
            cur = []
        cur.append(tok)
        prev_end = tok.end
        if tok.lower in _SENTENCE_END or len(cur) >= max_tokens:
            sentences.append(cur)
            cur = []
    if cur:
        sentences.append(cur)
    return sentences
