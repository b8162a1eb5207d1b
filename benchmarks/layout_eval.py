"""Scene graph -> layout: geometric consistency, box IoU and diversity of predicted boxes (issue 20).

    OMP_NUM_THREADS=1 python benchmarks/layout_eval.py [--data-root ../shared/datasets] [--num-samples 5]
        [--vrd-diffusion layout-vrd] [--vrd-regression runs/layout/vrd_regression/model]
        [--shapes-diffusion layout-shapes] [--shapes-regression runs/layout/shapes_regression/model]

**VRD** (test split of ``scenegraph-diff preprocess vrd``, boxes normalised by the union of each image's boxes;
prepared into ``--prepared`` from ``--data-root`` when missing): every method predicts every box from the graph
alone (``resample=True``). Methods, in the same run: the class-mean box prior (mean ``(cx, cy, w, h)`` of each
object class on VRD train), the regression baseline, layout diffusion at 1 / 5 / 10 / 20 network evaluations
(DDIM steps, unguided) and with relation guidance (``--guidance`` w, 5 and 10 steps = 10 and 20 evaluations);
and the ground truth itself (the ceiling of the consistency measure).

* **predicate consistency** — each predicate below gets a geometric rule on the subject box ``s`` and the object
  box ``o`` (``[x0, y0, x1, y1]``, y downwards; ``c`` = centre, ``w``/``h`` = size), fixed before any model was
  scored; consistency = relations whose rule holds / relations with a rule (pooled over samples):

  ====================================  ==============================================================
  on the left of / on the right of      ``cx(s) < cx(o)`` / ``cx(s) > cx(o)``
  above, over / below, under, beneath   ``cy(s) < cy(o)`` / ``cy(s) > cy(o)``
  on, on the top of                     x-extents overlap and ``cy(s) < cy(o)``
  inside                                ``area(s ∩ o) >= 0.5 area(s)``
  next to, beside                       y-extents overlap and the horizontal gap ``<= max(w(s), w(o))``
  taller than                           ``h(s) > h(o)``
  ====================================  ==============================================================

* **box IoU recall at 0.3 / 0.5** (sg2im): the fraction of objects whose predicted box has IoU >= 0.3 / 0.5
  with the ground-truth box (averaged over samples);
* **diversity**: mean ``1 - IoU`` between two samples of the same object (all sample pairs), 0 for a
  deterministic method.

Acceptance (issue 20): layout diffusion beats the prior and the regression on consistency, and reaches >= 90 %
of the ground truth's.

**Shapes world** (700 held-out graphs of :func:`scenegraph_diff.shapes.evaluation.held_out_graphs`): the world's
own rules on the pixel boxes (:func:`scenegraph_diff.layout.evaluation.shapes_layout_scores`): relation
accuracy, graphs with all relations right, and fully valid layouts (inside, no two boxes touching, every
relation), for the regression baseline and the same diffusion settings, pooled over the samples.

Writes ``benchmarks/results/layout_eval.{json,md}`` and ``layout_eval_grid.png`` (ground truth vs predicted
layouts for a few graphs of each world).
"""

from __future__ import annotations

import argparse
import itertools
import logging
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from _common import write_results  # noqa: E402

log = logging.getLogger("layout_eval")

Box = Sequence[float]


# ---------------------------------------------------------------------------------------------- rules
def _c(b: Box) -> tuple[float, float]:
    return (b[0] + b[2]) / 2, (b[1] + b[3]) / 2


def _x_overlap(s: Box, o: Box) -> bool:
    return min(s[2], o[2]) > max(s[0], o[0])


def _y_overlap(s: Box, o: Box) -> bool:
    return min(s[3], o[3]) > max(s[1], o[1])


def _left(s: Box, o: Box) -> bool:
    return _c(s)[0] < _c(o)[0]


def _right(s: Box, o: Box) -> bool:
    return _c(s)[0] > _c(o)[0]


def _above(s: Box, o: Box) -> bool:
    return _c(s)[1] < _c(o)[1]


def _below(s: Box, o: Box) -> bool:
    return _c(s)[1] > _c(o)[1]


def _on(s: Box, o: Box) -> bool:
    return _x_overlap(s, o) and _above(s, o)


def _inside(s: Box, o: Box) -> bool:
    iw = max(0.0, min(s[2], o[2]) - max(s[0], o[0]))
    ih = max(0.0, min(s[3], o[3]) - max(s[1], o[1]))
    return iw * ih >= 0.5 * (s[2] - s[0]) * (s[3] - s[1])


def _next_to(s: Box, o: Box) -> bool:
    gap = max(o[0] - s[2], s[0] - o[2], 0.0)
    return _y_overlap(s, o) and gap <= max(s[2] - s[0], o[2] - o[0])


def _taller(s: Box, o: Box) -> bool:
    return s[3] - s[1] > o[3] - o[1]


#: predicate -> rule(subject box, object box)
RULES: dict[str, Callable[[Box, Box], bool]] = {
    "on the left of": _left, "on the right of": _right,
    "above": _above, "over": _above, "below": _below, "under": _below, "beneath": _below,
    "on": _on, "on the top of": _on, "inside": _inside, "next to": _next_to, "beside": _next_to,
    "taller than": _taller,
}


def iou(a: Box, b: Box) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


# ---------------------------------------------------------------------------------------------- VRD scores
def vrd_scores(truth, samples) -> dict:
    """``samples[i][k]``: graph ``i``'s ``k``-th layout (a SceneGraph with every box)."""
    held = covered = 0
    per: dict[str, list[int]] = {}
    hits3 = hits5 = n_obj = 0
    div_sum = div_n = 0
    for g, layouts in zip(truth, samples):
        for lay in layouts:
            boxes = [o.box for o in lay.objects]
            for r in lay.relations:
                rule = RULES.get(r.predicate)
                if rule is None:
                    continue
                ok = rule(boxes[r.subject], boxes[r.object])
                held += ok
                covered += 1
                per.setdefault(r.predicate, [0, 0])
                per[r.predicate][0] += ok
                per[r.predicate][1] += 1
            for o, b in zip(g.objects, boxes):
                v = iou(o.box, b)
                hits3 += v >= 0.3
                hits5 += v >= 0.5
                n_obj += 1
        for a, b in itertools.combinations(layouts, 2):
            for oa, ob in zip(a.objects, b.objects):
                div_sum += 1 - iou(oa.box, ob.box)
                div_n += 1
    return {"consistency": held / max(covered, 1), "relations_scored": covered,
            "iou_recall_0.3": hits3 / max(n_obj, 1), "iou_recall_0.5": hits5 / max(n_obj, 1),
            "diversity": div_sum / div_n if div_n else 0.0,
            "per_predicate": {p: {"consistency": h / n, "n": n} for p, (h, n) in sorted(per.items())}}


def class_mean_prior(train):
    """A ``sample``-like callable: every object gets its class's mean ``(cx, cy, w, h)`` on ``train``."""
    from collections import defaultdict

    from scenegraph_diff.graph import SceneGraph, SceneObject

    acc: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0, 0.0, 0.0])
    for g in train:
        for o in g.objects:
            x0, y0, x1, y1 = o.box
            a = acc[o.name]
            a[0] += (x0 + x1) / 2
            a[1] += (y0 + y1) / 2
            a[2] += x1 - x0
            a[3] += y1 - y0
            a[4] += 1
    tot = [sum(a[i] for a in acc.values()) for i in range(5)]

    def box(name: str) -> tuple[float, float, float, float]:
        a = acc.get(name, tot)
        cx, cy, w, h = (a[i] / a[4] for i in range(4))
        return (max(0.0, cx - w / 2), max(0.0, cy - h / 2), min(1.0, cx + w / 2), min(1.0, cy + h / 2))

    def sample(graphs, num_samples=1, generator=None, resample=True):
        out = []
        for g in graphs:
            lay = SceneGraph(tuple(SceneObject(o.name, o.attributes, box(o.name)) for o in g.objects), g.relations,
                             g.text)
            out.append([lay] * num_samples)
        return out

    return sample


def _timed(fn, graphs, k, seed, **kw):
    import torch

    t0 = time.perf_counter()
    out = fn(graphs, k, torch.Generator().manual_seed(seed), resample=True, **kw)
    return out, time.perf_counter() - t0


def _load(spec: str, what: str):
    from scenegraph_diff.layout import load_layout_model

    try:
        return load_layout_model(spec)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"layout_eval: {what} {spec!r}: {e} (train one with `scenegraph-diff train-layout`)")


def _sample_in_chunks(model, graphs, k, seed, chunk=128, **kw):
    import torch

    g = torch.Generator().manual_seed(seed)
    out, t0 = [], time.perf_counter()
    for i in range(0, len(graphs), chunk):
        out.extend(model.sample(graphs[i:i + chunk], k, g, resample=True, **kw))
    return out, time.perf_counter() - t0


# ---------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    default_root = REPO.parent / "shared" / "datasets"
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-root", default=str(default_root), help="datasets root with vrd/ (default ../shared/datasets)")
    p.add_argument("--prepared", default=str(REPO / "runs" / "layout_eval" / "vrd"),
                   help="prepared VRD folder (made from --data-root when missing)")
    p.add_argument("--vrd-diffusion", default="layout-vrd")
    p.add_argument("--vrd-regression", default=str(REPO / "runs" / "layout" / "vrd_regression" / "model"))
    p.add_argument("--shapes-diffusion", default="layout-shapes")
    p.add_argument("--shapes-regression", default=str(REPO / "runs" / "layout" / "shapes_regression" / "model"))
    p.add_argument("--num-samples", type=int, default=5, help="layouts per graph (default 5)")
    p.add_argument("--steps", default="1,5,10,20", help="DDIM steps of unguided diffusion (1 evaluation each)")
    p.add_argument("--guided-steps", default="5,10", help="DDIM steps with relation guidance (2 evaluations each)")
    p.add_argument("--guidance", type=float, default=2.0, help="relation guidance scale w (default 2)")
    p.add_argument("--max-graphs", type=int, default=None, help="VRD test graphs (default all)")
    p.add_argument("--shapes-graphs", type=int, default=700)
    p.add_argument("--grid-method", default="", help="diffusion row of the PNG grid (default: the last one)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "layout_eval"))
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    import torch

    torch.set_num_threads(args.threads)
    # (name, DDIM steps, guidance): unguided runs cost one network evaluation per step, guided ones two
    configs = [(f"diffusion {int(n)} NFE", int(n), 1.0) for n in args.steps.split(",") if n]
    configs += [(f"diffusion + guidance {args.guidance:g}, {2 * int(n)} NFE", int(n), args.guidance)
                for n in args.guided_steps.split(",") if n]

    from scenegraph_diff.layout.data import prepared_layout_graphs
    from scenegraph_diff.layout.evaluation import shapes_layout_scores
    from scenegraph_diff.shapes.evaluation import held_out_graphs

    # ------------------------------------------------------------------ VRD
    prepared = Path(args.prepared)
    if not (prepared / "manifest.json").is_file():
        from scenegraph_diff.data.vrd import VRDConfig, prepare_vrd

        vrd_root = Path(args.data_root) / "vrd"
        if not vrd_root.is_dir():
            raise SystemExit(f"layout_eval: no VRD in {vrd_root} (give --data-root or --prepared)")
        log.info("preparing VRD from %s into %s", vrd_root, prepared)
        prepare_vrd(VRDConfig(data_root=str(vrd_root), output_dir=str(prepared)))
    train = prepared_layout_graphs(prepared, "train")
    test = [g for g in prepared_layout_graphs(prepared, "test") if g.relations]
    if args.max_graphs:
        test = test[: args.max_graphs]
    K = args.num_samples
    vrd_diff, vrd_reg = _load(args.vrd_diffusion, "--vrd-diffusion"), _load(args.vrd_regression, "--vrd-regression")
    methods: dict[str, dict] = {}
    samples: dict[str, list] = {}

    def record(name, out, seconds, nfe):
        s = vrd_scores(test, out)
        s.update(seconds=seconds, ms_per_graph=1000 * seconds / (len(test) * K), nfe=nfe)
        methods[name] = s
        samples[name] = out
        log.info("VRD %-18s consistency %.3f  R@0.3 %.3f  R@0.5 %.3f  diversity %.3f  (%.1f s)", name,
                 s["consistency"], s["iou_recall_0.3"], s["iou_recall_0.5"], s["diversity"], seconds)

    record("ground truth", [[g] * K for g in test], 0.0, 0)
    out, sec = _timed(class_mean_prior(train), test, K, args.seed)
    record("class-mean prior", out, sec, 0)
    out, sec = _sample_in_chunks(vrd_reg, test, K, args.seed)
    record("regression", out, sec, 1)
    for name, n, w in configs:
        out, sec = _sample_in_chunks(vrd_diff, test, K, args.seed, num_steps=n, guidance_scale=w)
        record(name, out, sec, vrd_diff.network_evaluations(n, w))
    gt = methods["ground truth"]["consistency"]
    accept = {name: methods[name]["consistency"] > methods["class-mean prior"]["consistency"]
              and methods[name]["consistency"] > methods["regression"]["consistency"]
              and methods[name]["consistency"] >= 0.9 * gt for name, _, _ in configs}

    # ------------------------------------------------------------------ shapes
    shapes_graphs = held_out_graphs(args.shapes_graphs)
    sh_diff, sh_reg = _load(args.shapes_diffusion, "--shapes-diffusion"), _load(args.shapes_regression,
                                                                               "--shapes-regression")
    shapes: dict[str, dict] = {"ground truth": shapes_layout_scores(shapes_graphs)}
    shapes_samples: dict[str, list] = {"ground truth": [[g] for g in shapes_graphs]}
    for name, model, kw in [("regression", sh_reg, {})] + [(c[0], sh_diff, {"num_steps": c[1], "guidance_scale": c[2]})
                                                            for c in configs]:
        out, sec = _sample_in_chunks(model, shapes_graphs, K, args.seed, **kw)
        flat = [lay for per in out for lay in per]
        s = shapes_layout_scores(flat)
        s["ms_per_graph"] = 1000 * sec / len(flat)
        first = shapes_layout_scores([per[0] for per in out])
        s["graph_relation_accuracy_first_sample"] = first["graph_relation_accuracy"]
        shapes[name], shapes_samples[name] = s, out
        log.info("shapes %-16s relations %.4f  graphs %.4f  valid %.4f", name, s["relation_accuracy"],
                 s["graph_relation_accuracy"], s["layout_valid"])

    # ------------------------------------------------------------------ report
    load = _load_average()
    result = {"vrd": {"test_graphs": len(test), "num_samples": K, "prepared": str(prepared),
                      "models": {"diffusion": args.vrd_diffusion, "regression": args.vrd_regression},
                      "methods": methods, "ground_truth_consistency": gt,
                      "acceptance": {"diffusion_beats_prior_and_regression_and_reaches_90pct_of_gt": accept}},
              "shapes": {"graphs": len(shapes_graphs), "num_samples": K,
                         "models": {"diffusion": args.shapes_diffusion, "regression": args.shapes_regression},
                         "methods": shapes},
              "machine": {"threads": args.threads, "load_average": load}}
    lines = [f"# Layout evaluation (scene graph -> boxes)", "",
             f"VRD test: {len(test)} graphs with relations, {K} samples each; boxes predicted from the graph alone. "
             f"Models: diffusion `{args.vrd_diffusion}`, regression `{args.vrd_regression}`. "
             f"{args.threads} thread(s), load average {load}.", "",
             "| method | NFE | predicate consistency | of GT | IoU R@0.3 | IoU R@0.5 | diversity | ms / layout |",
             "|---|---|---|---|---|---|---|---|"]
    for name, s in methods.items():
        lines.append(f"| {name} | {s['nfe']} | {100 * s['consistency']:.1f} % | {100 * s['consistency'] / gt:.0f} % | "
                     f"{100 * s['iou_recall_0.3']:.1f} % | {100 * s['iou_recall_0.5']:.1f} % | {s['diversity']:.3f} | "
                     f"{s['ms_per_graph']:.2f} |")
    preds = sorted(methods["ground truth"]["per_predicate"], key=lambda p: -methods["ground truth"]["per_predicate"][p]["n"])
    lines += ["", "Consistency per predicate (relations scored in the ground truth in brackets):", "",
              "| method | " + " | ".join(f"{p} ({methods['ground truth']['per_predicate'][p]['n']})" for p in preds) + " |",
              "|---|" + "---|" * len(preds)]
    for name, s in methods.items():
        lines.append(f"| {name} | " + " | ".join(f"{100 * s['per_predicate'].get(p, {'consistency': 0})['consistency']:.0f}"
                                                 for p in preds) + " |")
    lines += ["", "Acceptance (diffusion > prior and > regression, and >= 90 % of GT): " +
              ", ".join(f"{n}: {'yes' if ok else 'no'}" for n, ok in accept.items()), "",
              f"## Shapes world ({len(shapes_graphs)} held-out graphs, {K} samples each; the world's rules on pixel boxes)", "",
              "| method | relations hold | graphs with all relations | valid layouts | ms / layout |", "|---|---|---|---|---|"]
    for name, s in shapes.items():
        lines.append(f"| {name} | {100 * s['relation_accuracy']:.2f} % | {100 * s['graph_relation_accuracy']:.2f} % | "
                     f"{100 * s['layout_valid']:.2f} % | {s.get('ms_per_graph', 0):.2f} |")
    table = "\n".join(lines)
    print(table)
    write_results(args.out, result, table)
    _grid(Path(args.out).with_name(Path(args.out).name + "_grid.png"), test, samples, shapes_graphs, shapes_samples,
          args.grid_method if args.grid_method in samples else configs[-1][0])
    return 0


def _load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def _grid(path: Path, test, samples, shapes_graphs, shapes_samples, method: str) -> None:
    """Rows: a few VRD test graphs then a few shapes graphs; columns: ground truth, regression, two samples of
    the diffusion ``method``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from scenegraph_diff.graph.draw import draw_layout

    cols = [("ground truth", 0), ("regression", 0), (method, 0), (method, 1)]
    vrd_rows = [i for i, g in enumerate(test) if 3 <= g.num_objects <= 5][:4] or list(range(min(4, len(test))))
    shape_rows = ([i for i, g in enumerate(shapes_graphs) if g.num_relations >= 2][:3]
                  or list(range(min(3, len(shapes_graphs)))))
    rows = [("vrd", i) for i in vrd_rows] + [("shapes", i) for i in shape_rows]
    fig, axes = plt.subplots(len(rows), len(cols), figsize=(3.2 * len(cols), 3.2 * len(rows)), dpi=80,
                             squeeze=False)
    for r, (world, i) in enumerate(rows):
        src = samples if world == "vrd" else shapes_samples
        for c, (name, k) in enumerate(cols):
            lay = src[name][i][min(k, len(src[name][i]) - 1)]
            title = f"{name}" + (f" #{k + 1}" if name.startswith("diffusion") else "")
            title = title.replace(" + guidance", "\n+ guidance")
            if c == 0:
                title = "; ".join(f"{lay.objects[x.subject].name} {x.predicate} {lay.objects[x.object].name}"
                                  for x in lay.relations[:2])
            draw_layout(lay, title=title, ax=axes[r][c])
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
