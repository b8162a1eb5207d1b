"""Argument parsing for ``scenegraph-diff preprocess`` and the ``datasets/prepare_*.py`` scripts.

Both front ends share these parsers: :func:`add_preprocess_arguments` registers one sub-parser per
dataset, :func:`run_preprocess` turns parsed arguments into a config and runs the job. Only argparse
is imported at module level, so ``--help`` stays instant. Exit codes: ``0`` all records used,
``1`` some malformed records were skipped (listed in ``OUT/skipped.txt``), ``2`` bad usage / fatal
input error.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any, Sequence

__all__ = ["add_preprocess_arguments", "run_preprocess", "default_data_root", "DATASETS"]

DATASETS = ("vrd", "visual-genome", "coco", "factual", "captions")


def default_data_root(name: str) -> str | None:
    """``../shared/datasets/<name>`` relative to the repository, when it exists."""
    path = Path(__file__).resolve().parents[3] / "shared" / "datasets" / name
    return str(path) if path.is_dir() else None


def _common(p: argparse.ArgumentParser, chunk: int) -> None:
    p.add_argument("--output", "-o", required=True, help="output folder (shards, vocab.json, manifest.json)")
    p.add_argument("--chunk-size", type=int, default=chunk, help=f"input records per output shard (default {chunk})")
    p.add_argument("--overwrite", action="store_true", help="replace an output folder made with other settings")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_preprocess_arguments(p: argparse.ArgumentParser) -> None:
    """Add the per-dataset sub-parsers (``vrd``, ``visual-genome``, ``coco``, ``factual``, ``captions``) to ``p``."""
    sub = p.add_subparsers(dest="dataset", metavar="DATASET")
    sub.required = True

    q = sub.add_parser("vrd", help="VRD (Lu et al. 2016) JSON -> SceneGraph JSONL",
                       description="Convert VRD annotations (objects.json, predicates.json, annotations_{train,test}.json).")
    q.add_argument("--data-root", default=default_data_root("vrd"), help="VRD folder (default ../shared/datasets/vrd)")
    q.add_argument("--image-sizes", default=None, help="JSON {file name: [width, height]}: normalise boxes by the image instead of the union of its boxes")
    _common(q, 1000)

    q = sub.add_parser("visual-genome", help="Visual Genome JSON -> per-image SceneGraph JSONL (streaming, sg2im filters)",
                       description="Convert Visual Genome (relationships.json [+ objects.json, attributes.json, "
                                   "image_data.json]) with sg2im's vocabulary thresholds, aliases and filters.")
    q.add_argument("--data-root", default=default_data_root("visual_genome"), help="folder with the VG JSON files")
    for kind in ("object", "predicate", "attribute"):
        q.add_argument(f"--{kind}-aliases", default=None, help=f"sg2im {kind} alias file (canonical,alias,... per line)")
    q.add_argument("--min-object-instances", type=int, default=2000)
    q.add_argument("--min-attribute-instances", type=int, default=2000)
    q.add_argument("--min-relationship-instances", type=int, default=500)
    q.add_argument("--min-object-size", type=int, default=32, help="minimum object width and height in pixels")
    q.add_argument("--min-objects-per-image", type=int, default=3)
    q.add_argument("--max-objects-per-image", type=int, default=30)
    q.add_argument("--max-attributes-per-image", type=int, default=30)
    q.add_argument("--min-relationships-per-image", type=int, default=1)
    q.add_argument("--val-fraction", type=float, default=0.1)
    q.add_argument("--test-fraction", type=float, default=0.1)
    q.add_argument("--splits", default=None, help='JSON {"train": [image ids], "val": [...], "test": [...]}')
    q.add_argument("--workers", type=int, default=1, help="conversion processes, this one included (default 1: no pool)")
    _common(q, 1000)

    q = sub.add_parser("coco", help="COCO instances (+ stuff) -> geometric scene graphs (as sg2im)",
                       description="Build sg2im-style geometric scene graphs (left of, right of, above, below, inside, "
                                   "surrounding) from COCO boxes.")
    q.add_argument("--instances", required=True, help="instances_<split>.json")
    q.add_argument("--stuff", default=None, help="stuff_<split>.json")
    q.add_argument("--split", default="train", help="split name of the output (default train)")
    q.add_argument("--min-object-size", type=float, default=0.02, help="minimum box area / image area")
    q.add_argument("--min-objects-per-image", type=int, default=3)
    q.add_argument("--max-objects-per-image", type=int, default=8)
    q.add_argument("--include-other", action="store_true", help="keep the stuff category 'other'")
    q.add_argument("--seed", type=int, default=0, help="seed of the relation draw")
    _common(q, 5000)

    q = sub.add_parser("factual", help="FACTUAL CSV -> SceneGraph JSONL (gold graphs)",
                       description="Convert FACTUAL-SG CSV files (image_id,region_id,caption,scene_graph).")
    q.add_argument("--data-root", default=default_data_root("factual"), help="folder with <split>.csv (default ../shared/datasets/factual)")
    q.add_argument("--splits", nargs="+", default=["train", "dev"], help="CSV stems to convert (default: train dev)")
    q.add_argument("--vocab-min-count", type=int, default=1)
    _common(q, 10000)

    q = sub.add_parser("captions", help="caption corpus (txt / JSONL / CSV) -> parsed SceneGraph JSONL",
                       description="Parse every text of a corpus with the library parser, batched and multi-process; "
                                   "--shard i/N splits one corpus across jobs.")
    q.add_argument("input", help=".txt (one per line), .jsonl ({\"text\": ...}) or .csv")
    q.add_argument("--text-column", default=None, help="CSV column / JSONL key with the text")
    q.add_argument("--workers", type=int, default=1, help="parsing processes, this one included (default 1: no pool)")
    q.add_argument("--batch-size", type=int, default=256)
    q.add_argument("--shard", default="0/1", help="i/N: process records i, i+N, ... (default 0/1)")
    q.add_argument("--parse-fn", default=None, help="module:function with parse_batch's signature (default: the library parser)")
    q.add_argument("--backend", default="auto", choices=["auto", "learned", "rules"])
    q.add_argument("--split", default="all", help="split name of the output (default all)")
    q.add_argument("--vocab-min-count", type=int, default=1)
    q.add_argument("--threads", type=int, default=1, help="torch threads per parsing process (default 1)")
    _common(q, 10000)


def _need_root(args: argparse.Namespace) -> str:
    if args.data_root is None:
        raise ValueError(f"--data-root is required for {args.dataset} (no ../shared/datasets copy found)")
    if not os.path.isdir(args.data_root):
        raise FileNotFoundError(f"--data-root not found: {args.data_root}")
    return args.data_root


def _shard(text: str) -> tuple[int, int]:
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard {text!r}: expected i/N, e.g. 0/4") from None
    return i, n


def run_preprocess(args: argparse.Namespace, command: Sequence[str] = ()) -> int:
    """Run the job described by ``args``; print the summary (stderr) and return the exit code."""
    import sys

    common: dict[str, Any] = dict(output_dir=args.output, chunk_size=args.chunk_size, overwrite=args.overwrite,
                                  progress=not args.no_progress)
    if args.dataset == "vrd":
        from .vrd import VRDConfig, prepare_vrd

        report = prepare_vrd(VRDConfig(data_root=_need_root(args), image_sizes=args.image_sizes, **common), command)
    elif args.dataset == "visual-genome":
        from .visual_genome import VisualGenomeConfig, prepare_visual_genome

        cfg = VisualGenomeConfig(
            data_root=_need_root(args), object_aliases=args.object_aliases, predicate_aliases=args.predicate_aliases,
            attribute_aliases=args.attribute_aliases, min_object_instances=args.min_object_instances,
            min_attribute_instances=args.min_attribute_instances,
            min_relationship_instances=args.min_relationship_instances, min_object_size=args.min_object_size,
            min_objects_per_image=args.min_objects_per_image, max_objects_per_image=args.max_objects_per_image,
            max_attributes_per_image=args.max_attributes_per_image,
            min_relationships_per_image=args.min_relationships_per_image, val_fraction=args.val_fraction,
            test_fraction=args.test_fraction, splits=args.splits, workers=args.workers, **common)
        report = prepare_visual_genome(cfg, command)
    elif args.dataset == "coco":
        from .coco import CocoConfig, prepare_coco

        cfg = CocoConfig(instances=args.instances, stuff=args.stuff, split=args.split,
                         min_object_size=args.min_object_size, min_objects_per_image=args.min_objects_per_image,
                         max_objects_per_image=args.max_objects_per_image, include_other=args.include_other,
                         seed=args.seed, **common)
        report = prepare_coco(cfg, command)
    elif args.dataset == "factual":
        from .factual import FactualConfig, prepare_factual

        report = prepare_factual(FactualConfig(data_root=_need_root(args), splits=tuple(args.splits),
                                               vocab_min_count=args.vocab_min_count, **common), command)
    elif args.dataset == "captions":
        from .captions import DEFAULT_PARSE_FN, CaptionsConfig, prepare_captions

        cfg = CaptionsConfig(input=args.input, text_column=args.text_column, workers=args.workers,
                             batch_size=args.batch_size, shard=_shard(args.shard),
                             parse_fn=args.parse_fn or DEFAULT_PARSE_FN, backend=args.backend, split=args.split,
                             vocab_min_count=args.vocab_min_count, threads=args.threads, **common)
        report = prepare_captions(cfg, command)
    else:  # pragma: no cover - argparse restricts the choices
        raise ValueError(f"unknown dataset {args.dataset!r}")
    print(report.summary(), file=sys.stderr)
    return report.exit_code
