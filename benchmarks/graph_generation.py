"""Graph-generation benchmark (GDSS protocol): MMD of degree / clustering / orbit, cost, noise floor.

    python benchmarks/graph_generation.py --dataset community_small [--family edge] [--sampler ddim50]
        [--model-dir DIR] [--train-steps N] [--seeds 3] [--threads 1]

For each (family, sampler) it samples as many graphs as the test split has, over ``--seeds`` seeds,
saves every generated set as JSONL (``{"num_nodes", "edges"}`` per line), and reports MMD mean ± std,
network evaluations per graph, sampling seconds, training seconds, next to GDSS's published numbers
and the noise floor (test-sized draws of real *train* graphs vs the test set; mean ± std over 10 draws).
Families: ``edge`` (time-conditioned PPGN denoiser, x₀-prediction, VP SDE), ``gdss`` (GDSS-style score
networks with no time input), ``pard`` (block-autoregressive). Results: ``--out-dir`` (JSON + markdown).
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

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

GDSS_PUBLISHED = {
    "community_small": {"degree": 0.045, "cluster": 0.086, "orbit": 0.007},
    "ego_small": {"degree": 0.021, "cluster": 0.024, "orbit": 0.007},
    "enzymes": {"degree": 0.026, "cluster": 0.061, "orbit": 0.009},
    "grid": {"degree": 0.111, "cluster": 0.005, "orbit": 0.070},
}
METRICS = ("degree", "cluster", "orbit")

SAMPLERS = {
    # name: (kind, kwargs)
    "ddim20": ("ddim", {"num_steps": 20}),
    "ddim50": ("ddim", {"num_steps": 50}),
    "ddim100": ("ddim", {"num_steps": 100}),
    "ddpm10": ("ddim", {"num_steps": 10, "eta": 1.0}),
    "ddpm20": ("ddim", {"num_steps": 20, "eta": 1.0}),
    "ddpm50": ("ddim", {"num_steps": 50, "eta": 1.0}),
    "ddpm100": ("ddim", {"num_steps": 100, "eta": 1.0}),
    "ddpm100q": ("ddim", {"num_steps": 100, "eta": 1.0, "spacing": "quadratic"}),
    "ddpm200": ("ddim", {"num_steps": 200, "eta": 1.0}),
    "ddpm50q": ("ddim", {"num_steps": 50, "eta": 1.0, "spacing": "quadratic"}),
    "eta05_50": ("ddim", {"num_steps": 50, "eta": 0.5}),
    "eta05_100": ("ddim", {"num_steps": 100, "eta": 0.5}),
    # issue 23: 70 % of the steps in t ∈ [0.1, 0.45], where the triangles of ENZYMES are decided
    "ddpm100w": ("ddim", {"num_steps": 100, "eta": 1.0, "spacing": "window", "window": (0.1, 0.45, 0.7)}),
    "mix100w": ("ddim", {"num_steps": 100, "eta": 1.0, "x0_sample": True, "spacing": "window",
                         "window": (0.1, 0.45, 0.7)}),
    "mix20": ("ddim", {"num_steps": 20, "eta": 1.0, "x0_sample": True}),
    "mix50": ("ddim", {"num_steps": 50, "eta": 1.0, "x0_sample": True}),
    "mix100": ("ddim", {"num_steps": 100, "eta": 1.0, "x0_sample": True}),
    "s4_100": ("s4", {"num_steps": 100}),
    "pc50": ("pc", {"num_steps": 50}),
    "pc1000": ("pc", {"num_steps": 1000}),
    "s4_1000": ("s4", {"num_steps": 1000}),
    "pard20": ("pard", {"steps_per_block": 20}),
    "pard10": ("pard", {"steps_per_block": 10}),
}


def make_sampler(name: str):
    from scenegraph_diff.diffusion.samplers import DDIMSampler, PCSampler, S4Sampler

    kind, kw = SAMPLERS[name]
    return {"ddim": DDIMSampler, "pc": PCSampler, "s4": S4Sampler}.get(kind, dict)(**kw)


def noise_floor(train, test, draws: int = 10, seed: int = 0) -> dict[str, tuple[float, float]]:
    import random

    from scenegraph_diff.metrics import graph_mmd

    rng = random.Random(seed)
    vals = {m: [] for m in METRICS}
    for _ in range(draws):
        sub = rng.sample(train, min(len(test), len(train)))
        for m, v in graph_mmd(sub, test, METRICS).items():
            vals[m].append(v)
    return {m: (statistics.mean(v), statistics.pstdev(v)) for m, v in vals.items()}


def time_denoisers(sizes=(100, 200, 361), batch: int = 2) -> dict:
    """Forward seconds per graph of PPGN and low-rank edge denoisers at ``sizes`` nodes (random symmetric input,
    structure-feature inputs zero, best of 2 runs). Returns ``{name: {N: seconds}, "load_avg": ...}``."""
    import torch

    from scenegraph_diff.diffusion.lowrank import LowRankEdgeDenoiser
    from scenegraph_diff.diffusion.ppgn import EdgeDenoiser

    d = {"edge_cond_dim": 4, "node_cond_dim": 3}
    models = {"ppgn C8 L2": EdgeDenoiser(channels=8, num_layers=2, **d),
              "ppgn C16 L3": EdgeDenoiser(channels=16, num_layers=3, **d),
              "ppgn C32 L4": EdgeDenoiser(channels=32, num_layers=4, **d),
              "lowrank C32 P8 L3": LowRankEdgeDenoiser(channels=32, pair_channels=8, num_layers=3, rank=8, **d),
              "lowrank C32 P16 L4": LowRankEdgeDenoiser(channels=32, pair_channels=16, num_layers=4, **d),
              "lowrank C64 P16 L4": LowRankEdgeDenoiser(channels=64, pair_channels=16, num_layers=4, **d)}
    out: dict = {name: {"params": sum(p.numel() for p in m.parameters())} for name, m in models.items()}
    for n in sizes:
        A = torch.randn(batch, n, n)
        A = A + A.transpose(1, 2)
        mk = torch.ones(batch, n, dtype=torch.bool)
        ec, nc = torch.zeros(batch, n, n, 4), torch.zeros(batch, n, 3)
        for name, m in models.items():
            best = float("inf")
            with torch.no_grad():
                for _ in range(2):
                    t0 = time.perf_counter()
                    m.eval()(A, torch.full((batch,), 0.5), mk, edge_cond=ec, node_cond=nc)
                    best = min(best, time.perf_counter() - t0)
            out[name][n] = best / batch
            logging.info("N=%d %s: %.3f s/graph", n, name, best / batch)
    out["load_avg"] = os.getloadavg()
    return out


def load_or_train(family: str, dataset: str, train, args):
    """Returns (model, train_seconds)."""
    model_dir = Path(args.model_dir) if args.model_dir else REPO / "runs" / f"{dataset}_{family}{args.tag}" / "final"
    info_path = model_dir.parent / "train_info.json"
    if family == "edge":
        from scenegraph_diff.diffusion.edge_diffusion import EdgeDiffusionConfig, EdgeDiffusionGenerator, train_edge_diffusion

        if (model_dir / "generator.json").is_file():
            secs = json.loads(info_path.read_text())["train_seconds"] if info_path.is_file() else float("nan")
            return EdgeDiffusionGenerator.from_pretrained(model_dir), secs
        gen, info = train_edge_diffusion(train, EdgeDiffusionConfig(
            max_steps=args.train_steps, batch_size=args.batch_size, num_threads=args.threads, channels=args.channels,
            num_layers=args.layers, self_condition=args.self_condition or args.structure_features,
            structure_features=args.structure_features, output_dir=str(model_dir.parent / "ckpt"), progress=False,
            seed=args.train_seed, size_buckets=args.size_buckets, checkpoint_every=args.checkpoint_every, lr=args.lr,
            architecture=args.architecture, pair_channels=args.pair_channels, rank=args.rank, log_every=args.log_every,
            warmup_steps=args.warmup_steps, cycle_features=args.cycle_features, init_from=args.init_from))
    elif family == "gdss":
        from scenegraph_diff.diffusion.gdss import GDSSConfig, GDSSGenerator, train_gdss

        if (model_dir / "generator.json").is_file():
            secs = json.loads(info_path.read_text())["train_seconds"] if info_path.is_file() else float("nan")
            return GDSSGenerator.from_pretrained(model_dir), secs
        gen, info = train_gdss(train, GDSSConfig(max_steps=args.train_steps, batch_size=args.batch_size,
                                                 num_threads=args.threads))
    elif family == "pard":
        from scenegraph_diff.diffusion.pard import PARDConfig, PARDGenerator, train_pard

        if (model_dir / "generator.json").is_file():
            secs = json.loads(info_path.read_text())["train_seconds"] if info_path.is_file() else float("nan")
            return PARDGenerator.from_pretrained(model_dir), secs
        gen, info = train_pard(train, PARDConfig(max_steps=args.train_steps, batch_size=args.batch_size,
                                                 num_threads=args.threads))
    else:
        raise SystemExit(f"unknown family {family!r}")
    model_dir.parent.mkdir(parents=True, exist_ok=True)
    info["load_avg_after_training"] = os.getloadavg()
    gen.save_pretrained(model_dir)
    info_path.write_text(json.dumps(info, indent=1))
    return gen, info["train_seconds"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", required=True, choices=list(GDSS_PUBLISHED))
    p.add_argument("--time-denoisers", action="store_true",
                   help="only time PPGN vs low-rank denoisers at N = 100/200/361 (writes denoiser_cost.json) and exit")
    p.add_argument("--family", default="edge", choices=["edge", "gdss", "pard"])
    p.add_argument("--sampler", default=None, help=f"comma list of {list(SAMPLERS)} (default: the family's set)")
    p.add_argument("--model-dir", default=None, help="trained generator folder (default runs/<dataset>_<family>/final; "
                                                     "trained when absent)")
    p.add_argument("--train-steps", type=int, default=2500)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--channels", type=int, default=32, help="edge family: PPGN channels (training only)")
    p.add_argument("--layers", type=int, default=4, help="edge family: PPGN layers (training only)")
    p.add_argument("--self-condition", action="store_true", help="edge family: self-conditioning (training only)")
    p.add_argument("--structure-features", action="store_true",
                   help="edge family: structural features of the self-conditioning estimate (implies --self-condition)")
    p.add_argument("--cycle-features", action="store_true",
                   help="edge family: also DiGress cycle counts of the estimate (needs --structure-features)")
    p.add_argument("--init-from", default=None,
                   help="edge family: warm-start the network from this saved generator folder (new input channels "
                        "start at zero)")
    p.add_argument("--size-buckets", type=int, default=0,
                   help="edge family: size-bucketed batches, pools of this many batches sorted by size (0 = off)")
    p.add_argument("--architecture", default="ppgn", choices=["ppgn", "lowrank"],
                   help="edge family: EdgeDenoiser (PPGN, O(N^3)) or LowRankEdgeDenoiser (O(N^2)) (training only)")
    p.add_argument("--pair-channels", type=int, default=16, help="edge family, lowrank: pair-state width")
    p.add_argument("--rank", type=int, default=16, help="edge family, lowrank: rank of the distance edge head")
    p.add_argument("--log-every", type=int, default=250, help="edge family: training log interval (steps)")
    p.add_argument("--checkpoint-every", type=int, default=1000, help="edge family: checkpoint interval (steps)")
    p.add_argument("--lr", type=float, default=2e-3, help="edge family: peak learning rate")
    p.add_argument("--warmup-steps", type=int, default=100, help="edge family: linear lr warm-up steps")
    p.add_argument("--sample-batch-size", type=int, default=64,
                   help="graphs per sampling chunk (chunks are size-sorted and trimmed; smaller = less padding)")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--train-seed", type=int, default=0, help="edge family: training seed (default 0)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--data-root", default=None)
    p.add_argument("--out-dir", default=str(REPO / "benchmarks" / "results" / "graph_generation"))
    p.add_argument("--tag", default="", help="suffix for the result files")
    args = p.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch

    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from scenegraph_diff.diffusion.data import load_graph_dataset
    from scenegraph_diff.graph import write_jsonl  # noqa: F401  (SceneGraph writer; edge lists written below)
    from scenegraph_diff.metrics import graph_mmd

    if args.time_denoisers:
        cost = time_denoisers()
        (Path(args.out_dir) / "denoiser_cost.json").write_text(json.dumps(cost, indent=1))
        print(json.dumps(cost, indent=1))
        return 0
    train, test = load_graph_dataset(args.dataset, args.data_root)
    defaults = {"edge": "ddim50,ddim100,ddpm50,ddpm100,s4_100,pc50", "gdss": "pc50,s4_100", "pard": "pard10,pard20"}
    samplers = (args.sampler or defaults[args.family]).split(",")
    for s in samplers:
        if s not in SAMPLERS:
            raise SystemExit(f"unknown sampler {s!r}; expected one of {list(SAMPLERS)}")

    floor = noise_floor(train, test)
    model, train_secs = load_or_train(args.family, args.dataset, train, args)
    info_path = (Path(args.model_dir) if args.model_dir else REPO / "runs" / f"{args.dataset}_{args.family}{args.tag}"
                 / "final").parent / "train_info.json"
    train_info = json.loads(info_path.read_text()) if info_path.is_file() else None
    out_dir = Path(args.out_dir) / args.dataset
    out_dir.mkdir(parents=True, exist_ok=True)

    def write(rows: list[dict]) -> str:
        """JSON + markdown for the rows so far (rewritten after every sampler, so a stopped run keeps them)."""
        result = {"dataset": args.dataset, "num_test": len(test), "num_train": len(train), "threads": args.threads,
                  "load_avg": os.getloadavg(), "gdss_published": GDSS_PUBLISHED[args.dataset],
                  "noise_floor": {m: list(v) for m, v in floor.items()}, "rows": rows,
                  "train_info": train_info}
        stem = f"{args.dataset}_{args.family}{args.tag}"
        (Path(args.out_dir) / f"{stem}.json").write_text(json.dumps(result, indent=1))
        lines = [f"### {args.dataset} — {args.family} (test graphs: {len(test)}, {args.seeds} seeds, {args.threads} thread, "
                 f"load {os.getloadavg()[0]:.1f})", "",
                 "| method | NFE/graph | sample s (median) | train s | degree | clustering | orbit |", "|---|---|---|---|---|---|---|"]
        pub = GDSS_PUBLISHED[args.dataset]
        lines.append(f"| GDSS (published) | 2000 | — | — | {pub['degree']:.3f} | {pub['cluster']:.3f} | {pub['orbit']:.3f} |")
        lines.append("| noise floor (train vs test) | — | — | — | " +
                     " | ".join(f"{floor[m][0]:.3f} ± {floor[m][1]:.3f}" for m in METRICS) + " |")
        for r in rows:
            cells = " | ".join(f"{r[m][0]:.3f} ± {r[m][1]:.3f}{'' if r[m + '_ok'] else ' ✗'}" for m in METRICS)
            lines.append(f"| {r['family']} {r['sampler']} | {r['nfe_per_graph']:.4g} | {r['sample_seconds_median']:.2f} | "
                         f"{r['train_seconds']:.0f} | {cells} |")
        table = "\n".join(lines)
        (Path(args.out_dir) / f"{stem}.md").write_text(table + "\n")
        return table

    rows = []
    for s in samplers:
        sampler = make_sampler(s)
        per_seed, secs, nfe = {m: [] for m in METRICS}, [], 0
        for seed in range(args.seeds):
            g = torch.Generator().manual_seed(seed)
            t0 = time.perf_counter()
            graphs, nfe = model.generate(len(test), sampler, g, **(
                {"batch_size": args.sample_batch_size} if args.family == "edge" else {}))
            secs.append(time.perf_counter() - t0)
            path = out_dir / f"{args.family}_{s}{args.tag}_seed{seed}.jsonl"
            path.write_text("".join(json.dumps(x) + "\n" for x in graphs))
            for m, v in graph_mmd(graphs, test, METRICS).items():
                per_seed[m].append(v)
        row = {"family": args.family, "sampler": s, "nfe_per_graph": nfe, "sample_seconds_median": statistics.median(secs),
               "sample_seconds": secs, "train_seconds": train_secs}
        for m in METRICS:
            row[m] = (statistics.mean(per_seed[m]), statistics.pstdev(per_seed[m]))
            row[f"{m}_per_seed"] = per_seed[m]
            target = max(GDSS_PUBLISHED[args.dataset][m], floor[m][0] + floor[m][1])
            row[f"{m}_target"] = target
            row[f"{m}_ok"] = row[m][0] <= target
        row["load_avg"] = os.getloadavg()
        rows.append(row)
        logging.info("%s %s: %s", args.dataset, s, {m: round(row[m][0], 4) for m in METRICS})
        write(rows)
    print(write(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
