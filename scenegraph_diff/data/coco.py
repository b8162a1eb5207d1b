"""COCO instance (+ stuff) annotations -> geometric scene graphs, as sg2im builds them.

Input: COCO ``instances_*.json`` and optionally ``stuff_*.json`` (https://cocodataset.org/#format-data:
``images`` with ``width``/``height``, ``annotations`` with ``image_id``, ``category_id`` and
``bbox = [x, y, width, height]`` in pixels, ``categories`` with ``id``/``name``). The
``annotations`` arrays are streamed (segmentations are never kept in memory); only a compact
``image id -> [(category, box)]`` table is.

Per image (sg2im ``coco.py``): objects whose box covers more than ``min_object_size`` of the image
(stuff category ``other`` excluded unless ``include_other``), images with
``min_objects_per_image..max_objects_per_image`` objects; then for every object one partner is
drawn and ordered at random and the pair gets a geometric predicate from the boxes: ``surrounding``,
``inside``, or by the angle between the centres ``left of`` / ``above`` / ``right of`` / ``below``.
sg2im draws these at load time; here the draw uses a ``random.Random`` seeded by
``(seed, image id)``, so the output is deterministic.
"""

from __future__ import annotations

import math
import os
import random
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

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

__all__ = ["CocoConfig", "prepare_coco", "geometric_predicate", "COCO_PREDICATES"]

COCO_PREDICATES = ("left of", "right of", "above", "below", "inside", "surrounding")


@dataclass(frozen=True)
class CocoConfig:
    """Settings of :func:`prepare_coco` (defaults as sg2im's ``CocoSceneGraphDataset``).

    Args:
        instances: path of ``instances_<split>.json``.
        output_dir: output folder.
        stuff: optional path of ``stuff_<split>.json``.
        split: split name of the output.
        min_object_size: minimum box area as a fraction of the image area.
        min_objects_per_image, max_objects_per_image: image filter.
        include_other: keep the stuff category ``other``.
        seed: seed of the relation draw.
        chunk_size: images per output shard.
        overwrite, progress: see :class:`~.shards.ShardWriter` / tqdm.
    """

    instances: str
    output_dir: str
    stuff: str | None = None
    split: str = "train"
    min_object_size: float = 0.02
    min_objects_per_image: int = 3
    max_objects_per_image: int = 8
    include_other: bool = False
    seed: int = 0
    chunk_size: int = 5000
    overwrite: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        if not 0 <= self.min_object_size < 1:
            raise ValueError(f"CocoConfig.min_object_size={self.min_object_size!r}: must be in [0, 1)")
        if not 0 <= self.min_objects_per_image <= self.max_objects_per_image:
            raise ValueError(f"CocoConfig: need 0 <= min_objects_per_image <= max_objects_per_image, got "
                             f"{self.min_objects_per_image!r} and {self.max_objects_per_image!r}")
        if self.chunk_size < 1:
            raise ValueError(f"CocoConfig.chunk_size={self.chunk_size!r}: must be >= 1")


def geometric_predicate(s: Sequence[float], o: Sequence[float]) -> str:
    """sg2im's predicate for subject box ``s`` and object box ``o`` (``[x0, y0, x1, y1]``, y down)."""
    sx0, sy0, sx1, sy1 = s
    ox0, oy0, ox1, oy1 = o
    if sx0 < ox0 and sx1 > ox1 and sy0 < oy0 and sy1 > oy1:
        return "surrounding"
    if sx0 > ox0 and sx1 < ox1 and sy0 > oy0 and sy1 < oy1:
        return "inside"
    dx = (sx0 + sx1) / 2 - (ox0 + ox1) / 2
    dy = (sy0 + sy1) / 2 - (oy0 + oy1) / 2
    theta = math.atan2(dy, dx)
    if theta >= 3 * math.pi / 4 or theta <= -3 * math.pi / 4:
        return "left of"
    if -3 * math.pi / 4 <= theta < -math.pi / 4:
        return "above"
    if -math.pi / 4 <= theta < math.pi / 4:
        return "right of"
    return "below"


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _scan_annotations(path: Path, categories: dict[int, str], table: dict[Any, list], errors: list[str]) -> None:
    """Stream one annotation file's ``categories`` and ``annotations`` into ``table``."""
    for rec in iter_json_array(path, key="categories"):
        c = rec.value
        if not isinstance(c, dict) or not isinstance(c.get("id"), int) or not isinstance(c.get("name"), str):
            errors.append(f"{path.name}:{rec.line}: categories[{rec.index}]: expected {{'id': int, 'name': str}}")
            continue
        categories[c["id"]] = canonical_label(c["name"])
    for rec in iter_json_array(path, key="annotations"):
        a = rec.value
        where = f"{path.name}:{rec.line}: annotations[{rec.index}]"
        if not isinstance(a, dict):
            errors.append(f"{where}: expected an object")
            continue
        bbox, cat, iid = a.get("bbox"), a.get("category_id"), a.get("image_id")
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(_num(v) for v in bbox)):
            errors.append(f"{where}: bbox: expected [x, y, width, height], got {bbox!r:.60}")
        elif cat not in categories:
            errors.append(f"{where}: category_id: unknown category {cat!r}")
        elif iid is None:
            errors.append(f"{where}: image_id: missing")
        else:
            table.setdefault(iid, []).append((cat, tuple(float(v) for v in bbox)))


def _convert_image(img: Any, table: dict[Any, list], categories: dict[int, str], cfg: CocoConfig) -> tuple[Any, SceneGraph | None, str | None]:
    if not isinstance(img, dict) or "id" not in img:
        raise SceneGraphError("image", "expected an object with 'id'")
    iid = img["id"]
    W, H = img.get("width"), img.get("height")
    if not (_num(W) and _num(H) and W > 0 and H > 0):
        raise SceneGraphError("image", f"bad width/height {W!r}/{H!r}")
    objs: list[SceneObject] = []
    boxes: list[tuple[float, float, float, float]] = []
    for cat, (x, y, w, h) in table.get(iid, ()):
        name = categories[cat]
        if name == "other" and not cfg.include_other:
            continue
        if w * h / (W * H) <= cfg.min_object_size:
            continue
        box = (max(0.0, x / W), max(0.0, y / H), min(1.0, (x + w) / W), min(1.0, (y + h) / H))
        if not (box[0] < box[2] and box[1] < box[3]):
            continue
        objs.append(SceneObject(name, (), box))
        boxes.append(box)
    if len(objs) < cfg.min_objects_per_image:
        return iid, None, "too_few_objects"
    if len(objs) > cfg.max_objects_per_image:
        return iid, None, "too_many_objects"
    rng = random.Random(f"{cfg.seed}:{iid}")
    rels = []
    for cur in range(len(objs)):
        choices = [k for k in range(len(objs)) if k != cur]
        if not choices:
            break
        other = rng.choice(choices)
        s, o = (cur, other) if rng.random() > 0.5 else (other, cur)
        rels.append(Relation(s, geometric_predicate(boxes[s], boxes[o]), o))
    return iid, SceneGraph(tuple(objs), tuple(rels)), None


def _convert_batch(batch: list[Record], source: str, table: dict, categories: dict, cfg: CocoConfig) -> list[Outcome]:
    out = []
    for rec in batch:
        try:
            iid, g, reason = _convert_image(rec.value, table, categories, cfg)
        except SceneGraphError as e:
            out.append(Outcome.skip(source, rec.line, f"images[{rec.index}]: {e}"))
            continue
        out.append(Outcome(filtered=reason) if g is None else Outcome.of(cfg.split, str(iid), g))
    return out


def prepare_coco(config: CocoConfig, command: Sequence[str] = ()) -> JobReport:
    """Convert COCO annotations to geometric SceneGraph JSONL shards in ``config.output_dir`` (resumable).

    Raises:
        FileNotFoundError: an annotation file is missing.
    """
    paths = [Path(config.instances)] + ([Path(config.stuff)] if config.stuff else [])
    for p in paths:
        if not p.is_file():
            raise FileNotFoundError(f"COCO annotation file not found: {p}")
    settings = {k: v for k, v in asdict(config).items() if k not in ("overwrite", "progress", "output_dir")}
    settings["instances"] = os.path.abspath(config.instances)
    settings["stuff"] = os.path.abspath(config.stuff) if config.stuff else None
    writer = ShardWriter(config.output_dir, "coco", settings, command, overwrite=config.overwrite,
                         count_labels=False)
    if writer.complete:
        return JobReport(writer.manifest, Path(config.output_dir))
    categories: dict[int, str] = {}
    table: dict[Any, list] = {}
    errors: list[str] = []
    for p in paths:
        _scan_annotations(p, categories, table, errors)
    if writer.prepass is None:
        for msg in errors:
            print(msg, file=sys.stderr)
        writer.save_prepass({"categories": len(categories)}, skipped=errors)
    from functools import partial

    convert = partial(_convert_batch, source=paths[0].name, table=table, categories=categories, cfg=config)
    run_job(writer, iter_json_array(paths[0], key="images", start=writer.position), convert,
            chunk_size=config.chunk_size, progress=config.progress, desc="coco images")
    names = sorted(set(categories.values()) - ({"other"} if not config.include_other else set()))
    writer.finish(Vocabulary(objects=names, predicates=COCO_PREDICATES))
    return JobReport(writer.manifest, Path(config.output_dir))
