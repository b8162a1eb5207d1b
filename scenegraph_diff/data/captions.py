"""Caption corpora (txt / JSONL / CSV) -> parsed SceneGraph JSONL shards, multi-process and resumable.

Each text is parsed with the library parser (:func:`scenegraph_diff.parse_batch`, or any function
with its signature named by ``parse_fn="module:function"``) in batches, optionally in ``workers``
processes (results are written in input order). ``shard=(i, N)`` keeps records ``i, i+N, i+2N, ...``
so a cluster array or several machines can split one corpus; each writes its own output folder.
A record without text (undecodable line, bad JSON, empty text) or whose text the parser rejects is
skipped and reported as ``file:line: reason``. Source ids are 1-based input line numbers.
"""

from __future__ import annotations

import functools
import importlib
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from .readers import Record, iter_text_records
from .shards import JobReport, Outcome, ShardWriter, run_job

__all__ = ["CaptionsConfig", "prepare_captions", "DEFAULT_PARSE_FN"]

DEFAULT_PARSE_FN = "scenegraph_diff.parsing:parse_batch"


@dataclass(frozen=True)
class CaptionsConfig:
    """Settings of :func:`prepare_captions`.

    Args:
        input: a ``.txt`` (one text per line), ``.jsonl`` (``{"text": ...}``) or ``.csv`` file.
        output_dir: output folder.
        text_column: CSV column / JSONL key holding the text (CSV default: the first of ``text``,
            ``caption``, ``prompt``, ``sentence``; JSONL default ``text``).
        workers: parsing processes, this one included (``1``: no pool; ``N``: ``N - 1`` forked ones).
        batch_size: texts per parser call.
        chunk_size: texts per output shard.
        shard: ``(i, N)``: process only records ``i (mod N)``.
        parse_fn: ``"module:function"`` with the signature of :func:`scenegraph_diff.parse_batch`.
        backend: parser backend passed to the default ``parse_fn``.
        split: split name of the output.
        vocab_min_count: keep labels seen at least this often in ``vocab.json``.
        threads: BLAS / torch threads per parsing process (the learned parser); the output does not
            depend on ``workers`` because every process uses this count.
        overwrite, progress: see :class:`~.shards.ShardWriter` / tqdm.
    """

    input: str
    output_dir: str
    text_column: str | None = None
    workers: int = 1
    batch_size: int = 256
    chunk_size: int = 10000
    shard: tuple[int, int] = (0, 1)
    parse_fn: str = DEFAULT_PARSE_FN
    backend: str = "auto"
    split: str = "all"
    vocab_min_count: int = 1
    threads: int = 1
    overwrite: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "shard", tuple(self.shard))
        i, n = self.shard
        if n < 1 or not 0 <= i < n:
            raise ValueError(f"CaptionsConfig.shard={self.shard!r}: expected (i, N) with 0 <= i < N")
        for name in ("workers", "batch_size", "chunk_size", "vocab_min_count", "threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"CaptionsConfig.{name}={getattr(self, name)!r}: must be >= 1")
        if ":" not in self.parse_fn:
            raise ValueError(f"CaptionsConfig.parse_fn={self.parse_fn!r}: expected 'module:function'")


@functools.lru_cache(maxsize=4)
def _load_fn(spec: str) -> Callable[..., Any]:
    module, _, name = spec.partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"parse_fn={spec!r}: cannot import ({e})") from None


def _parse(spec: str, backend: str, threads: int, texts: list[str]) -> list[Any]:
    fn = _load_fn(spec)
    kwargs: dict[str, Any] = {"progress": False}
    if spec == DEFAULT_PARSE_FN:
        kwargs["backend"] = backend
        from ..parsing import _default_parser

        parser = _default_parser(backend)
        if hasattr(parser, "num_threads"):
            parser.num_threads = threads  # BLAS threads of the numpy learned parser
    torch = sys.modules.get("torch")  # a custom parse_fn may use torch: fix its threads (same results for any --workers)
    prev = torch.get_num_threads() if torch is not None else None
    if torch is not None:
        torch.set_num_threads(threads)
    try:
        graphs = fn(texts, **kwargs)
    finally:
        if torch is not None:
            torch.set_num_threads(prev)
    if len(graphs) != len(texts):
        raise RuntimeError(f"{spec} returned {len(graphs)} graphs for {len(texts)} texts")
    return list(graphs)


def _convert_batch(batch: list[Record], source: str, spec: str, backend: str, split: str, threads: int) -> list[Outcome]:
    out: list[Outcome | None] = [None] * len(batch)
    todo: list[int] = []
    for j, rec in enumerate(batch):
        if isinstance(rec.value, Exception):
            out[j] = Outcome.skip(source, rec.line, str(rec.value))
        elif not rec.value.strip():
            out[j] = Outcome.skip(source, rec.line, "empty text")
        else:
            todo.append(j)
    texts = [batch[j].value for j in todo]
    try:
        graphs = _parse(spec, backend, threads, texts) if texts else []
    except Exception:  # find the culprit(s): parse one by one
        graphs = []
        for j in todo:
            try:
                graphs.extend(_parse(spec, backend, threads, [batch[j].value]))
            except Exception as e:
                graphs.append(e)
    for j, g in zip(todo, graphs):
        rec = batch[j]
        if isinstance(g, Exception):
            out[j] = Outcome.skip(source, rec.line, f"parser failed: {type(g).__name__}: {g}")
        else:
            out[j] = Outcome.of(split, str(rec.line), g)
    return [o for o in out if o is not None]


def prepare_captions(config: CaptionsConfig, command: Sequence[str] = ()) -> JobReport:
    """Parse a caption corpus into SceneGraph JSONL shards in ``config.output_dir`` (resumable).

    Raises:
        FileNotFoundError: no input file.
        ValueError: a CSV without a text column, or a ``parse_fn`` that cannot be imported.
    """
    path = Path(config.input)
    if not path.is_file():
        raise FileNotFoundError(f"input file not found: {path}")
    if config.workers > 1:
        os.environ.setdefault("OMP_NUM_THREADS", str(config.threads))  # read by torch when a worker imports it
    settings = {k: v for k, v in asdict(config).items() if k not in ("overwrite", "progress", "output_dir", "workers")}
    # threads stay in the settings: a learned parser's float results may depend on them
    settings["input"] = os.path.abspath(config.input)
    writer = ShardWriter(config.output_dir, "captions", settings, command, overwrite=config.overwrite)
    if not writer.complete:
        records = iter_text_records(path, writer.position, config.text_column)
        i, n = config.shard
        keep = None if n == 1 else (lambda rec: rec.index % n == i)
        convert = functools.partial(_convert_batch, source=path.name, spec=config.parse_fn, backend=config.backend,
                                    split=config.split, threads=config.threads)
        if config.workers > 1:
            # Load the parser (imports, weights) once here: forked workers inherit it instead of each
            # paying the start-up. The warm-up runs with `threads` threads (1 by default).
            _parse(config.parse_fn, config.backend, config.threads, ["a warm-up text"])
        run_job(writer, records, convert, chunk_size=config.chunk_size, batch_size=config.batch_size,
                workers=config.workers, keep=keep, progress=config.progress, desc="captions")
        writer.finish(vocab_min_count=config.vocab_min_count)
    return JobReport(writer.manifest, Path(config.output_dir))
