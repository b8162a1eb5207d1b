"""Visual Relationship Detection (Lu et al., ECCV 2016) annotations -> SceneGraph JSONL shards.

Input (the layout of ``shared/datasets/vrd``, as distributed with the VRD / Referring Relationships
code): ``objects.json`` and ``predicates.json`` (JSON lists of class names; the index is the id) and
``annotations_{train,test}.json`` (``{image file name: [relationship, ...]}`` with relationships
``{"predicate": p, "subject": {"category": c, "bbox": [ymin, ymax, xmin, xmax]}, "object": {...}}``,
boxes in pixels).

One graph per image (empty graphs for images without relationships, so image counts match). Objects
are identified by ``(category, bbox)`` within an image, in order of first appearance. A
relationship whose subject and object are the same box (83 train / 26 test in VRD) gets a second
node for the object, since a :class:`SceneGraph` has no self-relations; every relationship is kept.
VRD has no image sizes, so boxes are written only when ``image_sizes`` (a JSON
``{file name: [width, height]}``) is given.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

from ..graph.scene_graph import Relation, SceneGraph, SceneGraphError, SceneObject
from ..graph.vocab import Vocabulary
from .readers import Record, chain_records, iter_json_object
from .shards import JobReport, Outcome, ShardWriter, run_job

__all__ = ["VRDConfig", "prepare_vrd", "read_vrd_images", "VRD_SPLITS"]

VRD_SPLITS = ("train", "test")


VRDObjectKey = tuple  # (category, x0, y0, x1, y1): one distinct object of an image, pixel box


def read_vrd_images(
    path: str | os.PathLike, num_predicates: int | None = None
) -> list[tuple[str, list[VRDObjectKey], set[tuple[int, int, int]]]]:
    """The per-image view shared by the tensor readers (link prediction, scene-graph diffusion).

    Reads one ``annotations_{split}.json`` and returns, per image sorted by file name, the distinct
    objects ``(category, x0, y0, x1, y1)`` in order of first appearance (VRD's ``[ymin, ymax, xmin, xmax]``
    boxes reordered) and the distinct ``(subject index, object index, predicate id)`` triplets, self
    pairs included. (:func:`prepare_vrd` keeps every relationship and splits self pairs instead.)

    Raises:
        ValueError: an empty box, or a predicate id outside ``[0, num_predicates)`` (names the image,
            the relationship and the field).
    """
    path = Path(path)
    raw = json.loads(path.read_text())
    images = []
    for name in sorted(raw):
        nodes: dict[VRDObjectKey, int] = {}
        trip: set[tuple[int, int, int]] = set()
        for k, r in enumerate(raw[name]):
            ids = []
            for role in ("subject", "object"):
                o = r[role]
                y0, y1, x0, x1 = o["bbox"]
                if not (x1 > x0 and y1 > y0):
                    raise ValueError(f"{path.name}: {name}[{k}].{role}.bbox {o['bbox']} is empty")
                ids.append(nodes.setdefault((int(o["category"]), x0, y0, x1, y1), len(nodes)))
            p = int(r["predicate"])
            if num_predicates is not None and not 0 <= p < num_predicates:
                raise ValueError(f"{path.name}: {name}[{k}].predicate {p} out of range")
            trip.add((ids[0], ids[1], p))
        images.append((name, sorted(nodes, key=nodes.get), trip))
    return images


@dataclass(frozen=True)
class VRDConfig:
    """Settings of :func:`prepare_vrd`.

    Args:
        data_root: folder with ``objects.json``, ``predicates.json``, ``annotations_{train,test}.json``.
        output_dir: output folder (see :mod:`.shards` for the layout).
        image_sizes: optional JSON ``{file name: [width, height]}``; with it, objects get boxes.
        chunk_size: images per output shard.
        overwrite: replace an output folder made with other settings.
        progress: tqdm progress bar on stderr.
    """

    data_root: str
    output_dir: str
    image_sizes: str | None = None
    chunk_size: int = 1000
    overwrite: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        if self.chunk_size < 1:
            raise ValueError(f"VRDConfig.chunk_size={self.chunk_size!r}: must be >= 1")


def _load_list(path: Path) -> list[str]:
    if not path.is_file():
        raise FileNotFoundError(f"VRD class list not found: {path}")
    names = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(names, list) or not all(isinstance(n, str) and n.strip() for n in names):
        raise ValueError(f"{path}: expected a JSON list of non-empty strings")
    return names


def _box(raw: Any, size: tuple[float, float] | None, where: str) -> tuple[float, float, float, float] | None:
    if not isinstance(raw, list) or len(raw) != 4 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in raw):
        raise SceneGraphError(where, f"expected [ymin, ymax, xmin, xmax], got {raw!r:.60}")
    ymin, ymax, xmin, xmax = raw
    if not (ymin < ymax and xmin < xmax):
        raise SceneGraphError(where, f"empty box [ymin, ymax, xmin, xmax] = {raw}")
    if size is None:
        return None
    w, h = size
    return (max(0.0, xmin / w), max(0.0, ymin / h), min(1.0, xmax / w), min(1.0, ymax / h))


def _convert_image(
    name: Any, rels: Any, objects: Sequence[str], predicates: Sequence[str],
    size: tuple[float, float] | None,
) -> tuple[SceneGraph, int]:
    if not isinstance(rels, list):
        raise SceneGraphError("relationships", f"expected a list, got {type(rels).__name__}")
    nodes: list[SceneObject] = []
    index: dict[tuple[int, tuple], int] = {}
    out: list[Relation] = []
    split_self = 0

    def node(o: Any, where: str, avoid: int | None = None) -> int:
        if not isinstance(o, dict) or "category" not in o or "bbox" not in o:
            raise SceneGraphError(where, f"expected {{'category', 'bbox'}}, got {o!r:.60}")
        c = o["category"]
        if isinstance(c, bool) or not isinstance(c, int) or not 0 <= c < len(objects):
            raise SceneGraphError(f"{where}.category", f"{c!r} out of range ({len(objects)} classes)")
        box = _box(o["bbox"], size, f"{where}.bbox")
        key = (c, tuple(o["bbox"]))
        i = index.get(key)
        if i is None or i == avoid:
            nodes.append(SceneObject(objects[c], (), box))
            i = len(nodes) - 1
            index.setdefault(key, i)
        return i

    for k, r in enumerate(rels):
        where = f"relationships[{k}]"
        if not isinstance(r, dict):
            raise SceneGraphError(where, f"expected an object, got {type(r).__name__}")
        for key in ("subject", "predicate", "object"):
            if key not in r:
                raise SceneGraphError(f"{where}.{key}", "missing")
        p = r["predicate"]
        if isinstance(p, bool) or not isinstance(p, int) or not 0 <= p < len(predicates):
            raise SceneGraphError(f"{where}.predicate", f"{p!r} out of range ({len(predicates)} predicates)")
        s = node(r["subject"], f"{where}.subject")
        o = node(r["object"], f"{where}.object", avoid=s)
        split_self += o != index[(r["object"]["category"], tuple(r["object"]["bbox"]))]
        out.append(Relation(s, predicates[p], o))
    return SceneGraph(tuple(nodes), tuple(out)), split_self


def _convert_batch(
    batch: list[Record], files: Sequence[tuple[str, str]], objects: Sequence[str], predicates: Sequence[str],
    sizes: dict[str, tuple[float, float]] | None,
) -> list[Outcome]:
    out = []
    for rec in batch:
        i, (name, rels) = rec.value
        split, source = files[i]
        size = None
        try:
            if sizes is not None:
                if name not in sizes:
                    raise SceneGraphError("image", "no size in image_sizes")
                size = sizes[name]
            g, split_self = _convert_image(name, rels, objects, predicates, size)
        except SceneGraphError as e:
            out.append(Outcome.skip(source, rec.line, f"image {name!r}: {e}"))
            continue
        out.append(Outcome.of(split, name, g, self_relations_split=split_self))
    return out


def prepare_vrd(config: VRDConfig, command: Sequence[str] = ()) -> JobReport:
    """Convert VRD to SceneGraph JSONL shards in ``config.output_dir`` (resumable; see :mod:`.shards`).

    Raises:
        FileNotFoundError: a VRD file is missing.
    """
    root = Path(config.data_root)
    objects = _load_list(root / "objects.json")
    predicates = _load_list(root / "predicates.json")
    files = []
    for split in VRD_SPLITS:
        path = root / f"annotations_{split}.json"
        if not path.is_file():
            raise FileNotFoundError(f"VRD annotations not found: {path}")
        files.append((split, path))
    sizes = None
    if config.image_sizes is not None:
        raw = json.loads(Path(config.image_sizes).read_text(encoding="utf-8"))
        sizes = {k: (float(v[0]), float(v[1])) for k, v in raw.items()}
    settings = {k: v for k, v in asdict(config).items() if k not in ("overwrite", "progress", "output_dir")}
    settings["data_root"] = os.path.abspath(config.data_root)
    writer = ShardWriter(config.output_dir, "vrd", settings, command, overwrite=config.overwrite,
                         count_labels=False)
    if not writer.complete:
        openers = [functools.partial(lambda p, start: iter_json_object(p, start), p) for _, p in files]
        records = chain_records(openers, writer.position)
        convert = functools.partial(
            _convert_batch, files=[(s, p.name) for s, p in files], objects=objects, predicates=predicates, sizes=sizes
        )
        run_job(writer, records, convert, chunk_size=config.chunk_size, progress=config.progress, desc="vrd images")
        writer.finish(Vocabulary(objects=objects, predicates=predicates))
    return JobReport(writer.manifest, Path(config.output_dir))
