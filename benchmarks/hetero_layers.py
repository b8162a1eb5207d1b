"""Forward + backward throughput of ``HGCNConv`` / ``RHGNNConv`` vs PyG's ``HGTConv`` and ``RGCNConv``.

512 batched random scene graphs (3-10 objects, 0-2 attributes each, 1-k relations), the same width
and depth for every model (``--dim`` features in and out of every layer, ``--layers`` layers, ReLU
between, ``--heads`` heads where a layer has heads). ``RGCNConv`` runs on the homogeneous view of the
same batch (6 relation types). Runs are interleaved (round robin) so load changes hit every model alike;
the table reports medians and ratios to the baselines measured in the same run.

    OMP_NUM_THREADS=1 python benchmarks/hetero_layers.py --graphs 512 --repeats 15
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import time
from typing import Callable

import torch
from _common import write_results  # benchmarks/ is on sys.path when a script runs


def random_graphs(n: int, seed: int) -> list:
    from scenegraph_diff.graph import Relation, SceneGraph, SceneObject

    rng = random.Random(seed)
    names = ["cat", "dog", "man", "table", "cup", "tree", "car", "sofa", "lamp", "window", "shirt", "horse"]
    attrs = ["red", "blue", "black", "wooden", "small", "2", "large", "white"]
    preds = ["on", "near", "sit on", "have", "left of", "behind", "wear", "hold"]
    out = []
    for _ in range(n):
        k = rng.randint(3, 10)
        objs = [SceneObject(rng.choice(names), tuple(rng.sample(attrs, rng.randint(0, 2)))) for _ in range(k)]
        rels = []
        for _ in range(rng.randint(1, k)):
            s, o = rng.sample(range(k), 2)
            rels.append(Relation(s, rng.choice(preds), o))
        out.append(SceneGraph(tuple(objs), tuple(rels)))
    return out


class HeteroStack(torch.nn.Module):
    """``layers`` hetero layers with ReLU in between (x_dict -> x_dict)."""

    def __init__(self, convs: list[torch.nn.Module]) -> None:
        super().__init__()
        self.convs = torch.nn.ModuleList(convs)

    def forward(self, x_dict, edge_index_dict):
        for i, conv in enumerate(self.convs):
            x_dict = conv(x_dict, edge_index_dict)
            if i < len(self.convs) - 1:
                x_dict = {k: v.relu() for k, v in x_dict.items()}
        return x_dict


class RHGNNStack(torch.nn.Module):
    def __init__(self, convs: list[torch.nn.Module]) -> None:
        super().__init__()
        self.convs = torch.nn.ModuleList(convs)

    def forward(self, x_dict, edge_index_dict):
        rel = None
        for i, conv in enumerate(self.convs):
            if i < len(self.convs) - 1:
                x_dict, rel = conv(x_dict, edge_index_dict, rel, return_relations=True)
                x_dict = {k: v.relu() for k, v in x_dict.items()}
            else:
                x_dict = conv(x_dict, edge_index_dict, rel)
        return x_dict


class RGCNStack(torch.nn.Module):
    def __init__(self, convs: list[torch.nn.Module]) -> None:
        super().__init__()
        self.convs = torch.nn.ModuleList(convs)

    def forward(self, x, edge_index, edge_type):
        for i, conv in enumerate(self.convs):
            x = conv(x, edge_index, edge_type)
            if i < len(self.convs) - 1:
                x = x.relu()
        return x


def build(dim: int, layers: int, heads: int, metadata) -> dict[str, torch.nn.Module]:
    from torch_geometric.nn import HGTConv, RGCNConv

    from scenegraph_diff.nn import HGCNConv, RHGNNConv

    per_head = dim // heads
    return {
        "HGCNConv": HeteroStack([HGCNConv(dim, per_head, metadata, heads=heads) for _ in range(layers)]),
        "RHGNNConv": RHGNNStack([RHGNNConv(dim, per_head, metadata, heads=heads, fuse=i == layers - 1)
                                 for i in range(layers)]),
        "HGTConv": HeteroStack([HGTConv(dim, dim, metadata, heads=heads) for _ in range(layers)]),
        "RGCNConv": RGCNStack([RGCNConv(dim, dim, num_relations=len(metadata[1])) for _ in range(layers)]),
    }


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--graphs", type=int, default=512)
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--dim", type=int, default=64, help="width of every layer")
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="benchmarks/results/hetero_layers")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    from scenegraph_diff.graph.hetero import METADATA, collate
    from scenegraph_diff.text import HashingEmbedder

    device = torch.device(args.device)
    graphs = random_graphs(args.graphs, args.seed)
    batch = collate(graphs, HashingEmbedder(args.dim)).to(device)
    homo = batch.to_homogeneous()
    x_dict, ei_dict = batch.x_dict, batch.edge_index_dict
    torch.manual_seed(args.seed)
    models = {k: m.to(device) for k, m in build(args.dim, args.layers, args.heads, METADATA).items()}
    for m in models.values():  # materialise lazy parameters, if any
        pass

    def step_fn(name: str) -> Callable[[], None]:
        model = models[name]
        if name == "RGCNConv":
            def run() -> None:
                out = model(homo.x, homo.edge_index, homo.edge_type)
                out.pow(2).mean().backward()
        else:
            def run() -> None:
                out = model(x_dict, ei_dict)
                sum(v.pow(2).mean() for v in out.values()).backward()

        def timed() -> float:
            model.zero_grad(set_to_none=True)
            if device.type == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            run()
            if device.type == "cuda":
                torch.cuda.synchronize()
            return time.perf_counter() - t

        return timed

    fns = {name: step_fn(name) for name in models}
    for fn in fns.values():  # warm-up
        fn()
        fn()
    times: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(args.repeats):
        for name, fn in fns.items():
            times[name].append(fn())
    med = {name: statistics.median(ts) for name, ts in times.items()}
    thr = {name: args.graphs / t for name, t in med.items()}
    params = {name: sum(p.numel() for p in m.parameters()) for name, m in models.items()}
    rows = []
    for name in models:
        rows.append({
            "model": name, "median_s": med[name], "graphs_per_s": thr[name], "params": params[name],
            "vs_HGTConv": thr[name] / thr["HGTConv"], "vs_RGCNConv": thr[name] / thr["RGCNConv"],
        })
    n_nodes = sum(batch[nt].num_nodes for nt in batch.node_types)
    n_edges = sum(batch[et].edge_index.size(1) for et in batch.edge_types)
    result = {
        "benchmark": "hetero_layers", "graphs": args.graphs, "nodes": n_nodes, "edges": n_edges, "dim": args.dim,
        "layers": args.layers, "heads": args.heads, "threads": args.threads, "device": str(device),
        "repeats": args.repeats, "torch": torch.__version__, "python": platform.python_version(),
        "load_avg": os.getloadavg() if hasattr(os, "getloadavg") else None, "rows": rows,
    }
    lines = [
        f"Forward+backward, {args.graphs} scene graphs ({n_nodes} nodes, {n_edges} edges), width {args.dim}, "
        f"{args.layers} layers, {args.heads} heads, {args.threads} thread(s), {device}; median of {args.repeats}.",
        "",
        "| layer | median ms | graphs/s | params | vs HGTConv | vs RGCNConv |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['model']} | {1000 * r['median_s']:.1f} | {r['graphs_per_s']:.0f} | {r['params']} | "
                     f"{r['vs_HGTConv']:.2f}x | {r['vs_RGCNConv']:.2f}x |")
    table = "\n".join(lines)
    print(table)
    write_results(args.out, result, table, indent=2)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
