"""Visual Genome (v1.2 / v1.4 JSON) -> per-image SceneGraph JSONL shards, streaming, as sg2im does.

Input files (https://homes.cs.washington.edu/~ranjay/visualgenome/api.html, "Visual Genome Data
Format"): ``relationships.json`` (required) and, when present, ``objects.json``,
``attributes.json`` and ``image_data.json``. Each is a JSON array with one element per image, in the
same image order; they are streamed in lock step (bounded memory, whatever the file sizes) and
their ``image_id`` s must agree.

Pipeline (sg2im's ``preprocess_vg.py``):

1. labels are canonicalised (lower case, single spaces) and merged through optional alias files
   (sg2im format: ``canonical,alias,alias`` per line);
2. a first pass counts object names (``objects.json``, else the relationship endpoints),
   attributes and predicates; the vocabulary keeps labels seen ``min_*_instances`` times
   (deviation: sg2im counts a predicate only when both endpoints survive; here every occurrence counts);
3. a second pass builds one graph per image: objects in the vocabulary and at least
   ``min_object_size`` pixels wide and high, with boxes normalised by the image size
   (``image_data.json``), up to ``max_attributes_per_image`` attributes, relationships whose
   predicate and both endpoints survive (self-relations dropped); images with fewer than
   ``min_objects_per_image`` / more than ``max_objects_per_image`` objects or fewer than
   ``min_relationships_per_image`` relationships are filtered (and counted per reason);
4. images are split into train / val / test by a hash of the image id (or by an sg2im-style
   ``splits`` JSON ``{"train": [ids], "val": [...], "test": [...]}``).

A malformed image record (wrong types, missing fields) is skipped and reported as
``file:line: reason``; a JSON syntax error stops the run (a stream cannot be resynchronised).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from ..graph.scene_graph import (
    Relation,
    SceneGraph,
    SceneGraphError,
    SceneObject,
    canonical_label,
)
from ..graph.vocab import Vocabulary
from .readers import Record, iter_json_array
from .shards import JobReport, Outcome, ShardWriter, run_job

__all__ = ["VisualGenomeConfig", "prepare_visual_genome", "load_aliases", "VG_FILES", "zip_json_arrays"]

VG_FILES = ("relationships", "objects", "attributes", "image_data")


@dataclass(frozen=True)
class VisualGenomeConfig:
    """Settings of :func:`prepare_visual_genome` (defaults as sg2im's ``preprocess_vg.py``).

    Args:
        data_root: folder with ``relationships.json`` (and optionally ``objects.json``,
            ``attributes.json``, ``image_data.json``).
        output_dir: output folder.
        object_aliases, predicate_aliases, attribute_aliases: optional alias files.
        min_object_instances, min_attribute_instances, min_relationship_instances: vocabulary thresholds.
        min_object_size: minimum object width and height in pixels.
        min_objects_per_image, max_objects_per_image, max_attributes_per_image,
        min_relationships_per_image: per-image filters.
        val_fraction, test_fraction: hash split fractions (ignored with ``splits``).
        splits: optional JSON ``{"train": [image ids], "val": [...], "test": [...]}``; images in none
            of the lists are filtered (``not_in_splits``).
        chunk_size: images per output shard.
        workers: conversion processes for the second pass.
        overwrite, progress: see :class:`~.shards.ShardWriter` / tqdm.
    """

    data_root: str
    output_dir: str
    object_aliases: str | None = None
    predicate_aliases: str | None = None
    attribute_aliases: str | None = None
    min_object_instances: int = 2000
    min_attribute_instances: int = 2000
    min_relationship_instances: int = 500
    min_object_size: int = 32
    min_objects_per_image: int = 3
    max_objects_per_image: int = 30
    max_attributes_per_image: int = 30
    min_relationships_per_image: int = 1
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    splits: str | None = None
    chunk_size: int = 1000
    workers: int = 1
    overwrite: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        for name in ("min_object_instances", "min_attribute_instances", "min_relationship_instances", "chunk_size", "workers"):
            if getattr(self, name) < 1:
                raise ValueError(f"VisualGenomeConfig.{name}={getattr(self, name)!r}: must be >= 1")
        for name in ("min_object_size", "min_objects_per_image", "max_objects_per_image", "max_attributes_per_image",
                     "min_relationships_per_image"):
            if getattr(self, name) < 0:
                raise ValueError(f"VisualGenomeConfig.{name}={getattr(self, name)!r}: must be >= 0")
        if not (0 <= self.val_fraction and 0 <= self.test_fraction and self.val_fraction + self.test_fraction < 1):
            raise ValueError(
                f"VisualGenomeConfig: val_fraction={self.val_fraction!r} and test_fraction={self.test_fraction!r} "
                "must be >= 0 with a sum < 1"
            )


def load_aliases(path: str | os.PathLike[str] | None) -> dict[str, str]:
    """Read an sg2im alias file: each line ``canonical,alias,...`` maps every alias to ``canonical``."""
    if path is None:
        return {}
    out: dict[str, str] = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            names = [canonical_label(s) for s in line.split(",") if s.strip()]
            for s in names:
                out[s] = names[0]
    return out


def zip_json_arrays(paths: Sequence[Path], start: dict[str, Any] | None = None) -> Iterator[Record]:
    """Stream several JSON arrays in lock step: ``Record.value`` is a tuple of ``(element, line)``.

    Raises:
        ValueError: the arrays have different lengths.
    """
    starts = [None] * len(paths) if start is None else start["parts"]
    iters = [iter_json_array(p, start=s) for p, s in zip(paths, starts)]
    while True:
        recs = [next(it, None) for it in iters]
        if all(r is None for r in recs):
            return
        if any(r is None for r in recs):
            ended = [p.name for p, r in zip(paths, recs) if r is None]
            raise ValueError(f"{', '.join(ended)} ended before the other files: the VG files must list the same images")
        first = recs[0]
        assert first is not None
        yield Record(
            tuple((r.value, r.line) for r in recs),  # type: ignore[union-attr]
            first.line, first.index, {"parts": [r.position for r in recs]},  # type: ignore[union-attr]
        )


def _image_id(elem: Any, where: str) -> Any:
    if not isinstance(elem, dict):
        raise SceneGraphError(where, f"expected an object per image, got {type(elem).__name__}")
    iid = elem.get("image_id", elem.get("id"))
    if iid is None:
        raise SceneGraphError(where, "missing image_id")
    return iid


def _name(obj: Mapping[str, Any], where: str) -> str:
    names = obj.get("names")
    if isinstance(names, list) and names and isinstance(names[0], str):
        name = names[0]
    elif isinstance(obj.get("name"), str):
        name = obj["name"]
    else:
        raise SceneGraphError(f"{where}.names", f"missing or not a list of strings: {names!r:.40}")
    return canonical_label(name)


def _xywh(obj: Mapping[str, Any], where: str) -> tuple[float, float, float, float]:
    out = []
    for k in ("x", "y", "w", "h"):
        v = obj.get(k)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise SceneGraphError(f"{where}.{k}", f"expected a number, got {v!r:.40}")
        out.append(float(v))
    return out[0], out[1], out[2], out[3]


class _Labels:
    """Canonicalisation + aliases for the three label kinds."""

    def __init__(self, objects: Mapping[str, str], attributes: Mapping[str, str], predicates: Mapping[str, str]) -> None:
        self.aliases = {"object": dict(objects), "attribute": dict(attributes), "predicate": dict(predicates)}

    def __call__(self, kind: str, label: str) -> str:
        label = canonical_label(label)
        return self.aliases[kind].get(label, label)


def _objects_of(elem: dict, key: str, where: str) -> list:
    items = elem.get(key, [])
    if not isinstance(items, list):
        raise SceneGraphError(f"{where}.{key}", f"expected a list, got {type(items).__name__}")
    return items


def _count_image(parts: Sequence[tuple[Any, int]], names: Sequence[str], labels: _Labels, counts: dict[str, Counter]) -> None:
    """Pass 1 on one image: count labels (raises SceneGraphError on a malformed record)."""
    elems = {n: v for n, (v, _) in zip(names, parts)}
    rels = _objects_of(elems["relationships"], "relationships", "relationships")
    seen: set[Any] = set()
    if "objects" in elems:
        for i, o in enumerate(_objects_of(elems["objects"], "objects", "objects")):
            if not isinstance(o, dict):
                raise SceneGraphError(f"objects[{i}]", "expected an object")
            counts["object"][labels("object", _name(o, f"objects[{i}]"))] += 1
    for k, r in enumerate(rels):
        if not isinstance(r, dict) or not isinstance(r.get("predicate"), str):
            raise SceneGraphError(f"relationships[{k}].predicate", "missing or not a string")
        counts["predicate"][labels("predicate", r["predicate"])] += 1
        if "objects" not in elems:
            for end in ("subject", "object"):
                o = r.get(end)
                if not isinstance(o, dict):
                    raise SceneGraphError(f"relationships[{k}].{end}", "expected an object")
                oid = o.get("object_id", o.get("id"))
                if oid not in seen:
                    seen.add(oid)
                    counts["object"][labels("object", _name(o, f"relationships[{k}].{end}"))] += 1
    if "attributes" in elems:
        for i, o in enumerate(_objects_of(elems["attributes"], "attributes", "attributes")):
            attrs = o.get("attributes", []) if isinstance(o, dict) else None
            if not isinstance(attrs, list):
                raise SceneGraphError(f"attributes[{i}].attributes", "expected a list")
            for a in attrs:
                if isinstance(a, str) and a.strip():
                    counts["attribute"][labels("attribute", a)] += 1


def _split_of(image_id: Any, val: float, test: float, table: Mapping[str, str] | None) -> str | None:
    if table is not None:
        return table.get(str(image_id))
    u = int.from_bytes(hashlib.sha256(str(image_id).encode()).digest()[:8], "big") / 2**64
    return "test" if u < test else "val" if u < test + val else "train"


def _convert_image(
    parts: Sequence[tuple[Any, int]], names: Sequence[str], labels: _Labels, vocab: Vocabulary,
    cfg: VisualGenomeConfig, split_table: Mapping[str, str] | None,
) -> tuple[Any, str | None, SceneGraph | None, str | None, Counter]:
    """Pass 2 on one image -> (image id, split, graph or None, filter reason, stats)."""
    elems = {n: v for n, (v, _) in zip(names, parts)}
    stats: Counter = Counter()
    iid = _image_id(elems["relationships"], "image")
    for n, v in elems.items():
        other = _image_id(v, n)
        if other != iid:
            raise ValueError(f"{n}.json has image_id {other!r} where relationships.json has {iid!r}: "
                             "the VG files must list the same images in the same order")
    size = None
    if "image_data" in elems:
        w, h = elems["image_data"].get("width"), elems["image_data"].get("height")
        if isinstance(w, bool) or isinstance(h, bool) or not isinstance(w, (int, float)) or not isinstance(h, (int, float)) or w <= 0 or h <= 0:
            raise SceneGraphError("image_data", f"bad width/height {w!r}/{h!r}")
        size = (float(w), float(h))
    split = _split_of(iid, cfg.val_fraction, cfg.test_fraction, split_table)

    # objects: id -> (name, xywh); objects.json first (its order), then relationship endpoints
    order: list[Any] = []
    objs: dict[Any, tuple[str, tuple[float, float, float, float]]] = {}

    def add(o: Any, where: str) -> Any:
        if not isinstance(o, dict):
            raise SceneGraphError(where, f"expected an object, got {type(o).__name__}")
        oid = o.get("object_id", o.get("id"))
        if oid is None:
            raise SceneGraphError(f"{where}.object_id", "missing")
        if oid not in objs:
            objs[oid] = (labels("object", _name(o, where)), _xywh(o, where))
            order.append(oid)
        return oid

    if "objects" in elems:
        for i, o in enumerate(_objects_of(elems["objects"], "objects", "objects")):
            add(o, f"objects[{i}]")
    raw_rels = []
    for k, r in enumerate(_objects_of(elems["relationships"], "relationships", "relationships")):
        where = f"relationships[{k}]"
        if not isinstance(r, dict) or not isinstance(r.get("predicate"), str):
            raise SceneGraphError(f"{where}.predicate", "missing or not a string")
        raw_rels.append((add(r.get("subject"), f"{where}.subject"), labels("predicate", r["predicate"]),
                         add(r.get("object"), f"{where}.object")))
    attrs: dict[Any, list[str]] = {}
    if "attributes" in elems:
        for i, o in enumerate(_objects_of(elems["attributes"], "attributes", "attributes")):
            if not isinstance(o, dict):
                raise SceneGraphError(f"attributes[{i}]", "expected an object")
            a_list = o.get("attributes", [])
            if not isinstance(a_list, list):
                raise SceneGraphError(f"attributes[{i}].attributes", "expected a list")
            oid = o.get("object_id", o.get("id"))
            for a in a_list:
                if isinstance(a, str) and a.strip():
                    attrs.setdefault(oid, []).append(labels("attribute", a))

    # keep objects in the vocabulary, big enough, with a valid box
    index: dict[Any, int] = {}
    nodes: list[SceneObject] = []
    n_attrs = 0
    for oid in order:
        name, (x, y, w, h) = objs[oid]
        if (("object", name) not in vocab):
            stats["objects_dropped_vocab"] += 1
            continue
        if w < cfg.min_object_size or h < cfg.min_object_size:
            stats["objects_dropped_small"] += 1
            continue
        box = None
        if size is not None:
            W, H = size
            box = (max(0.0, x / W), max(0.0, y / H), min(1.0, (x + w) / W), min(1.0, (y + h) / H))
            if not (box[0] < box[2] and box[1] < box[3]):
                stats["objects_dropped_bad_box"] += 1
                continue
        kept_attrs: list[str] = []
        for a in attrs.get(oid, ()):
            if ("attribute", a) in vocab and a not in kept_attrs and n_attrs < cfg.max_attributes_per_image:
                kept_attrs.append(a)
                n_attrs += 1
        index[oid] = len(nodes)
        nodes.append(SceneObject(name, tuple(kept_attrs), box))
    rels: list[Relation] = []
    for s, p, o in raw_rels:
        if s == o:
            stats["relations_dropped_self"] += 1
        elif s not in index or o not in index:
            stats["relations_dropped_object"] += 1
        elif ("predicate", p) not in vocab:
            stats["relations_dropped_vocab"] += 1
        else:
            rels.append(Relation(index[s], p, index[o]))
    reason = None
    if split is None:
        reason = "not_in_splits"
    elif len(nodes) < cfg.min_objects_per_image:
        reason = "too_few_objects"
    elif len(nodes) > cfg.max_objects_per_image:
        reason = "too_many_objects"
    elif len(rels) < cfg.min_relationships_per_image:
        reason = "too_few_relationships"
    if reason is not None:
        return iid, split, None, reason, stats
    return iid, split, SceneGraph(tuple(nodes), tuple(rels)), None, stats


def _line_of(parts: Sequence[tuple[Any, int]], names: Sequence[str], err: SceneGraphError) -> tuple[str, int]:
    """The file and line a field error points at (``objects[3]...`` -> objects.json)."""
    head = err.field.split("[", 1)[0].split(".", 1)[0]
    for n, (_, line) in zip(names, parts):
        if n == head:
            return f"{n}.json", line
    return f"{names[0]}.json", parts[0][1]


def _convert_batch(batch: list[Record], names: Sequence[str], labels: _Labels, vocab: Vocabulary,
                   cfg: VisualGenomeConfig, split_table: Mapping[str, str] | None) -> list[Outcome]:
    out = []
    for rec in batch:
        try:
            iid, split, g, reason, stats = _convert_image(rec.value, names, labels, vocab, cfg, split_table)
        except SceneGraphError as e:
            source, line = _line_of(rec.value, names, e)
            out.append(Outcome.skip(source, line, f"image #{rec.index}: {e}"))
            continue
        if g is None:
            out.append(Outcome(filtered=reason, stats=dict(stats)))
        else:
            out.append(Outcome.of(split or "train", str(iid), g, **stats))
    return out


def _first_pass(paths: Sequence[Path], names: Sequence[str], labels: _Labels, progress: bool) -> tuple[dict[str, Counter], list[str]]:
    import sys

    from tqdm.auto import tqdm

    counts = {k: Counter() for k in ("object", "attribute", "predicate")}
    errors: list[str] = []
    for rec in tqdm(zip_json_arrays(paths), desc="vg pass 1 (counts)", unit="img", file=sys.stderr,
                    disable=not progress, mininterval=0.5):
        try:
            _count_image(rec.value, names, labels, counts)
        except SceneGraphError as e:
            source, line = _line_of(rec.value, names, e)
            errors.append(f"{source}:{line}: image #{rec.index}: {e}")
    return counts, errors


def prepare_visual_genome(config: VisualGenomeConfig, command: Sequence[str] = ()) -> JobReport:
    """Convert Visual Genome to SceneGraph JSONL shards in ``config.output_dir`` (resumable).

    Raises:
        FileNotFoundError: ``relationships.json`` (or an alias / splits file) is missing.
        ValueError: the files disagree on the image order.
        JSONStreamError: a JSON syntax error.
    """
    root = Path(config.data_root)
    names = [n for n in VG_FILES if (root / f"{n}.json").is_file()]
    if "relationships" not in names:
        raise FileNotFoundError(f"Visual Genome relationships.json not found in {str(root)!r}")
    paths = [root / f"{n}.json" for n in names]
    labels = _Labels(load_aliases(config.object_aliases), load_aliases(config.attribute_aliases),
                     load_aliases(config.predicate_aliases))
    split_table = None
    if config.splits is not None:
        raw = json.loads(Path(config.splits).read_text(encoding="utf-8"))
        split_table = {str(i): split for split, ids in raw.items() for i in ids}
    settings = {k: v for k, v in asdict(config).items() if k not in ("overwrite", "progress", "output_dir", "workers")}
    settings["data_root"] = os.path.abspath(config.data_root)
    settings["files"] = [p.name for p in paths]
    writer = ShardWriter(config.output_dir, "visual_genome", settings, command, overwrite=config.overwrite,
                         count_labels=False)
    if writer.complete:
        return JobReport(writer.manifest, Path(config.output_dir))
    if writer.prepass is None:
        counts, _ = _first_pass(paths, names, labels, config.progress)  # errors are reported by pass 2

        def keep(c: Counter, k: int) -> list[str]:
            return [lab for lab, n in sorted(c.items(), key=lambda kv: (-kv[1], kv[0])) if n >= k and lab != "<unk>"]

        writer.save_prepass({
            "objects": keep(counts["object"], config.min_object_instances),
            "attributes": keep(counts["attribute"], config.min_attribute_instances),
            "predicates": keep(counts["predicate"], config.min_relationship_instances),
        })
    vocab = Vocabulary.from_dict(writer.prepass)
    convert = functools.partial(_convert_batch, names=names, labels=labels, vocab=vocab, cfg=config, split_table=split_table)
    run_job(writer, zip_json_arrays(paths, writer.position), convert, chunk_size=config.chunk_size,
            batch_size=min(256, config.chunk_size), workers=config.workers, progress=config.progress,
            desc="vg pass 2 (graphs)")
    writer.finish(vocab)
    return JobReport(writer.manifest, Path(config.output_dir))
