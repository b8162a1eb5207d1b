"""Negation: what a text says is *not* there is dropped from its scene graph.

FACTUAL's annotators leave negated things out ("the sky has no clouds" -> ``( sky )``; "no cars on this
stretch of road" -> ``( road )``), and a scene graph has no way to say "not". For an image model,
dropping is also the safe reading: a graph with ``cat on mat`` for "there is no cat on the mat" asks for
exactly the wrong picture, while a graph without the cat cannot. So, on the words around each span:

- a **negated object** ("no cat", "without a hat", "there isn't a cat", "not a cat") is removed with its
  attributes and every relation it takes part in;
- a **negated relation** ("is not on", "isn't on", "never sits on", "not wearing", "doesn't have") is
  removed, and so is the participant that comes *after* it in the text (the sofa of "the dog is not on
  the sofa") unless another relation keeps it;
- a **negated attribute** ("a cat that is not black") is removed when every mention of its word in the
  text is negated.

"no" inside a sign's name is not negation ("a no parking sign": objects named ``sign``, ``sticker``,
``label``, ... are never negated by "no"). Known limits: negation reaches one noun phrase ("no cats or
dogs" drops the cats only), is read on surface words only (no scope over clauses: "not only ... but also"
drops the first part), and pronouns are not resolved.

Both backends call :func:`drop_negated` on every graph they build; it needs the graph's ``text`` and
spans, and returns the graph unchanged (the same object) when the text has no negation word.
"""

from __future__ import annotations

import re
from typing import Sequence

from ..graph.scene_graph import Relation, SceneGraph, SceneObject
from .lexicon import ADJECTIVES, AUX, DETERMINERS, NUMBERS, PREPOSITION_WORDS, VERB_FORMS, lemmatize_verb
from .tokenize import Token, tokenize

__all__ = ["NEGATORS", "drop_negated", "is_negator"]

#: Words that negate what follows them (and any word ending in ``n't``).
NEGATORS = frozenset({"no", "not", "never", "without", "nor", "cannot", "neither", "none"})
_CUE = re.compile(r"\b(?:no|not|never|without|nor|cannot|neither|none)\b|n['’]t\b", re.IGNORECASE)
#: Names a "no ..." phrase describes rather than negates ("a no parking sign").
SIGN_NAMES = frozenset({"sign", "signs", "sticker", "stickers", "label", "labels", "placard", "banner", "notice",
                        "symbol", "poster", "signage", "board"})
# Words between a negator and what it negates: "not a", "no red", "is not on", "does not have", "not very".
_BEFORE_NOUN = (DETERMINERS - {"no"}) | {"single", "any", "one"}
_BEFORE_PREDICATE = AUX | {"do", "does", "did", "will", "would", "can", "could", "should", "may", "might", "must",
                           "has", "have", "had", "really", "actually", "even", "yet", "ever", "currently", "also",
                           "still", "just", "be", "been", "being", "that", "who", "which"}
_BEFORE_ATTRIBUTE = _BEFORE_PREDICATE | {"very", "so", "too", "fully", "quite", "completely", "entirely", "at", "all"}


def is_negator(word: str) -> bool:
    """True for a negation word (lower-cased): one of :data:`NEGATORS` or a contraction ending in ``n't``."""
    return word in NEGATORS or word.endswith(("n't", "n’t"))


def _walk_back(words: Sequence[str], i: int, skip: frozenset[str] | set[str]) -> int:
    """Index of the first word before ``i`` that is not in ``skip`` (-1 if none)."""
    i -= 1
    while i >= 0 and words[i] in skip:
        i -= 1
    return i


def drop_negated(graph: SceneGraph, tokens: Sequence[Token] | None = None) -> SceneGraph:
    """Remove the negated objects, relations and attributes of a parsed graph (see the module docstring).

    Args:
        graph: a parser's output: ``text`` set, objects and relations with ``span`` s into it (objects or
            relations without a span are judged only where they can be).
        tokens: ``tokenize(graph.text)`` if the caller has it (saves tokenizing again).

    Returns:
        A new graph without the negated parts (objects renumbered, order kept), or ``graph`` itself when its
        text has no negation word or nothing in it is negated.
    """
    text = graph.text
    if not text or not _CUE.search(text):
        return graph
    toks = list(tokens) if tokens is not None else tokenize(text)
    words = [t.lower for t in toks]
    first = {t.start: k for k, t in enumerate(toks)}
    last = {t.end: k for k, t in enumerate(toks)}

    def token_range(span: tuple[int, int] | None) -> tuple[int, int] | None:
        if span is None or span[0] not in first or span[1] not in last:
            return None
        return first[span[0]], last[span[1]]

    obj_range = [token_range(o.span) for o in graph.objects]
    # 1. negated objects: a negator right before the noun phrase (over determiners, counts, adjectives).
    dropped: set[int] = set()
    for i, (o, rng) in enumerate(zip(graph.objects, obj_range)):
        if rng is None:
            continue
        skip = _BEFORE_NOUN | ADJECTIVES | set(NUMBERS) | {w for a in o.attributes for w in a.split()}
        k = _walk_back(words, rng[0], skip)
        while k >= 0 and (words[k].isdigit() or words[k] == ","):
            k = _walk_back(words, k, skip)
        if k >= 0 and is_negator(words[k]):
            if words[k] == "no" and o.name.split()[-1] in SIGN_NAMES:
                continue
            dropped.add(i)
    # 2. negated relations: a negator in the predicate's words or right before them.
    keep: list[Relation] = []
    negated: list[Relation] = []
    for r in graph.relations:
        if r.subject in dropped or r.object in dropped:
            continue
        (negated if _relation_negated(r, words, token_range(r.span), obj_range) else keep).append(r)
    for r in negated:
        s_rng, o_rng = obj_range[r.subject], obj_range[r.object]
        if s_rng is None and o_rng is None:
            continue
        later = r.object if s_rng is None or (o_rng is not None and o_rng[0] > s_rng[0]) else r.subject
        if not any(later in (k.subject, k.object) for k in keep):
            dropped.add(later)
    # 3. negated attributes: every mention of the attribute's words is negated.
    objects = list(graph.objects)
    for i, o in enumerate(objects):
        kept = tuple(a for a in o.attributes if not _attribute_negated(a, words))
        if kept != o.attributes:
            objects[i] = SceneObject(o.name, kept, o.box, o.span)
    if not dropped and not negated and objects == list(graph.objects):
        return graph
    index: dict[int, int] = {}
    new_objects = []
    for i, o in enumerate(objects):
        if i not in dropped:
            index[i] = len(new_objects)
            new_objects.append(o)
    rels = tuple(Relation(index[r.subject], r.predicate, index[r.object], r.span) for r in keep
                 if r.subject in index and r.object in index)
    return SceneGraph(tuple(new_objects), rels, text)


def _negates_predicate(words: list[str], k: int, end: int) -> bool:
    """Whether the negator ``words[k]`` inside a predicate's words (up to ``end``, exclusive) negates the
    predicate: what follows it is a verb or a preposition ("not sitting on", "never on"), not an adjective or
    a noun the parser did not take as an object ("not black sitting on", "with no cars and one")."""
    j = k + 1
    while j < end and words[j] in _BEFORE_PREDICATE:
        j += 1
    if j >= end:
        return True
    w = words[j]
    return (w in PREPOSITION_WORDS or w in VERB_FORMS or w.endswith(("ing", "ed"))
            or (w.endswith("s") and lemmatize_verb(w) != w and w not in ADJECTIVES and not words[j - 1] == "no"))


def _relation_negated(r: Relation, words: list[str], rng: tuple[int, int] | None,
                      obj_range: list[tuple[int, int] | None]) -> bool:
    if any(is_negator(w) for w in r.predicate.split()):  # a copied "not on"
        return True
    if rng is not None:
        if any(is_negator(words[k]) and _negates_predicate(words, k, rng[1] + 1) for k in range(rng[0], rng[1] + 1)):
            return True
        k = _walk_back(words, rng[0], _BEFORE_PREDICATE)
        return k >= 0 and is_negator(words[k])
    # No predicate span (a relation the parser inferred): the words between the two objects, after any
    # other object mentioned in between.
    a, b = obj_range[r.subject], obj_range[r.object]
    if a is None or b is None:
        return False
    lo, hi = (a[1] + 1, b[0]) if a[0] < b[0] else (b[1] + 1, a[0])
    for other in obj_range:
        if other is not None and lo <= other[0] and other[1] < hi:
            lo = other[1] + 1
    return any(is_negator(words[k]) and _negates_predicate(words, k, hi) for k in range(lo, hi))


def _attribute_negated(attribute: str, words: list[str]) -> bool:
    parts = attribute.split()
    if not parts or attribute.isdigit() or any(is_negator(p) for p in parts):
        return False
    n = len(parts)
    hits = [k for k in range(len(words) - n + 1) if words[k : k + n] == parts]
    if not hits:
        return False
    for k in hits:
        j = _walk_back(words, k, _BEFORE_ATTRIBUTE)
        if j < 0 or not is_negator(words[j]):
            return False
    return True
