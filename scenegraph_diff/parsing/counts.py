"""Counts as objects: "three red circles" as three circles, for image models.

The parsers follow FACTUAL: a count is a digit attribute of one plural object (``( circles , is , 3 )``),
which is right for captions and for the parser metrics. An image model needs the objects themselves: one
layout box, one grounding phrase or one graph token per thing to draw. :func:`expand_counts` makes them.

Where to use it: between ``parse`` and whatever assigns per-object conditioning — layout prediction and
GLIGEN boxes, per-object graph tokens, relation checks per object. Not before scoring a parser against
FACTUAL (the gold graphs keep counts as attributes), and it does not make the shapes world draw repeats:
there every (colour, shape) pair is drawn at most once, so "three red circles" stays an error there.

    >>> from scenegraph_diff import parse
    >>> [o.name for o in expand_counts(parse("two dogs on a sofa", backend="rules")).objects]
    ['dog', 'dog', 'sofa']
"""

from __future__ import annotations

import logging

from ..graph.scene_graph import Relation, SceneGraph, SceneObject
from .lexicon import singular_noun

__all__ = ["expand_counts", "EXCESS"]

log = logging.getLogger(__name__)

#: What :func:`expand_counts` does with a count above ``max_count``.
EXCESS = ("keep", "clip", "raise")


def expand_counts(graph: SceneGraph, max_count: int = 10, excess: str = "keep", singular: bool = True) -> SceneGraph:
    """Replace each object with a count attribute ``N`` by ``N`` copies of it, without the count.

    Each copy keeps the other attributes, the box and the span (all copies point at the plural's words), and
    takes part in every relation of the plural object: ``circles(3) left of square`` becomes three ``circle
    left of square`` relations; a relation between two counted objects (``2 dogs on 2 mats``) becomes one per
    pair of copies (4). A count of ``1`` only loses its attribute; ``0`` removes the object and its relations.
    Objects are renumbered in order, the copies where the plural was. The input is not changed.

    Args:
        graph: any scene graph (counts are attributes made only of digits, e.g. ``"3"``).
        max_count: the most copies one object may become (>= 1): bounds the graph a stray "a hundred birds"
            or "1000 people" makes (objects grow by up to ``max_count`` times, relations by up to its square).
        excess: for a count above ``max_count``: ``"keep"`` leaves that object as it is (one object, count
            kept) and logs a warning; ``"clip"`` makes ``max_count`` copies; ``"raise"`` raises.
        singular: name the copies in the singular (``circles`` -> ``circle``, by
            :func:`~.lexicon.singular_noun`); ``False`` keeps the plural name.

    Returns:
        The expanded graph (``graph`` itself is returned when it has no count).

    Raises:
        TypeError: ``graph`` is not a :class:`SceneGraph`.
        ValueError: ``max_count < 1``, an unknown ``excess``, or ``excess="raise"`` and a count above
            ``max_count`` (names the object and the count).
    """
    if not isinstance(graph, SceneGraph):
        raise TypeError(f"graph must be a SceneGraph, got {type(graph).__name__}")
    if isinstance(max_count, bool) or not isinstance(max_count, int) or max_count < 1:
        raise ValueError(f"max_count must be >= 1, got {max_count!r}")
    if excess not in EXCESS:
        raise ValueError(f"excess must be one of {EXCESS}, got {excess!r}")
    copies: list[list[SceneObject]] = []
    changed = False
    for i, o in enumerate(graph.objects):
        counts = [a for a in o.attributes if a.isdigit()]
        if not counts:
            copies.append([o])
            continue
        where = f"objects[{i}] {o.name!r}"
        if len(counts) > 1:
            log.warning("%s: several counts %s; left as one object", where, counts)
            copies.append([o])
            continue
        n = int(counts[0])
        if n > max_count:
            message = f"{where}: count {n} exceeds max_count={max_count}"
            if excess == "raise":
                raise ValueError(message)
            if excess == "keep":
                log.warning("%s; kept as one object", message)
                copies.append([o])
                continue
            n = max_count
        changed = True
        name = singular_noun(o.name) if singular and n > 1 else o.name
        one = SceneObject(name, tuple(a for a in o.attributes if a != counts[0]), o.box, o.span)
        copies.append([one] * n)
    if not changed:
        return graph
    start = []
    objects: list[SceneObject] = []
    for group in copies:
        start.append(len(objects))
        objects.extend(group)
    relations = [
        Relation(start[r.subject] + a, r.predicate, start[r.object] + b, r.span)
        for r in graph.relations
        for a in range(len(copies[r.subject]))
        for b in range(len(copies[r.object]))
    ]
    return SceneGraph(tuple(objects), tuple(relations), graph.text)
