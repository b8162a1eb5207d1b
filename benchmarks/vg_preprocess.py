#!/usr/bin/env python
"""Memory and throughput of the streaming Visual Genome preprocessing.

    python benchmarks/make_synthetic_vg.py --out /tmp/vg_1g --size-gb 1.05
    python benchmarks/vg_preprocess.py --data-root /tmp/vg_1g --out benchmarks/results/vg_preprocess

Runs, each in a fresh process (peak RSS = the child's ru_maxrss):

1. ``baseline``: stream-parse ``relationships.json`` only (``iter_json_array``, no conversion);
2. ``small``: the full conversion on the first ``--small-images`` images (a 1/16 slice by default);
3. ``full``: the full conversion of the whole folder (``prepare_visual_genome``, 2 passes).

Peak RSS is each child's ``ru_maxrss`` (this parent stays small, since Linux carries a parent's
peak over fork + exec). Reports relations/s and peak RSS, and the ratios full/small (memory must stay flat as the input
grows) and full/baseline (conversion cost over bare JSON parsing). Writes ``<out>.json`` and
prints a markdown table. Acceptance: peak RSS of ``full`` <= 2 GB on a >= 1 GB relationships.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

_CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, {repo!r})
mode, data_root, out, workers = sys.argv[1:5]
t = time.perf_counter()
if mode == "slice":  # the first `workers` images of every file, written streaming
    from itertools import islice
    from pathlib import Path
    from scenegraph_diff.data.readers import iter_json_array
    for f in Path(data_root).glob("*.json"):
        with open(Path(out) / f.name, "w") as g:
            g.write("[")
            for i, r in enumerate(islice(iter_json_array(f), int(workers))):
                g.write((", " if i else "") + json.dumps(r.value))
            g.write("]")
    res = {{}}
elif mode == "baseline":
    from scenegraph_diff.data.readers import iter_json_array
    n = sum(len(r.value["relationships"]) for r in iter_json_array(data_root + "/relationships.json"))
    res = {{"relations_in": n}}
else:
    from scenegraph_diff.data.visual_genome import VisualGenomeConfig, prepare_visual_genome
    rep = prepare_visual_genome(VisualGenomeConfig(data_root, out, workers=int(workers), progress=False), ["bench"])
    m = rep.manifest
    res = {{"images_in": m["records_in"], "relations_out": sum(s["relations"] for s in m["splits"].values()),
           "graphs_out": sum(s["graphs"] for s in m["splits"].values())}}
    n = None
res["seconds"] = time.perf_counter() - t
res["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
res["peak_rss_children_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
print(json.dumps(res))
"""


def run(mode: str, data_root: str, out: str, workers: int) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", _CHILD.format(repo=str(REPO)), mode, data_root, out, str(workers)],
                          capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{mode} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", required=True, help="a (synthetic) VG folder, see make_synthetic_vg.py")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "vg_preprocess"), help="result path stem")
    p.add_argument("--small-images", type=int, default=None, help="images in the small run (default 1/16 of the input)")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--threads", type=int, default=1, help="torch threads (unused here; kept for uniformity)")
    args = p.parse_args()
    root = Path(args.data_root)
    size = (root / "relationships.json").stat().st_size
    load = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        results = {"baseline": run("baseline", str(root), f"{tmp}/b", 1)}
        # the small slice: first K images of every file (written by a child: this process stays small,
        # since Linux carries a parent's peak RSS over fork + exec into the child's ru_maxrss)
        small = Path(tmp) / "small"
        small.mkdir()
        k = args.small_images or max(1, 203492 // 16 if size > 5e8 else 1000)
        run("slice", str(root), str(small), k)
        results["small"] = run("convert", str(small), f"{tmp}/s", args.workers)
        results["small"]["relationships_json_bytes"] = (small / "relationships.json").stat().st_size
        results["full"] = run("convert", str(root), f"{tmp}/f", args.workers)
        results["full"]["relationships_json_bytes"] = size
    results["baseline"]["relationships_json_bytes"] = size
    rel_in = results["baseline"]["relations_in"]
    for name in ("baseline", "full"):
        results[name]["relations_in_per_s"] = rel_in / results[name]["seconds"]
    results["small"]["relations_in_per_s"] = None
    summary = {
        "input_gb": size / 1e9, "relations_in": rel_in, "load_avg_at_start": load, "load_avg_at_end": os.getloadavg(),
        "rss_ratio_full_over_small": results["full"]["peak_rss_mb"] / results["small"]["peak_rss_mb"],
        "throughput_ratio_full_over_baseline": results["full"]["relations_in_per_s"] / results["baseline"]["relations_in_per_s"],
        "peak_rss_ok": results["full"]["peak_rss_mb"] <= 2048,
    }
    out = {"results": results, "summary": summary}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out + ".json").write_text(json.dumps(out, indent=1))
    print(f"VG preprocessing, relationships.json = {size / 1e9:.2f} GB, {rel_in:,} relations, load {load[0]:.1f}\n")
    print("| run | input bytes | seconds | relations in / s | peak RSS (MB) |")
    print("|---|---|---|---|---|")
    for name, r in results.items():
        rate = f"{r['relations_in_per_s']:,.0f}" if r.get("relations_in_per_s") else "-"
        print(f"| {name} | {r['relationships_json_bytes']:,} | {r['seconds']:.1f} | {rate} | {r['peak_rss_mb']:.0f} |")
    print(f"\nRSS full / small = {summary['rss_ratio_full_over_small']:.2f}; "
          f"throughput full / parse-only baseline = {summary['throughput_ratio_full_over_baseline']:.2f}; "
          f"peak RSS <= 2 GB: {summary['peak_rss_ok']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
