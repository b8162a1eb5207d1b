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
import reprlib
import sys
import unicodedata
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

__all__ = ["SceneGraph", "SceneObject", "Relation", "SceneGraphError", "canonical_label", "check_unicode"]

_WS = re.compile(r"\s+")

_GRAPH_KEYS = frozenset({"text", "objects", "relations"})
_OBJECT_KEYS = frozenset({"name", "attributes", "box", "span"})
_RELATION_KEYS = frozenset({"subject", "predicate", "object", "span"})
_SURROGATE = re.compile("[\ud800-\udfff]")


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


class _ShortRepr(reprlib.Repr):
    """``repr`` for error messages: bounded length and depth, safe on any value (deeply nested lists,
    integers too long for ``str()``), so that reporting a bad value can never fail itself."""

    def __init__(self) -> None:
        super().__init__()
        self.maxlevel, self.maxlist, self.maxtuple, self.maxdict = 3, 6, 6, 4
        self.maxstring, self.maxlong, self.maxother = 50, 30, 50

    def repr_int(self, x: int, level: int) -> str:
        if x.bit_length() > 3000:  # more than ~900 digits: str() may refuse (int_max_str_digits)
            digits = int(x.bit_length() * math.log10(2)) + 1
            return f"{'-' if x < 0 else ''}<an integer of about {digits} digits>"
        return super().repr_int(x, level)


def _show(value: Any) -> str:
    """A short, always computable ``repr`` of ``value`` for messages (at most ~60 characters)."""
    try:
        return _ShortRepr().repr(value)
    except Exception:  # e.g. a user type whose __repr__ raises
        return f"<{_type_name(value)}>"


def check_unicode(value: str, where: str) -> str:
    """Return ``value`` if it is valid Unicode; raise :class:`SceneGraphError` at ``where`` for a lone surrogate.

    Such a string cannot be written as UTF-8: it comes from undecodable bytes (argv, or a file read with
    ``errors="surrogateescape"``) or from a ``"\\ud800"`` JSON escape. Every string of a graph is checked,
    so a valid graph can always be written.
    """
    if not value.isascii():
        m = _SURROGATE.search(value)
        if m is not None:
            raise SceneGraphError(where, f"contains a lone surrogate U+{ord(m.group()):04X} at offset {m.start()} "
                                         "(not valid Unicode: undecodable input bytes?)")
    return value


def _check_label(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise SceneGraphError(where, f"expected a string, got {_type_name(value)} {_show(value)}")
    if not value.strip():
        raise SceneGraphError(where, f"must be a non-empty string, got {_show(value)}")
    return check_unicode(value, where)


def _check_index(value: Any, where: str, num_objects: int) -> int:
    # bool is an int subclass; True as an index is a bug in the caller, not an index.
    if isinstance(value, bool) or not isinstance(value, int):
        raise SceneGraphError(where, f"expected an integer index, got {_type_name(value)} {_show(value)}")
    if not 0 <= value < num_objects:
        raise SceneGraphError(where, f"index {_show(value)} out of range ({num_objects} objects)")
    return value


def _check_box(value: Any, where: str) -> tuple[float, float, float, float]:
    if not isinstance(value, (list, tuple)) or len(value) != 4:
        raise SceneGraphError(where, f"expected [x0, y0, x1, y1], got {_show(value)}")
    out = []
    for i, v in enumerate(value):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise SceneGraphError(f"{where}[{i}]", f"expected a number, got {_type_name(v)} {_show(v)}")
        # Compare before converting: float() of a huge integer raises OverflowError.
        if (isinstance(v, float) and not math.isfinite(v)) or not 0 <= v <= 1:
            raise SceneGraphError(f"{where}[{i}]", f"must lie in [0, 1], got {_show(v)}")
        out.append(float(v))
    x0, y0, x1, y1 = out
    if not x0 < x1:
        raise SceneGraphError(where, f"needs x0 < x1, got x0={x0} x1={x1}")
    if not y0 < y1:
        raise SceneGraphError(where, f"needs y0 < y1, got y0={y0} y1={y1}")
    return (x0, y0, x1, y1)


def _check_span(value: Any, where: str, text: str | None) -> tuple[int, int]:
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise SceneGraphError(where, f"expected [start, end], got {_show(value)}")
    for i, v in enumerate(value):
        if isinstance(v, bool) or not isinstance(v, int):
            raise SceneGraphError(f"{where}[{i}]", f"expected an integer offset, got {_type_name(v)} {_show(v)}")
    start, end = value
    if text is None:
        raise SceneGraphError(where, "a span needs the graph's text, but text is missing")
    if not 0 <= start <= end <= len(text):
        raise SceneGraphError(where, f"[{_show(start)}, {_show(end)}] is not within the text (length {len(text)})")
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
                raise SceneGraphError("span", f"expected [start, end], got {_show(span)}")
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
                raise SceneGraphError(name, f"expected a non-negative integer index, got {_show(v)}")
        if self.span is not None:
            if not isinstance(self.span, (list, tuple)) or len(self.span) != 2:
                raise SceneGraphError("span", f"expected [start, end], got {_show(self.span)}")
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
        if self.text is not None:
            if not isinstance(self.text, str):
                raise SceneGraphError("text", f"expected a string, got {_type_name(self.text)}")
            check_unicode(self.text, "text")
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
            if "num_nodes" in d and "edges" in d:
                raise SceneGraphError("graph", "an edge-list record ({num_nodes, edges}) from sample-graphs, "
                                               "not SceneGraph JSON")
            raise SceneGraphError(_first_key(unknown), "unknown key (allowed: text, objects, relations)")
        text = d.get("text")
        if text is not None:
            if not isinstance(text, str):
                raise SceneGraphError("text", f"expected a string, got {_type_name(text)}")
            check_unicode(text, "text")
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
                raise SceneGraphError(f"{where}.{_first_key(unknown)}", "unknown key")
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
                raise SceneGraphError(f"{where}.{_first_key(unknown)}", "unknown key")
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


def _first_key(keys: Iterable[Any]) -> str:
    """The first of ``keys`` in sorted order, as text (non-string keys of a Python dict shown by repr)."""
    return sorted(k if isinstance(k, str) else _show(k) for k in keys)[0]


def _reject_constant(name: str) -> Any:
    raise SceneGraphError("json", f"{name} is not valid JSON")


def loads_json(s: str | bytes | bytearray, allow_nan: bool = False) -> Any:
    """``json.loads`` that reports every failure as :class:`SceneGraphError` (``json: ...``).

    Accepts a leading UTF-8 byte order mark. Rejects invalid UTF-8, NaN/Infinity (unless ``allow_nan``, as
    Python's ``json`` does), integers too long to convert, and nesting too deep for the parser.
    """
    if isinstance(s, (bytes, bytearray)):
        try:
            s = bytes(s).decode("utf-8")
        except UnicodeDecodeError as e:
            raise SceneGraphError("json", f"invalid UTF-8 at byte {e.start}") from None
    if not isinstance(s, str):
        raise SceneGraphError("json", f"expected str or bytes, got {_type_name(s)}")
    if s.startswith("\ufeff"):  # a byte order mark, as some editors write
        s = s[1:]
    try:
        return json.loads(s) if allow_nan else json.loads(s, parse_constant=_reject_constant)
    except SceneGraphError:
        raise
    except json.JSONDecodeError as e:
        raise SceneGraphError("json", f"{e.msg} at line {e.lineno} column {e.colno}") from None
    except RecursionError:
        raise SceneGraphError("json", "nesting too deep") from None
    except ValueError as e:  # an integer string longer than sys.get_int_max_str_digits()
        if "integer string conversion" in str(e):
            raise SceneGraphError("json", f"integer too long (more than {sys.get_int_max_str_digits()} digits)") from None
        raise SceneGraphError("json", str(e).splitlines()[0] if str(e) else type(e).__name__) from None
