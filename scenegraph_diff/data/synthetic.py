"""Synthetic Visual Genome files (the official JSON layout) of any size, for tests and benchmarks.

Written streaming, so a multi-GB ``relationships.json`` costs no memory. Deterministic for a seed.
Label frequencies are Zipf-like so vocabulary thresholds behave as on the real data.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Union

__all__ = ["write_synthetic_vg"]

PathLike = Union[str, "os.PathLike[str]"]

_OBJECTS = [f"object{i}" for i in range(150)] + ["man", "woman", "tree", "window", "shirt", "sign", "car", "Man ", "trees"]
_PREDICATES = [f"pred{i}" for i in range(45)] + ["on", "has", "ON", "wearing", "in front of"]
_ATTRIBUTES = [f"attr{i}" for i in range(40)] + ["white", "black", "blue", "green", "red"]


def _zipf(rng: random.Random, items: list[str]) -> str:
    # P(i) ~ 1 / (i + 1): a few labels dominate, a long tail is rare
    return items[min(int(len(items) ** rng.random()) - 1, len(items) - 1)]


def write_synthetic_vg(
    output_dir: PathLike,
    num_images: int | None = None,
    target_bytes: int | None = None,
    seed: int = 0,
    with_objects: bool = True,
) -> dict[str, int]:
    """Write ``relationships.json``, ``image_data.json`` (and ``objects.json``, ``attributes.json``).

    Args:
        output_dir: destination folder.
        num_images: number of images; or
        target_bytes: stop after the image that brings ``relationships.json`` to this size.
        seed: random seed.
        with_objects: also write ``objects.json`` and ``attributes.json``.

    Returns:
        counts: ``images``, ``relationships``, ``objects`` and ``relationships_bytes``.
    """
    if (num_images is None) == (target_bytes is None):
        raise ValueError("give exactly one of num_images and target_bytes")
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    files = {"relationships": open(out / "relationships.json", "w", encoding="utf-8"),
             "image_data": open(out / "image_data.json", "w", encoding="utf-8")}
    if with_objects:
        files["objects"] = open(out / "objects.json", "w", encoding="utf-8")
        files["attributes"] = open(out / "attributes.json", "w", encoding="utf-8")
    counts = {"images": 0, "relationships": 0, "objects": 0, "relationships_bytes": 0}
    next_object_id = 1
    next_rel_id = 1
    try:
        for f in files.values():
            f.write("[")
        size = 1
        image_id = 0
        while True:
            if num_images is not None and image_id >= num_images:
                break
            if target_bytes is not None and size >= target_bytes:
                break
            image_id += 1
            W, H = rng.choice([(800, 600), (500, 375), (1024, 768), (640, 480)])
            objs = []
            for _ in range(rng.randint(4, 24)):
                w, h = rng.randint(8, W // 2), rng.randint(8, H // 2)
                o = {"object_id": next_object_id, "x": rng.randint(0, W - w), "y": rng.randint(0, H - h), "w": w, "h": h,
                     "names": [_zipf(rng, _OBJECTS)], "synsets": ["thing.n.01"]}
                next_object_id += 1
                objs.append(o)
            rels = []
            for _ in range(rng.randint(2, 30)):
                s, o = rng.sample(objs, 2)
                rels.append({"relationship_id": next_rel_id, "predicate": _zipf(rng, _PREDICATES), "synsets": ["along.r.01"],
                             "subject": {**{k: s[k] for k in ("object_id", "x", "y", "w", "h", "synsets")}, "name": s["names"][0]},
                             "object": {**{k: o[k] for k in ("object_id", "x", "y", "w", "h", "synsets")}, "names": o["names"]}})
                next_rel_id += 1
            sep = ", " if image_id > 1 else ""
            text = sep + json.dumps({"image_id": image_id, "relationships": rels})
            files["relationships"].write(text)
            size += len(text)
            files["image_data"].write(sep + json.dumps({"image_id": image_id, "width": W, "height": H, "url": f"https://example.invalid/{image_id}.jpg", "coco_id": None, "flickr_id": None}))
            if with_objects:
                files["objects"].write(sep + json.dumps({"image_id": image_id, "objects": objs}))
                attrs = [{**o, "attributes": [_zipf(rng, _ATTRIBUTES) for _ in range(rng.randint(0, 3))]} for o in objs]
                files["attributes"].write(sep + json.dumps({"image_id": image_id, "attributes": attrs}))
            counts["images"] += 1
            counts["relationships"] += len(rels)
            counts["objects"] += len(objs)
        for f in files.values():
            f.write("]")
        counts["relationships_bytes"] = size + 1
    finally:
        for f in files.values():
            f.close()
    return counts
