"""Align gold FACTUAL graphs to caption tokens: the training labels of the learned parser.

For a caption and its gold tuples this finds

- object *mentions*: token spans whose words spell a gold object name (exactly, without the space
  ``side walk`` -> ``sidewalk``, with a plural/singular ``s``, or within a small edit distance for
  misspellings); every occurrence of a name is a mention;
- attribute spans: tokens spelling a gold attribute (number words -> digits, learned surface forms
  such as ``wood`` -> ``wooden``, or a shared 4-letter prefix), linked to the nearest mention of its object;
- relation pairs: the closest pair of distinct mentions of subject and object, labelled with the predicate.

Tuples that cannot be placed are counted in :class:`Alignment` (``complete`` is False), so the training
script can report how much of the data aligns exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from .factual import graph_tuples
from .lexicon import NUMBERS
from .tokenize import Token, tokenize

__all__ = ["Alignment", "align", "TAGS", "edit_distance"]

#: Per-token tags: outside, object mention (begin/inside), attribute (begin/inside).
TAGS = ("O", "B-OBJ", "I-OBJ", "B-ATT", "I-ATT")


@dataclass
class Alignment:
    """Token-level labels of one caption.

    Attributes:
        tokens: the caption's tokens.
        tags: one index into :data:`TAGS` per token.
        mentions: object mention spans ``(start, end)`` (token indices, end exclusive), sorted.
        mention_names: the gold name of each mention.
        attributes: ``(start, end, mention index, gold label)``.
        relations: ``(subject mention, object mention, predicate)``.
        missing: gold tuples that could not be aligned.
        name_forms / attribute_forms: ``(surface, gold)`` pairs of every aligned span (to learn normalisation).
    """

    tokens: list[Token]
    tags: list[int]
    mentions: list[tuple[int, int]] = field(default_factory=list)
    mention_names: list[str] = field(default_factory=list)
    attributes: list[tuple[int, int, int, str]] = field(default_factory=list)
    relations: list[tuple[int, int, str]] = field(default_factory=list)
    missing: list[tuple[str, ...]] = field(default_factory=list)
    name_forms: list[tuple[str, str]] = field(default_factory=list)
    attribute_forms: list[tuple[str, str]] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.missing


def edit_distance(a: str, b: str, limit: int = 3) -> int:
    """Levenshtein distance, capped at ``limit``."""
    if abs(len(a) - len(b)) >= limit:
        return limit
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        if min(cur) >= limit:
            return limit
        prev = cur
    return min(prev[-1], limit)


def _find_spans(words: Sequence[str], target: str, taken: Sequence[bool], fuzzy: bool) -> list[tuple[int, int]]:
    """All spans of ``words`` that spell ``target`` (in order of preference: exact, joined, plural, fuzzy)."""
    n = len(words)
    tw = target.split()
    k = len(tw)
    exact = [(i, i + k) for i in range(n - k + 1) if words[i : i + k] == tw and not any(taken[i : i + k])]
    if exact:
        return exact
    joined = target.replace(" ", "")
    for span_len in (2, 3):
        hits = [(i, i + span_len) for i in range(n - span_len + 1)
                if "".join(words[i : i + span_len]) == joined and not any(taken[i : i + span_len])]
        if hits:
            return hits
    if k == 1:
        variants = {target + "s", target + "es", target[:-1] if target.endswith("s") else None}
        hits = [(i, i + 1) for i in range(n) if words[i] in variants and not taken[i]]
        if hits:
            return hits
        if fuzzy and len(target) >= 5:
            hits = [(i, i + 1) for i in range(n) if not taken[i] and len(words[i]) >= 4
                    and edit_distance(words[i], target, 3) <= (1 if len(target) < 7 else 2)]
            if hits:
                return hits
    return []


def align(caption: str, graph: str, attribute_forms: dict[str, str] | None = None) -> Alignment:
    """Align the gold ``graph`` string to the tokens of ``caption`` (see the module docstring)."""
    tokens = tokenize(caption)
    words = [t.lower for t in tokens]
    n = len(words)
    tags = [0] * n
    taken = [False] * n
    al = Alignment(tokens, tags)
    tuples = list(dict.fromkeys(graph_tuples(graph)))
    names: list[str] = []
    for t in tuples:
        if len(t) == 1 or t[1] == "is":
            names.append(t[0])
        else:
            names += [t[0], t[2]]
    names = list(dict.fromkeys(names))
    # Objects: longest names first, so "fire hydrant" wins over "hydrant".
    mentions_of: dict[str, list[int]] = {}
    spans: list[tuple[int, int, str]] = []
    for name in sorted(names, key=lambda s: (-len(s.split()), -len(s))):
        hits = _find_spans(words, name, taken, fuzzy=True)
        for s, e in hits:
            spans.append((s, e, name))
            for i in range(s, e):
                taken[i] = True
            al.name_forms.append((" ".join(words[s:e]), name))
    spans.sort()
    for m, (s, e, name) in enumerate(spans):
        al.mentions.append((s, e))
        al.mention_names.append(name)
        mentions_of.setdefault(name, []).append(m)
        tags[s] = 1
        for i in range(s + 1, e):
            tags[i] = 2

    def centre(m: int) -> float:
        s, e = al.mentions[m]
        return (s + e - 1) / 2

    forms = attribute_forms or {}
    for t in tuples:
        if len(t) == 1:
            if t[0] not in mentions_of:
                al.missing.append(t)
            continue
        if t[1] == "is":
            obj, attr = t[0], t[2]
            if obj not in mentions_of:
                al.missing.append(t)
                continue
            hits = _find_spans(words, attr, taken, fuzzy=False)
            if not hits:
                inv = [w for w, g in NUMBERS.items() if g == attr] + [w for w, g in forms.items() if g == attr]
                hits = [(i, i + 1) for i in range(n) if words[i] in inv and not taken[i]]
            if not hits and len(attr) >= 4 and " " not in attr:
                hits = [(i, i + 1) for i in range(n) if not taken[i] and len(words[i]) >= 4 and words[i][:4] == attr[:4]]
            if not hits:
                al.missing.append(t)
                continue
            # The attribute occurrence nearest to a mention of its object.
            best = min(((abs((s + e - 1) / 2 - centre(m)), s, e, m) for s, e in hits for m in mentions_of[obj]))
            _, s, e, m = best
            for i in range(s, e):
                taken[i] = True
            tags[s] = 3
            for i in range(s + 1, e):
                tags[i] = 4
            al.attributes.append((s, e, m, attr))
            al.attribute_forms.append((" ".join(words[s:e]), attr))
            continue
        subj, pred, obj = t
        if subj not in mentions_of or obj not in mentions_of:
            al.missing.append(t)
            continue
        pairs = [(abs(centre(a) - centre(b)), a, b) for a in mentions_of[subj] for b in mentions_of[obj] if a != b]
        if not pairs:
            al.missing.append(t)
            continue
        _, a, b = min(pairs)
        al.relations.append((a, b, pred))
    return al
