"""Are the VRD tensor readers unchanged? Old revision vs this checkout, on the full VRD splits.

    python benchmarks/vrd_reader_merge.py --old-rev 012d2d0 [--data-root ../shared/datasets]

The two tensor readers -- :func:`scenegraph_diff.linkpred.vrd.load_vrd` (VRD predicate prediction) and
:func:`scenegraph_diff.diffusion.scene_graph_data.load_vrd_graphs` (scene-graph completion) -- feed the
published VRD figures. This script takes a canonical *snapshot* of what each returns on ``train`` and
``test`` (every name, class id, box and triplet, with tensor dtypes and shapes, serialised as JSON with
exact float reprs), once with this checkout and once with the package of ``--old-rev`` (extracted with
``git archive`` into a temporary folder and imported from there in a subprocess), and compares the
two whole snapshots. Equal snapshots mean the figures computed from them cannot move. Writes
``--out``.json/.md (the sha256 of each snapshot and the sizes).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SPLITS = ("train", "test")


def _tensor(t: Any) -> list:
    return [str(t.dtype), list(t.shape), t.tolist()]


def snapshot(data_root: str | Path, readers: tuple[str, ...] = ("linkpred", "diffusion")) -> dict[str, Any]:
    """The canonical JSON-able outputs of the ``readers`` on both splits of ``<data_root>/vrd``, with
    whatever ``scenegraph_diff`` is importable (so it runs unchanged against an old revision)."""
    from scenegraph_diff.diffusion.scene_graph_data import load_vrd_graphs
    from scenegraph_diff.linkpred.vrd import load_vrd

    out: dict[str, Any] = {r: {} for r in readers}
    for split in SPLITS:
        if "linkpred" in readers:
            out["linkpred"][split] = [[im.name, _tensor(im.classes), _tensor(im.boxes), _tensor(im.triplets)]
                                      for im in load_vrd(data_root, split)]
        if "diffusion" not in readers:
            continue
        graphs, objects, predicates = load_vrd_graphs(data_root, split)
        out["diffusion"][split] = {
            "objects": objects, "predicates": predicates,
            "graphs": [[g.name, list(g.classes), None if g.boxes is None else [list(b) for b in g.boxes],
                        sorted(g.triplets)] for g in graphs],
        }
    return out


def digest(obj: Any) -> str:
    """sha256 of the canonical JSON of ``obj``."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def summary(snap: dict[str, Any]) -> dict[str, Any]:
    """Per reader and split: images, nodes, triplets and the sha256 of the snapshot part."""
    rows = {}
    for split in SPLITS:
        lp = snap["linkpred"][split]
        rows[f"linkpred/{split}"] = {"images": len(lp), "nodes": sum(im[1][1][0] for im in lp),
                                     "triplets": sum(im[3][1][0] for im in lp), "sha256": digest(lp)}
        gd = snap["diffusion"][split]
        rows[f"diffusion/{split}"] = {"images": len(gd["graphs"]), "nodes": sum(len(g[1]) for g in gd["graphs"]),
                                      "triplets": sum(len(g[3]) for g in gd["graphs"]), "sha256": digest(gd)}
    return rows


def old_snapshot(rev: str, data_root: str) -> dict[str, Any]:
    """:func:`snapshot` computed by the package at git revision ``rev``."""
    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(["git", "-C", str(REPO), "archive", rev, "scenegraph_diff"], check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        dump = Path(tmp) / "snapshot.json"
        env = {**os.environ, "PYTHONPATH": tmp}
        subprocess.run([sys.executable, str(Path(__file__).resolve()), "--snapshot-only", str(dump),
                        "--data-root", str(Path(data_root).resolve()), "--expect-package", tmp],
                       check=True, env=env, cwd=tmp)
        return json.loads(dump.read_text())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", default=str(REPO.parent / "shared" / "datasets"))
    p.add_argument("--old-rev", default=None, help="git revision of the readers to compare with")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "vrd_reader_check"))
    p.add_argument("--snapshot-only", default=None, help=argparse.SUPPRESS)
    p.add_argument("--expect-package", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.snapshot_only is not None:  # the subprocess of old_snapshot
        import scenegraph_diff

        where = Path(scenegraph_diff.__file__).resolve()
        if args.expect_package and Path(args.expect_package).resolve() not in where.parents:
            raise RuntimeError(f"imported {where}, not the package under {args.expect_package}")
        Path(args.snapshot_only).write_text(json.dumps(snapshot(args.data_root), sort_keys=True))
        return 0
    sys.path.insert(0, str(REPO))
    sys.path.insert(0, str(REPO / "benchmarks"))
    from _common import write_results

    new = json.loads(json.dumps(snapshot(args.data_root), sort_keys=True))  # tuples -> lists, as the old dump
    result: dict[str, Any] = {"data_root": args.data_root, "new": summary(new)}
    lines = ["| reader / split | images | nodes | triplets | sha256 (new) | identical to old |", "|---|---|---|---|---|---|"]
    same_all = True
    if args.old_rev is not None:
        old = old_snapshot(args.old_rev, args.data_root)
        result["old_rev"] = subprocess.run(["git", "-C", str(REPO), "rev-parse", args.old_rev], check=True,
                                           capture_output=True, text=True).stdout.strip()
        result["old"] = summary(old)
    for key, row in result["new"].items():
        reader, split = key.split("/")
        same = None
        if args.old_rev is not None:
            same = old[reader][split] == new[reader][split]
            same_all &= same
        row["identical_to_old"] = same
        lines.append(f"| {key} | {row['images']} | {row['nodes']} | {row['triplets']} | {row['sha256'][:16]} | "
                     f"{'-' if same is None else ('yes' if same else 'NO')} |")
    table = "\n".join(lines)
    write_results(args.out, result, table)
    print(table)
    return 0 if same_all else 1


if __name__ == "__main__":
    sys.exit(main())
