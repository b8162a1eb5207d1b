"""Train one row of a Planetoid link-prediction config for one seed and show where its Hits@K misses are.

Prints (and writes as JSON) :func:`scenegraph_diff.linkpred.analysis.miss_breakdown` of the trained model
on the validation set (default) or the test set: positives below the K-th best negative and negatives
above it, bucketed by shortest-path distance in the message-passing graph, isolated endpoints, and the
TF-IDF feature cosine of missed / hit positives. Use the validation set for anything that informs a
modelling choice; ``--stage test`` is for the record.

    OMP_NUM_THREADS=1 python benchmarks/linkpred/diagnose.py benchmarks/linkpred/citeseer_v2.yaml \
        --row ncn-neg3-jkx-edp3-ens3 --ensemble 1 --seed 0 --out runs/linkpred/diagnose_s0.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config", help="a planetoid linkpred YAML config")
    ap.add_argument("--row", required=True, help="the model row's name")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--stage", choices=("val", "test"), default="val")
    ap.add_argument("--ensemble", type=int, default=None, help="override the row's ensemble size")
    ap.add_argument("--epochs", type=int, default=None, help="override the row's epochs")
    ap.add_argument("--k", type=int, default=100, help="the K of Hits@K")
    ap.add_argument("--max-dist", type=int, default=8)
    ap.add_argument("--data-root", default=None, help="default: ../shared/datasets when present")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None, help="write the breakdown as JSON here")
    args = ap.parse_args(argv)

    import torch
    import yaml

    from scenegraph_diff.linkpred.analysis import miss_breakdown
    from scenegraph_diff.linkpred.config import LinkPredConfig
    from scenegraph_diff.linkpred.runner import fit, load_task_data
    from scenegraph_diff.linkpred.tasks import PlanetoidTask

    torch.set_num_threads(args.threads)
    d = yaml.safe_load(Path(args.config).read_text())
    rows = [r for r in d.get("models", []) if r.get("name") == args.row]
    if not rows:
        raise SystemExit(f"no row named {args.row!r} in {args.config}; rows: {[r.get('name') for r in d.get('models', [])]}")
    row = dict(rows[0])
    if args.ensemble is not None:
        row["ensemble"] = args.ensemble
    if args.epochs is not None:
        row["epochs"] = args.epochs
    d["models"], d["seeds"] = [row], [args.seed]
    cfg = LinkPredConfig.from_dict(d)
    if cfg.task != "planetoid":
        raise SystemExit(f"diagnose.py is for planetoid configs, got task {cfg.task!r}")
    m = cfg.models[0]
    data = load_task_data(cfg, args.data_root)
    t0 = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(args.seed)
        task = PlanetoidTask.build(cfg, m, data, args.seed)
        rec = fit(task, m, cfg.select_metric, args.seed)
    s = task.split
    mp = s.message_passing_edges(args.stage, with_val=cfg.test_with_val_edges)
    pos_pairs, neg_pairs = (s.val_pos, s.val_neg) if args.stage == "val" else (s.test_pos, s.test_neg)
    task.model.eval()
    with torch.no_grad():
        pos, neg = task.model.score(task.x, mp, pos_pairs, neg_pairs)
    out = miss_breakdown(pos, neg, pos_pairs, neg_pairs, mp, s.num_nodes, k=args.k, max_dist=args.max_dist,
                         x=data.x)
    out.update({"config": args.config, "row": args.row, "seed": args.seed, "stage": args.stage,
                "ensemble": m.ensemble, "best_epoch": rec["best_epoch"], "train_s": time.perf_counter() - t0})
    print(f"{args.row} seed {args.seed} ({args.stage}): Hits@{args.k} {100 * out['hits']:.2f}, "
          f"{out['missed']} of {out['positives']} positives missed; {out['isolated_missed']} of them have an "
          f"isolated endpoint ({out['isolated_positives']} positives do)")
    print("| distance | positives | missed | negatives | negatives above threshold |")
    print("|---|---|---|---|---|")
    for b in out["buckets"]:
        print(f"| {b['dist']} | {b['positives']} | {b['missed']} | {b['negatives']} | {b['negatives_above']} |")
    c = out["cosine"]
    print(f"TF-IDF cosine medians: missed positives {c['missed_positives']:.3f}, hit positives "
          f"{c['hit_positives']:.3f}, negatives above the threshold {c['negatives_above']:.3f}, all negatives "
          f"{c['negatives']:.3f}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    return out


if __name__ == "__main__":
    main()
