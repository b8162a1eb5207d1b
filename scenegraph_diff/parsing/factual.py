"""FACTUAL graph strings and CSV files.

FACTUAL writes a graph as tuples joined by `` , ``: ``( s , p , o )`` relations, ``( n , is , a )``
attributes and ``( n )`` lone objects. Objects are identified by name, so a relation between two
objects of the same name (``( tower , by , tower )``) gets two nodes here (a :class:`SceneGraph`
has no self-relations).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from ..graph.scene_graph import Relation, SceneGraph, SceneGraphError, SceneObject

__all__ = ["FactualExample", "graph_from_string", "graph_to_string", "graph_tuples", "read_factual_csv",
           "write_factual_csv"]


@dataclass(frozen=True)
class FactualExample:
    """One row of a FACTUAL CSV: ``caption`` and its gold ``graph`` string."""

    image_id: str
    region_id: str
    caption: str
    graph: str


def graph_tuples(s: str) -> list[tuple[str, ...]]:
    """Split a FACTUAL graph string into tuples of stripped fields (1 or 3 fields each; longer
    predicates containing commas are joined back).

    >>> graph_tuples("( cat , is , black ) , ( cat , on , mat )")
    [('cat', 'is', 'black'), ('cat', 'on', 'mat')]
    """
    s = s.strip()
    if not s:
        return []
    out: list[tuple[str, ...]] = []
    for seg in s.split(") , ("):
        seg = seg.strip().strip("()").strip()
        if not seg:
            continue
        parts = [p.strip() for p in seg.split(" , ")]
        if len(parts) > 3:
            parts = [parts[0], " , ".join(parts[1:-1]), parts[-1]]
        if len(parts) == 2:
            parts = [parts[0], "is", parts[1]]
        out.append(tuple(parts))
    return out


def graph_from_string(s: str, text: str | None = None) -> SceneGraph:
    """Build a :class:`SceneGraph` from a FACTUAL graph string (objects identified by name).

    Raises:
        SceneGraphError: a tuple has an empty field.
    """
    names: list[str] = []
    attrs: dict[int, list[str]] = {}
    index: dict[str, int] = {}
    rels: list[Relation] = []

    def node(name: str, avoid: int | None = None) -> int:
        if not name:
            raise SceneGraphError("graph", f"empty object name in {s!r:.80}")
        i = index.get(name)
        if i is None or i == avoid:
            names.append(name)
            i = len(names) - 1
            if name not in index:
                index[name] = i
        return i

    for t in graph_tuples(s):
        if len(t) == 1:
            node(t[0])
        elif t[1] == "is":
            i = node(t[0])
            if t[2] and t[2] not in attrs.setdefault(i, []):
                attrs[i].append(t[2])
        else:
            si = node(t[0])
            oi = node(t[2], avoid=si)
            if not t[1]:
                raise SceneGraphError("graph", f"empty predicate in {s!r:.80}")
            rels.append(Relation(si, t[1], oi))
    objs = tuple(SceneObject(n, tuple(attrs.get(i, ()))) for i, n in enumerate(names))
    return SceneGraph(objs, tuple(rels), text)


def graph_to_string(g: SceneGraph) -> str:
    """FACTUAL graph string of ``g``: relations, then attributes, then objects with neither.

    >>> from scenegraph_diff.graph import SceneGraph
    >>> graph_to_string(SceneGraph.from_triplets([("cat", "on", "mat")], attributes={"cat": ["black"]}))
    '( cat , on , mat ) , ( cat , is , black )'
    """
    parts: list[str] = []
    used: set[int] = set()
    for r in g.relations:
        parts.append(f"( {g.objects[r.subject].name} , {r.predicate} , {g.objects[r.object].name} )")
        used.update((r.subject, r.object))
    for i, o in enumerate(g.objects):
        for a in o.attributes:
            parts.append(f"( {o.name} , is , {a} )")
            used.add(i)
    for i, o in enumerate(g.objects):
        if i not in used:
            parts.append(f"( {o.name} )")
    return " , ".join(dict.fromkeys(parts))


def read_factual_csv(path: str | Path) -> list[FactualExample]:
    """Read a FACTUAL CSV (``image_id,region_id,caption,scene_graph``).

    Raises:
        FileNotFoundError: no such file.
        ValueError: the header lacks ``caption`` or ``scene_graph``.
    """
    path = Path(path)
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        fields = reader.fieldnames or []
        for need in ("caption", "scene_graph"):
            if need not in fields:
                raise ValueError(f"{path}: missing column {need!r} (columns: {fields})")
        return [
            FactualExample(r.get("image_id", ""), r.get("region_id", ""), r["caption"], r["scene_graph"])
            for r in reader
        ]


def write_factual_csv(path: str | Path, examples: list[FactualExample]) -> None:
    """Write examples in FACTUAL's CSV layout (round-trips with :func:`read_factual_csv`)."""
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image_id", "region_id", "caption", "scene_graph"])
        for e in examples:
            w.writerow([e.image_id, e.region_id, e.caption, e.graph])


def iter_graph_strings(graphs: list[SceneGraph]) -> Iterator[str]:
    for g in graphs:
        yield graph_to_string(g)
