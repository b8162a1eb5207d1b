"""Streaming JSON-lines I/O for scene graphs (one SceneGraph JSON v1 document per line).

Reading is streaming and line-local: a bad line (invalid UTF-8, truncated JSON, a schema error) is
reported as ``line N: field: reason`` and never affects its neighbours. Writing is atomic
(temporary file + rename), so a crash never leaves a half-written file behind.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path
from typing import IO, Callable, Iterable, Iterator, Union

from .scene_graph import SceneGraph, SceneGraphError, loads_json

__all__ = ["read_jsonl", "iter_jsonl", "write_jsonl", "atomic_write", "is_edge_list"]

PathLike = Union[str, "os.PathLike[str]"]


def iter_jsonl(source: PathLike | IO[bytes] | IO[str]) -> Iterator[tuple[int, SceneGraph | SceneGraphError]]:
    """Yield ``(line_number, graph_or_error)`` for every non-blank line (1-based line numbers).

    Errors are yielded, not raised, with their field prefixed by ``line N``. Blank lines are skipped.
    """
    own = not hasattr(source, "read")
    f = open(source, "rb") if own else source  # type: ignore[arg-type]
    try:
        for lineno, raw in enumerate(f, start=1):
            if isinstance(raw, str):
                raw = raw.encode("utf-8", "surrogatepass")
            if not raw.strip():
                continue
            try:
                # Without its line break, so that a JSON error position reads "line 1 column C".
                yield lineno, SceneGraph.from_json(raw.rstrip(b"\r\n"))
            except SceneGraphError as e:
                err = SceneGraphError(f"line {lineno}: {e.field}", e.reason)
                err.line = lineno  # type: ignore[attr-defined]
                yield lineno, err
    finally:
        if own:
            f.close()


def read_jsonl(
    source: PathLike | IO[bytes] | IO[str],
    on_error: Callable[[int, SceneGraphError], None] | None = None,
) -> Iterator[SceneGraph]:
    """Stream the scene graphs of a JSONL file.

    Args:
        source: a path or an open file (binary or text).
        on_error: called as ``on_error(line_number, error)`` for a bad line, which is then skipped.
            When ``None`` (default) the first bad line raises ``SceneGraphError("line N: field: reason")``.
    """
    for lineno, item in iter_jsonl(source):
        if isinstance(item, SceneGraphError):
            if on_error is None:
                raise item
            on_error(lineno, item)
            continue
        yield item


def _umask() -> int:
    """The process umask (read from ``/proc`` where possible: setting it to read it is not thread-safe)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def is_edge_list(path: PathLike, max_bytes: int = 1 << 20) -> bool:
    """Whether ``path`` is an edge-list JSONL file (``{"num_nodes", "edges"}`` per line, as ``sample-graphs``
    writes for networks) rather than SceneGraph JSONL: judged on its first non-blank line (read up to
    ``max_bytes``)."""
    with open(path, "rb") as f:
        while True:
            raw = f.readline(max_bytes + 1)
            if not raw:
                return False
            if raw.strip():
                break
    if len(raw) > max_bytes:  # a line this long is no edge list we could tell apart cheaply
        return False
    try:
        first = loads_json(raw)
    except SceneGraphError:
        return False
    return isinstance(first, dict) and "num_nodes" in first and "edges" in first


def atomic_write(path: PathLike, data: bytes | str) -> None:
    """Write ``data`` to ``path`` atomically: a temporary file in the same folder, fsync, then rename.

    The file gets the permissions a plain ``open(path, "w")`` would give it: those of the file it replaces,
    else ``0o666`` minus the umask (not the ``0o600`` of a temporary file).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = path.stat().st_mode & 0o7777
    except FileNotFoundError:
        mode = 0o666 & ~_umask()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_jsonl(target: PathLike | IO[str], graphs: Iterable[SceneGraph]) -> int:
    """Write graphs as JSON lines; returns the number written.

    A path is written atomically (temp file + rename, so readers never see a partial file); an open
    text file is written to directly.
    """
    if hasattr(target, "write"):
        n = 0
        for g in graphs:
            target.write(g.to_json() + "\n")  # type: ignore[union-attr]
            n += 1
        return n
    buf = io.StringIO()
    n = write_jsonl(buf, graphs)
    atomic_write(target, buf.getvalue())  # type: ignore[arg-type]
    return n
