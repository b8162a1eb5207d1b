"""Train a CLIP-format byte-level BPE vocabulary on a corpus (for small, self-trained text encoders).

Stable Diffusion's tokenizer is CLIP's: lower-cased text is split into words (letters, digits, other
symbols), each word's UTF-8 bytes are mapped to printable characters, ``</w>`` marks a word's last
symbol, and ranked merges join symbols into word pieces. :func:`train_clip_bpe` learns such merges from
a corpus (with the ``tokenizers`` library, a dependency of ``transformers``), so that frequent words
become single tokens and any other text still tokenizes, byte by byte. :func:`clip_tokenizer` wraps the
result in a :class:`transformers.CLIPTokenizer`, which ``save_pretrained`` / ``from_pretrained``
round-trip like SD's own::

    vocab, merges = train_clip_bpe(captions, vocab_size=4096)
    tokenizer = clip_tokenizer(vocab, merges, model_max_length=40)
    tokenizer("a red circle left of a blue square").input_ids   # one id per word, plus BOS / EOS
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from typing import Any, Iterable

__all__ = ["bytes_to_unicode", "clip_words", "train_clip_bpe", "clip_tokenizer"]

#: CLIP's pre-tokenisation pattern (special tokens, contractions, letter runs, single digits, symbol runs),
#: with ``\p{L}`` / ``\p{N}`` spelled for Python's ``re``.
_WORD = re.compile(r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[^\W\d_]+|\d|[^\s\w]+|_+",
                   re.IGNORECASE)
SPECIAL_TOKENS: tuple[str, str] = ("<|startoftext|>", "<|endoftext|>")


@functools.lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2 / CLIP's reversible map from the 256 byte values to printable unicode characters."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def clip_words(text: str) -> list[str]:
    """CLIP's words of ``text`` (whitespace-collapsed, lower-cased), each as byte-mapped characters."""
    table = bytes_to_unicode()
    text = " ".join(text.split()).lower()
    return ["".join(table[b] for b in w.encode("utf-8")) for w in _WORD.findall(text)]


def train_clip_bpe(texts: Iterable[str], vocab_size: int = 4096, min_frequency: int = 2) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Learn CLIP-format BPE merges from ``texts``.

    Args:
        texts: the corpus (any iterable of strings).
        vocab_size: size of the final vocabulary, including the 512 byte symbols (with and without
            ``</w>``) and the two special tokens; must be > 514.
        min_frequency: a pair must occur at least this often to be merged.

    Returns:
        ``(vocab, merges)``: ``vocab`` maps token -> id in CLIP's order (256 bytes, 256 bytes + ``</w>``,
        one token per merge in rank order, then ``<|startoftext|>``, ``<|endoftext|>``); ``merges`` are the
        ranked ``(left, right)`` pairs (tuples, as ``transformers`` 5.x wants them).
    """
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size <= 514:
        raise ValueError(f"vocab_size must be an integer > 514 (the byte symbols and special tokens), got {vocab_size!r}")
    if min_frequency < 1:
        raise ValueError(f"min_frequency must be >= 1, got {min_frequency!r}")
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(clip_words(text))
    if not counts:
        raise ValueError("train_clip_bpe: the corpus has no words")
    chars = list(bytes_to_unicode().values())
    model = models.BPE(end_of_word_suffix="</w>")
    tok = Tokenizer(model)
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()  # the words are pre-split; byte symbols hold no spaces
    num_merges = vocab_size - 2 * len(chars) - len(SPECIAL_TOKENS)
    trainer = trainers.BpeTrainer(vocab_size=len(chars) + num_merges + 2 * len(chars), min_frequency=min_frequency,
                                  initial_alphabet=chars, end_of_word_suffix="</w>", show_progress=False,
                                  limit_alphabet=len(chars))
    # One line per distinct word, repeated as often as it occurs (the trainer counts whitespace-split words).
    tok.train_from_iterator((" ".join([w] * c) for w, c in counts.items()), trainer=trainer)
    merges_out: list[tuple[str, str]] = []
    vocab: dict[str, int] = {}
    for t in chars + [c + "</w>" for c in chars]:
        vocab.setdefault(t, len(vocab))
    for left, right in _merges_of(tok):
        if len(merges_out) >= num_merges:
            break
        if left not in vocab or right not in vocab or left + right in vocab:
            continue
        merges_out.append((left, right))
        vocab[left + right] = len(vocab)
    for special in SPECIAL_TOKENS:
        vocab[special] = len(vocab)
    return vocab, merges_out


def _merges_of(tok: Any) -> list[tuple[str, str]]:
    """The ranked merges of a trained ``tokenizers`` BPE model."""
    import json

    state = json.loads(tok.to_str())["model"]["merges"]
    return [tuple(m.split(" ", 1)) if isinstance(m, str) else (m[0], m[1]) for m in state]  # type: ignore[misc]


def clip_tokenizer(vocab: dict[str, int], merges: list[tuple[str, str]], model_max_length: int = 77) -> Any:
    """A :class:`transformers.CLIPTokenizer` over ``vocab`` / ``merges`` (see :func:`train_clip_bpe`)."""
    from transformers import CLIPTokenizer

    return CLIPTokenizer(vocab=dict(vocab), merges=[tuple(m) for m in merges], model_max_length=model_max_length)
