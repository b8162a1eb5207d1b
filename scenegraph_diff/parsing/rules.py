"""Rule-based text -> scene graph backend: a chunker plus clause patterns, no external NLP library.

It follows FACTUAL's conventions where a rule can: counts become digit attributes, material and
colour words become attributes, verb + preposition merge (``sitting on`` -> ``sit on``), ``with`` /
``has`` / possessives become ``have``, ``X of Y`` becomes ``(Y, have, X)``, ``by``-passives are made
active, coordinated subjects each get the relation, relative clauses attach to the noun they follow,
and repeated mentions of one object (same name, compatible attributes) are one node. A verb after a
prepositional phrase takes the phrase's head as subject ("a boy in a hat kicks a ball": the boy kicks), the
container of "a cup of coffee" takes the phrase's relations (``CONTAINERS``), sides are FACTUAL's ("to the
right of" -> ``on the right side of``), and negated parts are dropped (:mod:`.negation`). Shapes-world
captions (SHAPES.md) are mapped to ``left of`` / ``right of`` / ``above`` / ``below``.

Fast (tens of thousands of captions per second) and the fallback when learned weights are absent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Collection, Sequence

from ..graph.scene_graph import Relation, SceneGraph, SceneObject
from .lexicon import (
    AUX, CONJ, CONTAINERS, DETERMINERS, NUMBERS, PREPOSITION_WORDS, PREPOSITIONS, PRONOUNS, RELATIVE, SHAPE_COLOURS,
    SHAPE_PLURALS, SHAPE_PREDICATES, SHAPES,
    THERE, Lexicon, lemmatize_verb, load_lexicon,
)
from .negation import drop_negated
from .tokenize import Token, split_sentences, tokenize

__all__ = ["RuleBasedParser", "canonicalize_shapes"]

_PUNCT_SKIP = frozenset({".", "!", "?", ";", ":", '"', "(", ")", "[", "]", "'", "`", "-", "--"})
_PREP_BY_FIRST: dict[str, list[tuple[str, ...]]] = {}
for _p in PREPOSITIONS:  # longest first within each first word
    _PREP_BY_FIRST.setdefault(_p[0], []).append(_p)
_PARTICLES = frozenset({"up", "down", "out", "away", "off", "back", "over", "around"})
_NEGATION_SKIP = frozenset({"not", "never", "cannot"})
_NP_DETERMINERS = DETERMINERS | {"no"}
_VERB_ADVERBS = frozenset({"never", "always", "often", "sometimes", "usually", "also", "still", "not", "just"})
_VERB_OBJECT_START = frozenset({"a", "an", "the", "his", "her", "its", "their", "my", "our", "your", "another", "no"})
#: FACTUAL's forms of the side predicates ("to the right of" is annotated "on the right side of").
_FACTUAL_SIDES = {
    **{f"{p}left{q} of": "at the left of" for p in ("", "to the ", "on the ", "at the ") for q in ("", " side")},
    **{f"{p}right{q} of": "on the right side of" for p in ("", "to the ", "on the ", "at the ") for q in ("", " side")},
}


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
    verb: bool = False  # a verb ("kicking", "kicks"), not a preposition
    finite: bool = False  # a finite verb ("kicks", "has"): its subject is the head of the clause so far


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


def _container_of(pred: _Pred, subj: list[int], b: _Builder) -> str | None:
    """The FACTUAL predicate of "X of Y" when X is a container (``CONTAINERS``), else ``None``."""
    if not (pred.reverse and pred.label == "have" and pred.tokens and pred.tokens[0].lower == "of") or len(subj) != 1:
        return None
    return CONTAINERS.get(b.objects[subj[0]].name)


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
        return canonicalize_shapes(drop_negated(b.graph(), tokens))

    def parse_batch(self, texts: Sequence[str], batch_size: int = 256) -> list[SceneGraph]:
        return [self.parse(t) for t in texts]

    # ---------------------------------------------------------------- chunking
    def _finite_s_verb(self, toks: Sequence[Token], i: int) -> bool:
        """``toks[i]`` looks like a present-tense verb the built-in lists lack: an ``-s`` word right before
        an article or possessive ("a boy kicks a ball"; a noun is seldom followed by "a" / "the" / "his"), or
        right after an adverb ("the dog never sleeps on the bed")."""
        w = toks[i].lower
        if len(w) < 4 or not w.endswith("s") or w.endswith(("ss", "us", "is")) or i + 1 >= len(toks):
            return False
        lex = self.lexicon
        if w in lex.nouns or w in SHAPE_PLURALS or lex.is_attribute(w) or w in PREPOSITION_WORDS:
            return False
        return toks[i + 1].lower in _VERB_OBJECT_START or (i > 0 and toks[i - 1].lower in _VERB_ADVERBS)

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
            if w in _NEGATION_SKIP:  # read by drop_negated on the spans afterwards
                i += 1
                continue
            if w in AUX or (w.endswith("n't") and len(w) > 3):  # "isn't", "doesn't"
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
                    out.append(("PRED", _Pred(_FACTUAL_SIDES.get(label, label), toks[i : i + k])))
                i += k
                continue
            # Verb (+ particle) (+ preposition).
            if lex.is_verb(w) or (prev_kind in ("NP", "CONJ") and self._finite_s_verb(toks, i)):
                j = i + 1
                verb_toks = [toks[i]]
                lemma = lemmatize_verb(w, lex.verb_lemmas)
                finite = w.endswith("s") and lemma != w  # "kicks", "has"
                if lemma == "have":
                    out.append(("PRED", _Pred("have", verb_toks, verb=True, finite=finite)))
                    i = j
                    continue
                words = [lemma]
                if j < n and toks[j].lower in _PARTICLES and self._match_prep(toks, j + 1) == 0 and toks[j].lower not in ("over",):
                    words.append(toks[j].lower)
                    verb_toks.append(toks[j])
                    j += 1
                passive = w.endswith(("ed", "en")) or w in ("made", "held", "hung", "built", "worn", "sat", "stood")
                if j < n and toks[j].lower == "by" and passive:
                    out.append(("PRED", _Pred(" ".join(words), verb_toks + [toks[j]], reverse=True, verb=True)))
                    i = j + 1
                    continue
                k = self._match_prep(toks, j)
                if k and toks[j].lower not in ("of", "with", "by") or (k and toks[j].lower in ("of", "with") and lemma in ("make",)):
                    words += [t.lower for t in toks[j : j + k]]
                    verb_toks += toks[j : j + k]
                    j += k
                out.append(("PRED", _Pred(" ".join(words), verb_toks, verb=True, finite=finite)))
                i = j
                continue
            # Noun phrase: determiners, counts, attributes, nouns.
            j = i
            det = False
            while j < n and toks[j].lower in _NP_DETERMINERS and toks[j].lower not in NUMBERS:
                det = True
                j += 1
            start = j
            while j < n:
                t = toks[j].lower
                if (
                    t in CONJ or t in AUX or t in _PUNCT_SKIP or t in ("'s", "s'")
                    or (t in _NP_DETERMINERS and not (t == "lot" and (j + 1 >= n or toks[j + 1].lower != "of")))
                    or t in _NEGATION_SKIP or (t.endswith("n't") and len(t) > 3)
                    or not any(c.isalnum() for c in t) or self._match_prep(toks, j) or t in RELATIVE or t in THERE
                    or (j > start and (lex.is_verb(t) or self._finite_s_verb(toks, j)))
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
        head: list[int] = []  # the noun phrase the current chain of relations started from
        after_rel = False
        for idx, (kind, val) in enumerate(folded):
            if kind == "NP":
                assert isinstance(val, _NP)
                n = b.node(val, distinct_from=pending[1] if pending is not None else ())
                if val.possessor is not None:
                    owner = b.node(val.possessor)
                    b.relate(owner, _Pred("have", []), n)
                if pending is not None:
                    pred, subj = pending
                    container = _container_of(pred, subj, b)
                    if container is not None:
                        # "a cup of coffee": (coffee, in, cup); "a bowl of fruit": (bowl, have, fruit); later
                        # relations take the container (FACTUAL mostly relates "a cup of coffee" by its cup)
                        for s in subj:
                            if container == "have":
                                b.relate(s, _Pred("have", pred.tokens), n)
                            else:
                                b.relate(n, _Pred(container, pred.tokens), s)
                    else:
                        for s in subj:
                            b.relate(s, pred, n)
                    last_rel = (pred, subj)
                    pending = None
                    earlier, prev = prev, (list(subj) if container is not None else [n])
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
                        head = list(prev)
                    after_conj = False
                else:
                    earlier, prev = prev, [n]
                    head = [n]
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
                    head, last_rel = list(prev), None
                    tentative = []
                if pending is not None and not pending[0].tokens:
                    pending = None
                subj = prev or clause_subj
                if after_conj and last_rel is not None:
                    # "A left of B and above C": the coordinated predicate keeps A as its subject.
                    subj = last_rel[1]
                elif (val.verb and last_rel is not None and head and not after_rel
                      and (val.finite or not (last_rel[0].verb or last_rel[0].reverse))):
                    # "a boy in a hat kicks a ball", "a man in a hat kicking a ball": the boy / man kicks.
                    subj = head
                if pending is not None and not subj:
                    continue
                pending = (val, list(subj)) if subj else None
                after_conj = after_rel = False
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
                after_rel = True
            # AUX, POSS: nothing to do.
        # "the sofa the man is sitting on": a trailing predicate takes the earlier noun as its object.
        if pending is not None and earlier and len(pending[0].tokens) > 1:
            pred, subj = pending
            for s in subj:
                for o in earlier:
                    b.relate(s, pred, o)
