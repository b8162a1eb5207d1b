"""Typed scene-graph diffusion on FACTUAL: unconditional sampling and relation completion (short CPU run).

    python benchmarks/scene_graph_unconditional.py [--train-steps 1500] [--num-steps 10] [--threads 1]

Trains :class:`TypedDiffusion` on FACTUAL train graphs (objects and relations; attributes are not
modelled), then
(a) samples ``--num-samples`` graphs unconditionally (object count drawn from train) and reports the
    fraction of sampled relation triplets (subject, predicate, object names) that occur in train, the
    fraction of exact train graphs, and mean sizes, next to the same numbers for FACTUAL dev graphs;
(b) completion on dev: given the objects, sample all relations; triplet precision / recall / F1.
Samples are written as SceneGraph JSON v1 lines.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def triplets(g):
    return {(g.objects[r.subject].name, r.predicate, g.objects[r.object].name) for r in g.relations}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", default=str(REPO.parent / "shared" / "datasets"))
    p.add_argument("--train-steps", type=int, default=1500)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--num-steps", type=int, default=10)
    p.add_argument("--num-samples", type=int, default=500)
    p.add_argument("--min-count", type=int, default=5, help="vocabulary cut-off (rarer labels -> <unk>)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "scene_graph_factual.json"))
    p.add_argument("--model-dir", default=str(REPO / "runs" / "factual_typed"), help="where the trained refiner is saved")
    args = p.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch

    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from scenegraph_diff.diffusion.scene_graph_data import collate_typed, scene_graphs_to_typed, typed_to_scene_graphs
    from scenegraph_diff.diffusion.scene_graph_diffusion import SceneGraphDenoiser, TypedDiffusion
    from scenegraph_diff.graph import Vocabulary
    from scenegraph_diff.parsing.factual import graph_from_string, read_factual_csv
    from scenegraph_diff.training import TrainConfig, Trainer

    root = Path(args.data_root) / "factual"
    train_g = [graph_from_string(e.graph, e.caption) for e in read_factual_csv(root / "train.csv")]
    dev_g = [graph_from_string(e.graph, e.caption) for e in read_factual_csv(root / "dev.csv")]
    train_g = [g for g in train_g if 1 <= g.num_objects <= 12]
    dev_g = [g for g in dev_g if 1 <= g.num_objects <= 12]
    vocab = Vocabulary.from_graphs(train_g, min_count=args.min_count)
    P = vocab.num_predicates
    train_t = scene_graphs_to_typed(train_g, vocab)
    model = SceneGraphDenoiser(num_classes=vocab.num_objects, num_predicates=P, hidden=64, num_layers=2)

    def batches(step, generator):
        idx = torch.randint(0, len(train_t), (args.batch_size,), generator=generator).tolist()
        return collate_typed([train_t[i] for i in idx], P)

    def step(m, batch, generator):
        return TypedDiffusion(m).loss(batch, generator, node_weight=1.0)

    tc = TrainConfig(max_steps=args.train_steps, lr=1e-3, schedule="cosine", warmup_steps=100, grad_clip=1.0,
                     ema_decay=0.998, num_threads=args.threads, log_every=250, progress=False)
    trainer = Trainer(model, step, tc)
    t0 = time.perf_counter()
    trainer.fit(batches)
    train_secs = time.perf_counter() - t0
    diff = TypedDiffusion(trainer.ema_model)
    g = torch.Generator().manual_seed(0)
    from scenegraph_diff.diffusion.scene_graph_refiner import SceneGraphRefiner

    SceneGraphRefiner(trainer.ema_model, vocab, [len(t.classes) for t in train_t]).save_pretrained(args.model_dir)

    # (a) unconditional
    counts = torch.tensor([len(t.classes) for t in train_t])
    n = counts[torch.randint(0, len(counts), (args.num_samples,), generator=g)]
    N = int(n.max())
    mask = torch.arange(N)[None] < n[:, None]
    from scenegraph_diff.diffusion.scene_graph_diffusion import TypedGraphBatch

    empty = TypedGraphBatch(torch.zeros(args.num_samples, N, dtype=torch.long), torch.zeros(args.num_samples, N, N, dtype=torch.long),
                            mask, torch.zeros(args.num_samples, N, 4), torch.zeros(args.num_samples, N, dtype=torch.bool))
    t0 = time.perf_counter()
    cls, edg, _, nfe = diff.sample(empty, torch.zeros_like(mask), torch.zeros(args.num_samples, N, N, dtype=torch.bool),
                                   args.num_steps, 1.0, generator=g)
    sample_secs = time.perf_counter() - t0
    samples = typed_to_scene_graphs(cls, edg, mask, vocab)
    train_trip = set().union(*(triplets(x) for x in train_g))
    train_keys = {json.dumps(x.to_dict(), sort_keys=True) for x in scene_graphs_to_canon(train_g, vocab)}

    def stats(graphs):
        trips = [t for x in graphs for t in triplets(x)]
        seen = sum(t in train_trip for t in trips) / max(len(trips), 1)
        exact = sum(json.dumps(x.to_dict(), sort_keys=True) in train_keys for x in scene_graphs_to_canon(graphs, vocab)) / len(graphs)
        return {"mean_objects": sum(x.num_objects for x in graphs) / len(graphs),
                "mean_relations": sum(len(x.relations) for x in graphs) / len(graphs),
                "triplets_seen_in_train": seen, "exact_train_graph": exact}

    # (b) completion on dev: objects given, every relation sampled
    dev_t = scene_graphs_to_typed(dev_g, vocab)
    tp = fp = fn = 0
    for s in range(0, len(dev_t), 128):
        chunk = dev_t[s : s + 128]
        b = collate_typed(chunk, P)
        _, e, _, _ = diff.sample(b, b.node_mask, torch.zeros_like(b.edges, dtype=torch.bool), args.num_steps, 0.0, generator=g)
        for k, tg in enumerate(chunk):
            pred = {(i, j, int(e[k, i, j])) for i, j in (e[k] > 0).nonzero().tolist()}
            gold = set(tg.triplets)
            tp += len(pred & gold)
            fp += len(pred - gold)
            fn += len(gold - pred)
    prec, rec = tp / max(tp + fp, 1), tp / max(tp + fn, 1)
    result = {"train_graphs": len(train_g), "vocab": {"objects": vocab.num_objects, "predicates": P},
              "train_seconds": train_secs, "train_steps": args.train_steps, "threads": args.threads,
              "load_avg": os.getloadavg(), "unconditional": {"nfe": nfe, "seconds": sample_secs, **stats(samples)},
              "dev_reference": stats(dev_g),
              "completion_dev": {"precision": prec, "recall": rec, "f1": 2 * prec * rec / max(prec + rec, 1e-12)}}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    out.with_name("scene_graph_factual_samples.jsonl").write_text("".join(x.to_json() + "\n" for x in samples[:100]))
    print(json.dumps(result, indent=1))
    return 0


def scene_graphs_to_canon(graphs, vocab):
    from scenegraph_diff.graph.dense import dense_canonical

    out = []
    for g in graphs:
        c = dense_canonical(g, vocab)
        out.append(type(c)(tuple(type(o)(o.name, (), None) for o in c.objects), c.relations))
    return out


if __name__ == "__main__":
    raise SystemExit(main())
