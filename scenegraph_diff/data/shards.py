"""Resumable, sharded SceneGraph JSONL output with a manifest.

Every preprocessing job (VRD, Visual Genome, COCO, FACTUAL, caption corpora) writes the same layout::

    OUT/
      train/part-00000.jsonl    SceneGraph JSON v1, one graph per line
      train/part-00000.ids      the source id of each line (image id, "image_id/region_id", line number)
      test/part-00000.jsonl ...
      vocab.json                Vocabulary (objects / attributes / predicates)
      skipped.txt               every skipped input record as "file:line: reason"
      manifest.json             counts, sha256 per shard, the command and settings that made it

The input is cut into *chunks* of ``chunk_size`` records; chunk ``k`` becomes ``part-0000k`` in
every split it has graphs for. Each file is written atomically and, after a chunk's files, a
progress file (``.progress.json``: chunks done, the reader's resume position, running counts,
skipped records) is replaced atomically. A job killed at any moment (SIGKILL included) and re-run
with the same settings resumes after the last committed chunk; since chunk contents depend only on
the input, the final output is byte-identical to an uninterrupted run, with no record lost or
duplicated. ``.progress.json`` is removed once ``manifest.json`` is written.

A re-run first checks the sha256 of every shard already written. A committed shard changed since (e.g.
truncated) is redone with the chunks after it, from the reader position recorded before its chunk; in a
finished run, a damaged shard makes the whole run be redone. Either way a warning names the file.

:func:`run_job` drives a job: it reads :class:`~.readers.Record` s, converts them in batches
(optionally in worker processes, results kept in input order) into :class:`Outcome` s, and commits
chunks through a :class:`ShardWriter`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence, Union

from ..graph.jsonl import atomic_write, read_jsonl
from ..graph.scene_graph import SceneGraph, SceneGraphError
from ..graph.vocab import KINDS, UNK, Vocabulary
from .readers import Record

logger = logging.getLogger(__name__)

__all__ = ["Outcome", "ShardWriter", "JobReport", "run_job", "iter_manifest_graphs", "iter_shard", "load_manifest",
           "MANIFEST_FORMAT"]

PathLike = Union[str, "os.PathLike[str]"]
MANIFEST_FORMAT = "scenegraph_diff.shards/1"
_PROGRESS = ".progress.json"


@dataclass(frozen=True)
class Outcome:
    """What became of one input record.

    Exactly one of: ``graph`` (the SceneGraph JSON line, written to ``split`` with source id ``id``),
    ``skipped`` (a malformed record: ``"file:line: reason"``), or ``filtered`` (a counter key: the
    record was valid but dropped by a filter, e.g. ``"too_few_objects"``). ``stats`` are extra
    counters (e.g. ``{"objects_dropped_small": 2}``).
    """

    split: str | None = None
    id: str | None = None
    graph: str | None = None
    skipped: str | None = None
    filtered: str | None = None
    stats: Mapping[str, int] = field(default_factory=dict)
    labels: tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]] | None = None

    @classmethod
    def of(cls, split: str, id: str, graph: SceneGraph, **stats: int) -> "Outcome":
        """The outcome for a converted graph (with its counts and labels, gathered where it is built)."""
        labels = (tuple(o.name for o in graph.objects), tuple(a for o in graph.objects for a in o.attributes),
                  tuple(r.predicate for r in graph.relations))
        return cls(split=split, id=id, graph=graph.to_json(), labels=labels, stats={
            "objects": graph.num_objects, "relations": graph.num_relations,
            "attributes": graph.num_attributes, **stats})

    @classmethod
    def skip(cls, source: str, line: int, reason: str) -> "Outcome":
        return cls(skipped=f"{source}:{line}: {reason}")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _dumps(obj: Any) -> str:
    return json.dumps(obj, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


class ShardWriter:
    """Commits chunks of outcomes to ``output_dir`` and keeps the resumable progress file.

    Args:
        output_dir: the output folder (created).
        dataset: a name for the manifest (``"vrd"``).
        settings: every setting that changes the output (input paths, thresholds, chunk size):
            a re-run resumes only when they are equal.
        command: the command line recorded in the manifest.
        overwrite: discard a previous (finished or partial) run with other settings instead of
            refusing.
        count_labels: keep label counts in the progress file, so :meth:`finish` can build the
            vocabulary without re-reading the shards (turn off when the vocabulary is known).

    Raises:
        FileExistsError: ``output_dir`` holds a run with different settings (and not ``overwrite``).
    """

    def __init__(
        self,
        output_dir: PathLike,
        dataset: str,
        settings: Mapping[str, Any],
        command: Sequence[str],
        overwrite: bool = False,
        count_labels: bool = True,
    ) -> None:
        self.root = Path(output_dir)
        self.count_labels = count_labels
        self.dataset = dataset
        self.settings = json.loads(json.dumps(dict(settings)))  # normalise (tuples -> lists)
        self.root.mkdir(parents=True, exist_ok=True)
        self.complete = False
        manifest = self.root / "manifest.json"
        progress = self.root / _PROGRESS
        if manifest.is_file():
            old = json.loads(manifest.read_text(encoding="utf-8"))
            if old.get("settings") == self.settings and old.get("dataset") == dataset:
                entries = [s for d in old.get("splits", {}).values() for s in d.get("shards", [])]
                damaged = self._damaged(entries + [{"path": old["vocab"]["path"], "sha256": old["vocab"]["sha256"]}])
                if not damaged:
                    self.complete = True
                    self.manifest = old
                    progress.unlink(missing_ok=True)
                    return
                logger.warning("%s: %s since manifest.json was written; redoing the run",
                               damaged[0][0], damaged[0][1])
                overwrite = True
            if not overwrite:
                raise FileExistsError(
                    f"{self.root} holds a finished {old.get('dataset')!r} run with other settings; "
                    "use --overwrite or another output folder"
                )
            self._clean(everything=True)
        self.state: dict[str, Any] = {
            "dataset": dataset, "settings": self.settings, "command": list(command), "chunks": 0,
            "records": 0, "position": None, "shards": [], "skipped": [], "counts": {}, "prepass": None,
            "labels": {"object": {}, "attribute": {}, "predicate": {}},
        }
        if progress.is_file():
            old_state = json.loads(progress.read_text(encoding="utf-8"))
            if old_state.get("settings") == self.settings and old_state.get("dataset") == dataset:
                self.state = old_state
                self._verify_committed()
                logger.info("resuming %s after chunk %d (%d records)", self.root, self.chunks, self.records)
            elif not overwrite:
                raise FileExistsError(
                    f"{self.root} holds a partial {old_state.get('dataset')!r} run with other settings; "
                    "use --overwrite or another output folder"
                )
        self._clean(everything=False)

    # -- state ---------------------------------------------------------------------------------
    @property
    def chunks(self) -> int:
        """Number of committed chunks."""
        return int(self.state["chunks"])

    @property
    def records(self) -> int:
        """Number of input records covered by the committed chunks."""
        return int(self.state["records"])

    @property
    def position(self) -> Any:
        """The reader's resume position after the last committed chunk (``None`` at the start)."""
        return self.state["position"]

    @property
    def prepass(self) -> Any:
        """Saved result of a job's first pass (e.g. label counts), ``None`` when not yet saved."""
        return self.state["prepass"]

    def save_prepass(self, value: Any, skipped: Sequence[str] = ()) -> None:
        """Save a first pass's result (and the malformed records it skipped) with the progress."""
        self.state["prepass"] = json.loads(json.dumps(value))
        if skipped:
            self.state["skipped"].extend(skipped)
            self.state["counts"]["skipped"] = self.state["counts"].get("skipped", 0) + len(skipped)
        self._save_state()

    def _damaged(self, entries: Iterable[Mapping[str, Any]]) -> list[tuple[Path, str, Mapping[str, Any]]]:
        """``(file, what is wrong, entry)`` for each recorded file (a shard or its ids) whose sha256 differs."""
        out = []
        for e in entries:
            for key, digest in (("path", "sha256"), ("ids_path", "ids_sha256")):
                if key not in e:
                    continue
                path = self.root / e[key]
                if not path.is_file():
                    out.append((path, "missing", e))
                elif _sha256(path.read_bytes()) != e[digest]:
                    out.append((path, "changed (sha256 differs)", e))
        return out

    def _verify_committed(self) -> None:
        """Recompute the sha256 of every committed shard; roll back to the first chunk with a damaged one."""
        damaged = self._damaged(self.state["shards"])
        if not damaged:
            return
        path, what, entry = min(damaged, key=lambda d: _chunk_of(d[2]))
        first = _chunk_of(entry)
        starts = self.state.get("chunk_starts")
        if not starts or len(starts) <= first:  # a progress file without checkpoints: from the start
            first = 0
        logger.warning("%s: %s since it was committed; redoing chunk %d and the %d after it", path, what, first,
                       self.chunks - first - 1)
        if first == 0:
            cp: dict[str, Any] = {"position": None, "records": 0, "counts": {}, "skipped": 0, "shards": 0}
        else:
            cp = starts[first]
        self.state["chunks"] = first
        self.state["records"] = cp["records"]
        self.state["position"] = cp["position"]
        self.state["counts"] = dict(cp["counts"])
        self.state["skipped"] = self.state["skipped"][: cp["skipped"]]
        self.state["shards"] = self.state["shards"][: cp["shards"]]
        self.state["chunk_starts"] = (starts or [])[:first]
        if self.count_labels:  # recount the labels of the chunks kept (their shards are intact)
            labels = [Counter() for _ in KINDS]
            for g in self.iter_graphs():
                labels[0].update(o.name for o in g.objects)
                labels[1].update(a for o in g.objects for a in o.attributes)
                labels[2].update(r.predicate for r in g.relations)
            self.state["labels"] = {k: dict(sorted(c.items())) for k, c in zip(KINDS, labels)}
        self._save_state()

    def _save_state(self) -> None:
        atomic_write(self.root / _PROGRESS, json.dumps(self.state, sort_keys=True, ensure_ascii=False))

    def _is_ours(self, p: Path) -> bool:
        return p.suffix in (".jsonl", ".ids") and p.name.startswith("part-")

    def _clean(self, everything: bool) -> None:
        """Remove temporary files and shards of uncommitted chunks (or every output file)."""
        keep = set() if everything else {s["path"] for s in self.state["shards"]} | {
            s["ids_path"] for s in self.state["shards"]
        }
        for p in self.root.rglob("*"):
            rel = p.relative_to(self.root).as_posix()
            if p.is_file() and (p.name.endswith(".tmp") and p.name.startswith(".")):
                p.unlink()
            elif p.is_file() and self._is_ours(p) and rel not in keep:
                p.unlink()
        if everything:
            for name in ("manifest.json", "vocab.json", "skipped.txt", _PROGRESS):
                (self.root / name).unlink(missing_ok=True)

    # -- writing -------------------------------------------------------------------------------
    def commit_chunk(self, outcomes: Sequence[Outcome], num_records: int, position: Any) -> list[str]:
        """Write one chunk's shards atomically, then record the progress. Returns its skip reports."""
        k = self.chunks
        start = {"position": self.position, "records": self.records, "counts": dict(self.state["counts"]),
                 "skipped": len(self.state["skipped"]), "shards": len(self.state["shards"])}
        by_split: dict[str, tuple[list[str], list[str]]] = {}
        counts: Counter[str] = Counter(self.state["counts"])
        skipped: list[str] = []
        labels = [Counter(self.state["labels"][k]) for k in KINDS] if self.count_labels else None
        for o in outcomes:
            if labels is not None and o.labels is not None:
                for c, names in zip(labels, o.labels):
                    c.update(names)
            if o.graph is not None:
                lines, ids = by_split.setdefault(o.split or "all", ([], []))
                lines.append(o.graph)
                ids.append(o.id if o.id is not None else "")
                counts[f"graphs.{o.split or 'all'}"] += 1
            elif o.skipped is not None:
                skipped.append(o.skipped)
                counts["skipped"] += 1
            elif o.filtered is not None:
                counts[f"filtered.{o.filtered}"] += 1
            for key, v in o.stats.items():
                counts[f"{key}.{o.split}" if o.graph is not None and key in ("objects", "relations", "attributes") else key] += v
        for split in sorted(by_split):
            lines, ids = by_split[split]
            for line in ids:
                if "\n" in line:
                    raise ValueError(f"source id {line!r} contains a newline")
            data = ("\n".join(lines) + "\n").encode("utf-8")
            id_data = ("\n".join(ids) + "\n").encode("utf-8")
            path = f"{split}/part-{k:05d}.jsonl"
            ids_path = f"{split}/part-{k:05d}.ids"
            atomic_write(self.root / path, data)
            atomic_write(self.root / ids_path, id_data)
            self.state["shards"].append({
                "path": path, "split": split, "graphs": len(lines), "sha256": _sha256(data),
                "ids_path": ids_path, "ids_sha256": _sha256(id_data), "chunk": k,
            })
        self.state["counts"] = dict(sorted(counts.items()))
        if labels is not None:
            self.state["labels"] = {k: dict(sorted(c.items())) for k, c in zip(KINDS, labels)}
        self.state["skipped"].extend(skipped)
        self.state.setdefault("chunk_starts", []).append(start)
        self.state["chunks"] = k + 1
        self.state["records"] = self.records + num_records
        self.state["position"] = position
        self._save_state()
        return skipped

    def finish(self, vocab: Vocabulary | None = None, vocab_min_count: int = 1, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Write ``vocab.json`` (built from the shards when ``vocab`` is ``None``), ``skipped.txt``
        and ``manifest.json``; remove the progress file. Returns the manifest."""
        if self.complete:
            return self.manifest
        shards = self.state["shards"]
        if vocab is None:
            if not self.count_labels:
                raise ValueError("finish() needs a vocabulary when count_labels=False")

            def keep(counts: Mapping[str, int]) -> list[str]:  # as Vocabulary.from_graphs
                return [lab for lab, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
                        if n >= vocab_min_count and lab != UNK]

            vocab = Vocabulary(*(keep(self.state["labels"][k]) for k in KINDS))
        vocab.save(self.root / "vocab.json")
        skipped_text = "".join(s + "\n" for s in self.state["skipped"])
        atomic_write(self.root / "skipped.txt", skipped_text)
        counts = self.state["counts"]
        splits: dict[str, Any] = {}
        for s in shards:
            d = splits.setdefault(s["split"], {"graphs": 0, "objects": 0, "relations": 0, "attributes": 0, "shards": []})
            d["shards"].append({k: s[k] for k in ("path", "graphs", "sha256", "ids_path", "ids_sha256")})
        for name, d in splits.items():
            d["graphs"] = int(counts.get(f"graphs.{name}", 0))
            for k in ("objects", "relations", "attributes"):
                d[k] = int(counts.get(f"{k}.{name}", 0))
        vocab_bytes = (self.root / "vocab.json").read_bytes()
        manifest = {
            "format": MANIFEST_FORMAT,
            "dataset": self.dataset,
            "command": self.state["command"],
            "settings": self.settings,
            "records_in": self.records,
            "skipped": int(counts.get("skipped", 0)),
            "skipped_file": "skipped.txt",
            "filtered": {k.split(".", 1)[1]: v for k, v in counts.items() if k.startswith("filtered.")},
            "stats": {k: v for k, v in counts.items() if not k.startswith(("graphs.", "filtered.", "objects.", "relations.", "attributes.")) and k != "skipped"},
            "splits": dict(sorted(splits.items())),
            "vocab": {
                "path": "vocab.json", "sha256": _sha256(vocab_bytes), "objects": vocab.num_objects - 1,
                "attributes": vocab.num_attributes - 1, "predicates": vocab.num_predicates - 1,
            },
            **(dict(extra) if extra else {}),
        }
        atomic_write(self.root / "manifest.json", _dumps(manifest))
        (self.root / _PROGRESS).unlink(missing_ok=True)
        self.manifest = manifest
        self.complete = True
        return manifest

    def iter_graphs(self, split: str | None = None) -> Iterator[SceneGraph]:
        """Stream the committed graphs (of one split, or all) in shard order."""
        for s in self.state["shards"]:
            if split is None or s["split"] == split:
                yield from read_jsonl(self.root / s["path"])


def _chunk_of(entry: Mapping[str, Any]) -> int:
    """The chunk a shard entry belongs to (recorded, else read from its ``part-0000k`` name)."""
    if "chunk" in entry:
        return int(entry["chunk"])
    return int(Path(entry["path"]).stem.split("-")[-1])


def load_manifest(root: PathLike) -> dict[str, Any]:
    """Read ``root/manifest.json`` (raises ``FileNotFoundError`` naming the folder when absent)."""
    path = Path(root) / "manifest.json"
    if not path.is_file():
        raise FileNotFoundError(f"no manifest.json in {str(root)!r}: not a prepared dataset (or still running)")
    m = json.loads(path.read_text(encoding="utf-8"))
    if m.get("format") != MANIFEST_FORMAT:
        raise ValueError(f"{path}: unknown format {m.get('format')!r} (expected {MANIFEST_FORMAT!r})")
    return m


def iter_shard(root: PathLike, entry: Mapping[str, Any], verify: bool = False) -> Iterator[tuple[str, SceneGraph]]:
    """Stream ``(source id, graph)`` of one shard of a prepared folder (``entry``: its manifest record).

    Every error names the file: a bad line (``SceneGraphError``: ``.../part-00001.jsonl: line 7: json: ...``),
    a shard or ids file with another number of lines than the manifest records (``ValueError``; e.g. a
    shard truncated after the fact), a missing file (``FileNotFoundError``).

    Args:
        verify: check the shard's sha256 against the manifest first (reads the file twice).
    """
    root = Path(root)
    path = root / entry["path"]
    ids_path = root / entry["ids_path"]
    if not path.is_file():
        raise FileNotFoundError(f"{path}: shard listed in {root / 'manifest.json'} is missing")
    if verify:
        digest = _sha256(path.read_bytes())
        if digest != entry["sha256"]:
            raise ValueError(f"{path}: sha256 {digest} does not match the manifest ({entry['sha256']})")
    try:
        ids = ids_path.read_text(encoding="utf-8").split("\n")
    except FileNotFoundError:
        raise FileNotFoundError(f"{ids_path}: ids file listed in {root / 'manifest.json'} is missing") from None
    except UnicodeDecodeError as e:
        raise ValueError(f"{ids_path}: invalid UTF-8 at byte {e.start}") from None
    if ids and ids[-1] == "":
        ids.pop()
    expected = int(entry["graphs"])
    if len(ids) != expected:
        raise ValueError(f"{ids_path}: {len(ids)} ids for {expected} graphs (file changed after preprocessing?)")
    n = 0
    try:
        for g in read_jsonl(path):
            if n < expected:
                yield ids[n], g
            n += 1
    except SceneGraphError as e:
        raise SceneGraphError(f"{path}: {e.field}", e.reason) from None
    if n != expected:
        raise ValueError(f"{path}: {n} graphs, but manifest.json records {expected} (file changed after "
                         "preprocessing? re-run the preprocess command to redo it)")


def iter_manifest_graphs(root: PathLike, split: str | None = None, verify: bool = False) -> Iterator[tuple[str, SceneGraph]]:
    """Stream ``(source id, graph)`` of a prepared folder (one split, or every split in order).

    Errors name the file (see :func:`iter_shard`).

    Args:
        verify: check each shard's sha256 against the manifest first.
    """
    root = Path(root)
    m = load_manifest(root)
    if split is not None and split not in m["splits"]:
        raise KeyError(f"split {split!r} not in {str(root)!r} (have {sorted(m['splits'])})")
    for name, d in m["splits"].items():
        if split is not None and name != split:
            continue
        for s in d["shards"]:
            yield from iter_shard(root, s, verify=verify)


@dataclass
class JobReport:
    """Summary of a finished job: the manifest and whether records were skipped."""

    manifest: dict[str, Any]
    output_dir: Path

    @property
    def skipped(self) -> int:
        return int(self.manifest["skipped"])

    @property
    def exit_code(self) -> int:
        """``0`` when every record was used or filtered on purpose, ``1`` when some were skipped."""
        return 1 if self.skipped else 0

    def summary(self) -> str:
        m = self.manifest
        parts = [f"{m['dataset']}: {m['records_in']} records in"]
        for name, d in m["splits"].items():
            parts.append(f"{name}: {d['graphs']} graphs, {d['objects']} objects, {d['relations']} relations")
        if m["filtered"]:
            parts.append("filtered: " + ", ".join(f"{k}={v}" for k, v in sorted(m["filtered"].items())))
        parts.append(f"skipped: {m['skipped']}" + (f" (see {self.output_dir / 'skipped.txt'})" if m["skipped"] else ""))
        return "; ".join(parts)


def _batches(
    records: Iterator[Record], chunk_size: int, batch_size: int, keep: Callable[[Record], bool] | None
) -> Iterator[tuple[list[Record], int, Any, bool]]:
    """Yield ``(batch, records consumed, position after, ends a chunk)``; batches never cross chunks."""
    batch: list[Record] = []
    in_chunk = 0
    consumed = 0
    position = None
    for rec in records:
        consumed += 1
        position = rec.position
        if keep is None or keep(rec):
            batch.append(rec)
            in_chunk += 1
        if in_chunk == chunk_size or len(batch) == batch_size:
            end = in_chunk == chunk_size
            yield batch, consumed, position, end
            batch, consumed = [], 0
            if end:
                in_chunk = 0
    if batch or consumed or in_chunk:  # close the last, partial chunk
        yield batch, consumed, position, True


def _pooled(
    batches: Iterator[tuple[list[Record], int, Any, bool]],
    convert_batch: Callable[[list[Record]], list[Outcome]],
    pool: Any,
    workers: int,
) -> Iterator[tuple[tuple[int, Any, bool], list[Outcome]]]:
    """Convert batches with ``workers - 1`` pool processes *and* this one, yielding results in input order.

    Batches go to the pool while fewer than ``2 (workers - 1)`` are outstanding there (twice that while a
    chunk end is queued, so the pool stays busy while the caller writes the chunk); otherwise this
    process converts the next batch itself, so ``workers`` processes stay busy (none only coordinating)
    and the balance adapts to how fast each side is. The last batch is converted here (no idle wait at
    the end). At most ``4 workers`` batches are held (bounded memory).
    """
    queue: deque[tuple[tuple[int, Any, bool], Any, bool]] = deque()  # (meta, result or AsyncResult, is async)
    in_pool = 0
    ends_queued = 0
    pool_limit = 2 * (workers - 1)

    def retire(block: bool) -> Iterator[tuple[tuple[int, Any, bool], list[Outcome]]]:
        nonlocal in_pool, ends_queued
        while queue and (block or not queue[0][2] or queue[0][1].ready()):
            meta, res, is_async = queue.popleft()
            if is_async:
                res = res.get()
                in_pool -= 1
            ends_queued -= meta[2]
            yield meta, res
            block = False

    items = iter(batches)
    nxt = next(items, None)
    while nxt is not None:
        batch, consumed, position, end = nxt
        nxt = next(items, None)
        meta = (consumed, position, end)
        ends_queued += end
        if in_pool < pool_limit * (2 if ends_queued else 1) and nxt is not None:
            queue.append((meta, pool.apply_async(convert_batch, (batch,)), True))
            in_pool += 1
        else:
            queue.append((meta, convert_batch(batch), False))
        yield from retire(block=len(queue) >= 4 * workers)
    while queue:
        yield from retire(block=True)


def run_job(
    writer: ShardWriter,
    records: Iterator[Record],
    convert_batch: Callable[[list[Record]], list[Outcome]],
    chunk_size: int,
    batch_size: int = 256,
    workers: int = 1,
    keep: Callable[[Record], bool] | None = None,
    progress: bool = True,
    desc: str = "records",
    total: int | None = None,
) -> None:
    """Convert ``records`` (already positioned at ``writer.position``) and commit them chunk by chunk.

    Args:
        writer: the output.
        records: the input records, starting after the last committed chunk.
        convert_batch: maps a batch of records to one :class:`Outcome` each (a picklable top-level
            function when ``workers > 1``).
        chunk_size: kept records per chunk (= per output shard).
        batch_size: records per ``convert_batch`` call.
        workers: converting processes: this one and ``workers - 1`` forked ones (``1``: no pool).
            Results stay in input order.
        keep: records for which this returns ``False`` are read but not converted (``--shard i/N``).
        progress: tqdm bar on stderr.
        desc, total: progress-bar label and expected number of records.
    """
    if chunk_size < 1 or batch_size < 1 or workers < 1:
        raise ValueError(f"chunk_size, batch_size and workers must be >= 1, got {chunk_size}, {batch_size}, {workers}")
    from tqdm.auto import tqdm

    bar = tqdm(total=total, initial=writer.records, desc=desc, unit="rec", file=sys.stderr,
               disable=not progress, dynamic_ncols=True, mininterval=0.5)
    pool = None
    try:
        batches = _batches(records, chunk_size, min(batch_size, chunk_size), keep)
        if workers > 1:
            import multiprocessing as mp

            ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
            import gc

            gc.freeze()  # objects loaded so far (e.g. a parser) stay shared with the forked workers
            pool = ctx.Pool(workers - 1)
            gc.unfreeze()
            results: Iterable[tuple[tuple[int, Any, bool], list[Outcome]]] = _pooled(batches, convert_batch, pool, workers)
        else:
            results = (((consumed, position, end), convert_batch(batch)) for batch, consumed, position, end in batches)
        pending: list[Outcome] = []
        pending_records = 0
        for (consumed, position, end), outs in results:
            pending.extend(outs)
            pending_records += consumed
            bar.update(consumed)
            if end:
                for msg in writer.commit_chunk(pending, pending_records, position):
                    tqdm.write(msg, file=sys.stderr)
                pending, pending_records = [], 0
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
        bar.close()
