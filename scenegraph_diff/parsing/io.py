"""Reading parser inputs: plain text (one per line), JSON lines (``{"text": ...}``) or CSV."""

from __future__ import annotations

import csv
import json
from pathlib import Path

__all__ = ["read_texts"]

_CSV_COLUMNS = ("text", "caption", "prompt", "sentence")


def read_texts(path: str | Path) -> list[str]:
    """Texts of a ``.txt`` (one per line; blank lines kept as empty texts), ``.jsonl`` (objects with
    ``text``, or JSON strings) or ``.csv`` file (column ``text``, ``caption``, ``prompt`` or ``sentence``).

    Raises:
        FileNotFoundError: no such file.
        ValueError: a bad line / missing column, naming the line.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"input file not found: {path}")
    suffix = path.suffix.lower()
    with open(path, encoding="utf-8", newline="" if suffix == ".csv" else None) as f:
        if suffix == ".jsonl":
            out = []
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    item = json.loads(line)
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}: line {lineno}: invalid JSON ({e.msg})") from None
                if isinstance(item, dict) and isinstance(item.get("text"), str):
                    out.append(item["text"])
                elif isinstance(item, str):
                    out.append(item)
                else:
                    raise ValueError(f"{path}: line {lineno}: expected {{\"text\": str}} or a JSON string, got {line.strip()!r:.60}")
            return out
        if suffix == ".csv":
            reader = csv.DictReader(f)
            col = next((c for c in _CSV_COLUMNS if c in (reader.fieldnames or [])), None)
            if col is None:
                raise ValueError(f"{path}: no text column (need one of {_CSV_COLUMNS}, got {reader.fieldnames})")
            return [row[col] or "" for row in reader]
        return [line.rstrip("\r\n") for line in f]
