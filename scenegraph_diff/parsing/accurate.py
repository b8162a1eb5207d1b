"""Accurate text -> scene graph backend: a fine-tuned MiniLM encoder under the learned parser's heads.

Same structured tagger as :mod:`.learned` (BIO tags for objects and attributes, an attribute -> object
pointer, a pairwise relation classifier, the same decoding and tidying in
:meth:`~.learned.LearnedParser._build`), but the token states come from the lower layers of
all-MiniLM-L6-v2 (a 384-d BERT), fine-tuned on FACTUAL train, instead of a BiLSTM over word and
character n-gram embeddings. Each of the parser's tokens is cut into WordPiece pieces (:mod:`.wordpiece`);
a word's state is the mean of its pieces' last-layer states.

Inference runs in numpy (:class:`NumpyEncoderTagger`): ``parse`` imports neither torch nor transformers,
and the bundled weights (``scenegraph_diff/assets/parser-accurate``, float16 safetensors) load in well
under a second. Training: ``python -m scenegraph_diff.parsing.train_accurate``; the torch module is
:class:`~.model.EncoderTagger` (tested to give the same outputs as this module).

Shapes: ``B`` captions, ``P`` pieces per caption (with ``[CLS]`` / ``[SEP]``), ``T`` words, ``D`` = 384.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .align import TAGS
from .learned import (  # noqa: F401  (_blas_threads, Vocab: re-used by subclasses)
    LearnedParser, NumpyTagger, Vocab, _blas_threads, checked_state, head_shapes, read_pretrained,
)
from .wordpiece import WordPiece

__all__ = ["EncoderConfig", "NumpyEncoderTagger", "AccurateParser", "ACCURATE_WEIGHTS", "piece_inputs"]

ACCURATE_WEIGHTS = Path(__file__).resolve().parent.parent / "assets" / "parser-accurate"


@dataclass(frozen=True)
class EncoderConfig:
    """Sizes of :class:`~.model.EncoderTagger` (saved as ``config.json``): a BERT encoder + the tagger heads."""

    num_predicates: int = 1
    vocab_size: int = 30522
    layers: int = 4
    dim: int = 384
    heads: int = 12
    intermediate: int = 1536
    max_positions: int = 512
    type_vocab: int = 2
    ln_eps: float = 1e-12
    mention_dim: int = 200
    pair_hidden: int = 256
    dist_buckets: int = 10
    dropout: float = 0.1

    def __post_init__(self) -> None:
        for k in ("num_predicates", "vocab_size", "layers", "dim", "heads", "intermediate", "max_positions",
                  "type_vocab", "mention_dim", "pair_hidden", "dist_buckets"):
            if getattr(self, k) < 1:
                raise ValueError(f"EncoderConfig.{k} must be >= 1, got {getattr(self, k)}")
        if self.dim % self.heads:
            raise ValueError(f"EncoderConfig.dim ({self.dim}) must be a multiple of heads ({self.heads})")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"EncoderConfig.dropout must be in [0, 1), got {self.dropout}")


def encoder_shapes(c: EncoderConfig) -> dict[str, tuple[int, ...]]:
    """State-dict layout of :class:`~.model.EncoderTagger` (BERT names under ``bert.``, then the heads)."""
    D, F = c.dim, c.intermediate
    e = "bert.embeddings."
    shapes: dict[str, tuple[int, ...]] = {
        e + "word_embeddings.weight": (c.vocab_size, D), e + "position_embeddings.weight": (c.max_positions, D),
        e + "token_type_embeddings.weight": (c.type_vocab, D), e + "LayerNorm.weight": (D,),
        e + "LayerNorm.bias": (D,),
    }
    for i in range(c.layers):
        p = f"bert.encoder.layer.{i}."
        for name in ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"):
            shapes[p + name + ".weight"] = (D, D)
            shapes[p + name + ".bias"] = (D,)
        shapes[p + "intermediate.dense.weight"] = (F, D)
        shapes[p + "intermediate.dense.bias"] = (F,)
        shapes[p + "output.dense.weight"] = (D, F)
        shapes[p + "output.dense.bias"] = (D,)
        for ln in ("attention.output.LayerNorm", "output.LayerNorm"):
            shapes[p + ln + ".weight"] = (D,)
            shapes[p + ln + ".bias"] = (D,)
    shapes.update(head_shapes(c, D, len(TAGS)))
    return shapes


def _layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    mu = x.mean(-1, keepdims=True)
    x = x - mu
    var = np.mean(x * x, axis=-1, keepdims=True)
    x *= 1.0 / np.sqrt(var + eps)
    x *= w
    x += b
    return x


_C = np.float32(math.sqrt(2.0 / math.pi))


def _gelu(x: np.ndarray) -> np.ndarray:
    """GELU, tanh form (as the torch module's ``approximate="tanh"``; ~100x faster than an erf here), in place."""
    t = x * x
    t *= np.float32(0.044715)
    t += 1.0
    t *= x
    t *= _C
    np.tanh(t, out=t)
    t += 1.0
    x *= 0.5
    x *= t
    return x


def piece_inputs(wp: WordPiece, seqs: Sequence[Sequence[str]], max_pieces: int
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Encoder inputs for word sequences: ``(piece_ids [B, P], piece_lengths [B], word_start [N],
    word_end [N])``, ``N = sum(len(seq))``: each word's pieces are ``[word_start, word_end)`` of its caption's
    row (after ``[CLS]``; the row ends with ``[SEP]``, then ``[PAD]`` s). Captions longer than
    ``max_pieces`` pieces keep each word's first piece only, and beyond that are cut (their last words
    then point at the last real piece)."""
    rows: list[list[int]] = []
    starts: list[int] = []
    ends: list[int] = []
    for seq in seqs:
        per = [wp.word(w) for w in seq]
        if sum(len(p) for p in per) + 2 > max_pieces:
            per = [p[:1] for p in per]
        ids = [wp.cls]
        for p in per:
            s = min(len(ids), max_pieces - 2)
            ids.extend(p)
            starts.append(s)
            ends.append(max(min(len(ids), max_pieces - 1), s + 1))
        ids = ids[: max_pieces - 1] + [wp.sep]
        rows.append(ids)
    P = max((len(r) for r in rows), default=2)
    out = np.full((len(rows), P), wp.pad, dtype=np.int64)
    for b, r in enumerate(rows):
        out[b, : len(r)] = r
    return (out, np.array([len(r) for r in rows], dtype=np.int64), np.array(starts, dtype=np.int64),
            np.array(ends, dtype=np.int64))


class NumpyEncoderTagger(NumpyTagger):
    """Inference-only :class:`~.model.EncoderTagger` in numpy (float32, eval mode).

    The heads are :class:`~.learned.NumpyTagger` 's (same names, same maths); :meth:`word_states` replaces
    its BiLSTM.

    Args:
        config: the network's sizes.
        state: its weights under the torch state-dict names (any float dtype; kept as float32).

    Raises:
        ValueError: a weight is missing or has the wrong shape (names it).
    """

    def __init__(self, config: EncoderConfig, state: Mapping[str, np.ndarray]) -> None:  # noqa: D107
        self.config = c = config  # type: ignore[assignment]
        self.state = s = checked_state("NumpyEncoderTagger", encoder_shapes(c), state)
        self._t = {k: np.ascontiguousarray(s[k].T) for k in head_shapes(c, c.dim, len(TAGS))
                   if k.endswith(".weight") and k != "dist.weight"}
        self.layers: list[dict[str, np.ndarray]] = []
        scale = np.float32(1.0 / math.sqrt(c.dim // c.heads))
        for i in range(c.layers):
            p = f"bert.encoder.layer.{i}."
            a = p + "attention."
            wq = s[a + "self.query.weight"].T * scale  # the 1/sqrt(d_head) folded into the query projection
            w_qkv = np.concatenate([wq, s[a + "self.key.weight"].T, s[a + "self.value.weight"].T], axis=1)
            b_qkv = np.concatenate([s[a + "self.query.bias"] * scale, s[a + "self.key.bias"], s[a + "self.value.bias"]])
            self.layers.append({
                "w_qkv": np.ascontiguousarray(w_qkv), "b_qkv": b_qkv,
                "w_o": np.ascontiguousarray(s[a + "output.dense.weight"].T), "b_o": s[a + "output.dense.bias"],
                "ln1_w": s[a + "output.LayerNorm.weight"], "ln1_b": s[a + "output.LayerNorm.bias"],
                "w_i": np.ascontiguousarray(s[p + "intermediate.dense.weight"].T), "b_i": s[p + "intermediate.dense.bias"],
                "w_f": np.ascontiguousarray(s[p + "output.dense.weight"].T), "b_f": s[p + "output.dense.bias"],
                "ln2_w": s[p + "output.LayerNorm.weight"], "ln2_b": s[p + "output.LayerNorm.bias"],
            })

    def __repr__(self) -> str:
        c = self.config
        n = sum(v.size for v in self.state.values())
        return f"NumpyEncoderTagger(layers={c.layers}, predicates={c.num_predicates}, params={n})"

    def piece_states(self, piece_ids: np.ndarray, piece_lengths: np.ndarray) -> np.ndarray:
        """Last-layer states ``[B, P, D]`` of ``piece_ids [B, P]`` (real pieces: the first ``piece_lengths``;
        zeros at padding). The per-piece layers run on the real pieces only; attention on the padded layout."""
        c = self.config
        s = self.state
        B, P = piece_ids.shape
        real = np.flatnonzero((np.arange(P)[None, :] < piece_lengths[:, None]).ravel())  # [N] flat positions
        e = "bert.embeddings."
        x = s[e + "word_embeddings.weight"][piece_ids.ravel()[real]]
        x += s[e + "position_embeddings.weight"][real % P]
        x += s[e + "token_type_embeddings.weight"][0]
        x = _layer_norm(x, s[e + "LayerNorm.weight"], s[e + "LayerNorm.bias"], c.ln_eps)  # [N, D]
        nh, dh = c.heads, c.dim // c.heads
        pad = np.arange(P)[None, :] >= piece_lengths[:, None]  # [B, P]
        bias = np.where(pad, np.float32(-1e9), np.float32(0.0))[:, None, None, :]  # [B, 1, 1, P]
        buf = np.zeros((B * P, 3 * c.dim), dtype=np.float32)
        for L in self.layers:
            qkv = x @ L["w_qkv"]
            qkv += L["b_qkv"]
            buf[real] = qkv
            heads = buf.reshape(B, P, 3, nh, dh).transpose(2, 0, 3, 1, 4)  # [3, B, nh, P, dh]
            scores = heads[0] @ heads[1].transpose(0, 1, 3, 2)  # [B, nh, P, P]
            scores += bias
            scores -= scores.max(-1, keepdims=True)
            np.exp(scores, out=scores)
            scores /= scores.sum(-1, keepdims=True)
            ctx = (scores @ heads[2]).transpose(0, 2, 1, 3).reshape(B * P, c.dim)[real]  # [N, D]
            a = ctx @ L["w_o"]
            a += L["b_o"]
            a += x
            x = _layer_norm(a, L["ln1_w"], L["ln1_b"], c.ln_eps)
            f = x @ L["w_i"]
            f += L["b_i"]
            f = _gelu(f) @ L["w_f"]
            f += L["b_f"]
            f += x
            x = _layer_norm(f, L["ln2_w"], L["ln2_b"], c.ln_eps)
        out = np.zeros((B * P, c.dim), dtype=np.float32)
        out[real] = x
        return out.reshape(B, P, c.dim)

    def word_states(self, piece_ids: np.ndarray, piece_lengths: np.ndarray, word_start: np.ndarray,
                    word_end: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """Word states ``[B, T, D]`` (mean of each word's pieces; zeros at padding), ``T = max(lengths)``;
        the arguments as :func:`piece_inputs` returns them plus ``lengths [B]`` words per caption."""
        h = self.piece_states(piece_ids, piece_lengths)
        B, P, D = h.shape
        prefix = np.zeros((B, P + 1, D), dtype=np.float32)
        np.cumsum(h, axis=1, out=prefix[:, 1:])
        T = int(lengths.max())
        b_of = np.repeat(np.arange(B), lengths)
        t_of = np.arange(len(b_of)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        out = np.zeros((B, T, D), dtype=np.float32)
        out[b_of, t_of] = (prefix[b_of, word_end] - prefix[b_of, word_start]) / (word_end - word_start)[:, None]
        return out


class AccurateParser(LearnedParser):
    """The accurate backend (see the module docstring): :class:`~.learned.LearnedParser` 's decoding on a
    fine-tuned MiniLM encoder.

    Args:
        model: a :class:`NumpyEncoderTagger`, or a torch :class:`~.model.EncoderTagger` (during training).
        vocab: predicates and normalisation tables (:class:`~.learned.Vocab`; its ``words`` are unused).
        wordpiece: the encoder's WordPiece vocabulary.
        relation_threshold: a pair is related when ``P(none) < relation_threshold``.
        num_threads: BLAS threads while parsing (``None``: the process setting).

    Example:
        >>> parser = AccurateParser.from_pretrained()           # doctest: +SKIP
        >>> parser.parse("a man sitting on a bench").triplets()  # doctest: +SKIP
        [('man', 'sit on', 'bench')]
    """

    name = "accurate"
    _numpy_class = NumpyEncoderTagger

    def __init__(self, model: Any, vocab: Vocab, wordpiece: WordPiece, relation_threshold: float = 0.5,
                 num_threads: int | None = 1) -> None:
        self._setup(model, "an EncoderTagger", vocab, relation_threshold, num_threads)
        self.wordpiece = wordpiece
        vocab.set_dictionary(wordpiece.vocab)

    def __repr__(self) -> str:
        return (f"AccurateParser({self.model!r}, relation_threshold={self.relation_threshold}, "
                f"num_threads={self.num_threads})")

    @classmethod
    def from_pretrained(cls, folder: str | Path | None = None, num_threads: int | None = 1) -> "AccurateParser":
        """Load ``config.json`` + ``vocab.json`` + ``wordpiece.txt`` + ``model.safetensors`` (default: the
        bundled ``assets/parser-accurate``).

        Raises:
            FileNotFoundError: a file is missing (names it).
        """
        folder = Path(folder) if folder is not None else ACCURATE_WEIGHTS
        config, vocab, state, threshold = read_pretrained(folder, EncoderConfig, "accurate parser", "train_accurate",
                                                          ("wordpiece.txt",))
        return cls(NumpyEncoderTagger(config, state), vocab, WordPiece.from_file(folder / "wordpiece.txt"),
                   threshold, num_threads)

    def save_pretrained(self, folder: str | Path, extra: dict[str, Any] | None = None, half: bool = True) -> None:
        """Write the four files (weights in float16 when ``half``; they load back as float32)."""
        super().save_pretrained(folder, extra, half)
        (Path(folder) / "wordpiece.txt").write_text("\n".join(self.wordpiece.vocab) + "\n", encoding="utf-8")

    def _states(self, m: NumpyTagger, words: list[list[str]]) -> np.ndarray:
        assert isinstance(m, NumpyEncoderTagger)
        ids, plen, ws, we = piece_inputs(self.wordpiece, words, m.config.max_positions)
        return m.word_states(ids, plen, ws, we, np.array([len(s) for s in words], dtype=np.int64))
