"""Helpers shared by the benchmark scripts (they put ``benchmarks/`` on ``sys.path`` when run as scripts)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_results(out: str | Path, result: Any, table: str, indent: int = 1) -> None:
    """Write ``<out>.json`` (the full result) and ``<out>.md`` (the markdown table), creating the folder."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=indent) + "\n")
    out.with_suffix(".md").write_text(table + "\n")
