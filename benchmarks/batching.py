"""Collating scene graphs into one PyG batch: ``scenegraph_diff.graph.collate`` vs PyG's ``Batch.from_data_list``.

Both produce the same ``HeteroDataBatch`` (checked here). The baseline is given the per-graph
``HeteroData`` objects ready-made (it does not pay for building them); ours starts from ``SceneGraph``s.
A second row charges the baseline for building the HeteroData too (the realistic path from graphs).

    OMP_NUM_THREADS=1 python benchmarks/batching.py --graphs 1000 --repeats 7
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time

import torch
from _common import write_results  # benchmarks/ is on sys.path when a script runs
from hetero_layers import random_graphs  # the same random scene graphs as the layer benchmark


def median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--graphs", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--dim", type=int, default=64, help="node feature size (hashing embedder)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="benchmarks/results/batching")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    from torch_geometric.data import Batch

    from scenegraph_diff.graph import collate, to_hetero_data
    from scenegraph_diff.text import HashingEmbedder

    graphs = random_graphs(args.graphs, seed=0)
    emb = HashingEmbedder(args.dim)
    emb.embed(sorted({lab for g in graphs for lab in [o.name for o in g.objects] + [a for o in g.objects for a in o.attributes] + [r.predicate for r in g.relations]}))
    data_list = [to_hetero_data(g, embedder=emb) for g in graphs]

    ours = collate(graphs, embedder=emb)
    ref = Batch.from_data_list(data_list)
    for nt in ref.node_types:
        assert torch.equal(ours[nt].x, ref[nt].x) and torch.equal(ours[nt].batch, ref[nt].batch)
    for et in ref.edge_types:
        assert torch.equal(ours[et].edge_index, ref[et].edge_index)

    t_ours = median_time(lambda: collate(graphs, embedder=emb), args.repeats)
    t_pyg = median_time(lambda: Batch.from_data_list(data_list), args.repeats)
    t_pyg_build = median_time(lambda: Batch.from_data_list([to_hetero_data(g, embedder=emb) for g in graphs]), max(3, args.repeats // 2))
    rows = [
        {"method": "scenegraph_diff collate (from SceneGraph)", "seconds": t_ours, "ratio_vs_pyg": t_pyg / t_ours},
        {"method": "PyG Batch.from_data_list (HeteroData given)", "seconds": t_pyg, "ratio_vs_pyg": 1.0},
        {"method": "to_hetero_data + Batch.from_data_list", "seconds": t_pyg_build, "ratio_vs_pyg": t_pyg / t_pyg_build},
    ]
    result = {"graphs": args.graphs, "repeats": args.repeats, "threads": args.threads, "dim": args.dim,
              "speedup_vs_pyg": t_pyg / t_ours, "rows": rows, "torch": torch.__version__,
              "python": platform.python_version()}
    table = ["| method | median seconds | speed-up vs PyG (>1 = faster) |", "|---|---|---|"]
    table += [f"| {r['method']} | {r['seconds']:.4f} | {r['ratio_vs_pyg']:.2f}x |" for r in rows]
    print("\n".join(table))
    print(f"\ncollate is {t_pyg / t_ours:.2f}x the speed of Batch.from_data_list on {args.graphs} graphs "
          f"(same batch, {args.threads} thread)", file=sys.stderr)
    write_results(args.out, result, "\n".join(table))
    return result


if __name__ == "__main__":
    main()
