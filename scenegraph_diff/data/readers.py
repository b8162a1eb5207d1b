"""Streaming record readers that can resume from a saved position.

Every reader yields :class:`Record` s: the parsed item, the 1-based line where it starts (for
``file:line: reason`` reports), its 0-based index, and ``position`` — a small JSON-serialisable
value from which the same reader restarts right *after* this record (a byte offset plus counters).

- :func:`iter_json_array` streams the elements of a (huge) top-level JSON array, or of the array
  under one key of a top-level object, in bounded memory: an incremental splitter over
  :meth:`json.JSONDecoder.raw_decode` on a sliding buffer. A JSON *syntax* error cannot be skipped
  (there is no way to find the next element reliably) and raises :class:`JSONStreamError`.
- :func:`iter_lines`, :func:`iter_jsonl_records`, :func:`iter_csv_records` read line-based files
  (a CSV record may span lines inside quotes).
"""

from __future__ import annotations

import codecs
import csv
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Callable, Iterator, Sequence, Union

__all__ = [
    "Record",
    "JSONStreamError",
    "iter_json_array",
    "iter_json_object",
    "iter_lines",
    "iter_jsonl_records",
    "iter_csv_records",
    "iter_text_records",
    "chain_records",
    "TEXT_COLUMNS",
]

PathLike = Union[str, "os.PathLike[str]"]
TEXT_COLUMNS = ("text", "caption", "prompt", "sentence")
_WS = " \t\n\r"


@dataclass(frozen=True)
class Record:
    """One input record.

    Attributes:
        value: the parsed item (a JSON value, a line without its newline, a CSV row dict), or an
            ``Exception`` describing why this record could not be decoded (it is still a record:
            the caller reports and skips it).
        line: 1-based line number where the record starts.
        index: 0-based record index in the file.
        position: resume token: pass it as ``start=`` to restart after this record.
    """

    value: Any
    line: int
    index: int
    position: dict[str, int]


class JSONStreamError(ValueError):
    """A JSON syntax error in a streamed file (``file:line: reason``): the stream cannot continue."""


def _start(start: dict[str, int] | None) -> tuple[int, int, int]:
    if start is None:
        return 0, 1, 0
    try:
        return int(start["offset"]), int(start["line"]), int(start["index"])
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"bad resume position {start!r}: expected {{'offset', 'line', 'index'}}") from None


def iter_json_object(
    path: PathLike, start: dict[str, int] | None = None, chunk_size: int = 1 << 20
) -> Iterator[Record]:
    """Stream the members of a top-level JSON object as ``Record((key, value), ...)`` records."""
    return iter_json_array(path, start=start, chunk_size=chunk_size, _members=True)


def iter_json_array(
    path: PathLike,
    key: str | None = None,
    start: dict[str, int] | None = None,
    chunk_size: int = 1 << 20,
    _members: bool = False,
) -> Iterator[Record]:
    """Stream the elements of a JSON array file without loading it.

    Args:
        path: the file: ``[elem, elem, ...]``, or (with ``key``) ``{..., "key": [elem, ...], ...}``.
        key: stream the array stored under this top-level key (the other keys are skipped
            value by value, so they may be large too).
        start: a :attr:`Record.position` to resume after.
        chunk_size: bytes read at a time.

    Raises:
        JSONStreamError: invalid JSON (``file:line: reason``) or ``key`` not found.
    """
    path = Path(path)
    name = path.name
    offset, line, index = _start(start)
    decoder = json.JSONDecoder()
    f = open(path, "rb")
    try:
        f.seek(offset)
        utf8 = codecs.getincrementaldecoder("utf-8")()
        buf = ""
        pos = 0
        # A cursor at a buffer index whose absolute byte offset and line are known; it only moves
        # forward, so the byte/line bookkeeping costs O(file size) in total.
        cur_pos, cur_bytes, cur_line = 0, offset, line
        eof = False

        def advance(to: int) -> None:
            nonlocal cur_pos, cur_bytes, cur_line
            if to > cur_pos:
                seg = buf[cur_pos:to]
                cur_bytes += len(seg) if seg.isascii() else len(seg.encode("utf-8"))
                cur_line += seg.count("\n")
                cur_pos = to

        def fill(min_extra: int = 1) -> bool:
            nonlocal buf, pos, cur_pos, eof
            if eof:
                return False
            if pos > 0:  # drop consumed text so memory stays bounded
                advance(pos)
                buf = buf[pos:]
                pos = 0
                cur_pos = 0
            data = f.read(max(chunk_size, len(buf), min_extra))
            if not data:
                eof = True
                buf += utf8.decode(b"", final=True)
                return False
            buf += utf8.decode(data)
            return True

        def here() -> int:
            advance(pos)
            return cur_line

        def fail(reason: str) -> JSONStreamError:
            return JSONStreamError(f"{name}:{here()}: {reason}")

        def skip_ws() -> str:
            nonlocal pos
            while True:
                while pos < len(buf) and buf[pos] in _WS:
                    pos += 1
                if pos < len(buf):
                    return buf[pos]
                if not fill():
                    return ""

        def decode_value() -> tuple[Any, int]:
            nonlocal pos
            while True:
                try:
                    value, end = decoder.raw_decode(buf, pos)
                except json.JSONDecodeError as e:
                    if fill():
                        continue
                    raise fail(f"invalid JSON: {e.msg}") from None
                except RecursionError:
                    raise fail("invalid JSON: nesting too deep") from None
                except ValueError:  # an integer longer than sys.get_int_max_str_digits()
                    raise fail(f"invalid JSON: integer too long (more than {sys.get_int_max_str_digits()} digits)") from None
                if end >= len(buf) and not eof and fill():  # a number may continue in the next chunk
                    continue
                return value, end

        if start is None:
            c = skip_ws()
            if _members:
                if c != "{":
                    raise fail(f"expected a JSON object, got {c!r}" if c else "empty file")
                pos += 1
            elif key is None:
                if c != "[":
                    raise fail(f"expected a JSON array, got {c!r}" if c else "empty file")
                pos += 1
            else:
                if c != "{":
                    raise fail(f"expected a JSON object with key {key!r}, got {c!r}" if c else "empty file")
                pos += 1
                while True:
                    c = skip_ws()
                    if c == "}" or not c:
                        raise fail(f"key {key!r} not found")
                    k, pos = decode_value()
                    if skip_ws() != ":":
                        raise fail("expected ':'")
                    pos += 1
                    if k == key:
                        if skip_ws() != "[":
                            raise fail(f"{key!r} is not an array")
                        pos += 1
                        break
                    skip_ws()
                    _, pos = decode_value()  # skip the value of another key
                    c = skip_ws()
                    if c == ",":
                        pos += 1
                    elif c != "}":
                        raise fail(f"expected ',' or '}}', got {c!r}")
            first = True
        else:
            first = False  # positioned after an element: expect ',' or ']'
        close = "}" if _members else "]"
        while True:
            c = skip_ws()
            if c == close:
                return
            if not c:
                raise fail("unexpected end of file inside the array")
            if not first:
                if c != ",":
                    raise fail(f"expected ',' or {close!r}, got {c!r}")
                pos += 1
                c = skip_ws()
                if not c:
                    raise fail("unexpected end of file inside the array")
            first = False
            elem_line = here()
            value, pos = decode_value()
            if _members:
                if not isinstance(value, str):
                    raise fail(f"expected a string key, got {value!r:.40}")
                if skip_ws() != ":":
                    raise fail("expected ':'")
                pos += 1
                skip_ws()
                member, pos = decode_value()
                value = (value, member)
            advance(pos)
            position = {"offset": cur_bytes, "line": cur_line, "index": index + 1}
            yield Record(value, elem_line, index, position)
            index += 1
    finally:
        f.close()


def iter_lines(path: PathLike, start: dict[str, int] | None = None) -> Iterator[Record]:
    """Lines of a UTF-8 text file (newline stripped); undecodable lines yield a ``UnicodeDecodeError``."""
    offset, line, index = _start(start)
    with open(path, "rb") as f:
        f.seek(offset)
        for raw in f:
            offset += len(raw)
            try:
                value: Any = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as e:
                value = UnicodeDecodeError(e.encoding, e.object, e.start, e.end, "invalid UTF-8")
            yield Record(value, line, index, {"offset": offset, "line": line + 1, "index": index + 1})
            line += 1
            index += 1


def iter_jsonl_records(path: PathLike, start: dict[str, int] | None = None) -> Iterator[Record]:
    """Non-blank lines of a JSON-lines file, parsed (a bad line yields its ``ValueError``)."""
    for rec in iter_lines(path, start):
        value = rec.value
        if isinstance(value, str):
            if not value.strip():
                continue
            try:
                value = json.loads(value)
            except json.JSONDecodeError as e:
                value = ValueError(f"invalid JSON: {e.msg} at column {e.colno}")
            except RecursionError:
                value = ValueError("invalid JSON: nesting too deep")
            except ValueError:  # an integer longer than sys.get_int_max_str_digits()
                value = ValueError(f"invalid JSON: integer too long (more than {sys.get_int_max_str_digits()} digits)")
        yield Record(value, rec.line, rec.index, rec.position)


class _CountingLines:
    """Feeds decoded lines to ``csv.reader`` while counting the bytes and lines consumed."""

    def __init__(self, f: IO[bytes], offset: int, line: int) -> None:
        self.f = f
        self.offset = offset
        self.line = line

    def __iter__(self) -> "_CountingLines":
        return self

    def __next__(self) -> str:
        raw = self.f.readline()
        if not raw:
            raise StopIteration
        self.offset += len(raw)
        self.line += 1
        return raw.decode("utf-8", errors="surrogateescape")


_UNDECODABLE = re.compile("[\udc80-\udcff]")  # bytes that were not UTF-8 (surrogateescape)


def _read_csv_header(path: PathLike) -> tuple[list[str], int]:
    with open(path, "rb") as f:
        lines = _CountingLines(f, 0, 1)
        header = next(csv.reader(lines), None)
        if header is None:
            raise ValueError(f"{Path(path).name}:1: empty CSV file (expected a header)")
        return header, lines.offset


def iter_csv_records(path: PathLike, start: dict[str, int] | None = None) -> Iterator[Record]:
    """Rows of a CSV file with a header, as dicts (a short/long row yields a ``ValueError``).

    ``Record.position`` lets the reader resume after any row; the header is re-read on resume.
    """
    header, header_end = _read_csv_header(path)
    offset, line, index = _start(start) if start is not None else (header_end, 2, 0)
    with open(path, "rb") as f:
        f.seek(offset)
        lines = _CountingLines(f, offset, line)
        reader = csv.reader(lines)
        while True:
            first_line = lines.line
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as e:
                row = ValueError(f"malformed CSV: {e}")  # type: ignore[assignment]
            if isinstance(row, list) and not row:
                continue  # blank line
            value: Any
            if isinstance(row, Exception):
                value = row
            elif len(row) != len(header):
                value = ValueError(f"expected {len(header)} fields, got {len(row)}")
            elif any(_UNDECODABLE.search(cell) for cell in row):
                value = ValueError("invalid UTF-8")
            else:
                value = dict(zip(header, row))
            yield Record(value, first_line, index, {"offset": lines.offset, "line": lines.line, "index": index + 1})
            index += 1


def iter_text_records(
    path: PathLike, start: dict[str, int] | None = None, column: str | None = None
) -> Iterator[Record]:
    """Texts of a ``.txt`` (one per line), ``.jsonl`` (``{"text": ...}`` or JSON strings) or ``.csv``
    corpus (``column``, default the first of ``text``, ``caption``, ``prompt``, ``sentence``).

    ``Record.value`` is the text (``str``) or an exception saying why the record has none.

    Raises:
        ValueError: a CSV without a usable text column.
    """
    suffix = Path(path).suffix.lower()
    if suffix == ".csv":
        header, _ = _read_csv_header(path)
        col = column or next((c for c in TEXT_COLUMNS if c in header), None)
        if col is None or col not in header:
            raise ValueError(f"{Path(path).name}: no text column {column or TEXT_COLUMNS!r} in CSV header {header}")
        for rec in iter_csv_records(path, start):
            v = rec.value
            yield Record(v if isinstance(v, Exception) else v[col], rec.line, rec.index, rec.position)
        return
    if suffix == ".jsonl":
        field = column or "text"
        for rec in iter_jsonl_records(path, start):
            v = rec.value
            if isinstance(v, dict) and isinstance(v.get(field), str):
                v = v[field]
            elif not isinstance(v, (str, Exception)):
                v = ValueError(f"expected {{{field!r}: string}} or a JSON string, got {json.dumps(v)[:60]}")
            yield Record(v, rec.line, rec.index, rec.position)
        return
    yield from iter_lines(path, start)


def chain_records(
    openers: Sequence[Callable[[dict[str, int] | None], Iterator[Record]]],
    start: dict[str, Any] | None = None,
) -> Iterator[Record]:
    """Concatenate several readers (``opener(start) -> records``) into one resumable stream.

    ``Record.value`` becomes ``(reader index, value)``; positions carry the reader index in ``"file"``.
    """
    first = 0 if start is None else int(start["file"])
    inner = None if start is None else start.get("inner")
    for i in range(first, len(openers)):
        for rec in openers[i](inner if i == first else None):
            yield Record((i, rec.value), rec.line, rec.index, {"file": i, "inner": rec.position})
        inner = None
