"""The :class:`Parser` protocol every text -> scene graph backend implements."""

from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

from ..graph.scene_graph import SceneGraph

__all__ = ["Parser"]


@runtime_checkable
class Parser(Protocol):
    """A text -> :class:`SceneGraph` parser.

    ``parse`` never raises on valid Unicode ``str`` input: empty or meaningless text gives an empty graph
    (a ``str`` with a lone surrogate, which no graph can hold, raises ``SceneGraphError``). Returned
    graphs carry ``text`` and character ``span`` s (objects: the head noun phrase; relations: the
    predicate words) into it. Text beyond :data:`~.tokenize.MAX_CHARS` characters is not parsed (a
    warning is logged).
    """

    name: str

    def parse(self, text: str) -> SceneGraph: ...

    def parse_batch(self, texts: Sequence[str], batch_size: int = 256) -> list[SceneGraph]: ...
