"""Rule-based text -> scene graph backend: a chunker plus clause patterns, no external NLP library.

It follows FACTUAL's conventions where a rule can: counts become digit attributes, material and
colour words become attributes, verb + preposition merge (``sitting on`` -> ``sit on``), ``with`` /
``has`` / possessives become ``have``, ``X of Y`` becomes ``(Y, have, X)``, ``by``-passives are made
active, coordinated subjects each get the relation, relative clauses attach to the noun they follow,
and repeated mentions of one object (same name, compatible attributes) are one node. Shapes-world
captions (SHAPES.md) are mapped to ``left of`` / ``right of`` / ``above`` / ``below``.

Fast (tens of thousands of captions per second) and the fallback when learned weights are absent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Collection, Sequence

from ..graph.scene_graph import Relation, SceneGraph, SceneObject
from .lexicon import (
    AUX, CONJ, DETERMINERS, NUMBERS, PREPOSITIONS, PRONOUNS, RELATIVE, SHAPE_COLOURS, SHAPE_PLURALS, SHAPE_PREDICATES,
    SHAPES,
    THERE, Lexicon, lemmatize_verb, load_lexicon,
)
from .tokenize import Token, split_sentences, tokenize

__all__ = ["RuleBasedParser", "canonicalize_shapes"]

_PUNCT_SKIP = frozenset({".", "!", "?", ";", ":", '"', "(", ")", "[", "]", "'", "`", "-", "--"})
_PREP_BY_FIRST: dict[str, list[tuple[str, ...]]] = {}
for _p in PREPOSITIONS:  # longest first within each first word
    _PREP_BY_FIRST.setdefault(_p[0], []).append(_p)
_PARTICLES = frozenset({"up", "down", "out", "away", "off", "back", "over", "around"})


@dataclass
class _NP:
    name_tokens: list[Token]
    attributes: list[tuple[str, Token]]
    possessor: "_NP | None" = None


@dataclass
class _Pred:
    label: str
    tokens: list[Token]
    reverse: bool = False  # True: relation goes object -> subject (passives, "of")


@dataclass
class _Builder:
    text: str
    objects: list[SceneObject] = field(default_factory=list)
    keys: list[tuple[str, frozenset[str]]] = field(default_factory=list)
    relations: list[Relation] = field(default_factory=list)
    seen: set[tuple[int, str, int]] = field(default_factory=set)

    def node(self, np: _NP, distinct_from: Collection[int] = ()) -> int:
        """The object a noun phrase names: an earlier one (a repeated mention) or a new one.

        ``distinct_from``: objects the phrase cannot be (the subjects of the relation it is the object of:
        in "a red circle left of a red circle" the second circle is another one).
        """
        name = " ".join(t.lower for t in np.name_tokens)
        attrs = [a for a, _ in np.attributes]
        key = frozenset(attrs)
        # Same name and compatible attributes: the same object (repeated mention).
        for i, (n, a) in enumerate(self.keys):
            if n == name and (key <= a or a <= key) and i not in distinct_from:
                if not key <= a:
                    merged = list(self.objects[i].attributes) + [x for x in attrs if x not in a]
                    o = self.objects[i]
                    self.objects[i] = SceneObject(o.name, tuple(merged), o.box, o.span)
                    self.keys[i] = (n, a | key)
                return i
        span = (np.name_tokens[0].start, np.name_tokens[-1].end)
        self.objects.append(SceneObject(name, tuple(dict.fromkeys(attrs)), None, span))
        self.keys.append((name, key))
        return len(self.objects) - 1

    def add_attributes(self, i: int, attrs: Sequence[str]) -> None:
        o = self.objects[i]
        new = tuple(dict.fromkeys((*o.attributes, *attrs)))
        self.objects[i] = SceneObject(o.name, new, o.box, o.span)
        self.keys[i] = (self.keys[i][0], frozenset(new))

    def relate(self, s: int, pred: _Pred, o: int) -> None:
        if pred.reverse:
            s, o = o, s
        if s == o or (s, pred.label, o) in self.seen:
            return
        self.seen.add((s, pred.label, o))
        span = (pred.tokens[0].start, pred.tokens[-1].end) if pred.tokens else None
        self.relations.append(Relation(s, pred.label, o, span))

    def graph(self) -> SceneGraph:
        return SceneGraph(tuple(self.objects), tuple(self.relations), self.text)


def canonicalize_shapes(graph: SceneGraph) -> SceneGraph:
    """If every object is a shapes-world shape (or a plural of one), map predicates to the four canonical ones.

    Graphs with any other object are returned unchanged.
    """
    if not graph.objects or any(o.name not in SHAPES and o.name not in SHAPE_PLURALS for o in graph.objects):
        return graph
    rels = tuple(
        Relation(r.subject, SHAPE_PREDICATES.get(r.predicate, r.predicate), r.object, r.span) for r in graph.relations
    )
    return SceneGraph(graph.objects, rels, graph.text)


def is_shapes_text(tokens: Sequence[Token]) -> bool:
    """True if the words are all from the shapes-world vocabulary (articles, counts, colours, shapes and their
    plurals, spatial words)."""
    allowed = SHAPES | SHAPE_COLOURS | {"a", "an", "the", "and", "to", "of", "left", "right", "above", "below", "over",
                                       "under", "beneath", "is", "are", ",", ".", "there", "on", "at", "it", "its"}
    return bool(tokens) and all(t.lower in allowed or t.lower in SHAPE_PLURALS or t.lower in NUMBERS or t.lower.isdigit()
                                for t in tokens)


class RuleBasedParser:
    """Dependency-free rule-based parser (see the module docstring for what it covers).

    Args:
        lexicon: word knowledge; ``None`` loads the bundled data-derived lexicon if present,
            else the built-in word lists.

    Example:
        >>> RuleBasedParser().parse("a red circle to the left of a blue square").triplets()
        [('circle', 'left of', 'square')]
    """

    name = "rules"

    def __init__(self, lexicon: Lexicon | None = None) -> None:
        self.lexicon = lexicon if lexicon is not None else load_lexicon()

    def __repr__(self) -> str:
        return f"RuleBasedParser(verbs={len(self.lexicon.verb_lemmas)}, attributes={len(self.lexicon.attributes)})"

    def parse(self, text: str) -> SceneGraph:
        """Parse one text. Never raises on str input; empty text gives an empty graph."""
        tokens = tokenize(text)
        b = _Builder(text)
        for sentence in split_sentences(tokens, text):
            self._parse_sentence(sentence, b)
        return canonicalize_shapes(b.graph())

    def parse_batch(self, texts: Sequence[str], batch_size: int = 256) -> list[SceneGraph]:
        return [self.parse(t) for t in texts]

    # ---------------------------------------------------------------- chunking
    def _match_prep(self, toks: Sequence[Token], i: int) -> int:
        """Length of the longest preposition starting at ``toks[i]`` (0 if none)."""
        if i >= len(toks):
            return 0
        for p in _PREP_BY_FIRST.get(toks[i].lower, ()):
            k = len(p)
            if i + k <= len(toks) and all(toks[i + j].lower == p[j] for j in range(1, k)):
                return k
        return 0

    def _chunk(self, toks: list[Token]) -> list[tuple[str, object]]:
        lex = self.lexicon
        out: list[tuple[str, object]] = []
        n = len(toks)
        i = 0
        while i < n:
            w = toks[i].lower
            prev_kind = out[-1][0] if out else None
            if w in THERE and i + 1 < n and toks[i + 1].lower in AUX:
                i += 2
                continue
            if w in CONJ:
                out.append(("CONJ", toks[i]))
                i += 1
                continue
            if w in ("'s", "s'") and prev_kind == "NP":
                out.append(("POSS", toks[i]))
                i += 1
                continue
            if w in _PUNCT_SKIP or not any(c.isalnum() for c in w):
                i += 1
                continue
            if w in AUX:
                out.append(("AUX", toks[i]))
                i += 1
                continue
            if w in RELATIVE and (prev_kind == "NP" or w != "that") and (w != "that" or i + 1 >= n or toks[i + 1].lower in AUX or lex.is_verb(toks[i + 1].lower)):
                out.append(("REL", toks[i]))
                i += 1
                continue
            if w in PRONOUNS and prev_kind in (None, "CONJ", "REL", "AUX"):
                out.append(("PRON", toks[i]))
                i += 1
                continue
            k = self._match_prep(toks, i)
            if k:
                words = [t.lower for t in toks[i : i + k]]
                label = " ".join(words)
                if label == "with":
                    out.append(("PRED", _Pred("have", toks[i : i + k])))
                elif label == "of":
                    out.append(("PRED", _Pred("have", toks[i : i + k], reverse=True)))
                else:
                    if label.startswith("to the ") and label.endswith(" of"):
                        label = "at the " + label[len("to the "):]
                    out.append(("PRED", _Pred(label, toks[i : i + k])))
                i += k
                continue
            # Verb (+ particle) (+ preposition).
            if lex.is_verb(w):
                j = i + 1
                verb_toks = [toks[i]]
                lemma = lemmatize_verb(w, lex.verb_lemmas)
                if lemma == "have":
                    out.append(("PRED", _Pred("have", verb_toks)))
                    i = j
                    continue
                words = [lemma]
                if j < n and toks[j].lower in _PARTICLES and self._match_prep(toks, j + 1) == 0 and toks[j].lower not in ("over",):
                    words.append(toks[j].lower)
                    verb_toks.append(toks[j])
                    j += 1
                passive = w.endswith(("ed", "en")) or w in ("made", "held", "hung", "built", "worn", "sat", "stood")
                if j < n and toks[j].lower == "by" and passive:
                    out.append(("PRED", _Pred(" ".join(words), verb_toks + [toks[j]], reverse=True)))
                    i = j + 1
                    continue
                k = self._match_prep(toks, j)
                if k and toks[j].lower not in ("of", "with", "by") or (k and toks[j].lower in ("of", "with") and lemma in ("make",)):
                    words += [t.lower for t in toks[j : j + k]]
                    verb_toks += toks[j : j + k]
                    j += k
                out.append(("PRED", _Pred(" ".join(words), verb_toks)))
                i = j
                continue
            # Noun phrase: determiners, counts, attributes, nouns.
            j = i
            det = False
            while j < n and toks[j].lower in DETERMINERS and toks[j].lower not in NUMBERS:
                det = True
                j += 1
            start = j
            while j < n:
                t = toks[j].lower
                if (
                    t in CONJ or t in AUX or t in _PUNCT_SKIP or t in ("'s", "s'") or t in DETERMINERS
                    or not any(c.isalnum() for c in t) or self._match_prep(toks, j) or t in RELATIVE or t in THERE
                    or (lex.is_verb(t) and j > start)
                ):
                    break
                j += 1
            if j == start:
                i = max(j, i + 1)
                continue
            chunk = toks[start:j]
            i = j
            # Predicative adjectives: "the shirt is red".
            if prev_kind == "AUX" and not det and all(lex.is_attribute(t.lower) and t.lower not in SHAPES for t in chunk):
                out.append(("ATTR", [lex.attribute_label(t.lower) for t in chunk]))
                continue
            head = len(chunk) - 1
            name_start = head
            while name_start > 0 and not lex.is_attribute(chunk[name_start - 1].lower):
                name_start -= 1
            attrs = [(lex.attribute_label(t.lower), t) for t in chunk[:name_start]]
            out.append(("NP", _NP(chunk[name_start : head + 1], attrs)))
        return out

    # ---------------------------------------------------------------- clause patterns
    def _parse_sentence(self, toks: list[Token], b: _Builder) -> None:
        elems = self._chunk(toks)
        # Fold "NP 's NP" into the possessed NP with its possessor.
        folded: list[tuple[str, object]] = []
        for kind, val in elems:
            if kind == "NP" and len(folded) >= 2 and folded[-1][0] == "POSS" and folded[-2][0] == "NP":
                folded.pop()
                _, owner = folded.pop()
                assert isinstance(val, _NP) and isinstance(owner, _NP)
                val.possessor = owner
            folded.append((kind, val))

        prev: list[int] = []  # the last noun-phrase group
        clause_subj: list[int] = []
        pending: tuple[_Pred, list[int]] | None = None
        last_rel: tuple[_Pred, list[int]] | None = None
        after_conj = False
        tentative: list[Relation] = []
        earlier: list[int] = []  # the group before ``prev`` (for "the sofa the man is sitting on")
        for idx, (kind, val) in enumerate(folded):
            if kind == "NP":
                assert isinstance(val, _NP)
                n = b.node(val, distinct_from=pending[1] if pending is not None else ())
                if val.possessor is not None:
                    owner = b.node(val.possessor)
                    b.relate(owner, _Pred("have", []), n)
                if pending is not None:
                    pred, subj = pending
                    for s in subj:
                        b.relate(s, pred, n)
                    last_rel = (pred, subj)
                    pending = None
                    earlier, prev = prev, [n]
                    after_conj = False
                    tentative = []
                elif after_conj and prev:
                    if last_rel is not None:
                        # "A on B and C": C is also an object of the last relation, unless C starts a new clause.
                        before = len(b.relations)
                        pred, subj = last_rel
                        for s in subj:
                            b.relate(s, pred, n)
                        tentative = list(b.relations[before:])
                        prev = prev + [n]
                    else:
                        prev = prev + [n]
                    after_conj = False
                else:
                    earlier, prev = prev, [n]
                    last_rel = None
                if not clause_subj:
                    clause_subj = list(prev)
            elif kind == "PRED":
                assert isinstance(val, _Pred)
                if tentative:
                    # The coordinated NP begins a new clause: undo its tentative relations.
                    for r in tentative:
                        if r in b.relations:
                            b.relations.remove(r)
                            b.seen.discard((r.subject, r.predicate, r.object))
                    prev = [prev[-1]]
                    tentative = []
                if pending is not None and not pending[0].tokens:
                    pending = None
                subj = prev or clause_subj
                if after_conj and last_rel is not None:
                    # "A left of B and above C": the coordinated predicate keeps A as its subject.
                    subj = last_rel[1]
                if pending is not None and not subj:
                    continue
                pending = (val, list(subj)) if subj else None
                after_conj = False
            elif kind == "ATTR":
                for s in prev:
                    b.add_attributes(s, val)  # type: ignore[arg-type]
            elif kind == "CONJ":
                after_conj = True
            elif kind == "PRON":
                if val.lower in ("it", "they", "he", "she", "one") and clause_subj:  # type: ignore[union-attr]
                    prev = list(clause_subj)
            elif kind == "REL":
                after_conj = False  # "A, which is above B": ``prev`` stays the subject
            # AUX, POSS: nothing to do.
        # "the sofa the man is sitting on": a trailing predicate takes the earlier noun as its object.
        if pending is not None and earlier and len(pending[0].tokens) > 1:
            pred, subj = pending
            for s in subj:
                for o in earlier:
                    b.relate(s, pred, o)
