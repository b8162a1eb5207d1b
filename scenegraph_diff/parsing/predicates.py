"""Predicates onto a fixed vocabulary: the parser's free text ("on the right side of") as the labels a
dataset or a model knows ("right of").

The parsers write FACTUAL's open predicates (lemmatised, verb + preposition merged). A relation model
trained on VRD knows 70 predicates, one trained on Visual Genome's usual split 50, the shapes world 4.
:func:`canonicalize_predicates` maps each predicate of a graph to one entry of a
:class:`PredicateVocabulary`, by these rules, first hit wins:

1. ``exact`` — the same *normal form*: lower case, articles dropped, verbs lemmatised
   (``"sitting on"``, ``"sit on"`` and ``"sits on"`` are one form; ``"on the top of"`` is ``"on top of"``);
2. ``synonym`` — a hand-written table of equivalent phrasings, each with an ordered list of stand-ins
   (``"to the right of"`` / ``"on the right side of"`` / ``"right of"`` ...; ``"beneath"`` -> ``"beneath"``,
   ``"under"``, ``"below"``; ``"next to"`` -> ``"next to"``, ``"beside"``, ``"near"``, ``"by"``);
3. ``preposition`` — for a verb + preposition (``"lean against"``), the preposition alone matched exactly;
4. ``overlap`` — the entry sharing the largest fraction of words (Jaccard over the normal forms' words, ``of``
   not counted), at least ``min_overlap`` and not only prepositions in common; ties go to the entry sharing
   the last word, then to the first listed;
5. ``preposition`` again, through the synonym table (``"stand next to"`` -> ``"near"``);
6. ``none`` — no entry: the fallback of ``unknown`` — ``"keep"`` the predicate as it is, or ``"drop"`` the
   relation (logged at INFO with the reason; :func:`match_predicate` gives it too).

Deterministic, offline, and cached per vocabulary (a dictionary lookup per predicate once seen).
Vocabularies: :data:`VRD_PREDICATES`, :data:`VG50_PREDICATES`, :data:`SHAPES_PREDICATES`, or any list
(:meth:`PredicateVocabulary.from_entries`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from ..graph.scene_graph import Relation, SceneGraph, canonical_label
from .lexicon import PREPOSITION_WORDS, PREPOSITIONS, lemmatize_verb

__all__ = [
    "PredicateVocabulary", "PredicateMatch", "VRD_PREDICATES", "VG50_PREDICATES", "SHAPES_PREDICATES",
    "VOCABULARIES", "canonicalize_predicates", "match_predicate", "normalize_predicate",
]

log = logging.getLogger(__name__)

_ARTICLES = frozenset({"the", "a", "an"})
_NOT_COUNTED = frozenset({"of"})
_PREPOSITION_PHRASES = frozenset(" ".join(w for w in p if w not in _ARTICLES) for p in PREPOSITIONS)
_NOT_VERBS = PREPOSITION_WORDS | {
    "left", "right", "top", "bottom", "front", "back", "side", "middle", "next", "close", "near", "far", "than",
    "taller", "shorter", "bigger", "smaller", "larger", "higher", "lower", "part", "and",
}
#: Words an overlap may not rest on alone ("to the right of" shares only "to" with "to").
_FUNCTION_WORDS = frozenset(p[0] for p in PREPOSITIONS if len(p) == 1) | {"to", "of", "and"}
_LEMMAS = {"using": "use", "lying": "lie", "laying": "lay", "dying": "die", "tying": "tie"}


def normalize_predicate(predicate: str) -> str:
    """The normal form rule 1 compares: ``"Sitting on the top of"`` -> ``"sit on top of"``."""
    words = [w for w in canonical_label(predicate).split() if w not in _ARTICLES]
    return " ".join(w if w in _NOT_VERBS else _LEMMAS.get(w) or lemmatize_verb(w) for w in words)


def _sides(side: str) -> list[str]:
    return [f"{side} of", f"on {side} of", f"to {side} of", f"at {side} of", f"on {side} side of", f"to {side} side of",
            f"at {side} side of", f"on {side} hand side of", f"{side} side of"]


_SYNONYM_GROUPS: list[tuple[list[str], list[str]]] = [
    # (phrasings in normal form, stand-ins in order of preference)
    (_sides("left"), _sides("left")),
    (_sides("right"), _sides("right")),
    (["above"], ["above", "over", "on top of", "atop"]),
    (["over"], ["over", "above"]),
    (["on top of", "atop", "on top"], ["on top of", "atop", "on", "above", "over"]),
    (["higher than"], ["above", "over"]),
    (["below"], ["below", "under", "beneath", "underneath"]),
    (["under"], ["under", "below", "beneath", "underneath"]),
    (["beneath"], ["beneath", "under", "below", "underneath"]),
    (["underneath"], ["underneath", "beneath", "under", "below"]),
    (["lower than"], ["below", "under"]),
    (["next to"], ["next to", "beside", "near", "by", "adjacent to", "close to", "alongside"]),
    (["beside", "besides"], ["beside", "next to", "near", "by", "adjacent to"]),
    (["near", "near to", "close to", "nearby"], ["near", "next to", "beside", "by", "close to"]),
    (["by"], ["by", "near", "next to", "beside"]),
    (["adjacent to"], ["adjacent to", "next to", "beside", "near"]),
    (["alongside"], ["alongside", "beside", "next to", "along", "near"]),
    (["in front of"], ["in front of"]),
    (["behind", "in back of"], ["behind", "in back of"]),
    (["in", "within"], ["in", "inside", "within"]),
    (["inside", "inside of"], ["inside", "in", "within"]),
    (["into"], ["in", "inside", "into"]),
    (["on", "upon", "onto"], ["on", "upon", "onto"]),
    (["outside", "outside of"], ["outside of", "outside"]),
    (["have", "with", "contain"], ["have", "with", "contain"]),
    (["hold", "carry"], ["hold", "carry"]),
    (["lay on", "lie on"], ["lay on", "lie on", "on"]),
    (["lay in", "lie in"], ["lay in", "lie in", "in"]),
    (["look at", "watch", "look"], ["look at", "watch", "look"]),
    (["part of", "belong to"], ["part of", "belong to", "of"]),
    (["ride", "ride on"], ["ride", "ride on", "on"]),
]
_SYNONYMS: dict[str, list[str]] = {}
for _phrasings, _targets in _SYNONYM_GROUPS:
    for _p in _phrasings:
        # a phrasing first tries itself, then the group's stand-ins
        _SYNONYMS[_p] = list(dict.fromkeys([_p, *_targets]))


@dataclass(frozen=True)
class PredicateMatch:
    """Where :func:`match_predicate` put one predicate.

    Attributes:
        predicate: the input.
        entry: the vocabulary entry, or ``None``.
        rule: ``"exact"``, ``"synonym"``, ``"preposition"``, ``"overlap"`` or ``"none"``.
        score: 1.0 for the rule-based matches, the word overlap for ``"overlap"`` and ``"none"``.
        reason: why there is no entry (``""`` when there is one).
    """

    predicate: str
    entry: str | None
    rule: str
    score: float
    reason: str = ""


@dataclass(frozen=True)
class PredicateVocabulary:
    """A list of predicate labels to map onto.

    Args:
        name: a short name, used in messages (``"vrd"``).
        entries: the labels, lower case with single spaces (as :func:`~scenegraph_diff.graph.canonical_label`
            writes them), no duplicates. :meth:`from_entries` canonicalises a user's list.
        source: where the list comes from.

    Raises:
        ValueError: no entries, an empty, non-canonical or repeated entry (named).
    """

    name: str
    entries: tuple[str, ...]
    source: str = ""
    _index: dict = field(default_factory=dict, init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        entries = tuple(self.entries)
        object.__setattr__(self, "entries", entries)
        if not entries:
            raise ValueError(f"PredicateVocabulary {self.name!r}: no entries")
        seen: set[str] = set()
        for i, e in enumerate(entries):
            if not isinstance(e, str):
                raise TypeError(f"PredicateVocabulary {self.name!r}: entries must be strings, got "
                                f"{type(e).__name__} {e!r} at entries[{i}]")
            if not e.strip():
                raise ValueError(f"PredicateVocabulary {self.name!r}: entries[{i}] is empty")
            if canonical_label(e) != e:
                raise ValueError(f"PredicateVocabulary {self.name!r}: entries[{i}] {e!r} is not in canonical form "
                                 f"(use PredicateVocabulary.from_entries)")
            if e in seen:
                raise ValueError(f"PredicateVocabulary {self.name!r}: entries[{i}] {e!r} is repeated")
            seen.add(e)
        normal: dict[str, str] = {}
        words: list[tuple[str, frozenset[str], str]] = []
        for e in entries:
            n = normalize_predicate(e)
            normal.setdefault(n, e)
            counted = frozenset(n.split()) - _NOT_COUNTED
            if counted:
                words.append((e, counted, n.split()[-1]))
        self._index.update(normal=normal, words=words, cache={})

    @classmethod
    def from_entries(cls, entries: Iterable[str], name: str = "user",
                     source: str = "user-supplied") -> "PredicateVocabulary":
        """A vocabulary from any list of labels, put in canonical form (``"Holding"`` -> ``"holding"``);
        repeats after that are dropped.

        Raises:
            TypeError: an entry is not a string.
            ValueError: the list is empty or an entry is blank (named by index).
        """
        out: list[str] = []
        for i, e in enumerate(entries):
            if not isinstance(e, str):
                raise TypeError(f"entries must be strings, got {type(e).__name__} {e!r}")
            if not e.strip():
                raise ValueError(f"PredicateVocabulary {name!r}: entries[{i}] is empty")
            out.append(canonical_label(e))
        return cls(name, tuple(dict.fromkeys(out)), source)

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, predicate: object) -> bool:
        return predicate in self.entries

    def __repr__(self) -> str:
        return f"PredicateVocabulary({self.name!r}, {len(self.entries)} entries)"


#: VRD's 70 predicates (Lu et al., ECCV 2016, "Visual Relationship Detection with Language Priors"), in the
#: order of the dataset's ``predicates.json`` (copy in ``shared/datasets/vrd/``).
VRD_PREDICATES = PredicateVocabulary("vrd", (
    "on", "wear", "has", "next to", "sleep next to", "sit next to", "stand next to", "park next", "walk next to",
    "above", "behind", "stand behind", "sit behind", "park behind", "in the front of", "under", "stand under",
    "sit under", "near", "walk to", "walk", "walk past", "in", "below", "beside", "walk beside", "over", "hold",
    "by", "beneath", "with", "on the top of", "on the left of", "on the right of", "sit on", "ride", "carry",
    "look", "stand on", "use", "at", "attach to", "cover", "touch", "watch", "against", "inside", "adjacent to",
    "across", "contain", "drive", "drive on", "taller than", "eat", "park on", "lying on", "pull", "talk", "lean on",
    "fly", "face", "play with", "sleep on", "outside of", "rest on", "follow", "hit", "feed", "kick", "skate on",
), "VRD predicates.json (Lu et al. 2016), 70 classes")

#: Visual Genome's 50 most frequent predicates as used by the common VG scene-graph split of Xu et al.
#: (CVPR 2017, "Scene Graph Generation by Iterative Message Passing"), in its alphabetical order.
VG50_PREDICATES = PredicateVocabulary("vg50", (
    "above", "across", "against", "along", "and", "at", "attached to", "behind", "belonging to", "between",
    "carrying", "covered in", "covering", "eating", "flying in", "for", "from", "growing on", "hanging from", "has",
    "holding", "in", "in front of", "laying on", "looking at", "lying on", "made of", "mounted on", "near", "of",
    "on", "on back of", "over", "painted on", "parked on", "part of", "playing", "riding", "says", "sitting on",
    "standing on", "to", "under", "using", "walking in", "walking on", "watching", "wearing", "wears", "with",
), "Visual Genome, the 50 predicates of the split of Xu et al. 2017")

#: The shapes world's relations (SHAPES.md).
SHAPES_PREDICATES = PredicateVocabulary("shapes", ("left of", "right of", "above", "below"),
                                        "the shapes world (SHAPES.md)")

#: The bundled vocabularies by name.
VOCABULARIES = {v.name: v for v in (VRD_PREDICATES, VG50_PREDICATES, SHAPES_PREDICATES)}


def _vocabulary(vocabulary: PredicateVocabulary | Sequence[str]) -> PredicateVocabulary:
    if isinstance(vocabulary, PredicateVocabulary):
        return vocabulary
    if isinstance(vocabulary, (str, bytes)) or not isinstance(vocabulary, (list, tuple)):
        raise TypeError(f"vocabulary must be a PredicateVocabulary or a list of strings, got "
                        f"{type(vocabulary).__name__}")
    return PredicateVocabulary.from_entries(vocabulary)


def _split_preposition(normal: str) -> str | None:
    """The trailing preposition of a verb + preposition normal form (``"lean against"`` -> ``"against"``)."""
    words = normal.split()
    if not words or words[0] in _NOT_VERBS:  # "left of", "on top of": no verb to split off
        return None
    for k in range(1, len(words)):
        tail = " ".join(words[k:])
        if tail in _PREPOSITION_PHRASES or tail in _SYNONYMS:
            return tail
    return None


def _first_present(targets: Sequence[str], normal_index: dict[str, str]) -> str | None:
    for t in targets:
        if t in normal_index:
            return normal_index[t]
    return None


def match_predicate(predicate: str, vocabulary: PredicateVocabulary | Sequence[str],
                    min_overlap: float = 0.5) -> PredicateMatch:
    """Map one predicate onto ``vocabulary`` (rules in the module docstring).

    Raises:
        TypeError: ``vocabulary`` is neither a :class:`PredicateVocabulary` nor a list of strings.
        ValueError: ``min_overlap`` not in ``(0, 1]``.
    """
    if not 0 < min_overlap <= 1:
        raise ValueError(f"min_overlap must be in (0, 1], got {min_overlap}")
    vocab = _vocabulary(vocabulary)
    cache = vocab._index["cache"]
    key = (predicate, min_overlap)
    hit = cache.get(key)
    if hit is None:
        hit = _match(predicate, vocab, min_overlap)
        if len(cache) < 65_536:
            cache[key] = hit
    return hit


def _match(predicate: str, vocab: PredicateVocabulary, min_overlap: float) -> PredicateMatch:
    normal_index: dict[str, str] = vocab._index["normal"]
    n = normalize_predicate(predicate)
    if n in normal_index:
        return PredicateMatch(predicate, normal_index[n], "exact", 1.0)
    entry = _first_present(_SYNONYMS.get(n, ()), normal_index)
    if entry is not None:
        return PredicateMatch(predicate, entry, "synonym", 1.0)
    prep = _split_preposition(n)
    if prep is not None and prep in normal_index:
        return PredicateMatch(predicate, normal_index[prep], "preposition", 1.0)
    words = frozenset(n.split()) - _NOT_COUNTED
    last = n.split()[-1] if n else ""
    best, best_key = None, (0.0, False)
    for e, ew, elast in vocab._index["words"]:
        if not words:
            break
        shared = words & ew
        if not shared - _FUNCTION_WORDS:
            continue
        score = len(shared) / len(words | ew)
        k = (score, elast == last)
        if k > best_key:
            best, best_key = e, k
    if best is not None and best_key[0] >= min_overlap:
        return PredicateMatch(predicate, best, "overlap", best_key[0])
    if prep is not None:
        entry = _first_present(_SYNONYMS.get(prep, ()), normal_index)
        if entry is not None:
            return PredicateMatch(predicate, entry, "preposition", 1.0)
    return PredicateMatch(predicate, None, "none", best_key[0],
                          f"no entry of {vocab.name!r} matches {predicate!r} (best token overlap "
                          f"{best_key[0]:.2f} < {min_overlap})")


def canonicalize_predicates(graph: SceneGraph, vocabulary: PredicateVocabulary | Sequence[str],
                            unknown: str = "keep", min_overlap: float = 0.5) -> SceneGraph:
    """Map every predicate of ``graph`` onto ``vocabulary`` (see the module docstring).

    Args:
        graph: any scene graph; it is not changed.
        vocabulary: a :class:`PredicateVocabulary` (e.g. :data:`SHAPES_PREDICATES`) or a list of labels.
        unknown: a predicate with no entry: ``"keep"`` it unchanged, or ``"drop"`` the relation (objects stay;
            each drop is logged at INFO with its reason).
        min_overlap: the least word overlap rule 4 accepts.

    Returns:
        A graph with the same objects and text; relations that become identical are merged (first kept).

    Raises:
        TypeError: ``graph`` is not a :class:`SceneGraph`, or a bad ``vocabulary`` type.
        ValueError: ``unknown`` is not ``"keep"`` or ``"drop"``, or a bad ``min_overlap``.
    """
    if not isinstance(graph, SceneGraph):
        raise TypeError(f"graph must be a SceneGraph, got {type(graph).__name__}")
    if unknown not in ("keep", "drop"):
        raise ValueError(f"unknown must be 'keep' or 'drop', got {unknown!r}")
    vocab = _vocabulary(vocabulary)
    relations: list[Relation] = []
    seen: set[tuple[int, str, int]] = set()
    for k, r in enumerate(graph.relations):
        m = match_predicate(r.predicate, vocab, min_overlap)
        predicate = m.entry
        if predicate is None:
            if unknown == "drop":
                log.info("dropped relation relations[%d] %r: %s", k, r.predicate, m.reason)
                continue
            predicate = r.predicate
        if (r.subject, predicate, r.object) in seen:
            continue
        seen.add((r.subject, predicate, r.object))
        relations.append(Relation(r.subject, predicate, r.object, r.span))
    return SceneGraph(graph.objects, tuple(relations), graph.text)
