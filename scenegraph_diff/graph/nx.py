"""``SceneGraph`` <-> networkx ``MultiDiGraph`` (and GraphML files).

Objects are nodes ``0..n-1`` with attributes ``name``, ``attributes`` (list), and ``box`` / ``span`` when
present; relations are edges ``subject -> object`` with ``predicate``, ``index`` (position in the relation
list, so order survives) and ``span`` when present; the graph attribute ``text`` holds the text. Parallel
edges (several predicates between one pair) are kept: that is why the graph is a ``MultiDiGraph``.

GraphML only stores scalars, so :func:`write_graphml` stores lists as JSON strings and
:func:`read_graphml` decodes them. XML 1.0 cannot hold most control characters; a graph whose labels or
text contain one is written with every string JSON-encoded and the graph attribute ``json_strings=true``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import networkx as nx

from .scene_graph import Relation, SceneGraph, SceneGraphError, SceneObject, loads_json

__all__ = ["to_networkx", "from_networkx", "write_graphml", "read_graphml"]


def to_networkx(graph: SceneGraph) -> nx.MultiDiGraph:
    """Convert to a ``MultiDiGraph`` (object nodes, one labelled edge per relation)."""
    g = nx.MultiDiGraph()
    if graph.text is not None:
        g.graph["text"] = graph.text
    for i, o in enumerate(graph.objects):
        attrs: dict[str, Any] = {"name": o.name, "attributes": list(o.attributes)}
        if o.box is not None:
            attrs["box"] = list(o.box)
        if o.span is not None:
            attrs["span"] = list(o.span)
        g.add_node(i, **attrs)
    for k, r in enumerate(graph.relations):
        attrs = {"predicate": r.predicate, "index": k}
        if r.span is not None:
            attrs["span"] = list(r.span)
        g.add_edge(r.subject, r.object, key=k, **attrs)
    return g


def from_networkx(g: nx.Graph) -> SceneGraph:
    """Inverse of :func:`to_networkx`.

    Nodes must be the integers ``0..n-1``. Edges are ordered by their ``index`` attribute when every edge
    has one (as :func:`to_networkx` writes), else in networkx iteration order.
    """
    nodes = list(g.nodes)
    if sorted(nodes) != list(range(len(nodes))):
        raise SceneGraphError("nodes", f"node ids must be 0..{len(nodes) - 1}, got {sorted(nodes)[:10]!r}")
    objects = []
    for i in range(len(nodes)):
        d = g.nodes[i]
        if "name" not in d:
            raise SceneGraphError(f"nodes[{i}].name", "missing")
        attributes = d.get("attributes", ())
        if not isinstance(attributes, (list, tuple)):  # tuple("red") would be ('r', 'e', 'd')
            raise SceneGraphError(f"nodes[{i}].attributes", f"expected a list of strings, got {attributes!r:.60}")
        try:
            objects.append(SceneObject(d["name"], tuple(attributes),
                                       tuple(d["box"]) if d.get("box") is not None else None,
                                       tuple(d["span"]) if d.get("span") is not None else None))
        except SceneGraphError as e:
            raise e.with_prefix(f"nodes[{i}]") from None
    edges = list(g.edges(data=True))
    if edges and all("index" in d for _, _, d in edges):
        edges.sort(key=lambda e: e[2]["index"])
    relations = []
    for k, (u, v, d) in enumerate(edges):
        if "predicate" not in d:
            raise SceneGraphError(f"edges[{k}].predicate", "missing")
        try:
            relations.append(Relation(u, d["predicate"], v, tuple(d["span"]) if d.get("span") is not None else None))
        except SceneGraphError as e:
            raise e.with_prefix(f"edges[{k}]") from None
    return SceneGraph(tuple(objects), tuple(relations), g.graph.get("text"))


_JSON_KEYS = ("attributes", "box", "span")
_STRING_KEYS = ("name", "predicate", "text")
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _needs_escaping(graph: SceneGraph) -> bool:
    strings = [graph.text or ""] + [o.name for o in graph.objects] + [a for o in graph.objects for a in o.attributes]
    strings += [r.predicate for r in graph.relations]
    return any(_XML_INVALID.search(s) for s in strings)


def write_graphml(graph: SceneGraph, path: str | Path) -> None:
    """Write one scene graph as GraphML (list-valued attributes JSON-encoded)."""
    g = to_networkx(graph)
    escape = _needs_escaping(graph)
    ascii_ = escape  # json.dumps with ensure_ascii escapes control characters as \uXXXX
    for _, d in g.nodes(data=True):
        for key in _JSON_KEYS:
            if key in d:
                d[key] = json.dumps(d[key], ensure_ascii=ascii_)
        if escape:
            d["name"] = json.dumps(d["name"])
    for _, _, d in g.edges(data=True):
        if "span" in d:
            d["span"] = json.dumps(d["span"])
        if escape:
            d["predicate"] = json.dumps(d["predicate"])
    if escape:
        g.graph["json_strings"] = True
        if "text" in g.graph:
            g.graph["text"] = json.dumps(g.graph["text"])
    from .jsonl import atomic_write

    atomic_write(path, "\n".join(nx.generate_graphml(g, named_key_ids=True)) + "\n")


def read_graphml(path: str | Path) -> SceneGraph:
    """Read a GraphML file written by :func:`write_graphml` (or any GraphML with the same attributes).

    Raises:
        SceneGraphError: naming the file and the field (``a.graphml: nodes[2].box: not a JSON list: ...``).
    """
    try:
        return _read_graphml(path)
    except SceneGraphError as e:
        raise SceneGraphError(f"{path}: {e.field}", e.reason) from None
    except (ValueError, TypeError, RecursionError) as e:  # an attribute of an unexpected type or form
        raise SceneGraphError(f"{path}: graphml", f"malformed attribute ({type(e).__name__}: {e})") from None


def _json_attribute(value: str, where: str) -> Any:
    try:
        return loads_json(value)
    except SceneGraphError as e:
        raise SceneGraphError(where, f"not valid JSON ({e.reason}): {value!r:.60}") from None


def _read_graphml(path: str | Path) -> SceneGraph:
    try:
        g = nx.read_graphml(str(path), node_type=int, force_multigraph=True)
    except Exception as e:  # networkx raises a variety of parse errors
        raise SceneGraphError("graphml", f"not readable as GraphML ({e})") from None
    escaped = bool(g.graph.pop("json_strings", False))
    if escaped and "text" in g.graph:
        g.graph["text"] = _json_attribute(g.graph["text"], "text")
    for i, d in g.nodes(data=True):
        if escaped and isinstance(d.get("name"), str):
            d["name"] = _json_attribute(d["name"], f"nodes[{i}].name")
        for key in _JSON_KEYS:
            if key in d and isinstance(d[key], str):
                d[key] = _json_attribute(d[key], f"nodes[{i}].{key}")
                if not isinstance(d[key], list):
                    raise SceneGraphError(f"nodes[{i}].{key}", f"not a JSON list: {d[key]!r:.60}")
    for k, (_, _, d) in enumerate(g.edges(data=True)):
        if escaped and isinstance(d.get("predicate"), str):
            d["predicate"] = _json_attribute(d["predicate"], f"edges[{k}].predicate")
        if isinstance(d.get("span"), str):
            d["span"] = _json_attribute(d["span"], f"edges[{k}].span")
        if "index" in d:
            d["index"] = int(d["index"])
    if not g.is_directed():
        raise SceneGraphError("graphml", "scene graphs are directed; the file holds an undirected graph")
    return from_networkx(g)
