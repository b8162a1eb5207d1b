"""Learned text -> scene graph backend: a BiLSTM structured tagger with pairwise heads.

The caption's words (word embedding + hashed character n-grams) run through a 2-layer BiLSTM. Then

1. a tagger marks object mentions and attribute spans (``O``, ``B/I-OBJ``, ``B/I-ATT``);
2. each attribute span points at one object mention (bilinear score, softmax over the mentions);
3. every ordered pair of mentions ``(i, j)`` is classified into ``none`` or one predicate of the
   training vocabulary (FACTUAL's lemmatised, verb+preposition-merged forms), reading both mentions, the
   mean state of the words between them and their signed distance. Passives, ``of`` and ``with`` need no
   rules: the pair order and the predicate class carry them.

Inference runs in numpy (:class:`NumpyTagger`): parsing needs no torch, so a parser loads in ~0.1 s
and forked worker processes start at once. The torch network (:class:`~.model.SceneGraphTagger`) is
used for training and is tested to give the same outputs.

Surface forms are normalised by tables learned from the training alignments (``two`` -> ``2``,
``wood`` -> ``wooden``, ``side walk`` -> ``sidewalk``); a misspelt one-word label that is no real word
becomes the most frequent training label one or two edits away (``cabinent`` -> ``cabinet``,
:meth:`Vocab.spelling`; real words come from the MiniLM WordPiece vocabulary). Mentions with the same name become one node
unless a relation links them. Decoded relations are then tidied (:func:`_one_relation_per_pair`: "cup have
coffee" and "coffee in cup" are one fact; a laptop right of "a cup of coffee" is right of the cup), copied
predicates lose clause connectors ("while stand under" -> ``stand under``), and negated parts are dropped
(:mod:`.negation`). Shapes-world captions go through the rule-based parser, which maps them
to the canonical graph exactly. Trained by ``python -m scenegraph_diff.parsing.train``.

Shapes: ``B`` captions, ``T`` tokens, ``M`` mentions per caption, ``H`` = 2 x LSTM hidden size.
"""

from __future__ import annotations

import json
import logging
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from ..graph.scene_graph import Relation, SceneGraph, SceneObject
from .align import TAGS
from .lexicon import AUX, DETERMINERS, VERB_FORMS, lemmatize_verb
from .negation import drop_negated, is_negator
from .rules import RuleBasedParser, is_shapes_text
from .tokenize import Token, split_sentences, tokenize

if TYPE_CHECKING:
    from .model import SceneGraphTagger

__all__ = ["LearnedParser", "NumpyTagger", "TaggerConfig", "SceneGraphTagger", "Vocab", "DEFAULT_WEIGHTS", "COPY",
           "predicate_words"]

log = logging.getLogger(__name__)


def __getattr__(name: str) -> Any:
    if name == "SceneGraphTagger":  # the torch network lives in .model (imports torch)
        from .model import SceneGraphTagger

        return SceneGraphTagger
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

DEFAULT_WEIGHTS = Path(__file__).resolve().parent.parent / "assets" / "parser"
MAX_SEQ = 64  # longer texts are cut into sentences / 64-token pieces


@dataclass(frozen=True)
class TaggerConfig:
    """Hyperparameters of :class:`SceneGraphTagger` (saved as ``config.json``)."""

    num_words: int = 2
    num_predicates: int = 1
    word_dim: int = 100
    char_buckets: int = 32768
    char_dim: int = 64
    hidden: int = 160
    layers: int = 2
    mention_dim: int = 200
    pair_hidden: int = 256
    dist_buckets: int = 10
    dropout: float = 0.3

    def __post_init__(self) -> None:
        for k in ("num_words", "num_predicates", "word_dim", "char_buckets", "char_dim", "hidden", "layers",
                  "mention_dim", "pair_hidden", "dist_buckets"):
            if getattr(self, k) < 1:
                raise ValueError(f"TaggerConfig.{k} must be >= 1, got {getattr(self, k)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"TaggerConfig.dropout must be in [0, 1), got {self.dropout}")


@dataclass
class Vocab:
    """Everything text-side the model needs: words, predicates and learned normalisation tables."""

    words: list[str] = field(default_factory=list)  # index 0 = <pad>, 1 = <unk>
    predicates: list[str] = field(default_factory=list)  # class 0 = none
    name_forms: dict[str, str] = field(default_factory=dict)
    attribute_forms: dict[str, str] = field(default_factory=dict)
    verb_lemmas: dict[str, str] = field(default_factory=dict)
    #: gold object names / attribute labels of the training graphs -> count (for :meth:`spelling`)
    known_names: dict[str, int] = field(default_factory=dict)
    known_attributes: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.word_index = {w: i for i, w in enumerate(self.words)}
        self._lemma_set = frozenset(self.verb_lemmas.values())
        self._spelling: dict[tuple[str, str], str] = {}
        #: real words (e.g. whole-word WordPiece entries) that :meth:`spelling` never corrects; empty = no
        #: corrections at all (set by the parsers from their ``wordpiece.txt``)
        self.dictionary: frozenset[str] = frozenset()

    def set_dictionary(self, words: Sequence[str]) -> None:
        """Use the alphabetic ``words`` (WordPiece vocabulary entries; ``##`` pieces skipped) as the real
        words that :meth:`spelling` leaves alone."""
        self.dictionary = frozenset(w for w in words if w.isalpha())
        self._spelling.clear()

    def to_dict(self) -> dict[str, Any]:
        return {"words": self.words, "predicates": self.predicates, "name_forms": self.name_forms,
                "attribute_forms": self.attribute_forms, "verb_lemmas": self.verb_lemmas,
                "known_names": self.known_names, "known_attributes": self.known_attributes}

    def spelling(self, surface: str, kind: str = "name") -> str:
        """A misspelt one-word label put right: ``surface`` when it is a training word or a known label, else
        the most frequent known label (``kind`` ``"name"`` or ``"attribute"``) within edit distance 1
        (2 from 8 letters), when there is exactly one most frequent; otherwise ``surface`` unchanged. Words of
        fewer than 5 letters, and words of the :attr:`dictionary` or that start with one (at most 2 letters
        shorter) are never corrected; without a dictionary nothing is.
        ``"cabinent"`` -> ``"cabinet"``, ``"browm"`` -> ``"brown"``."""
        known = self.known_names if kind == "name" else self.known_attributes
        n = len(surface)
        if (not known or not self.dictionary or n < 5 or not surface.isalpha() or surface in known
                or surface in self.word_index
                # a dictionary word, or one with an ending ("beaks", "watchers", "chocolatey")
                or any(surface[:k] in self.dictionary for k in range(max(4, n - 2), n + 1))):
            return surface
        key = (kind, surface)
        hit = self._spelling.get(key)
        if hit is None:
            from .align import edit_distance

            limit = 2 if len(surface) >= 8 else 1
            best: list[tuple[int, int, str]] = []
            for label, n in known.items():
                if (abs(len(label) - len(surface)) <= limit and label[0] == surface[0] and " " not in label
                        and label.rstrip("s") != surface.rstrip("s")):  # a plural is not a typo
                    d = edit_distance(surface, label, limit + 1)
                    if d <= limit:
                        best.append((d, -n, label))
            best.sort()
            hit = best[0][2] if best and (len(best) == 1 or best[0][:2] != best[1][:2]) else surface
            self._spelling[key] = hit
        return hit

    def lemma(self, word: str) -> str:
        """Predicate form of one word: the learned table, else the rule lemmatiser for -ing/-ed forms."""
        if word in self.verb_lemmas:
            return self.verb_lemmas[word]
        if word in VERB_FORMS:
            return VERB_FORMS[word]
        if word.endswith(("ing", "ed")) and len(word) > 4:
            return lemmatize_verb(word)
        if word.endswith("s") and len(word) > 3:  # "takes" -> "take" when "take" is a known predicate verb
            for stem in (word[:-1], word[:-2]):
                if stem in self._lemma_set:
                    return stem
        return word


#: Predicate class meaning "the words between the two mentions, lemmatised" (see :func:`predicate_words`).
COPY = "<copy>"


def predicate_words(words: Sequence[str], in_mention: Sequence[bool], in_attribute: Sequence[bool], lo: int,
                    hi: int) -> list[int]:
    """Token indices of the predicate words between two mentions (``lo`` = end of the first, ``hi`` = start of
    the second): walk back from ``hi``, skipping determiners, auxiliaries and attributes, up to a mention.
    ``"sitting on [a red] sofa"`` -> the indices of ``sitting on``. Returned in text order."""
    picked = []
    for k in range(hi - 1, lo - 1, -1):
        if in_mention[k]:
            break
        if in_attribute[k] or words[k] in _SKIP_IN_PREDICATE or not any(c.isalnum() for c in words[k]):
            continue
        picked.append(k)
    return picked[::-1]


def char_ngrams(word: str, buckets: int) -> list[int]:
    """Hashed character 3- to 5-grams of ``<word>`` (crc32: stable across processes)."""
    w = f"<{word}>"
    grams = [w[i : i + n] for n in (3, 4, 5) for i in range(len(w) - n + 1)] or [w]
    return [zlib.crc32(g.encode("utf-8")) % buckets for g in grams]


def head_shapes(c: Any, H: int, num_tags: int) -> dict[str, tuple[int, ...]]:
    """State-dict layout of the tagger heads on ``H``-d token states (shared by both taggers; ``c`` is a
    :class:`TaggerConfig` or an :class:`~.accurate.EncoderConfig`)."""
    d = c.mention_dim
    return {
        "tagger.weight": (num_tags, H), "tagger.bias": (num_tags,),
        "mention.0.weight": (d, 2 * H), "mention.0.bias": (d,),
        "attr_query.0.weight": (d, 2 * H), "attr_query.0.bias": (d,), "attr_bilinear.weight": (d, d),
        "dist.weight": (2 * c.dist_buckets + 1, 16),
        "pair.0.weight": (c.pair_hidden, 2 * d + H + 16), "pair.0.bias": (c.pair_hidden,),
        "pair.3.weight": (c.num_predicates + 1, c.pair_hidden), "pair.3.bias": (c.num_predicates + 1,),
    }


def checked_state(owner: str, expected: Mapping[str, tuple[int, ...]], state: Mapping[str, np.ndarray]
                  ) -> dict[str, np.ndarray]:
    """The ``expected`` weights of ``state`` as contiguous float32 arrays.

    Raises:
        ValueError: a weight is missing or has the wrong shape (names it and ``owner``).
    """
    for k, shape in expected.items():
        if k not in state:
            raise ValueError(f"{owner}: weight {k!r} missing from the state dict")
        if tuple(state[k].shape) != shape:
            raise ValueError(f"{owner}: weight {k!r} has shape {tuple(state[k].shape)}, expected {shape}")
    return {k: np.ascontiguousarray(state[k], dtype=np.float32) for k in expected}


def _expected_shapes(c: TaggerConfig, num_tags: int) -> dict[str, tuple[int, ...]]:
    """The torch state-dict layout of :class:`~.model.SceneGraphTagger` for ``c``."""
    h = c.hidden
    shapes: dict[str, tuple[int, ...]] = {
        "word.weight": (c.num_words, c.word_dim), "chars.weight": (c.char_buckets, c.char_dim),
        **head_shapes(c, 2 * h, num_tags),
    }
    H = 2 * h
    for layer in range(c.layers):
        inp = c.word_dim + c.char_dim if layer == 0 else H
        for sfx in ("", "_reverse"):
            shapes[f"lstm.weight_ih_l{layer}{sfx}"] = (4 * h, inp)
            shapes[f"lstm.weight_hh_l{layer}{sfx}"] = (4 * h, h)
            shapes[f"lstm.bias_ih_l{layer}{sfx}"] = (4 * h,)
            shapes[f"lstm.bias_hh_l{layer}{sfx}"] = (4 * h,)
    return shapes


class NumpyTagger:
    """Inference-only :class:`~.model.SceneGraphTagger` in numpy (float32, eval mode: no dropout).

    Same inputs and outputs as the torch module's ``encode`` / heads, as arrays (tested to 1e-5, and the
    bundled parser gives byte-identical graphs on 20,000 FACTUAL captions). The LSTM is packed as with
    ``pack_padded_sequence``: only real tokens are computed, each direction over contiguous blocks.

    Args:
        config: the network's sizes.
        state: its weights under the torch state-dict names (any float dtype; kept as float32).

    Raises:
        ValueError: a weight is missing or has the wrong shape (names it).
    """

    def __init__(self, config: TaggerConfig, state: Mapping[str, np.ndarray]) -> None:
        self.config = c = config
        self.state = checked_state("NumpyTagger", _expected_shapes(c, len(TAGS)), state)
        s, h = self.state, c.hidden
        perm = np.r_[0 : 2 * h, 3 * h : 4 * h, 2 * h : 3 * h]  # torch gates (i, f, g, o) -> (i, f, o, g)
        self.lstm: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        for layer in range(c.layers):
            names = [f"l{layer}", f"l{layer}_reverse"]
            # Sigmoid gates pre-scaled by 1/2 (exact in floating point): sigmoid(x) = (tanh(x / 2) + 1) / 2,
            # so one tanh call covers all four gates.
            scale = np.ones(4 * h, dtype=np.float32)
            scale[: 3 * h] = 0.5
            w_ih = np.concatenate([s[f"lstm.weight_ih_{n}"][perm].T * scale for n in names], axis=1)  # [E, 8h]
            bias = np.concatenate([(s[f"lstm.bias_ih_{n}"] + s[f"lstm.bias_hh_{n}"])[perm] * scale for n in names])
            w_hh = np.stack([s[f"lstm.weight_hh_{n}"][perm].T * scale for n in names])  # [2, h, 4h]
            self.lstm.append((np.ascontiguousarray(w_ih), bias, np.ascontiguousarray(w_hh)))
        self._t = {k: np.ascontiguousarray(v.T) for k, v in s.items()
                   if k.endswith(".weight") and k not in ("word.weight", "chars.weight", "dist.weight")}

    @classmethod
    def from_module(cls, model: Any) -> "NumpyTagger":
        """Copy the weights of a torch :class:`~.model.SceneGraphTagger` (on any device); on the subclass
        :class:`~.accurate.NumpyEncoderTagger`, of an :class:`~.model.EncoderTagger`."""
        return cls(model.config, {k: v.detach().float().cpu().numpy() for k, v in model.state_dict().items()})

    def __repr__(self) -> str:
        c = self.config
        n = sum(v.size for v in self.state.values())
        return f"NumpyTagger(words={c.num_words}, predicates={c.num_predicates}, hidden={c.hidden}, params={n})"

    def _linear(self, name: str, x: np.ndarray, relu: bool = False) -> np.ndarray:
        y = x @ self._t[f"{name}.weight"]
        b = self.state.get(f"{name}.bias")
        if b is not None:
            y += b
        return np.maximum(y, 0.0, out=y) if relu else y

    def embed(self, word_ids: np.ndarray, char_ids: np.ndarray, char_offsets: np.ndarray) -> np.ndarray:
        """Input vectors ``[N, E]`` (word embedding ; mean of character n-gram embeddings) of ``N`` words:
        ``word_ids [N]`` and flat n-gram ids ``char_ids`` with per-word start offsets ``char_offsets [N]``."""
        c = self.config
        x = np.empty((len(word_ids), c.word_dim + c.char_dim), dtype=np.float32)
        x[:, : c.word_dim] = self.state["word.weight"][word_ids]
        counts = np.diff(np.append(char_offsets, len(char_ids))).astype(np.float32)[:, None]
        np.divide(np.add.reduceat(self.state["chars.weight"][char_ids], char_offsets, axis=0), counts,
                  out=x[:, c.word_dim :])
        return x

    def encode(self, word_ids: np.ndarray, char_ids: np.ndarray, char_offsets: np.ndarray,
               lengths: np.ndarray) -> np.ndarray:
        """Token states ``[B, T, H]`` (zeros at padding) for ``word_ids [B, T]`` (0 = padding), flat n-gram
        ids with per-token offsets over the ``sum(lengths)`` real tokens (row-major), and ``lengths [B]``
        (>= 1). Same contract as :meth:`~.model.SceneGraphTagger.encode`."""
        mask = np.arange(word_ids.shape[1])[None, :] < lengths[:, None]
        return self.lstm_states(self.embed(word_ids[mask], char_ids, char_offsets), lengths)

    def project(self, x: np.ndarray) -> np.ndarray:
        """First-layer LSTM input projections ``[N, 8 h]`` (both directions, bias included) of inputs
        ``x [N, E]``; a per-word function, so callers may cache it."""
        w_ih, bias, _ = self.lstm[0]
        xp = x @ w_ih
        xp += bias
        return xp

    def lstm_states(self, x: np.ndarray, lengths: np.ndarray, projected: bool = False) -> np.ndarray:
        """BiLSTM states ``[B, T, H]`` (zeros at padding, ``T = max(lengths)``) of the token inputs
        ``x [sum(lengths), E]`` (captions one after another), or of their :meth:`project` ions
        ``[sum(lengths), 8 h]`` when ``projected``."""
        lengths = np.asarray(lengths, dtype=np.int64)
        B, T, hd = len(lengths), int(lengths.max()), self.config.hidden
        # Packed as pack_padded_sequence: captions longest first, rows grouped by time step, so the
        # captions running at step t are a prefix; the backward direction runs each caption reversed.
        order = np.argsort(-lengths, kind="stable")
        lens = lengths[order]
        active = (lens[None, :] > np.arange(T)[:, None]).sum(1)  # [T]
        offs = np.concatenate([[0], np.cumsum(active)])
        t_of = np.repeat(np.arange(T), active)  # packed row -> (time, sorted caption)
        b_of = np.arange(len(t_of)) - offs[t_of]
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        src = starts[order[b_of]] + t_of  # packed row -> row of x
        rev_t = lens[b_of] - 1 - t_of
        rev = offs[rev_t] + b_of  # packed row of the same caption's mirrored token (an involution)
        h_in = x[src]
        for layer, (w_ih, bias, w_hh) in enumerate(self.lstm):
            if layer == 0 and projected:
                xp = h_in
            else:
                xp = h_in @ w_ih  # [N, 8h]
                xp += bias
            steps = np.empty((2, len(xp), 4 * hd), dtype=np.float32)
            steps[0] = xp[:, : 4 * hd]
            steps[1] = xp[rev, 4 * hd :]
            c = np.zeros((2, B, hd), dtype=np.float32)
            out = np.empty((2, len(xp), hd), dtype=np.float32)
            tmp = np.empty((B, 4 * hd), dtype=np.float32)
            for d in range(2):  # each direction on contiguous [n, 4h] blocks
                g_all, c_d, out_d, w_d = steps[d], c[d], out[d], w_hh[d]
                for s in range(T):
                    n, o = int(active[s]), int(offs[s])
                    g = g_all[o : o + n]
                    if s:  # h_{s-1} of the n running captions = the first n rows of the previous block
                        np.matmul(out_d[offs[s - 1] : offs[s - 1] + n], w_d, out=tmp[:n])
                        g += tmp[:n]
                    np.tanh(g, out=g)
                    gates = g[:, : 3 * hd]  # i, f, o
                    gates += 1.0
                    gates *= 0.5
                    cs = c_d[:n]
                    cs *= g[:, hd : 2 * hd]
                    cand = g[:, 3 * hd :]
                    cand *= g[:, :hd]
                    cs += cand
                    hs = out_d[o : o + n]
                    np.tanh(cs, out=hs)
                    hs *= g[:, 2 * hd : 3 * hd]
            h_in = np.concatenate([out[0], out[1, rev]], axis=-1)  # [N, H], backward back in text order
        states = np.zeros((B, T, 2 * hd), dtype=np.float32)
        states[order[b_of], t_of] = h_in
        return states

    def tag_logits(self, h: np.ndarray) -> np.ndarray:
        """Tag logits ``[B, T, len(TAGS)]``."""
        return self._linear("tagger", h)

    @staticmethod
    def span_states(h: np.ndarray, prefix: np.ndarray, batch: np.ndarray, start: np.ndarray,
                    end: np.ndarray) -> np.ndarray:
        """``[h_last ; mean(h[start:end])]`` ``[S, 2H]``, as :meth:`~.model.SceneGraphTagger.span_states`."""
        mean = (prefix[batch, end] - prefix[batch, start]) / np.maximum(end - start, 1)[:, None].astype(np.float32)
        return np.concatenate([h[batch, np.maximum(end - 1, 0)], mean], axis=-1)

    def mention(self, spans: np.ndarray) -> np.ndarray:
        """Mention vectors ``[S, D]`` from span states ``[S, 2H]``."""
        return self._linear("mention.0", spans, relu=True)

    def attr_query(self, spans: np.ndarray) -> np.ndarray:
        """Attribute queries ``[A, D]`` from span states ``[A, 2H]``."""
        return self._linear("attr_query.0", spans, relu=True)

    def attr_scores(self, q: np.ndarray, m: np.ndarray) -> np.ndarray:
        """Bilinear scores ``[A, M]`` of queries ``[A, D]`` against mentions ``[A, M, D]``."""
        return np.einsum("ad,amd->am", self._linear("attr_bilinear", q), m)

    def pair_logits(self, h: np.ndarray, prefix: np.ndarray, batch: np.ndarray, s1: np.ndarray, e1: np.ndarray,
                    s2: np.ndarray, e2: np.ndarray, m1: np.ndarray, m2: np.ndarray) -> np.ndarray:
        """Relation logits ``[P, num_predicates + 1]`` for ordered mention pairs (``m1``/``m2``: ``[P, D]``)."""
        lo = np.minimum(e1, e2)
        hi = np.maximum(np.maximum(s1, s2), lo)
        between = (prefix[batch, hi] - prefix[batch, lo]) / np.maximum(hi - lo, 1)[:, None].astype(np.float32)
        n = self.config.dist_buckets
        dist = self.state["dist.weight"][np.clip(s2 - s1, -n, n) + n]
        x = self._linear("pair.0", np.concatenate([m1, m2, between, dist], axis=-1), relu=True)
        return self._linear("pair.3", x)


def _prefix(h: np.ndarray) -> np.ndarray:
    """Cumulative sums of ``h [B, T, H]`` over tokens with a leading zero row: ``[B, T+1, H]``."""
    out = np.empty((h.shape[0], h.shape[1] + 1, h.shape[2]), dtype=h.dtype)
    out[:, 0] = 0.0
    for t in range(h.shape[1]):  # as cumsum(axis=1), but over whole [B, H] slices (much faster)
        np.add(out[:, t], h[:, t], out=out[:, t + 1])
    return out


class Featurizer:
    """Tokens -> model inputs, with a per-instance cache of word features."""

    def __init__(self, vocab: Vocab, char_buckets: int) -> None:
        self.vocab = vocab
        self.char_buckets = char_buckets
        self._cache: dict[str, tuple[int, list[int]]] = {}

    def word(self, w: str) -> tuple[int, list[int]]:
        f = self._cache.get(w)
        if f is None:
            f = (self.vocab.word_index.get(w, 1), char_ngrams(w, self.char_buckets))
            if len(self._cache) < 200_000:
                self._cache[w] = f
        return f

    def arrays(self, seqs: Sequence[Sequence[str]]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(word_ids [B, T], char_ids [N*], char_offsets [N], lengths [B])`` as int64 arrays, ``N`` = the
        number of tokens; every sequence non-empty."""
        if not seqs or any(len(s) == 0 for s in seqs):
            raise ValueError("Featurizer: every sequence must have at least one token")
        T = max(len(s) for s in seqs)
        word_ids = np.zeros((len(seqs), T), dtype=np.int64)
        chars: list[int] = []
        offsets: list[int] = []
        for b, seq in enumerate(seqs):
            ids = []
            for w in seq:
                wid, grams = self.word(w)
                ids.append(wid)
                offsets.append(len(chars))
                chars.extend(grams)
            word_ids[b, : len(ids)] = ids
        lengths = np.array([len(s) for s in seqs], dtype=np.int64)
        return word_ids, np.array(chars, dtype=np.int64), np.array(offsets, dtype=np.int64), lengths

    def batch(self, seqs: Sequence[Sequence[str]]) -> tuple[Any, Any, Any, Any]:
        """:meth:`arrays` as torch tensors (for training)."""
        import torch

        return tuple(torch.from_numpy(a) for a in self.arrays(seqs))  # type: ignore[return-value]


def decode_spans(tags: Sequence[int]) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """BIO tag ids -> (object spans, attribute spans), end exclusive. A stray ``I-`` starts a span."""
    objs: list[tuple[int, int]] = []
    atts: list[tuple[int, int]] = []
    cur: tuple[str, int] | None = None
    for i, t in enumerate(list(tags) + [0]):
        kind = TAGS[t]
        if cur is not None and not (kind.startswith("I-") and kind[2:] == cur[0]):
            (objs if cur[0] == "OBJ" else atts).append((cur[1], i))
            cur = None
        if kind.startswith("B-") or (kind.startswith("I-") and cur is None):
            cur = (kind[2:], i)
    return objs, atts


_SKIP_IN_PREDICATE = DETERMINERS | AUX | {",", ".", "'s"}
#: Copied "predicates" that only coordinate two mentions ("a man and a woman"): no relation (FACTUAL has none).
_NOT_PREDICATES = frozenset({"and", "or", "but", "and then", ","})


#: Clause connectors: a copied predicate keeps only the words after the last one ("while stand under").
_CONNECTORS = frozenset({"while", "whilst", "when", "then", "and", "but"})
_HAVE = frozenset({"have", "with"})


def _one_relation_per_pair(candidates: list[tuple[Relation, float]], of_pairs: set[tuple[int, int]]) -> list[Relation]:
    """The relations to keep, in order, of ``(relation, probability)`` candidates.

    - "X of Y" (``of_pairs``: (X, Y) node pairs) with X and Y related: a third object's relation to Y that it
      also has, with the same predicate, to X is dropped ("a laptop right of a cup of coffee": laptop -> cup
      only), and likewise Y's relation that X also has;
    - two objects related in both directions by ``have`` / ``with`` one way ("cup have coffee" and "coffee in
      cup": one fact, twice): only the direction of the most probable relation is kept (FACTUAL graphs almost
      never relate a pair both ways).
    """
    if len(candidates) < 2:
        return [r for r, _ in candidates]
    pairs = {(r.subject, r.object) for r, _ in candidates}
    triples = {(r.subject, r.predicate, r.object) for r, _ in candidates}
    drop: set[int] = set()
    for x, y in of_pairs:
        if (x, y) not in pairs and (y, x) not in pairs:
            continue
        for k, (r, _) in enumerate(candidates):
            if r.object == y and r.subject != x and (r.subject, r.predicate, x) in triples:
                drop.add(k)
            elif r.subject == y and r.object != x and (x, r.predicate, r.object) in triples:
                drop.add(k)
    possessed = {(r.subject, r.object) for k, (r, _) in enumerate(candidates) if k not in drop and r.predicate in _HAVE}
    best: dict[tuple[int, int], tuple[float, int]] = {}  # unordered pair -> (probability, subject)
    for k, (r, p) in enumerate(candidates):
        key = (min(r.subject, r.object), max(r.subject, r.object))
        if k in drop or ((r.subject, r.object) not in possessed and (r.object, r.subject) not in possessed):
            continue
        if key not in best or p > best[key][0]:
            best[key] = (p, r.subject)
    out = []
    for k, (r, _) in enumerate(candidates):
        b = best.get((min(r.subject, r.object), max(r.subject, r.object)))
        if k not in drop and (b is None or b[1] == r.subject):
            out.append(r)
    return out


_INPUT_CACHE = 16_384  # words whose first-layer LSTM projections are kept (4 KB each: <= 64 MB)


class _blas_threads:
    """Context: at most ``n`` BLAS threads (``None``: unchanged). Uses ``threadpoolctl`` when installed."""

    def __init__(self, n: int | None) -> None:
        self.n, self.ctl = n, None

    def __enter__(self) -> None:
        if self.n is not None:
            try:
                from threadpoolctl import threadpool_limits
            except ImportError:  # pragma: no cover - threadpoolctl is a dependency
                return
            self.ctl = threadpool_limits(limits=self.n, user_api="blas")

    def __exit__(self, *exc: object) -> None:
        if self.ctl is not None:
            self.ctl.restore_original_limits()
            self.ctl = None


def read_pretrained(folder: Path, config_class: type, what: str, trainer: str,
                    extra_files: Sequence[str] = ()) -> tuple[Any, Vocab, dict[str, np.ndarray], float]:
    """``(config, vocab, float32 weights, relation threshold)`` of a saved parser folder (``config.json``,
    ``vocab.json``, ``model.safetensors`` and ``extra_files``); ``config_class`` takes the ``config.json``
    entries it has fields for.

    Raises:
        FileNotFoundError: a file is missing (names it, and ``python -m scenegraph_diff.parsing.<trainer>``).
    """
    from safetensors.numpy import load_file

    from ..weights import aligned_array

    for f in ("config.json", "vocab.json", *extra_files, "model.safetensors"):
        if not (folder / f).is_file():
            raise FileNotFoundError(f"{what}: {folder / f} not found (train it with "
                                    f"`python -m scenegraph_diff.parsing.{trainer}`)")
    cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    threshold = float(cfg.pop("relation_threshold", 0.5))
    config = config_class(**{k: v for k, v in cfg.items() if k in config_class.__dataclass_fields__})
    vocab = Vocab(**json.loads((folder / "vocab.json").read_text(encoding="utf-8")))
    # float32 copies in owned, 64-byte aligned memory (not views of the file's bytes)
    state = {k: aligned_array(v, np.float32) for k, v in load_file(str(folder / "model.safetensors")).items()}
    return config, vocab, state, threshold


class LearnedParser:
    """The learned backend (see the module docstring).

    Args:
        model: the network: a :class:`NumpyTagger`, or a torch :class:`~.model.SceneGraphTagger` (during
            training), whose current weights are copied to numpy when they have changed since the last call.
        vocab: its :class:`Vocab`.
        relation_threshold: a pair is related when ``P(none) < relation_threshold``.
        num_threads: BLAS threads while parsing (set for the call with ``threadpoolctl`` and restored
            afterwards); ``None`` leaves the process setting alone. Default 1: on the shared 2-core box more
            threads were slower for these small batched LSTM steps, and results are reproducible for a fixed
            count.

    Example:
        >>> parser = LearnedParser.from_pretrained()            # doctest: +SKIP
        >>> parser.parse("a man sitting on a bench").triplets()  # doctest: +SKIP
        [('man', 'sit on', 'bench')]
    """

    name = "learned"
    #: the numpy network class of this backend (parsing runs on it; torch models are copied into one)
    _numpy_class: type = NumpyTagger

    def __init__(self, model: "NumpyTagger | SceneGraphTagger", vocab: Vocab, relation_threshold: float = 0.5,
                 num_threads: int | None = 1) -> None:
        self._setup(model, "a SceneGraphTagger", vocab, relation_threshold, num_threads)
        self._inputs_of: NumpyTagger | None = None
        self._inputs: dict[str, np.ndarray] = {}
        self.featurizer = Featurizer(vocab, model.config.char_buckets)

    def _setup(self, model: Any, torch_kind: str, vocab: Vocab, relation_threshold: float,
               num_threads: int | None) -> None:
        """What both backends' constructors do: check the arguments and keep them."""
        if num_threads is not None and num_threads < 1:
            raise ValueError(f"num_threads must be >= 1 or None, got {num_threads}")
        numpy_class = self._numpy_class
        if not isinstance(model, numpy_class) and not hasattr(model, "state_dict"):
            raise TypeError(f"model must be a {numpy_class.__name__} or {torch_kind}, got {type(model).__name__}")
        self.model = model
        self._net: NumpyTagger | None = model if isinstance(model, numpy_class) else None
        self._net_key: tuple | None = None
        self.vocab = vocab
        self.relation_threshold = relation_threshold
        self.num_threads = num_threads
        self.rules = RuleBasedParser()

    def __repr__(self) -> str:
        return (f"LearnedParser({self.model!r}, relation_threshold={self.relation_threshold}, "
                f"num_threads={self.num_threads})")

    # ------------------------------------------------------------------ I/O
    @classmethod
    def from_pretrained(cls, folder: str | Path | None = None, num_threads: int | None = 1) -> "LearnedParser":
        """Load ``config.json`` + ``vocab.json`` + ``model.safetensors`` (default: the bundled weights).

        Raises:
            FileNotFoundError: a file is missing (names it).
        """
        folder = Path(folder) if folder is not None else DEFAULT_WEIGHTS
        config, vocab, state, threshold = read_pretrained(folder, TaggerConfig, "learned parser", "train")
        model = NumpyTagger(config, state)
        for words in (folder / "wordpiece.txt", DEFAULT_WEIGHTS.parent / "parser-accurate" / "wordpiece.txt"):
            if words.is_file():  # the real-word list of spelling corrections
                vocab.set_dictionary(words.read_text(encoding="utf-8").splitlines())
                break
        return cls(model, vocab, threshold, num_threads)

    def save_pretrained(self, folder: str | Path, extra: dict[str, Any] | None = None, half: bool = True) -> None:
        """Write the three files (weights in float16 when ``half``; they load back as float32)."""
        from safetensors.numpy import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        net = self.network()
        save_file({k: np.ascontiguousarray(v.astype(np.float16 if half else np.float32)) for k, v in net.state.items()},
                  str(folder / "model.safetensors"))
        cfg = {**asdict(self.model.config), "relation_threshold": self.relation_threshold, **(extra or {})}
        (folder / "config.json").write_text(json.dumps(cfg, indent=1) + "\n", encoding="utf-8")
        (folder / "vocab.json").write_text(json.dumps(self.vocab.to_dict(), ensure_ascii=False) + "\n",
                                           encoding="utf-8")

    def network(self) -> NumpyTagger:
        """The numpy network used for parsing (re-copied from a torch model whose weights changed)."""
        if isinstance(self.model, self._numpy_class):
            return self.model
        params = list(self.model.state_dict(keep_vars=True).values())
        key = tuple((p.data_ptr(), p._version, str(p.device)) for p in params)
        if self._net is None or key != self._net_key:
            self._net, self._net_key = self._numpy_class.from_module(self.model), key
        return self._net

    # ------------------------------------------------------------------ parsing
    def parse(self, text: str) -> SceneGraph:
        return self.parse_batch([text])[0]

    def parse_batch(self, texts: Sequence[str], batch_size: int = 256) -> list[SceneGraph]:
        """Parse texts in order; batches of ``batch_size`` pieces go through the network together."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        pieces: list[tuple[int, list[Token]]] = []
        shapes: dict[int, SceneGraph] = {}
        for k, text in enumerate(texts):
            tokens = tokenize(text)
            if is_shapes_text(tokens):
                shapes[k] = self.rules.parse(text)
                continue
            chunks = split_sentences(tokens, text, MAX_SEQ)
            for chunk in chunks:
                words = [t for t in chunk if any(c.isalnum() for c in t.lower)]
                if words:
                    pieces.append((k, chunk))
        results: list[list[tuple[int, list[Token], dict]]] = [[] for _ in texts]
        order = sorted(range(len(pieces)), key=lambda i: len(pieces[i][1]))  # similar lengths together
        if order:
            net = self.network()
            with _blas_threads(self.num_threads):
                for i in range(0, len(order), batch_size):
                    idx = order[i : i + batch_size]
                    decoded = self._decode(net, [pieces[j][1] for j in idx])
                    for j, d in zip(idx, decoded):
                        results[pieces[j][0]].append((j, pieces[j][1], d))
        out = []
        for k, text in enumerate(texts):
            parts = [(toks, d) for _, toks, d in sorted(results[k], key=lambda x: x[0])]  # text order
            out.append(shapes[k] if k in shapes else self._build(text, parts))
        return out

    def _embed_words(self, m: NumpyTagger, words: list[str]) -> np.ndarray:
        feats = [self.featurizer.word(w) for w in words]
        offsets = np.cumsum([0] + [len(g) for _, g in feats[:-1]])
        char_ids = np.fromiter((i for _, g in feats for i in g), dtype=np.int64)
        return m.project(m.embed(np.array([wid for wid, _ in feats], dtype=np.int64), char_ids, offsets))

    def _token_inputs(self, m: NumpyTagger, words: list[str]) -> np.ndarray:
        """First-layer LSTM projections ``[len(words), 8 h]`` of the words, cached per word."""
        if self._inputs_of is not m:  # new weights
            self._inputs_of, self._inputs = m, {}
        cache = self._inputs
        new = [w for w in dict.fromkeys(words) if w not in cache]
        local = cache
        if new:
            rows = self._embed_words(m, new)
            if len(cache) + len(new) > _INPUT_CACHE:
                local = {**cache, **dict(zip(new, rows))}  # this call only
            else:
                cache.update(zip(new, rows))
        return np.stack([local[w] for w in words])

    def _states(self, m: NumpyTagger, words: list[list[str]]) -> np.ndarray:
        """Token states ``[B, T, H]`` of word sequences (the BiLSTM over cached first-layer projections)."""
        x = self._token_inputs(m, [w for s in words for w in s])  # [N, 8h] first-layer projections
        return m.lstm_states(x, np.array([len(s) for s in words], dtype=np.int64), projected=True)

    def _decode(self, m: NumpyTagger, seqs: list[list[Token]]) -> list[dict]:
        words = [[t.lower for t in s] for s in seqs]
        h = self._states(m, words)  # [B, T, H]
        tags = m.tag_logits(h).argmax(-1).tolist()  # [B][T]
        prefix = _prefix(h)
        out: list[dict] = []
        ment_b, ment_s, ment_e = [], [], []
        att_b, att_s, att_e = [], [], []
        per: list[tuple[list[tuple[int, int]], list[tuple[int, int]]]] = []
        for b, seq in enumerate(seqs):
            objs, atts = decode_spans(tags[b][: len(seq)])
            per.append((objs, atts))
            for s, e in objs:
                ment_b.append(b), ment_s.append(s), ment_e.append(e)
            if objs:
                for s, e in atts:
                    att_b.append(b), att_s.append(s), att_e.append(e)
        if ment_b:
            mb, ms, me = (np.array(x, dtype=np.int64) for x in (ment_b, ment_s, ment_e))
            mvec = m.mention(m.span_states(h, prefix, mb, ms, me))  # [S, D]
        # Attribute links: each attribute against the mentions of its caption.
        first = {}
        for i, b in enumerate(ment_b):
            first.setdefault(b, i)
        links: list[int] = []
        if att_b:
            ab, as_, ae = (np.array(x, dtype=np.int64) for x in (att_b, att_s, att_e))
            q = m.attr_query(m.span_states(h, prefix, ab, as_, ae))  # [A, D]
            counts = [len(per[b][0]) for b in att_b]
            M = max(counts)
            idx = np.array([[first[b] + min(j, c - 1) for j in range(M)] for b, c in zip(att_b, counts)], dtype=np.int64)
            scores = m.attr_scores(q, mvec[idx])  # [A, M]
            valid = np.arange(M)[None, :] < np.array(counts)[:, None]
            links = np.where(valid, scores, -np.inf).argmax(-1).tolist()
        # Relations: all ordered pairs of mentions within each caption.
        pb, p1, p2 = [], [], []
        for b, (objs, _) in enumerate(per):
            base = first.get(b)
            for i in range(len(objs)):
                for j in range(len(objs)):
                    if i != j:
                        pb.append(b), p1.append(base + i), p2.append(base + j)
        rel_pred: list[tuple[int, int, int, int, int, float]] = []
        if pb:
            pbt, p1t, p2t = (np.array(x, dtype=np.int64) for x in (pb, p1, p2))
            logits = m.pair_logits(h, prefix, pbt, ms[p1t], me[p1t], ms[p2t], me[p2t], mvec[p1t], mvec[p2t])
            logits -= logits.max(-1, keepdims=True)
            e = np.exp(logits, out=logits)  # softmax numerators; P(none) = e[:, 0] / sum
            p_none = (e[:, 0] / e.sum(-1)).tolist()
            keep = [p < self.relation_threshold for p in p_none]
            best = e[:, 1:].argmax(-1) + 1
            copy = self.vocab.predicates.index(COPY) if COPY in self.vocab.predicates else -1
            alt = best.tolist()
            if copy >= 0:  # the best real predicate, for copies that find no words
                rows = np.flatnonzero(best == copy)
                if len(rows):
                    masked = e[rows, 1:]
                    masked[:, copy - 1] = -1.0
                    for r, a in zip(rows.tolist(), (masked.argmax(-1) + 1).tolist()):
                        alt[r] = a
            for k, (b, i, j, c) in enumerate(zip(pb, p1, p2, best.tolist())):
                if keep[k]:
                    rel_pred.append((b, i - first[b], j - first[b], c, alt[k], 1.0 - p_none[k]))
        for b in range(len(seqs)):
            out.append({"objects": per[b][0], "attributes": [], "relations": []})
        for k, b in enumerate(att_b):
            out[b]["attributes"].append((att_s[k], att_e[k], links[k]))
        for b, i, j, c, a, p in rel_pred:
            out[b]["relations"].append((i, j, self.vocab.predicates[c], self.vocab.predicates[a], p))
        return out

    def _build(self, text: str, parts: list[tuple[list[Token], dict]]) -> SceneGraph:
        """Turn decoded pieces into one graph: normalise labels, merge same-name mentions, attach spans, then
        keep one relation per pair of objects (:func:`_one_relation_per_pair`) and drop negated parts."""
        v = self.vocab
        objects: list[SceneObject] = []
        by_name: dict[str, int] = {}
        candidates: list[tuple[Relation, float]] = []
        of_pairs: set[tuple[int, int]] = set()
        seen: set[tuple[int, str, int]] = set()
        for tokens, d in parts:
            words = [t.lower for t in tokens]
            linked = {(r[0], r[1]) for r in d["relations"]} | {(r[1], r[0]) for r in d["relations"]}
            node_of: list[int] = []
            local_names: dict[str, list[int]] = {}
            for mi, (s, e) in enumerate(d["objects"]):
                surface = " ".join(words[s:e])
                name = v.name_forms.get(surface) or v.spelling(surface, "name")
                # Same name -> same node, unless a relation links the two mentions.
                target = None
                if name in by_name and not any((mi, other) in linked for other in local_names.get(name, [])):
                    target = by_name[name]
                if target is None:
                    objects.append(SceneObject(name, (), None, (tokens[s].start, tokens[e - 1].end)))
                    target = len(objects) - 1
                    by_name.setdefault(name, target)
                local_names.setdefault(name, []).append(mi)
                node_of.append(target)
            for s, e, link in d["attributes"]:
                surface = " ".join(words[s:e])
                label = v.attribute_forms.get(surface) or v.spelling(surface, "attribute")
                i = node_of[link]
                o = objects[i]
                if label not in o.attributes:
                    objects[i] = SceneObject(o.name, (*o.attributes, label), o.box, o.span)
            spans = d["objects"]
            in_mention = [False] * len(words)
            in_attribute = [False] * len(words)
            for s, e in spans:
                in_mention[s:e] = [True] * (e - s)
            for s, e, _ in d["attributes"]:
                in_attribute[s:e] = [True] * (e - s)
            for m in range(len(spans) - 1):  # "X of Y": consecutive mentions with only "of" between
                between = [words[k] for k in range(spans[m][1], spans[m + 1][0])
                           if not in_attribute[k] and words[k] not in _SKIP_IN_PREDICATE]
                if between == ["of"]:
                    of_pairs.add((node_of[m], node_of[m + 1]))
            for i, j, pred, alt, prob in d["relations"]:
                si, oi = node_of[i], node_of[j]
                lo, hi = min(spans[i][1], spans[j][1]), max(spans[i][0], spans[j][0])
                picked = predicate_words(words, in_mention, in_attribute, lo, hi)
                if pred == COPY:
                    # "reading while standing under": the predicate is the words after the connector
                    cut = max((n + 1 for n, k in enumerate(picked) if words[k] in _CONNECTORS), default=0)
                    if 0 < cut < len(picked):
                        picked = picked[cut:]
                    # "that is not black sitting on": the "not" is the attribute's, not the predicate's
                    picked = [k for k in picked if not (is_negator(words[k]) and k + 1 < len(words)
                                                        and in_attribute[k + 1])]
                    pred = " ".join(v.lemma(words[k]) for k in picked) if picked else alt
                if si == oi or pred in _NOT_PREDICATES or (si, pred, oi) in seen:
                    continue
                seen.add((si, pred, oi))
                span = (tokens[picked[0]].start, tokens[picked[-1]].end) if picked else None
                candidates.append((Relation(si, pred, oi, span), prob))
        relations = _one_relation_per_pair(candidates, of_pairs)
        return drop_negated(SceneGraph(tuple(objects), tuple(relations), text))
