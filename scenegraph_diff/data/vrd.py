"""Visual Relationship Detection (Lu et al., ECCV 2016) annotations -> SceneGraph JSONL shards.

Input (the layout of ``shared/datasets/vrd``, as distributed with the VRD / Referring Relationships
code): ``objects.json`` and ``predicates.json`` (JSON lists of class names; the index is the id) and
``annotations_{train,test}.json`` (``{image file name: [relationship, ...]}`` with relationships
``{"predicate": p, "subject": {"category": c, "bbox": [ymin, ymax, xmin, xmax]}, "object": {...}}``,
boxes in pixels).

This module holds the one parser of VRD's raw JSON, :func:`parse_vrd_image`, which turns one image's
relationship list into a :class:`VRDImageAnnotation`. Everything else is built on it: the shards of
:func:`prepare_vrd` (:meth:`VRDImageAnnotation.to_scene_graph`), the per-split reader
:func:`read_vrd_split` (with :func:`read_vrd_classes`), and through it the tensor readers of link prediction
(:func:`scenegraph_diff.linkpred.vrd.load_vrd`) and scene-graph diffusion
(:func:`scenegraph_diff.diffusion.scene_graph_data.load_vrd_graphs`).

One graph per image (empty graphs for images without relationships, so image counts match). Objects
are identified by ``(category, bbox)`` within an image, in order of first appearance. A
relationship whose subject and object are the same box (83 train / 26 test in VRD) gets a second
node for the object (its *twin*), since a :class:`SceneGraph` has no self-relations; every
relationship is kept, duplicates included.

**Boxes and their frame.** Every object gets a ``box`` ``[x0, y0, x1, y1]`` in ``[0, 1]``: its pixel box
normalised by the image's *frame* ``(fx0, fy0, fx1, fy1)`` (pixels) as
``((x0 - fx0) / W, (y0 - fy0) / H, (x1 - fx0) / W, (y1 - fy0) / H)`` with ``W = fx1 - fx0``,
``H = fy1 - fy0``. VRD carries no image sizes, so by default the frame is the **union of the image's
annotated boxes** (``fx0 = min x0``, ``fy0 = min y0``, ``fx1 = max x1``, ``fy1 = max y1`` over its objects):
the layout is stretched to fill the unit square on both axes independently (the aspect ratio is not
kept, and a lone object gets ``[0, 0, 1, 1]``). When ``image_sizes`` (a JSON
``{file name: [width, height]}``) is given, **the image size wins**: the frame is ``(0, 0, width, height)``;
an image missing from the file, or with a box outside its image, is skipped and reported.
A frame of zero (or negative, or non-finite) width or height is never used: boxes must be non-empty
(``xmin < xmax``, ``ymin < ymax``), so a union frame always has a positive size, and an image size that
is not two finite positive numbers is rejected when ``image_sizes`` is read (``ValueError`` naming the
entry); :func:`normalise_box` refuses a degenerate frame with a :class:`SceneGraphError`.
"""

from __future__ import annotations

import functools
import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..graph.scene_graph import Relation, SceneGraph, SceneGraphError, SceneObject
from ..graph.vocab import Vocabulary
from .readers import Record, chain_records, iter_json_object
from .shards import JobReport, Outcome, ShardWriter, run_job

__all__ = [
    "VRDConfig",
    "VRDImageAnnotation",
    "prepare_vrd",
    "parse_vrd_image",
    "read_vrd_split",
    "read_vrd_classes",
    "read_image_sizes",
    "union_frame",
    "normalise_box",
    "VRD_SPLITS",
]

VRD_SPLITS = ("train", "test")

Box = tuple[float, float, float, float]  # (x0, y0, x1, y1)
VRDObjectKey = tuple  # (category, x0, y0, x1, y1): one distinct object of an image, pixel box


def _load_list(path: Path) -> list[str]:
    if not path.is_file():
        raise FileNotFoundError(f"VRD class list not found: {path}")
    names = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(names, list) or not all(isinstance(n, str) and n.strip() for n in names):
        raise ValueError(f"{path}: expected a JSON list of non-empty strings")
    return names


def union_frame(boxes: Sequence[Sequence[float]]) -> Box:
    """The default frame of an image: the union (bounding box) of its boxes.

    Args:
        boxes: ``[n, 4]`` pixel boxes ``(x0, y0, x1, y1)``, ``n >= 1``.

    Returns:
        ``(min x0, min y0, max x1, max y1)``.

    Raises:
        ValueError: ``boxes`` is empty (an image without objects has no frame).
    """
    if len(boxes) == 0:
        raise ValueError("union_frame: no boxes (an image without objects has no frame)")
    return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))


def normalise_box(box: Sequence[float], frame: Sequence[float], where: str = "box") -> Box:
    """A pixel box ``(x0, y0, x1, y1)`` in ``frame`` ``(fx0, fy0, fx1, fy1)`` -> ``[0, 1]`` coordinates.

    Computes ``((x0 - fx0) / W, (y0 - fy0) / H, (x1 - fx0) / W, (y1 - fy0) / H)``, ``W = fx1 - fx0``,
    ``H = fy1 - fy0``.

    Raises:
        SceneGraphError: (field ``where``) the frame is degenerate (``W`` or ``H`` not a finite positive
            number), or the box does not lie inside the frame (nothing is clipped).
    """
    fx0, fy0, fx1, fy1 = (float(v) for v in frame)
    w, h = fx1 - fx0, fy1 - fy0
    if not (math.isfinite(w) and math.isfinite(h) and w > 0 and h > 0):
        raise SceneGraphError(where, f"degenerate frame {list(frame)}: width {w:g}, height {h:g} (both must be > 0)")
    x0, y0, x1, y1 = box
    if not (fx0 <= x0 and fy0 <= y0 and x1 <= fx1 and y1 <= fy1):
        raise SceneGraphError(where, f"box (x0, y0, x1, y1) = {list(box)} lies outside the frame {list(frame)}")
    return ((x0 - fx0) / w, (y0 - fy0) / h, (x1 - fx0) / w, (y1 - fy0) / h)


@dataclass(frozen=True)
class VRDImageAnnotation:
    """One VRD image, as parsed from its relationship list by :func:`parse_vrd_image`.

    Attributes:
        name: the image file name.
        categories: ``[n]`` object class id of each node.
        boxes: ``[n, 4]`` pixel boxes ``(x0, y0, x1, y1)`` of the nodes (VRD's
            ``[ymin, ymax, xmin, xmax]`` reordered; the numbers as in the file).
        relationships: every relationship in file order, as ``(subject node, predicate id, object node)``;
            never a self pair (see ``twin_of``).
        twin_of: ``[n]``: ``i`` for a distinct ``(category, box)`` object; for the extra node made for the
            object of a self relationship, the index of the node it copies (always an earlier node).
    """

    name: str
    categories: tuple[int, ...]
    boxes: tuple[tuple[Any, Any, Any, Any], ...]
    relationships: tuple[tuple[int, int, int], ...]
    twin_of: tuple[int, ...]

    def frame(self, size: Sequence[float] | None = None) -> Box | None:
        """The frame the boxes are normalised by (see the module docstring).

        Args:
            size: the image's ``(width, height)``; when given, the frame is ``(0, 0, width, height)``.

        Returns:
            The frame, or ``None`` for an image without objects (and no size).
        """
        if size is not None:
            return (0.0, 0.0, float(size[0]), float(size[1]))
        return union_frame(self.boxes) if self.boxes else None

    def to_scene_graph(self, objects: Sequence[str], predicates: Sequence[str],
                       size: Sequence[float] | None = None) -> SceneGraph:
        """The image as the :class:`SceneGraph` written to the shards: one object per node (twins
        included) with its box normalised by :meth:`frame`, one relation per relationship.

        Raises:
            SceneGraphError: a box lies outside the image of the given ``size`` (``objects[i].box``).
        """
        frame = self.frame(size)
        objs = tuple(
            SceneObject(objects[c], (), normalise_box(b, frame, f"objects[{i}].box"))  # type: ignore[arg-type]
            for i, (c, b) in enumerate(zip(self.categories, self.boxes))
        )
        rels = tuple(Relation(s, predicates[p], o) for s, p, o in self.relationships)
        return SceneGraph(objs, rels)

    @property
    def num_twins(self) -> int:
        """Number of extra nodes made for self relationships."""
        return sum(t != i for i, t in enumerate(self.twin_of))

    def distinct_objects(self) -> list[VRDObjectKey]:
        """The distinct objects ``(category, x0, y0, x1, y1)`` in order of first appearance (twins left out)."""
        return [(c, *b) for i, (c, b) in enumerate(zip(self.categories, self.boxes)) if self.twin_of[i] == i]

    def triplets(self) -> set[tuple[int, int, int]]:
        """The distinct ``(subject, object, predicate id)`` triplets over :meth:`distinct_objects` indices;
        a self relationship is the self pair ``(i, i, p)`` here (its twin mapped back to ``i``)."""
        pos: dict[int, int] = {}
        for i, t in enumerate(self.twin_of):
            if t == i:
                pos[i] = len(pos)
        node = [pos[t] for t in self.twin_of]
        return {(node[s], node[o], p) for s, p, o in self.relationships}


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def parse_vrd_image(name: str, rels: Any, num_objects: int | None = None,
                    num_predicates: int | None = None) -> VRDImageAnnotation:
    """Parse one image's VRD relationship list (the value of ``annotations_{split}.json[name]``).

    The only parser of VRD's raw records: objects are distinct ``(category, bbox)`` in order of first
    appearance, the object of a self relationship gets a twin node, every relationship is kept.

    Args:
        name: the image file name (stored, not parsed).
        rels: ``[{"predicate": p, "subject": {"category": c, "bbox": [ymin, ymax, xmin, xmax]}, "object": ...}]``.
        num_objects: when given, categories must lie in ``[0, num_objects)``.
        num_predicates: when given, predicate ids must lie in ``[0, num_predicates)``.

    Raises:
        SceneGraphError: naming the field (``relationships[3].object.bbox``) and the bad value: a record
            that is not an object, a missing key, a non-integer or out-of-range category or predicate, a
            bbox that is not four finite numbers, or an empty bbox (``ymin >= ymax`` or ``xmin >= xmax``).
    """
    if not isinstance(rels, list):
        raise SceneGraphError("relationships", f"expected a list, got {type(rels).__name__}")
    categories: list[int] = []
    boxes: list[tuple] = []
    twin_of: list[int] = []
    index: dict[tuple, int] = {}
    out: list[tuple[int, int, int]] = []

    def node(o: Any, where: str, avoid: int | None = None) -> int:
        if not isinstance(o, dict) or "category" not in o or "bbox" not in o:
            raise SceneGraphError(where, f"expected {{'category', 'bbox'}}, got {o!r:.60}")
        c = o["category"]
        if isinstance(c, bool) or not isinstance(c, int) or (num_objects is not None and not 0 <= c < num_objects):
            raise SceneGraphError(f"{where}.category", f"{c!r} out of range ({num_objects} classes)")
        raw = o["bbox"]
        if not isinstance(raw, list) or len(raw) != 4 or not all(_number(v) for v in raw):
            raise SceneGraphError(f"{where}.bbox", f"expected [ymin, ymax, xmin, xmax] (finite numbers), got {raw!r:.60}")
        ymin, ymax, xmin, xmax = raw
        if not (ymin < ymax and xmin < xmax):
            raise SceneGraphError(f"{where}.bbox", f"empty box [ymin, ymax, xmin, xmax] = {raw}")
        key = (c, xmin, ymin, xmax, ymax)
        i = index.get(key)
        if i is None or i == avoid:
            categories.append(c)
            boxes.append((xmin, ymin, xmax, ymax))
            twin_of.append(len(twin_of) if i is None else i)
            index.setdefault(key, len(categories) - 1)
            i = len(categories) - 1
        return i

    for k, r in enumerate(rels):
        where = f"relationships[{k}]"
        if not isinstance(r, dict):
            raise SceneGraphError(where, f"expected an object, got {type(r).__name__}")
        for key in ("subject", "predicate", "object"):
            if key not in r:
                raise SceneGraphError(f"{where}.{key}", "missing")
        p = r["predicate"]
        if isinstance(p, bool) or not isinstance(p, int) or (num_predicates is not None and not 0 <= p < num_predicates):
            raise SceneGraphError(f"{where}.predicate", f"{p!r} out of range ({num_predicates} predicates)")
        s = node(r["subject"], f"{where}.subject")
        o = node(r["object"], f"{where}.object", avoid=s)
        out.append((s, p, o))
    return VRDImageAnnotation(name, tuple(categories), tuple(boxes), tuple(out), tuple(twin_of))


def read_vrd_split(path: str | os.PathLike, num_objects: int | None = None,
                   num_predicates: int | None = None) -> list[VRDImageAnnotation]:
    """Read one ``annotations_{split}.json`` whole: every image (sorted by file name), parsed by
    :func:`parse_vrd_image`. Images without relationships are kept (no objects).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file is not a JSON object, or an image is malformed (the message names the
            file, the image, the field and the value).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"VRD annotations not found: {path}")
    raw = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(raw, dict):
        raise ValueError(f"{path.name}: expected a JSON object {{image file name: [relationship, ...]}}, "
                         f"got {type(raw).__name__}")
    out = []
    for name in sorted(raw):
        try:
            out.append(parse_vrd_image(name, raw[name], num_objects, num_predicates))
        except SceneGraphError as e:
            raise ValueError(f"{path.name}: image {name!r}: {e}") from e
    return out


def read_vrd_classes(data_root: str | os.PathLike) -> tuple[list[str], list[str]]:
    """The class lists of a VRD folder: ``(objects, predicates)`` from ``objects.json`` / ``predicates.json``
    (the index of a name is its id).

    Raises:
        FileNotFoundError: a list is missing.
        ValueError: a list is not a JSON list of non-empty strings.
    """
    root = Path(data_root)
    return _load_list(root / "objects.json"), _load_list(root / "predicates.json")


def read_image_sizes(path: str | os.PathLike) -> dict[str, tuple[float, float]]:
    """Read an ``image_sizes`` file: JSON ``{file name: [width, height]}`` (pixels).

    Raises:
        ValueError: the file is not a JSON object, or an entry is not two finite numbers > 0 (a zero
            or negative size would make a degenerate frame); the message names the entry and value.
    """
    path = Path(path)
    raw = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a JSON object {{file name: [width, height]}}, got {type(raw).__name__}")
    sizes = {}
    for k, v in raw.items():
        if not (isinstance(v, list) and len(v) == 2 and all(_number(x) and x > 0 for x in v)):
            raise ValueError(f"{path}: {k!r}: size {v!r} is not [width, height] with both finite and > 0")
        sizes[k] = (float(v[0]), float(v[1]))
    return sizes


@dataclass(frozen=True)
class VRDConfig:
    """Settings of :func:`prepare_vrd`.

    Args:
        data_root: folder with ``objects.json``, ``predicates.json``, ``annotations_{train,test}.json``.
        output_dir: output folder (see :mod:`.shards` for the layout).
        image_sizes: optional JSON ``{file name: [width, height]}``; with it, boxes are normalised by
            the image (the image size wins over the default union-of-boxes frame).
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


def _convert_batch(
    batch: list[Record], files: Sequence[tuple[str, str]], objects: Sequence[str], predicates: Sequence[str],
    sizes: Mapping[str, tuple[float, float]] | None,
) -> list[Outcome]:
    out = []
    for rec in batch:
        i, (name, rels) = rec.value
        split, source = files[i]
        try:
            size = None
            if sizes is not None:
                if name not in sizes:
                    raise SceneGraphError("image", "no size in image_sizes")
                size = sizes[name]
            a = parse_vrd_image(name, rels, len(objects), len(predicates))
            g = a.to_scene_graph(objects, predicates, size)
        except SceneGraphError as e:
            out.append(Outcome.skip(source, rec.line, f"image {name!r}: {e}"))
            continue
        out.append(Outcome.of(split, name, g, self_relations_split=a.num_twins))
    return out


def prepare_vrd(config: VRDConfig, command: Sequence[str] = ()) -> JobReport:
    """Convert VRD to SceneGraph JSONL shards in ``config.output_dir`` (resumable; see :mod:`.shards`).

    Every object gets a normalised ``box`` (the frame: see the module docstring).

    Raises:
        FileNotFoundError: a VRD file is missing.
        ValueError: a malformed class list or ``image_sizes`` file (naming the bad entry).
    """
    root = Path(config.data_root)
    objects, predicates = read_vrd_classes(root)
    files = []
    for split in VRD_SPLITS:
        path = root / f"annotations_{split}.json"
        if not path.is_file():
            raise FileNotFoundError(f"VRD annotations not found: {path}")
        files.append((split, path))
    sizes = read_image_sizes(config.image_sizes) if config.image_sizes is not None else None
    settings = {k: v for k, v in asdict(config).items() if k not in ("overwrite", "progress", "output_dir")}
    settings["data_root"] = os.path.abspath(config.data_root)
    settings["box_frame"] = "image" if sizes is not None else "union"
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
