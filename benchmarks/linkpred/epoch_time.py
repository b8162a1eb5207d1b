"""Epoch time of the runner's GCN + dot link-prediction step vs a plain PyG GCN loop at equal width.

Both train a 2-layer GCN (hidden = --hidden) with a dot-product decoder on the same Cora split (NCN
protocol, seed 0), full batch, one negative per positive, Adam. The plain loop is PyG's
``examples/link_pred.py`` pattern (dense features, ``negative_sampling``); ours is
:class:`scenegraph_diff.linkpred.tasks.PlanetoidTask`. Epochs are interleaved (ours, plain, ours,
...) so both see the same machine load; the report is the median of each and their ratio.

    OMP_NUM_THREADS=1 python benchmarks/linkpred/epoch_time.py --epochs 15 --out runs/linkpred/epoch_time.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="runs/linkpred/epoch_time.json")
    args = ap.parse_args()

    import torch
    import torch.nn.functional as F
    from torch_geometric.nn import GCNConv
    from torch_geometric.utils import negative_sampling

    from scenegraph_diff.linkpred.config import LinkPredConfig
    from scenegraph_diff.linkpred.data import load_planetoid
    from scenegraph_diff.linkpred.splits import to_undirected
    from scenegraph_diff.linkpred.tasks import PlanetoidTask

    torch.set_num_threads(args.threads)
    data = load_planetoid("Cora", args.data_root)
    cfg = LinkPredConfig.from_dict({"task": "planetoid", "dataset": "Cora", "models": [
        {"name": "gcn-dot", "encoder": "gcn", "decoder": "dot", "hidden": args.hidden, "num_layers": 2, "dropout": 0.5}]})
    m = cfg.models[0]
    torch.manual_seed(0)
    task = PlanetoidTask.build(cfg, m, data, seed=0)
    opt = torch.optim.Adam(task.model.parameters(), lr=m.lr)
    gen = torch.Generator().manual_seed(0)

    def ours() -> None:
        task.model.train()
        for batch in task.batches(gen):
            loss = task.loss(task.model, batch, gen)
            opt.zero_grad()
            loss.backward()
            opt.step()

    class Plain(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = GCNConv(data.num_features, args.hidden)
            self.conv2 = GCNConv(args.hidden, args.hidden)

        def forward(self, x, ei, pairs):
            z = self.conv2(F.dropout(self.conv1(x, ei).relu(), 0.5, self.training), ei)
            return (z[pairs[0]] * z[pairs[1]]).sum(-1)

    plain = Plain()
    popt = torch.optim.Adam(plain.parameters(), lr=0.01)
    x = data.x
    train_ei = to_undirected(task.split.train_pos)
    pos = task.split.train_pos

    def baseline() -> None:
        plain.train()
        neg = negative_sampling(train_ei, num_nodes=data.num_nodes, num_neg_samples=pos.size(1))
        out = plain(x, train_ei, torch.cat([pos, neg], 1))
        y = torch.cat([torch.ones(pos.size(1)), torch.zeros(neg.size(1))])
        loss = F.binary_cross_entropy_with_logits(out, y)
        popt.zero_grad()
        loss.backward()
        popt.step()

    ours(), baseline()  # warm-up
    t_ours, t_plain = [], []
    for _ in range(args.epochs):
        t0 = time.perf_counter()
        ours()
        t_ours.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        baseline()
        t_plain.append(time.perf_counter() - t0)
    res = {
        "hidden": args.hidden,
        "epochs": args.epochs,
        "threads": args.threads,
        "ours_epoch_s_median": statistics.median(t_ours),
        "plain_pyg_epoch_s_median": statistics.median(t_plain),
        "ratio": statistics.median(t_ours) / statistics.median(t_plain),
        "loadavg": os.getloadavg(),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    print("| loop | epoch s (median) |\n|---|---|")
    print(f"| plain PyG GCN + dot | {res['plain_pyg_epoch_s_median']:.4f} |")
    print(f"| scenegraph_diff runner GCN + dot | {res['ours_epoch_s_median']:.4f} |")
    print(f"\nratio ours / plain = {res['ratio']:.3f} (load average {res['loadavg'][0]:.1f})")


if __name__ == "__main__":
    main()
