"""FACTUAL-SG CSV files -> SceneGraph JSONL shards (the gold graphs, with their captions as text).

Input: FACTUAL's CSV layout (``image_id,region_id,caption,scene_graph``; see
``shared/datasets/README.md``), one file per split (``train.csv``, ``dev.csv``, ...). Graph strings
are read with :func:`scenegraph_diff.parsing.factual.graph_from_string` and labels canonicalised.
A row with a bad graph string, an empty caption or the wrong number of fields is skipped and
reported as ``file:line: reason``.
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

from ..graph.scene_graph import SceneGraphError
from .readers import Record, chain_records, iter_csv_records
from .shards import JobReport, Outcome, ShardWriter, run_job

__all__ = ["FactualConfig", "prepare_factual", "check_graph_string"]


@dataclass(frozen=True)
class FactualConfig:
    """Settings of :func:`prepare_factual`.

    Args:
        data_root: folder with FACTUAL CSV files.
        output_dir: output folder.
        splits: CSV stems to convert, each becoming a split (default ``("train", "dev")``;
            FACTUAL's test split is a hidden holdout and is never read by default).
        chunk_size: rows per output shard.
        vocab_min_count: keep labels seen at least this often in ``vocab.json``.
        overwrite, progress: see :class:`~.shards.ShardWriter` / tqdm.
    """

    data_root: str
    output_dir: str
    splits: tuple[str, ...] = ("train", "dev")
    chunk_size: int = 10000
    vocab_min_count: int = 1
    overwrite: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "splits", tuple(self.splits))
        if not self.splits:
            raise ValueError("FactualConfig.splits=(): give at least one split")
        if self.chunk_size < 1:
            raise ValueError(f"FactualConfig.chunk_size={self.chunk_size!r}: must be >= 1")
        if self.vocab_min_count < 1:
            raise ValueError(f"FactualConfig.vocab_min_count={self.vocab_min_count!r}: must be >= 1")


_TUPLE = re.compile(r"\(([^()]*)\)")


def check_graph_string(s: str) -> None:
    """Strict check of FACTUAL graph-string syntax: ``( a , b , c ) , ( d )`` with no empty field.

    Raises:
        SceneGraphError: naming the offending tuple.
    """
    rest = _TUPLE.sub("", s)
    if rest.replace(",", "").strip():
        raise SceneGraphError("scene_graph", f"text outside ( ... ) tuples or unbalanced parentheses: {s!r:.80}")
    tuples = _TUPLE.findall(s)
    if len(tuples) != rest.count(",") + 1:
        raise SceneGraphError("scene_graph", f"tuples must be joined by ' , ': {s!r:.80}")
    for k, t in enumerate(tuples):
        fields = [f.strip() for f in t.split(" , ")]
        if len(fields) == 2 or not all(fields):
            raise SceneGraphError(f"scene_graph[{k}]", f"expected ( n ) or ( s , p , o ) with no empty field, got ({t})")


def _convert_batch(batch: list[Record], files: Sequence[tuple[str, str]]) -> list[Outcome]:
    from ..parsing.factual import graph_from_string

    out = []
    for rec in batch:
        i, row = rec.value
        split, source = files[i]
        if isinstance(row, Exception):
            out.append(Outcome.skip(source, rec.line, str(row)))
            continue
        caption, graph = row.get("caption"), row.get("scene_graph")
        if caption is None or graph is None:
            out.append(Outcome.skip(source, rec.line, "missing column caption or scene_graph"))
            continue
        if not caption.strip():
            out.append(Outcome.skip(source, rec.line, "empty caption"))
            continue
        try:
            check_graph_string(graph)
            g = graph_from_string(graph, text=caption).canonicalize()
        except SceneGraphError as e:
            out.append(Outcome.skip(source, rec.line, str(e)))
            continue
        if g.is_empty():
            out.append(Outcome.skip(source, rec.line, f"scene_graph: no objects in {graph!r:.60}"))
            continue
        out.append(Outcome.of(split, f"{row.get('image_id', '')}/{row.get('region_id', '')}", g))
    return out


def prepare_factual(config: FactualConfig, command: Sequence[str] = ()) -> JobReport:
    """Convert FACTUAL CSVs to SceneGraph JSONL shards in ``config.output_dir`` (resumable).

    Raises:
        FileNotFoundError: a split's CSV is missing.
    """
    root = Path(config.data_root)
    files = []
    for split in config.splits:
        path = root / f"{split}.csv"
        if not path.is_file():
            raise FileNotFoundError(f"FACTUAL split {split!r} not found: {path}")
        files.append((split, path))
    settings = {k: v for k, v in asdict(config).items() if k not in ("overwrite", "progress", "output_dir")}
    settings["data_root"] = os.path.abspath(config.data_root)
    writer = ShardWriter(config.output_dir, "factual", settings, command, overwrite=config.overwrite)
    if not writer.complete:
        openers = [functools.partial(lambda p, start: iter_csv_records(p, start), p) for _, p in files]
        convert = functools.partial(_convert_batch, files=[(s, p.name) for s, p in files])
        run_job(writer, chain_records(openers, writer.position), convert, chunk_size=config.chunk_size,
                progress=config.progress, desc="factual rows")
        writer.finish(vocab_min_count=config.vocab_min_count)
    return JobReport(writer.manifest, Path(config.output_dir))
