"""Learned text -> scene graph backend: a BiLSTM structured tagger with pairwise heads.

The caption's words (word embedding + hashed character n-grams) run through a 2-layer BiLSTM. Then

1. a tagger marks object mentions and attribute spans (``O``, ``B/I-OBJ``, ``B/I-ATT``);
2. each attribute span points at one object mention (bilinear score, softmax over the mentions);
3. every ordered pair of mentions ``(i, j)`` is classified into ``none`` or one predicate of the
   training vocabulary (FACTUAL's lemmatised, verb+preposition-merged forms), reading both mentions, the
   mean state of the words between them and their signed distance. Passives, ``of`` and ``with`` need no
   rules: the pair order and the predicate class carry them.

Surface forms are normalised by tables learned from the training alignments (``two`` -> ``2``,
``wood`` -> ``wooden``, ``side walk`` -> ``sidewalk``). Mentions with the same name become one node
unless a relation links them. Shapes-world captions go through the rule-based parser, which maps them
to the canonical graph exactly. Trained by ``python -m scenegraph_diff.parsing.train``.

Shapes: ``B`` captions, ``T`` tokens, ``M`` mentions per caption, ``H`` = 2 x LSTM hidden size.
"""

from __future__ import annotations

import json
import logging
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import Tensor, nn

from ..graph.scene_graph import Relation, SceneGraph, SceneObject
from .align import TAGS
from .lexicon import AUX, DETERMINERS, VERB_FORMS, lemmatize_verb
from .rules import RuleBasedParser, is_shapes_text
from .tokenize import Token, split_sentences, tokenize

__all__ = ["LearnedParser", "TaggerConfig", "SceneGraphTagger", "Vocab", "DEFAULT_WEIGHTS", "COPY", "predicate_words"]

log = logging.getLogger(__name__)

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

    def __post_init__(self) -> None:
        self.word_index = {w: i for i, w in enumerate(self.words)}
        self._lemma_set = frozenset(self.verb_lemmas.values())

    def to_dict(self) -> dict[str, Any]:
        return {"words": self.words, "predicates": self.predicates, "name_forms": self.name_forms,
                "attribute_forms": self.attribute_forms, "verb_lemmas": self.verb_lemmas}

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


def _bucket(d: Tensor, n: int) -> Tensor:
    """Signed distance -> bucket id in ``[0, 2n]`` (``|d| > n`` clipped)."""
    return d.clamp(-n, n) + n


class SceneGraphTagger(nn.Module):
    """BiLSTM encoder + tag, attribute-link and relation heads (see the module docstring).

    Args:
        config: sizes (:class:`TaggerConfig`).
    """

    def __init__(self, config: TaggerConfig) -> None:
        super().__init__()
        self.config = c = config
        self.word = nn.Embedding(c.num_words, c.word_dim, padding_idx=0)
        self.chars = nn.EmbeddingBag(c.char_buckets, c.char_dim, mode="mean")
        self.drop = nn.Dropout(c.dropout)
        self.lstm = nn.LSTM(c.word_dim + c.char_dim, c.hidden, num_layers=c.layers, bidirectional=True,
                            batch_first=True, dropout=c.dropout if c.layers > 1 else 0.0)
        h = 2 * c.hidden
        self.tagger = nn.Linear(h, len(TAGS))
        self.mention = nn.Sequential(nn.Linear(2 * h, c.mention_dim), nn.ReLU())
        self.attr_query = nn.Sequential(nn.Linear(2 * h, c.mention_dim), nn.ReLU())
        self.attr_bilinear = nn.Linear(c.mention_dim, c.mention_dim, bias=False)
        self.dist = nn.Embedding(2 * c.dist_buckets + 1, 16)
        self.pair = nn.Sequential(
            nn.Linear(2 * c.mention_dim + h + 16, c.pair_hidden), nn.ReLU(), nn.Dropout(c.dropout),
            nn.Linear(c.pair_hidden, c.num_predicates + 1),
        )

    def __repr__(self) -> str:
        c = self.config
        n = sum(p.numel() for p in self.parameters())
        return f"SceneGraphTagger(words={c.num_words}, predicates={c.num_predicates}, hidden={c.hidden}, params={n})"

    def encode(self, word_ids: Tensor, char_ids: Tensor, char_offsets: Tensor, lengths: Tensor) -> Tensor:
        """Token states.

        Args:
            word_ids: ``[B, T]`` (0 = padding).
            char_ids, char_offsets: flat n-gram ids and per-token offsets for the ``sum(lengths)`` real
                tokens, in row-major order (an ``EmbeddingBag`` input).
            lengths: ``[B]`` tokens per caption (>= 1).

        Returns:
            ``[B, T, H]`` states (zeros at padding).
        """
        B, T = word_ids.shape
        mask = word_ids > 0  # [B, T]
        chars = self.chars(char_ids, char_offsets)  # [N, char_dim]
        x_char = word_ids.new_zeros((B, T, chars.shape[-1]), dtype=chars.dtype)
        x_char[mask] = chars
        x = self.drop(torch.cat([self.word(word_ids), x_char], dim=-1))  # [B, T, E]
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.lstm(packed)
        h, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=T)  # [B, T, H]
        return self.drop(h)

    @staticmethod
    def span_states(h: Tensor, prefix: Tensor, batch: Tensor, start: Tensor, end: Tensor) -> Tensor:
        """``[h_last ; mean(h[start:end])]`` for spans ``(batch, start, end)``; ``prefix`` = cumsum of ``h``
        with a leading zero row ``[B, T+1, H]``. Returns ``[S, 2H]``."""
        mean = (prefix[batch, end] - prefix[batch, start]) / (end - start).clamp(min=1).unsqueeze(-1)
        return torch.cat([h[batch, (end - 1).clamp(min=0)], mean], dim=-1)

    def pair_logits(self, h: Tensor, prefix: Tensor, batch: Tensor, s1: Tensor, e1: Tensor, s2: Tensor,
                    e2: Tensor, m1: Tensor, m2: Tensor) -> Tensor:
        """Relation logits ``[P, num_predicates + 1]`` for ordered mention pairs (``m1``/``m2``: ``[P, D]``
        mention vectors, spans ``(s, e)`` in caption ``batch``)."""
        lo = torch.minimum(e1, e2)
        hi = torch.maximum(torch.maximum(s1, s2), lo)
        between = (prefix[batch, hi] - prefix[batch, lo]) / (hi - lo).clamp(min=1).unsqueeze(-1)
        dist = self.dist(_bucket(s2 - s1, self.config.dist_buckets))
        return self.pair(torch.cat([m1, m2, between, dist], dim=-1))

    def attr_scores(self, q: Tensor, m: Tensor) -> Tensor:
        """Bilinear scores ``[A, M]`` of attribute queries ``[A, D]`` against mentions ``[A, M, D]``."""
        return torch.einsum("ad,amd->am", self.attr_bilinear(q), m)


def _prefix(h: Tensor) -> Tensor:
    return torch.cat([h.new_zeros(h.shape[0], 1, h.shape[2]), h.cumsum(dim=1)], dim=1)  # [B, T+1, H]


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

    def batch(self, seqs: Sequence[Sequence[str]]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(word_ids [B, T], char_ids [N*], char_offsets [N], lengths [B])``; every sequence non-empty."""
        T = max(len(s) for s in seqs)
        word_ids = torch.zeros(len(seqs), T, dtype=torch.long)
        chars: list[int] = []
        offsets: list[int] = []
        for b, seq in enumerate(seqs):
            ids = []
            for w in seq:
                wid, grams = self.word(w)
                ids.append(wid)
                offsets.append(len(chars))
                chars.extend(grams)
            word_ids[b, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)
        return word_ids, torch.tensor(chars, dtype=torch.long), torch.tensor(offsets, dtype=torch.long), lengths


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


class LearnedParser:
    """The learned backend (see the module docstring).

    Args:
        model: a trained :class:`SceneGraphTagger` (put in eval mode here).
        vocab: its :class:`Vocab`.
        relation_threshold: a pair is related when ``P(none) < relation_threshold``.
        num_threads: torch intra-op threads while parsing (set for the call and restored afterwards, like
            :class:`~scenegraph_diff.training.Trainer`); ``None`` leaves the process setting alone. Default 1:
            on the shared 2-core box two threads were ~30x slower for these small batched LSTM steps.

    Example:
        >>> parser = LearnedParser.from_pretrained()            # doctest: +SKIP
        >>> parser.parse("a man sitting on a bench").triplets()  # doctest: +SKIP
        [('man', 'sit on', 'bench')]
    """

    name = "learned"

    def __init__(self, model: SceneGraphTagger, vocab: Vocab, relation_threshold: float = 0.5,
                 num_threads: int | None = 1) -> None:
        if num_threads is not None and num_threads < 1:
            raise ValueError(f"num_threads must be >= 1 or None, got {num_threads}")
        self.model = model.eval()
        self.vocab = vocab
        self.relation_threshold = relation_threshold
        self.num_threads = num_threads
        self.featurizer = Featurizer(vocab, model.config.char_buckets)
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
        from safetensors.torch import load_file

        folder = Path(folder) if folder is not None else DEFAULT_WEIGHTS
        for f in ("config.json", "vocab.json", "model.safetensors"):
            if not (folder / f).is_file():
                raise FileNotFoundError(f"learned parser: {folder / f} not found (train it with "
                                        f"`python -m scenegraph_diff.parsing.train`)")
        cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        threshold = float(cfg.pop("relation_threshold", 0.5))
        cfg.pop("metrics", None)
        config = TaggerConfig(**{k: v for k, v in cfg.items() if k in TaggerConfig.__dataclass_fields__})
        vocab = Vocab(**json.loads((folder / "vocab.json").read_text(encoding="utf-8")))
        model = SceneGraphTagger(config)
        state = {k: v.float() for k, v in load_file(str(folder / "model.safetensors")).items()}
        model.load_state_dict(state)
        return cls(model, vocab, threshold, num_threads)

    def save_pretrained(self, folder: str | Path, extra: dict[str, Any] | None = None, half: bool = True) -> None:
        """Write the three files (weights in float16 when ``half``; they load back as float32)."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        state = {k: (v.half() if half and v.is_floating_point() else v).contiguous()
                 for k, v in self.model.state_dict().items()}
        save_file(state, str(folder / "model.safetensors"))
        cfg = {**asdict(self.model.config), "relation_threshold": self.relation_threshold, **(extra or {})}
        (folder / "config.json").write_text(json.dumps(cfg, indent=1) + "\n", encoding="utf-8")
        (folder / "vocab.json").write_text(json.dumps(self.vocab.to_dict(), ensure_ascii=False) + "\n",
                                           encoding="utf-8")

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
        prev_threads = torch.get_num_threads()
        if self.num_threads is not None and order:
            torch.set_num_threads(self.num_threads)
        try:
            with torch.inference_mode():
                for i in range(0, len(order), batch_size):
                    idx = order[i : i + batch_size]
                    decoded = self._decode([pieces[j][1] for j in idx])
                    for j, d in zip(idx, decoded):
                        results[pieces[j][0]].append((j, pieces[j][1], d))
        finally:
            if torch.get_num_threads() != prev_threads:
                torch.set_num_threads(prev_threads)
        out = []
        for k, text in enumerate(texts):
            parts = [(toks, d) for _, toks, d in sorted(results[k], key=lambda x: x[0])]  # text order
            out.append(shapes[k] if k in shapes else self._build(text, parts))
        return out

    def _decode(self, seqs: list[list[Token]]) -> list[dict]:
        m = self.model
        words = [[t.lower for t in s] for s in seqs]
        word_ids, char_ids, offsets, lengths = self.featurizer.batch(words)
        h = m.encode(word_ids, char_ids, offsets, lengths)  # [B, T, H]
        tags = m.tagger(h).argmax(-1).tolist()  # [B][T]
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
            mb, ms, me = (torch.tensor(x) for x in (ment_b, ment_s, ment_e))
            mvec = m.mention(m.span_states(h, prefix, mb, ms, me))  # [S, D]
        # Attribute links: each attribute against the mentions of its caption.
        first = {}
        for i, b in enumerate(ment_b):
            first.setdefault(b, i)
        links: list[int] = []
        if att_b:
            ab, as_, ae = (torch.tensor(x) for x in (att_b, att_s, att_e))
            q = m.attr_query(m.span_states(h, prefix, ab, as_, ae))  # [A, D]
            counts = [len(per[b][0]) for b in att_b]
            M = max(counts)
            idx = torch.tensor([[first[b] + min(j, c - 1) for j in range(M)] for b, c in zip(att_b, counts)])
            scores = m.attr_scores(q, mvec[idx])  # [A, M]
            valid = torch.arange(M).unsqueeze(0) < torch.tensor(counts).unsqueeze(1)
            links = scores.masked_fill(~valid, float("-inf")).argmax(-1).tolist()
        # Relations: all ordered pairs of mentions within each caption.
        pb, p1, p2 = [], [], []
        for b, (objs, _) in enumerate(per):
            base = first.get(b)
            for i in range(len(objs)):
                for j in range(len(objs)):
                    if i != j:
                        pb.append(b), p1.append(base + i), p2.append(base + j)
        rel_pred: list[tuple[int, int, int, int]] = []
        if pb:
            pbt, p1t, p2t = torch.tensor(pb), torch.tensor(p1), torch.tensor(p2)
            logits = m.pair_logits(h, prefix, pbt, ms[p1t], me[p1t], ms[p2t], me[p2t], mvec[p1t], mvec[p2t])
            prob = logits.softmax(-1)
            best = prob[:, 1:].argmax(-1) + 1
            keep = (prob[:, 0] < self.relation_threshold).tolist()
            copy = self.vocab.predicates.index(COPY) if COPY in self.vocab.predicates else -1
            alt = best.tolist()
            if copy >= 0:
                alt = prob[:, 1:].masked_fill(torch.arange(1, prob.shape[1]) == copy, -1.0).argmax(-1).add(1).tolist()
            for k, (b, i, j, c) in enumerate(zip(pb, p1, p2, best.tolist())):
                if keep[k]:
                    rel_pred.append((b, i - first[b], j - first[b], c, alt[k]))
        for b in range(len(seqs)):
            out.append({"objects": per[b][0], "attributes": [], "relations": []})
        for k, b in enumerate(att_b):
            out[b]["attributes"].append((att_s[k], att_e[k], links[k]))
        for b, i, j, c, a in rel_pred:
            out[b]["relations"].append((i, j, self.vocab.predicates[c], self.vocab.predicates[a]))
        return out

    def _build(self, text: str, parts: list[tuple[list[Token], dict]]) -> SceneGraph:
        """Turn decoded pieces into one graph: normalise labels, merge same-name mentions, attach spans."""
        v = self.vocab
        objects: list[SceneObject] = []
        by_name: dict[str, int] = {}
        relations: list[Relation] = []
        seen: set[tuple[int, str, int]] = set()
        for tokens, d in parts:
            words = [t.lower for t in tokens]
            linked = {(r[0], r[1]) for r in d["relations"]} | {(r[1], r[0]) for r in d["relations"]}
            node_of: list[int] = []
            local_names: dict[str, list[int]] = {}
            for mi, (s, e) in enumerate(d["objects"]):
                surface = " ".join(words[s:e])
                name = v.name_forms.get(surface, surface)
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
                label = v.attribute_forms.get(surface, surface)
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
            for i, j, pred, alt in d["relations"]:
                si, oi = node_of[i], node_of[j]
                lo, hi = min(spans[i][1], spans[j][1]), max(spans[i][0], spans[j][0])
                picked = predicate_words(words, in_mention, in_attribute, lo, hi)
                if pred == COPY:
                    pred = " ".join(v.lemma(words[k]) for k in picked) if picked else alt
                if si == oi or (si, pred, oi) in seen:
                    continue
                seen.add((si, pred, oi))
                span = (tokens[picked[0]].start, tokens[picked[-1]].end) if picked else None
                relations.append(Relation(si, pred, oi, span))
        return SceneGraph(tuple(objects), tuple(relations), text)
