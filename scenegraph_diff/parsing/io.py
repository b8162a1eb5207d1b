"""Reading parser inputs: plain text (one per line), JSON lines (``{"text": ...}``) or CSV."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from ..graph.scene_graph import SceneGraphError, loads_json

__all__ = ["read_texts"]

_CSV_COLUMNS = ("text", "caption", "prompt", "sentence")


def _decode(path: Path) -> str:
    """The file's text (UTF-8, a leading byte order mark dropped); invalid UTF-8 is a ``ValueError`` naming
    the line and the byte."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise ValueError(f"{path}: line {line}: invalid UTF-8 (byte 0x{data[e.start]:02x})") from None


def _lines(text: str) -> list[str]:
    """Lines as a text file iterates them (universal newlines: ``\\n``, ``\\r\\n``, ``\\r``), without their ends."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return lines[:-1] if lines[-1] == "" else lines


def read_texts(path: str | Path) -> list[str]:
    """Texts of a ``.txt`` (one per line; blank lines kept as empty texts), ``.jsonl`` (objects with
    ``text``, or JSON strings) or ``.csv`` file (column ``text``, ``caption``, ``prompt`` or ``sentence``).

    The file is UTF-8; a leading byte order mark is accepted.

    Raises:
        FileNotFoundError: no such file.
        ValueError: invalid UTF-8, a bad line or a missing column, naming the line.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"input file not found: {path}")
    suffix = path.suffix.lower()
    text = _decode(path)
    if suffix == ".jsonl":
        out = []
        for lineno, line in enumerate(_lines(text), 1):
            if not line.strip():
                continue
            try:
                item = loads_json(line, allow_nan=True)  # as json.loads: NaN in another field is no error
            except SceneGraphError as e:
                raise ValueError(f"{path}: line {lineno}: invalid JSON ({e.reason})") from None
            if isinstance(item, dict) and isinstance(item.get("text"), str):
                out.append(item["text"])
            elif isinstance(item, str):
                out.append(item)
            else:
                raise ValueError(f"{path}: line {lineno}: expected {{\"text\": str}} or a JSON string, got {line.strip()!r:.60}")
        return out
    if suffix == ".csv":
        reader = csv.DictReader(io.StringIO(text, newline=""))
        col = next((c for c in _CSV_COLUMNS if c in (reader.fieldnames or [])), None)
        if col is None:
            raise ValueError(f"{path}: no text column (need one of {_CSV_COLUMNS}, got {reader.fieldnames})")
        try:
            return [row[col] or "" for row in reader]
        except csv.Error as e:
            raise ValueError(f"{path}: line {reader.line_num}: malformed CSV ({e})") from None
    return _lines(text)
