"""Vocabularies: object names, attributes and predicates -> integer ids (id 0 is the unknown label)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from .scene_graph import SceneGraph, SceneGraphError

__all__ = ["Vocabulary", "KINDS", "UNK"]

KINDS = ("object", "attribute", "predicate")
UNK = "<unk>"


class Vocabulary:
    """Three label tables (``object``, ``attribute``, ``predicate``), each with ``<unk>`` at id 0.

    Example:
        >>> v = Vocabulary(objects=["cat", "dog"], predicates=["on"])
        >>> v.index("object", "dog"), v.index("object", "zebra"), v.label("predicate", 1)
        (2, 0, 'on')
    """

    def __init__(
        self,
        objects: Iterable[str] = (),
        attributes: Iterable[str] = (),
        predicates: Iterable[str] = (),
    ) -> None:
        self._labels: dict[str, list[str]] = {}
        self._index: dict[str, dict[str, int]] = {}
        for kind, labels in zip(KINDS, (objects, attributes, predicates)):
            table = [UNK]
            index = {UNK: 0}
            for lab in labels:
                if not isinstance(lab, str) or not lab:
                    raise SceneGraphError(f"{kind}s", f"labels must be non-empty strings, got {lab!r}")
                if lab in index:
                    raise SceneGraphError(f"{kind}s", f"duplicate label {lab!r}")
                index[lab] = len(table)
                table.append(lab)
            self._labels[kind] = table
            self._index[kind] = index

    # ------------------------------------------------------------------ building
    @classmethod
    def from_graphs(cls, graphs: Iterable[SceneGraph], min_count: int = 1) -> "Vocabulary":
        """Build from a corpus, keeping labels seen at least ``min_count`` times (ordered by count, then label)."""
        if min_count < 1:
            raise ValueError(f"min_count must be >= 1, got {min_count}")
        counts = {k: Counter() for k in KINDS}
        for g in graphs:
            for o in g.objects:
                counts["object"][o.name] += 1
                counts["attribute"].update(o.attributes)
            counts["predicate"].update(r.predicate for r in g.relations)

        def keep(c: Counter) -> list[str]:
            return [lab for lab, n in sorted(c.items(), key=lambda kv: (-kv[1], kv[0])) if n >= min_count and lab != UNK]

        return cls(keep(counts["object"]), keep(counts["attribute"]), keep(counts["predicate"]))

    # ------------------------------------------------------------------ lookups
    def _kind(self, kind: str) -> str:
        if kind not in self._index:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        return kind

    def index(self, kind: str, label: str) -> int:
        """Id of ``label`` (0 if unknown)."""
        return self._index[self._kind(kind)].get(label, 0)

    def indices(self, kind: str, labels: Sequence[str]) -> list[int]:
        table = self._index[self._kind(kind)]
        return [table.get(lab, 0) for lab in labels]

    def label(self, kind: str, idx: int) -> str:
        table = self._labels[self._kind(kind)]
        if not 0 <= idx < len(table):
            raise IndexError(f"{kind} id {idx} out of range ({len(table)} labels)")
        return table[idx]

    def labels(self, kind: str) -> list[str]:
        """All labels of a kind, ``<unk>`` first."""
        return list(self._labels[self._kind(kind)])

    def size(self, kind: str) -> int:
        return len(self._labels[self._kind(kind)])

    def __contains__(self, item: tuple[str, str]) -> bool:
        kind, label = item
        return label in self._index[self._kind(kind)]

    @property
    def num_objects(self) -> int:
        return self.size("object")

    @property
    def num_attributes(self) -> int:
        return self.size("attribute")

    @property
    def num_predicates(self) -> int:
        return self.size("predicate")

    # ------------------------------------------------------------------ persistence
    def to_dict(self) -> dict[str, list[str]]:
        return {f"{k}s": self._labels[k][1:] for k in KINDS}

    @classmethod
    def from_dict(cls, d: Mapping[str, Sequence[str]]) -> "Vocabulary":
        if not isinstance(d, Mapping):
            raise SceneGraphError("vocabulary", f"expected a JSON object, got {type(d).__name__}")
        unknown = set(d) - {"objects", "attributes", "predicates"}
        if unknown:
            raise SceneGraphError(sorted(unknown)[0], "unknown key (allowed: objects, attributes, predicates)")
        for key in ("objects", "attributes", "predicates"):
            if not isinstance(d.get(key, []), list):
                raise SceneGraphError(key, f"expected a list, got {type(d.get(key)).__name__}")
        return cls(d.get("objects", ()), d.get("attributes", ()), d.get("predicates", ()))

    def save(self, path: str | Path) -> None:
        from .jsonl import atomic_write

        atomic_write(path, json.dumps(self.to_dict(), ensure_ascii=False, indent=1) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "Vocabulary":
        from .scene_graph import loads_json

        return cls.from_dict(loads_json(Path(path).read_bytes()))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self._labels == other._labels

    def __repr__(self) -> str:
        return f"Vocabulary(objects={self.num_objects}, attributes={self.num_attributes}, predicates={self.num_predicates})"
