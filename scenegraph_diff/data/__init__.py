"""Datasets: resumable preprocessing of VRD / Visual Genome / COCO / FACTUAL / caption corpora into
SceneGraph JSONL shards, and PyG datasets over the prepared folders.

Preprocessing (``scenegraph-diff preprocess ...`` or ``datasets/prepare_*.py``)::

    from scenegraph_diff.data import VRDConfig, prepare_vrd
    report = prepare_vrd(VRDConfig(data_root="../shared/datasets/vrd", output_dir="prepared/vrd"))

Submodules are imported lazily (torch / PyG only when a dataset class is used).
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "Record": ".readers",
    "JSONStreamError": ".readers",
    "iter_json_array": ".readers",
    "iter_json_object": ".readers",
    "iter_text_records": ".readers",
    "ShardWriter": ".shards",
    "Outcome": ".shards",
    "JobReport": ".shards",
    "run_job": ".shards",
    "load_manifest": ".shards",
    "iter_manifest_graphs": ".shards",
    "VRDConfig": ".vrd",
    "prepare_vrd": ".vrd",
    "VisualGenomeConfig": ".visual_genome",
    "prepare_visual_genome": ".visual_genome",
    "CocoConfig": ".coco",
    "prepare_coco": ".coco",
    "FactualConfig": ".factual",
    "prepare_factual": ".factual",
    "CaptionsConfig": ".captions",
    "prepare_captions": ".captions",
    "write_synthetic_vg": ".synthetic",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
