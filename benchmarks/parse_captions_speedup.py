#!/usr/bin/env python
"""Speed-up of ``datasets/parse_captions.py --workers 2`` over ``--workers 1``.

    python benchmarks/parse_captions_speedup.py [--data-root ../shared/datasets] [--n 20000] [--repeats 3]

Takes the first ``--n`` captions of FACTUAL ``train.csv``, runs the script (library parser, default
backend) with 1 and 2 workers, alternating, ``--repeats`` times each in fresh output folders, and
reports median wall times, the ratio, and the load average (the box may be shared). Checks that
both outputs are byte-identical (apart from the command recorded in the manifest). Writes ``<out>.json`` and prints a markdown table.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default_root = REPO.parent / "shared" / "datasets"
    p.add_argument("--data-root", default=str(default_root) if default_root.is_dir() else None)
    p.add_argument("--n", type=int, default=20000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--backend", default="auto")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "parse_captions_speedup"))
    p.add_argument("--threads", type=int, default=1, help="torch threads per worker (default 1)")
    args = p.parse_args()
    if args.data_root is None:
        p.error("--data-root is required (no ../shared/datasets found)")
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    times: dict[int, list[float]] = {1: [], 2: []}
    loads = []
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "captions.csv"
        with open(Path(args.data_root) / "factual" / "train.csv", newline="", encoding="utf-8") as f, \
                open(src, "w", newline="", encoding="utf-8") as g:
            rows = csv.reader(f)
            w = csv.writer(g)
            w.writerow(next(rows))
            for i, row in enumerate(rows):
                if i >= args.n:
                    break
                w.writerow(row)
        outputs = {}
        for r in range(args.repeats):
            for workers in (1, 2) if r % 2 == 0 else (2, 1):
                out = Path(tmp) / f"out-{workers}-{r}"
                cmd = [sys.executable, str(REPO / "datasets" / "parse_captions.py"), str(src), "-o", "out",
                       "--workers", str(workers), "--backend", args.backend, "--no-progress"]
                out.mkdir()
                loads.append(os.getloadavg()[0])
                t = time.perf_counter()
                proc = subprocess.run(cmd, cwd=out, env=env, capture_output=True, text=True)
                times[workers].append(time.perf_counter() - t)
                if proc.returncode not in (0, 1):
                    raise RuntimeError(proc.stderr[-2000:])
                outputs[workers] = {q.relative_to(out / "out").as_posix(): q.read_bytes()
                                    for q in sorted((out / "out").rglob("*")) if q.is_file()}
        for o in outputs.values():  # the manifests differ only in the recorded command (--workers)
            m = json.loads(o["manifest.json"])
            m.pop("command")
            o["manifest.json"] = json.dumps(m).encode()
        identical = outputs[1] == outputs[2]
    med = {w: statistics.median(t) for w, t in times.items()}
    result = {"n": args.n, "backend": args.backend, "times_s": times, "median_s": med,
              "speedup": med[1] / med[2], "outputs_identical": identical, "load_avg_1min": loads,
              "cpu_count": os.cpu_count()}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out + ".json").write_text(json.dumps(result, indent=1))
    print(f"parse_captions.py on {args.n:,} FACTUAL captions ({args.repeats} runs each, load avg "
          f"{min(loads):.1f}-{max(loads):.1f} on {os.cpu_count()} CPUs)\n")
    print("| workers | median s | captions / s |")
    print("|---|---|---|")
    for w in (1, 2):
        print(f"| {w} | {med[w]:.1f} | {args.n / med[w]:,.0f} |")
    print(f"\nspeed-up 2 vs 1 workers: {result['speedup']:.2f}x; outputs byte-identical: {identical}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
