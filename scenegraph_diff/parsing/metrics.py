"""Parser metrics on FACTUAL graph strings: SPICE F, Set Match and object / attribute / triplet P/R/F1.

:func:`graph_match` compares :class:`~scenegraph_diff.graph.SceneGraph` s instead of strings: it tells two
objects of one name apart (FACTUAL strings identify objects by name, so "a red circle left of a red circle"
reads as one circle there).

``spice_f`` and ``set_match`` use the official code of the ``factualscenegraph`` package
(``pip install 'scenegraph-diff[bench]'``) when it is installed: SPICE F with its bundled WordNet synonym
tables (no downloads), as its ``Evaluator(method="spice")`` does by default (no tuple merging, synonym
matching on). Without the package, an exact-match re-implementation of the same definitions is used and
``official`` in the result says so.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from collections import Counter
from typing import Sequence

from ..graph.scene_graph import SceneGraph
from .factual import graph_tuples

__all__ = ["ParserScores", "score_graph_strings", "spice_f", "set_match", "graph_match"]

log = logging.getLogger(__name__)


def _graph_key(g: SceneGraph) -> tuple[Counter, Counter]:
    objs = [(o.name, tuple(sorted(set(o.attributes)))) for o in g.objects]
    return Counter(objs), Counter((objs[r.subject], r.predicate, objs[r.object]) for r in g.relations)


def graph_match(cand: SceneGraph, ref: SceneGraph) -> bool:
    """Whether two graphs are the same up to object order: the same multiset of objects (name and attribute
    set) and of relations between them (text, spans and boxes ignored). Two "red circle" objects are two."""
    return _graph_key(cand) == _graph_key(ref)


def _space_out(s: str) -> str:
    return " ".join(s.replace("(", " ( ").replace(")", " ) ").replace(",", " , ").split())


def _segments(s: str) -> set[str]:
    s = _space_out(s)
    return {seg.strip("()").strip() for seg in s.split(") , (")}


def set_match(cand: str, ref: str) -> bool:
    """Exactly the same set of tuples (FACTUAL's definition: tuples compared as normalised strings)."""
    return _segments(cand) == _segments(ref)


def _spice_tuples(s: str) -> set[tuple[str, ...]]:
    out: set[tuple[str, ...]] = set()
    for t in graph_tuples(_space_out(s)):
        if len(t) == 1:
            out.add(t)
        elif t[1] == "is":
            out.update({(t[0], t[2]), (t[0],)})
        else:
            out.update({t, (t[0],), (t[2],)})
    return out


def _spice_exact(cand: str, ref: str) -> float:
    c, r = _spice_tuples(cand), _spice_tuples(ref)
    m = len(c & r)
    p = m / len(c) if c else 0.0
    rc = m / len(r) if r else 0.0
    return 2 * p * rc / (p + rc) if p + rc else 0.0


def spice_f(cand: str, ref: str, official: bool = True) -> float:
    """SPICE F1 in [0, 1] of one candidate graph string against one reference."""
    if official:
        try:
            from factual_scene_graph.evaluation.spice_evaluation import eval_spice
        except ImportError:
            official = False
        else:
            return float(eval_spice(_space_out(cand), [_space_out(ref)], False, True))
    return _spice_exact(cand, ref)


def _prf(tp: int, n_pred: int, n_gold: int) -> dict[str, float]:
    p = tp / n_pred if n_pred else 0.0
    r = tp / n_gold if n_gold else 0.0
    return {"precision": 100 * p, "recall": 100 * r, "f1": 100 * (2 * p * r / (p + r) if p + r else 0.0)}


@dataclass(frozen=True)
class ParserScores:
    """Corpus-level scores (percentages). ``official`` tells whether the factualscenegraph code ran."""

    spice_f: float
    set_match: float
    objects: dict[str, float]
    attributes: dict[str, float]
    triplets: dict[str, float]
    n: int
    official: bool

    def to_dict(self) -> dict:
        return {"spice_f": self.spice_f, "set_match": self.set_match, "objects": self.objects,
                "attributes": self.attributes, "triplets": self.triplets, "n": self.n, "official": self.official}


def _official_available() -> bool:
    try:
        import factual_scene_graph.evaluation.spice_evaluation  # noqa: F401
    except ImportError:
        return False
    return True


def score_graph_strings(cands: Sequence[str], refs: Sequence[str], official: bool | None = None) -> ParserScores:
    """Score predicted FACTUAL graph strings against gold ones (same length, same order).

    SPICE F and Set Match are means over captions (as FACTUAL reports them); object, attribute and
    triplet P/R/F1 are micro-averaged over exact (string-equal) tuples.

    Raises:
        ValueError: lengths differ.
    """
    if len(cands) != len(refs):
        raise ValueError(f"got {len(cands)} candidates for {len(refs)} references")
    if official is None:
        official = _official_available()
    elif official and not _official_available():
        raise ImportError("official=True needs the factualscenegraph package: pip install 'scenegraph-diff[bench]'")
    if not official:
        log.info("SPICE F with exact matching (no synonyms): factualscenegraph not used")
    spice = sm = 0.0
    counts = {k: [0, 0, 0] for k in ("objects", "attributes", "triplets")}
    for c, r in zip(cands, refs):
        spice += spice_f(c, r, official)
        sm += set_match(c, r)
        ct, rt = _spice_tuples(c), _spice_tuples(r)
        for key, size in (("objects", 1), ("attributes", 2), ("triplets", 3)):
            cs = {t for t in ct if len(t) == size}
            rs = {t for t in rt if len(t) == size}
            counts[key][0] += len(cs & rs)
            counts[key][1] += len(cs)
            counts[key][2] += len(rs)
    n = max(len(cands), 1)
    return ParserScores(
        100 * spice / n, 100 * sm / n, *(_prf(*counts[k]) for k in ("objects", "attributes", "triplets")),
        n=len(cands), official=official,
    )
