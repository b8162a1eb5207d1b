"""Shapes-world benchmark: graph conditioning (HGCN, R-HGNN) vs text-only conditioning, scored by the checker.

For ``--num-graphs`` held-out scene graphs (1-3 objects, 0-3 relations, drawn with a seed no training
run uses) plus the swapped twin of every graph with a relation (each ``A r B`` becomes ``B r A``),
each method generates one image per graph; :func:`scenegraph_diff.shapes.check` scores them:

* object / relation / graph accuracy on the held-out graphs (SHAPES.md "Metrics");
* swap accuracy: relation accuracy on the swapped twins (a method that ignores direction gets ~50 %);
* images/s: batched sampling with the pipeline's default step count (median of ``--repeats`` runs,
  layout repair included), one torch thread unless ``--threads`` says otherwise.

Methods are saved ``ShapesPipeline`` folders given as ``NAME=PATH`` (``NAME=PATH:free`` samples
without the relation-repair step, i.e. the learned layout alone). With ``--train-steps N`` the three
baselines (text-only MiniLM, HGCN, R-HGNN) are first trained with the same number of steps on the same
pool of scenes (``--pool-size``), each into ``--runs/shapes_<encoder>``; existing runs are reused.

Outputs: a markdown table on stdout, ``--out/shapes_eval.json``, ``--out/shapes_eval.md`` and
``--out/shapes_samples.png`` (a grid of samples captioned with their graphs).

    python benchmarks/shapes_eval.py --train-steps 300 --bundled --out runs/shapes_eval
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from scenegraph_diff.graph import SceneGraph
from scenegraph_diff.shapes import check, score
from scenegraph_diff.shapes.evaluation import held_out_graphs as heldout_graphs

def evaluate(pipe, graphs: list[SceneGraph], enforce: bool, seed: int, batch_size: int) -> tuple[dict, np.ndarray]:
    gen = torch.Generator().manual_seed(seed)
    out = pipe(graphs, generator=gen, enforce_relations=enforce, batch_size=batch_size)
    return score(check(im, g) for im, g in zip(out.images, graphs)).as_dict(), out.images


def throughput(pipe, graphs: list[SceneGraph], enforce: bool, repeats: int, batch_size: int) -> float:
    rates = []
    for r in range(repeats):
        gen = torch.Generator().manual_seed(r)
        t0 = time.perf_counter()
        pipe(graphs, generator=gen, enforce_relations=enforce, batch_size=batch_size)
        rates.append(len(graphs) / (time.perf_counter() - t0))
    return statistics.median(rates)


def train_baselines(steps: int, runs: Path, pool_size: int, threads: int) -> dict[str, str]:
    from scenegraph_diff.shapes.train import TrainShapesConfig, train_shapes

    paths = {}
    for enc in ("text", "hgcn", "rhgnn"):
        out = runs / f"shapes_{enc}"
        if not (out / "pipeline" / "model_index.json").is_file():
            cfg = TrainShapesConfig(output_dir=str(out), encoder=enc, max_steps=steps, max_minutes=None,
                                    pool_size=pool_size, num_threads=threads, checkpoint_every=max(steps // 2, 1))
            train_shapes(cfg)
        paths[enc] = str(out / "pipeline")
    return paths


def _short(g: SceneGraph) -> str:
    objs = [f"{o.attributes[0]} {o.name}" for o in g.objects]
    rels = [f"{objs[r.subject].split()[0][0]}{objs[r.subject].split()[1][0]} {r.predicate} "
            f"{objs[r.object].split()[0][0]}{objs[r.object].split()[1][0]}" for r in g.relations]
    return "\n".join([", ".join(objs)] + rels)


def sample_grid(rows: dict[str, np.ndarray], graphs: list[SceneGraph], path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cols = len(graphs)
    fig = Figure(figsize=(1.6 * cols, 1.9 * len(rows) + 0.6))
    FigureCanvasAgg(fig)
    for r, (name, images) in enumerate(rows.items()):
        for c in range(cols):
            ax = fig.add_subplot(len(rows), cols, r * cols + c + 1)
            ax.imshow(images[c], interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(name, fontsize=7)
            if r == 0:
                ax.set_title(_short(graphs[c]), fontsize=5)
    fig.tight_layout()
    fig.savefig(path, dpi=130)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--method", action="append", default=[], help="NAME=PATH[:free] (repeatable)")
    ap.add_argument("--bundled", action="store_true", help="also evaluate the bundled model (with and without repair)")
    ap.add_argument("--train-steps", type=int, default=None, help="train the 3 baselines with this many steps each")
    ap.add_argument("--pool-size", type=int, default=2048, help="scenes in the baselines' shared training pool")
    ap.add_argument("--runs", default="runs", help="folder of the baseline runs")
    ap.add_argument("--num-graphs", type=int, default=500)
    ap.add_argument("--repeats", type=int, default=3, help="timing repeats (median)")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="runs/shapes_eval")
    ap.add_argument("--data-root", default=None, help="unused: the shapes world is generated")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    torch.set_num_threads(args.threads)
    from scenegraph_diff.shapes.pipeline import ShapesPipeline, bundled_model_path

    methods: list[tuple[str, str, bool]] = []
    if args.train_steps:
        paths = train_baselines(args.train_steps, Path(args.runs), args.pool_size, args.threads)
        label = {"text": "text-only (MiniLM)", "hgcn": "HGCN", "rhgnn": "R-HGNN"}
        methods += [(f"{label[k]}, {args.train_steps} steps", p, False) for k, p in paths.items()]
    for spec in args.method:
        name, _, rest = spec.partition("=")
        path, _, flag = rest.partition(":")
        if not name or not path or flag not in ("", "free"):
            print(f"shapes_eval: bad --method {spec!r} (want NAME=PATH[:free])", file=sys.stderr)
            return 2
        methods.append((name, path, flag != "free"))
    if args.bundled:
        methods += [("bundled R-HGNN, learned layout", str(bundled_model_path()), False),
                    ("bundled R-HGNN + relation repair (default)", str(bundled_model_path()), True)]
    if not methods:
        print("shapes_eval: nothing to evaluate (give --method, --bundled or --train-steps)", file=sys.stderr)
        return 2
    graphs = heldout_graphs(args.num_graphs)
    twins = [g.swapped() for g in graphs if g.relations]
    timing_graphs = graphs[:256]
    results, grid = [], {}
    show = [graphs[i] for i in (2, 4, 6, 5, 9, 13)] + twins[:2]
    for name, path, enforce in methods:
        pipe = ShapesPipeline.from_pretrained(path)
        main_scores, _ = evaluate(pipe, graphs, enforce, args.seed, args.batch_size)
        swap_scores, _ = evaluate(pipe, twins, enforce, args.seed + 1, args.batch_size)
        rate = throughput(pipe, timing_graphs, enforce, args.repeats, args.batch_size)
        grid[name] = evaluate(pipe, show, enforce, args.seed + 2, args.batch_size)[1]
        row = {"method": name, "path": path, "relation_repair": enforce, **main_scores,
               "swap_accuracy": swap_scores["relation_accuracy"], "swap_graph_accuracy": swap_scores["graph_accuracy"],
               "images_per_s": rate, "steps": pipe.scheduler.num_inference_steps}
        results.append(row)
        print(f"{name}: {json.dumps({k: v for k, v in row.items() if k not in ('method', 'path')})}", file=sys.stderr)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    head = "| method | object acc. | relation acc. | graph acc. | swap acc. | images/s |\n|---|---|---|---|---|---|\n"
    body = "".join(
        f"| {r['method']} | {100 * r['object_accuracy']:.1f} % | {100 * r['relation_accuracy']:.1f} % | "
        f"{100 * r['graph_accuracy']:.1f} % | {100 * r['swap_accuracy']:.1f} % | {r['images_per_s']:.1f} |\n"
        for r in results)
    meta = (f"\n{len(graphs)} held-out graphs ({sum(g.num_relations for g in graphs)} relations) + {len(twins)} "
            f"swapped twins; 32x32; one image per graph; torch threads = {args.threads}; load average "
            f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs.\n")
    table = head + body + meta
    print(table)
    (out / "shapes_eval.md").write_text(table)
    (out / "shapes_eval.json").write_text(json.dumps({"results": results, "num_graphs": len(graphs),
                                                      "num_twins": len(twins), "threads": args.threads,
                                                      "loadavg": os.getloadavg()}, indent=1))
    sample_grid(grid, show, out / "shapes_samples.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
