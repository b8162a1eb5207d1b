"""The ``SceneGraph`` data model and its JSON v1 interchange format.

Pure Python: this module imports nothing from torch, so ``import scenegraph_diff`` stays fast.

A scene graph is a list of objects (a name, attributes, an optional box and an optional span into the
text) and a list of directed relations between objects, given by index::

    {"text": "a red circle to the left of a blue square",
     "objects": [{"name": "circle", "attributes": ["red"]}, {"name": "square", "attributes": ["blue"]}],
     "relations": [{"subject": 0, "predicate": "left of", "object": 1}]}

Every read validates and raises :class:`SceneGraphError` naming the offending field, e.g.
``relations[3].object: index 7 out of range (5 objects)``. Unknown keys are rejected.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

__all__ = ["SceneGraph", "SceneObject", "Relation", "SceneGraphError", "canonical_label"]

_WS = re.compile(r"\s+")

_GRAPH_KEYS = frozenset({"text", "objects", "relations"})
_OBJECT_KEYS = frozenset({"name", "attributes", "box", "span"})
_RELATION_KEYS = frozenset({"subject", "predicate", "object", "span"})


class SceneGraphError(ValueError):
    """Invalid scene-graph input. ``field`` names the offending field (``relations[3].object``).

    ``str(err)`` is ``"<field>: <reason>"``; a reader of JSON lines prefixes ``line N: ``.
    """

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}" if field else reason)

    def with_prefix(self, prefix: str) -> "SceneGraphError":
        """Return a copy whose field is prefixed (``objects[2]`` -> ``graphs[5].objects[2]``)."""
        joined = f"{prefix}.{self.field}" if self.field and not self.field.startswith("[") else prefix + self.field
        return SceneGraphError(joined, self.reason)


def canonical_label(label: str) -> str:
    """Canonical form of a label: NFC-normalised, lower-cased, runs of white space folded to one space.

    >>> canonical_label("  Red   Circle ")
    'red circle'
    """
    return _WS.sub(" ", unicodedata.normalize("NFC", label)).strip().lower()


def _type_name(value: Any) -> str:
    return type(value).__name__


def _check_label(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise SceneGraphError(where, f"expected a string, got {_type_name(value)} {value!r:.60}")
    if not value.strip():
        raise SceneGraphError(where, f"must be a non-empty string, got {value!r}")
    return value


def _check_index(value: Any, where: str, num_objects: int) -> int:
    # bool is an int subclass; True as an index is a bug in the caller, not an index.
    if isinstance(value, bool) or not isinstance(value, int):
        raise SceneGraphError(where, f"expected an integer index, got {_type_name(value)} {value!r:.60}")
    if not 0 <= value < num_objects:
        raise SceneGraphError(where, f"index {value} out of range ({num_objects} objects)")
    return value


def _check_box(value: Any, where: str) -> tuple[float, float, float, float]:
    if not isinstance(value, (list, tuple)) or len(value) != 4:
        raise SceneGraphError(where, f"expected [x0, y0, x1, y1], got {value!r:.80}")
    out = []
    for i, v in enumerate(value):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise SceneGraphError(f"{where}[{i}]", f"expected a number, got {_type_name(v)} {v!r:.60}")
        if not math.isfinite(v) or not 0.0 <= v <= 1.0:
            raise SceneGraphError(f"{where}[{i}]", f"must lie in [0, 1], got {v!r}")
        out.append(float(v))
    x0, y0, x1, y1 = out
    if not x0 < x1:
        raise SceneGraphError(where, f"needs x0 < x1, got x0={x0} x1={x1}")
    if not y0 < y1:
        raise SceneGraphError(where, f"needs y0 < y1, got y0={y0} y1={y1}")
    return (x0, y0, x1, y1)


def _check_span(value: Any, where: str, text: str | None) -> tuple[int, int]:
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise SceneGraphError(where, f"expected [start, end], got {value!r:.80}")
    for i, v in enumerate(value):
        if isinstance(v, bool) or not isinstance(v, int):
            raise SceneGraphError(f"{where}[{i}]", f"expected an integer offset, got {_type_name(v)} {v!r:.60}")
    start, end = value
    if text is None:
        raise SceneGraphError(where, "a span needs the graph's text, but text is missing")
    if not 0 <= start <= end <= len(text):
        raise SceneGraphError(where, f"[{start}, {end}] is not within the text (length {len(text)})")
    return (start, end)


@dataclass(frozen=True)
class SceneObject:
    """One object node: a noun (``name``), its ``attributes``, an optional ``box`` and ``span``.

    Args:
        name: noun phrase head, e.g. ``"circle"``.
        attributes: e.g. ``("red",)``; counts are digit strings (``"2"``).
        box: optional ``(x0, y0, x1, y1)`` in ``[0, 1]`` with ``x0 < x1`` and ``y0 < y1``.
        span: optional ``(start, end)`` character offsets into the graph's text.
    """

    name: str
    attributes: tuple[str, ...] = ()
    box: tuple[float, float, float, float] | None = None
    span: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        _check_label(self.name, "name")
        if isinstance(self.attributes, str) or not isinstance(self.attributes, (list, tuple)):
            raise SceneGraphError("attributes", f"expected a list of strings, got {_type_name(self.attributes)}")
        attrs = tuple(_check_label(a, f"attributes[{i}]") for i, a in enumerate(self.attributes))
        object.__setattr__(self, "attributes", attrs)
        if self.box is not None:
            object.__setattr__(self, "box", _check_box(self.box, "box"))
        if self.span is not None:
            span = self.span
            if not isinstance(span, (list, tuple)) or len(span) != 2:
                raise SceneGraphError("span", f"expected [start, end], got {span!r:.80}")
            object.__setattr__(self, "span", tuple(span))

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "attributes": list(self.attributes)}
        if self.box is not None:
            d["box"] = list(self.box)
        if self.span is not None:
            d["span"] = list(self.span)
        return d


@dataclass(frozen=True)
class Relation:
    """A directed relation ``objects[subject] --predicate--> objects[object]``."""

    subject: int
    predicate: str
    object: int
    span: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        _check_label(self.predicate, "predicate")
        for name in ("subject", "object"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise SceneGraphError(name, f"expected a non-negative integer index, got {v!r:.60}")
        if self.span is not None:
            if not isinstance(self.span, (list, tuple)) or len(self.span) != 2:
                raise SceneGraphError("span", f"expected [start, end], got {self.span!r:.80}")
            object.__setattr__(self, "span", tuple(self.span))

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"subject": self.subject, "predicate": self.predicate, "object": self.object}
        if self.span is not None:
            d["span"] = list(self.span)
        return d


@dataclass(frozen=True)
class SceneGraph:
    """A scene graph: objects, directed relations between them (by index) and optional source text.

    Immutable and hashable; equality is structural. Construction validates everything (indices in
    range, no self-relations, boxes and spans well formed) and raises :class:`SceneGraphError`.

    Example:
        >>> g = SceneGraph.from_dict({"objects": [{"name": "cat"}, {"name": "dog"}],
        ...                          "relations": [{"subject": 0, "predicate": "on", "object": 1}]})
        >>> g.triplets()
        [('cat', 'on', 'dog')]
    """

    objects: tuple[SceneObject, ...] = ()
    relations: tuple[Relation, ...] = ()
    text: str | None = None

    def __post_init__(self) -> None:
        if self.text is not None and not isinstance(self.text, str):
            raise SceneGraphError("text", f"expected a string, got {_type_name(self.text)}")
        objs = tuple(self.objects)
        rels = tuple(self.relations)
        for i, o in enumerate(objs):
            if not isinstance(o, SceneObject):
                raise SceneGraphError(f"objects[{i}]", f"expected SceneObject, got {_type_name(o)}")
            if o.span is not None:
                try:
                    _check_span(o.span, "span", self.text)
                except SceneGraphError as e:
                    raise e.with_prefix(f"objects[{i}]") from None
        n = len(objs)
        for k, r in enumerate(rels):
            if not isinstance(r, Relation):
                raise SceneGraphError(f"relations[{k}]", f"expected Relation, got {_type_name(r)}")
            _check_index(r.subject, f"relations[{k}].subject", n)
            _check_index(r.object, f"relations[{k}].object", n)
            if r.subject == r.object:
                raise SceneGraphError(f"relations[{k}]", f"self-relation on object {r.subject} is not allowed")
            if r.span is not None:
                try:
                    _check_span(r.span, "span", self.text)
                except SceneGraphError as e:
                    raise e.with_prefix(f"relations[{k}]") from None
        object.__setattr__(self, "objects", objs)
        object.__setattr__(self, "relations", rels)

    # ------------------------------------------------------------------ construction helpers
    @classmethod
    def from_triplets(
        cls,
        triplets: Iterable[tuple[str, str, str]],
        objects: Iterable[str] = (),
        attributes: Mapping[str, Sequence[str]] | None = None,
        text: str | None = None,
    ) -> "SceneGraph":
        """Build a graph from ``(subject, predicate, object)`` name triplets.

        Objects are identified by name (one node per distinct name); ``objects`` adds lone objects and
        ``attributes`` maps a name to its attributes.
        """
        index: dict[str, int] = {}
        names: list[str] = []

        def node(name: str) -> int:
            if name not in index:
                index[name] = len(names)
                names.append(name)
            return index[name]

        rels = [Relation(node(s), p, node(o)) for s, p, o in triplets]
        for name in objects:
            node(name)
        attributes = attributes or {}
        objs = [SceneObject(n, tuple(attributes.get(n, ()))) for n in names]
        return cls(tuple(objs), tuple(rels), text)

    # ------------------------------------------------------------------ views
    @property
    def num_objects(self) -> int:
        return len(self.objects)

    @property
    def num_relations(self) -> int:
        return len(self.relations)

    @property
    def num_attributes(self) -> int:
        return sum(len(o.attributes) for o in self.objects)

    def triplets(self) -> list[tuple[str, str, str]]:
        """``[(subject name, predicate, object name), ...]`` in relation order."""
        return [(self.objects[r.subject].name, r.predicate, self.objects[r.object].name) for r in self.relations]

    def is_empty(self) -> bool:
        return not self.objects

    # ------------------------------------------------------------------ transformations
    def canonicalize(self) -> "SceneGraph":
        """Return a copy with every label in :func:`canonical_label` form (case, Unicode, white space).

        Labels that would become empty raise :class:`SceneGraphError`. Never mutates ``self``.
        """
        objs = []
        for i, o in enumerate(self.objects):
            try:
                objs.append(
                    SceneObject(canonical_label(o.name), tuple(canonical_label(a) for a in o.attributes), o.box, o.span)
                )
            except SceneGraphError as e:
                raise e.with_prefix(f"objects[{i}]") from None
        rels = []
        for k, r in enumerate(self.relations):
            try:
                rels.append(Relation(r.subject, canonical_label(r.predicate), r.object, r.span))
            except SceneGraphError as e:
                raise e.with_prefix(f"relations[{k}]") from None
        return SceneGraph(tuple(objs), tuple(rels), self.text)

    def without_text(self) -> "SceneGraph":
        """Copy without ``text`` and spans (the structure only)."""
        return SceneGraph(
            tuple(SceneObject(o.name, o.attributes, o.box) for o in self.objects),
            tuple(Relation(r.subject, r.predicate, r.object) for r in self.relations),
        )

    def swapped(self) -> "SceneGraph":
        """Copy with every relation reversed (``A r B`` becomes ``B r A``); text and spans are dropped."""
        g = self.without_text()
        return SceneGraph(g.objects, tuple(Relation(r.object, r.predicate, r.subject) for r in g.relations))

    # ------------------------------------------------------------------ dict / JSON
    def to_dict(self) -> dict[str, Any]:
        """JSON v1 dict. ``SceneGraph.from_dict(g.to_dict()) == g`` always holds."""
        d: dict[str, Any] = {}
        if self.text is not None:
            d["text"] = self.text
        d["objects"] = [o.to_dict() for o in self.objects]
        d["relations"] = [r.to_dict() for r in self.relations]
        return d

    def to_json(self, **kwargs: Any) -> str:
        """One-line JSON (UTF-8 characters kept, no ASCII escaping)."""
        kwargs.setdefault("ensure_ascii", False)
        kwargs.setdefault("separators", (", ", ": "))
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_dict(cls, d: Any) -> "SceneGraph":
        """Validate a JSON v1 dict and build the graph. Raises :class:`SceneGraphError` naming the field."""
        if not isinstance(d, Mapping):
            raise SceneGraphError("graph", f"expected a JSON object, got {_type_name(d)}")
        unknown = set(d) - _GRAPH_KEYS
        if unknown:
            raise SceneGraphError(sorted(map(str, unknown))[0], "unknown key (allowed: text, objects, relations)")
        text = d.get("text")
        if text is not None and not isinstance(text, str):
            raise SceneGraphError("text", f"expected a string, got {_type_name(text)}")
        raw_objects = d.get("objects", [])
        if not isinstance(raw_objects, list):
            raise SceneGraphError("objects", f"expected a list, got {_type_name(raw_objects)}")
        raw_relations = d.get("relations", [])
        if not isinstance(raw_relations, list):
            raise SceneGraphError("relations", f"expected a list, got {_type_name(raw_relations)}")

        objects = []
        for i, o in enumerate(raw_objects):
            where = f"objects[{i}]"
            if not isinstance(o, Mapping):
                raise SceneGraphError(where, f"expected a JSON object, got {_type_name(o)}")
            unknown = set(o) - _OBJECT_KEYS
            if unknown:
                raise SceneGraphError(f"{where}.{sorted(map(str, unknown))[0]}", "unknown key")
            if "name" not in o:
                raise SceneGraphError(f"{where}.name", "missing")
            name = _check_label(o["name"], f"{where}.name")
            attrs = o.get("attributes", [])
            if not isinstance(attrs, list):
                raise SceneGraphError(f"{where}.attributes", f"expected a list, got {_type_name(attrs)}")
            attrs = tuple(_check_label(a, f"{where}.attributes[{j}]") for j, a in enumerate(attrs))
            box = _check_box(o["box"], f"{where}.box") if o.get("box") is not None else None
            span = _check_span(o["span"], f"{where}.span", text) if o.get("span") is not None else None
            objects.append(SceneObject(name, attrs, box, span))

        relations = []
        n = len(objects)
        for k, r in enumerate(raw_relations):
            where = f"relations[{k}]"
            if not isinstance(r, Mapping):
                raise SceneGraphError(where, f"expected a JSON object, got {_type_name(r)}")
            unknown = set(r) - _RELATION_KEYS
            if unknown:
                raise SceneGraphError(f"{where}.{sorted(map(str, unknown))[0]}", "unknown key")
            for key in ("subject", "predicate", "object"):
                if key not in r:
                    raise SceneGraphError(f"{where}.{key}", "missing")
            s = _check_index(r["subject"], f"{where}.subject", n)
            o_ = _check_index(r["object"], f"{where}.object", n)
            p = _check_label(r["predicate"], f"{where}.predicate")
            if s == o_:
                raise SceneGraphError(where, f"self-relation on object {s} is not allowed")
            span = _check_span(r["span"], f"{where}.span", text) if r.get("span") is not None else None
            relations.append(Relation(s, p, o_, span))
        return cls(tuple(objects), tuple(relations), text)

    @classmethod
    def from_json(cls, s: str | bytes | bytearray) -> "SceneGraph":
        """Parse one JSON document (``str`` or UTF-8 ``bytes``). Any failure is a :class:`SceneGraphError`."""
        return cls.from_dict(loads_json(s))

    def __repr__(self) -> str:
        objs = ", ".join(" ".join((*o.attributes, o.name)) for o in self.objects[:6])
        if len(self.objects) > 6:
            objs += ", ..."
        rels = ", ".join(f"{s} {p} {o}" for s, p, o in self.triplets()[:4])
        if len(self.relations) > 4:
            rels += ", ..."
        return f"SceneGraph(objects=[{objs}], relations=[{rels}])"


def _reject_constant(name: str) -> Any:
    raise SceneGraphError("json", f"{name} is not valid JSON")


def loads_json(s: str | bytes | bytearray) -> Any:
    """``json.loads`` that reports every failure as :class:`SceneGraphError` (``json: ...``).

    Rejects invalid UTF-8, NaN/Infinity, and nesting too deep for the parser.
    """
    if isinstance(s, (bytes, bytearray)):
        try:
            s = bytes(s).decode("utf-8")
        except UnicodeDecodeError as e:
            raise SceneGraphError("json", f"invalid UTF-8 at byte {e.start}") from None
    if not isinstance(s, str):
        raise SceneGraphError("json", f"expected str or bytes, got {_type_name(s)}")
    try:
        return json.loads(s, parse_constant=_reject_constant)
    except json.JSONDecodeError as e:
        raise SceneGraphError("json", f"{e.msg} at line {e.lineno} column {e.colno}") from None
    except RecursionError:
        raise SceneGraphError("json", "nesting too deep") from None
    except ValueError as e:  # e.g. integer string too long to convert
        raise SceneGraphError("json", str(e)) from None
