"""Inference-time relation control and label-free evaluation on the sd-shapes world (issue 21).

For ``--num-graphs`` held-out shapes-world graphs plus the swapped twin of each graph with a relation
(:func:`scenegraph_diff.shapes.evaluation.held_out_graphs` / ``swap_twins``), every method generates one image per
graph from the same per-prompt noise, and the shapes checker scores them (object / relation / swap accuracy):

* ``plain`` — the pipeline as it is (the model's scheduler);
* ``fk1``, ``fk2``, ``fk4``, ``fk8`` — FK steering with K particles, reward = the shapes checker on the decoded
  predicted x0 (``--fk-reward dc``: the Diffusion Classifier's verdicts on it), the stochastic variant of the model's scheduler (``fk1`` is plain sampling with that sampler: the
  baseline of the FK rows, same step count);
* ``composed`` — composed scores, one guided term per relation;
* ``cache2``, ``cache3``, ``cache5`` — DeepCache, deep UNet features refreshed every N steps.

Wall time per image is measured around the generation calls only (one torch thread, the same process), and each
method's ``time_ratio`` is its time over ``plain``'s in the same run. Run for the text-only base (``--model``) and,
with ``--adapter DIR`` (a saved ``SceneGraphPipeline`` folder with a trained graph adapter), graph-conditioned.

The Diffusion Classifier (:func:`scenegraph_diff.evaluation.relation_scores`) is then compared with the checker
on a balanced set: ``rendered`` — each graph's rendered image (the relation holds) and its twin's rendered image
(it does not), both judged against the graph; ``generated`` — the ``plain`` images and their twins' images judged
against their graphs, subsampled so that checker-true and checker-false relations are equally many. The adapter's
classifier uses its graph conditioning; the base's, text. With ``--layout``, the model grounded in layouts (its layout
adapter and layout model, ``generate --conditioning layout``) adds a ``layout`` row (plain sampling) and the
layout-grounded classifier: each candidate scored in layouts of its own graph, a reversed relation in the same
layouts with its two objects' boxes exchanged (:func:`scenegraph_diff.evaluation.diffusion_classifier.candidate_grounding`).

    python benchmarks/inference_time.py --model sd-shapes --layout --out benchmarks/results/inference_time_sd_shapes
    python benchmarks/inference_time.py --model runs/ck3000 --quick    # smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_results  # noqa: E402

from scenegraph_diff.graph import SceneGraph  # noqa: E402
from scenegraph_diff.shapes.evaluation import (  # noqa: E402
    evaluate_generator,
    held_out_graphs,
    pipeline_generator,
    prompt_seed,
    swap_twins,
)

Generate = Callable[[list[SceneGraph]], list[Any]]


def load(folder: str | Path) -> Any:
    """A :class:`SceneGraphPipeline` from a folder or bundled name (progress bars off)."""
    from scenegraph_diff.bundled import resolve_model
    from scenegraph_diff.pipelines import SceneGraphPipeline

    pipe = SceneGraphPipeline.from_pretrained(str(resolve_model(str(folder))))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def settings_of(folder: str | Path) -> dict:
    from scenegraph_diff.bundled import resolve_model

    path = Path(resolve_model(str(folder))) / "scenegraph_diff.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def methods(pipe: Any, call: dict, graph_scale: float, seed: int, fk_ks: list[int],
            intervals: list[int], fk_reward: str = "checker") -> dict[str, Generate]:
    """``name -> generate(graphs) -> images`` for every method, each image seeded by its caption."""
    from scenegraph_diff.guidance.cache import DeepCache
    from scenegraph_diff.guidance.composed import composed_generate
    from scenegraph_diff.guidance.fk import (FKConfig, checker_reward, dc_reward, fk_generate, particle_generators,
                                             stochastic_scheduler)

    graph_kw = {"graph_scale": graph_scale}
    out: dict[str, Generate] = {"plain": pipeline_generator(pipe, seed, with_graphs=True, **graph_kw, **call)}
    scheduler, extra = stochastic_scheduler(pipe.scheduler)
    fk_pipe = type(pipe).from_pipe(pipe, scheduler=scheduler)
    fk_pipe.set_progress_bar_config(disable=True)
    reward = checker_reward if fk_reward == "checker" else dc_reward(fk_pipe, graph_scale=graph_scale)

    def fk(k: int) -> Generate:
        def generate(graphs: list[SceneGraph]) -> list[Any]:
            seeds = [prompt_seed(g.text or "", seed) for g in graphs]
            return fk_generate(fk_pipe, graphs, reward, FKConfig(num_particles=k),
                               particle_generators(seeds, k), **graph_kw, **call, **extra).images
        return generate

    for k in fk_ks:
        out[f"fk{k}"] = fk(k)

    def composed(graphs: list[SceneGraph]) -> list[Any]:
        gens = [torch.Generator().manual_seed(prompt_seed(g.text or "", seed)) for g in graphs]
        return composed_generate(pipe, graphs, gens, graph_scale=graph_scale, **call)

    out["composed"] = composed

    def cached(n: int) -> Generate:
        plain = out["plain"]

        def generate(graphs: list[SceneGraph]) -> list[Any]:
            with DeepCache(pipe.unet, n):
                return plain(graphs)
        return generate

    for n in intervals:
        out[f"cache{n}"] = cached(n)
    return out


def timed(generate: Generate, clock: list[float]) -> Generate:
    def run(graphs: list[SceneGraph]) -> list[Any]:
        t0 = time.perf_counter()
        images = generate(graphs)
        clock[0] += time.perf_counter() - t0
        return images
    return run


def laid_out_generator(pipe: Any, seed: int, **call: Any) -> Generate:
    """``plain`` for a grounded pipeline: every graph gets one layout from the pipeline's layout model, seeded by
    its caption (as ``generate`` does), then the grounded call."""
    plain = pipeline_generator(pipe, seed, with_graphs=True, grounding=True, **call)

    def generate(graphs: list[SceneGraph]) -> list[Any]:
        laid = [pipe.layout_model.sample([g], generator=torch.Generator().manual_seed(prompt_seed(g.text or "", seed + 1)),
                                         resample=True)[0][0] for g in graphs]  # the world's own boxes are not used
        return plain(laid)
    return generate


def dc_agreement(pipe: Any, graphs: list[SceneGraph], images: list[Any], twin_images: list[Any], graph_scale: float,
                 samples: int, seed: int, dc_kwargs: dict | None = None) -> dict[str, Any]:
    """The Diffusion Classifier against the checker on the balanced ``rendered`` and ``generated`` sets."""
    from scenegraph_diff.evaluation.diffusion_classifier import relation_scores
    from scenegraph_diff.shapes import check
    from scenegraph_diff.shapes.world import render

    twins = swap_twins(graphs)
    with_rel = [i for i, _ in twins]
    gen = torch.Generator().manual_seed(seed)
    rendered = [render(graphs[i], gen) for i in with_rel] + [render(t, gen) for _, t in twins]
    judged = [graphs[i] for i in with_rel] * 2
    generated = [images[i] for i in with_rel] + list(twin_images)
    judged_gen = [graphs[i] for i in with_rel] + [t for _, t in twins]
    out: dict[str, Any] = {}
    for name, ims, gs in (("rendered", rendered, judged), ("generated", generated, judged_gen)):
        t0 = time.perf_counter()
        scores = relation_scores(pipe, ims, gs, num_samples=samples, graph_scale=graph_scale,
                                 generator=torch.Generator().manual_seed(seed), **(dc_kwargs or {}))
        seconds = time.perf_counter() - t0
        truth, said = [], []
        for im, g, s in zip(ims, gs, scores):
            truth += list(check(np.asarray(im), g).relations)
            said += [v.holds for v in s]
        truth_a, said_a = np.array(truth, bool), np.array(said, bool)
        pos, neg = np.flatnonzero(truth_a), np.flatnonzero(~truth_a)
        n = min(len(pos), len(neg))
        keep = np.concatenate([pos[:n], neg[:n]])
        out[name] = {"agreement_balanced": float((truth_a[keep] == said_a[keep]).mean()) if n else float("nan"),
                     "balanced_accuracy": float(((said_a[pos]).mean() + (~said_a[neg]).mean()) / 2) if n else float("nan"),
                     "relations": int(2 * n), "checker_true": int(len(pos)), "checker_false": int(len(neg)),
                     "seconds_per_image": seconds / max(len(ims), 1)}
    return out


def run_model(name: str, pipe: Any, graph_scale: float, graphs: list[SceneGraph], call: dict, args: argparse.Namespace,
              fk_ks: list[int], intervals: list[int], grounding_scale: float | None = None) -> dict[str, Any]:
    """Every method on ``pipe`` (text / graph), or — with ``grounding_scale`` — ``plain`` grounded in one layout per
    graph from the pipeline's layout model; then the Diffusion Classifier, grounded in layouts for a grounded model
    (``--dc-layout-samples`` pairs, ``--dc-layouts`` layouts per candidate)."""
    rows: dict[str, Any] = {}
    kept: dict[str, Any] = {}
    if grounding_scale is None:  # the held-out graphs carry the world's boxes: never ground in them
        todo = methods(pipe, {**call, "grounding": False}, graph_scale, args.seed, fk_ks, intervals, args.fk_reward)
        if args.methods:
            todo = {k: v for k, v in todo.items() if k in args.methods or k == "plain"}
        samples, dc_kwargs = args.dc_samples, {"grounding": False}
    else:
        todo = {"plain": laid_out_generator(pipe, args.seed, graph_scale=graph_scale, grounding_scale=grounding_scale,
                                            **call)}
        samples = args.dc_layout_samples
        dc_kwargs = {"grounding": True, "grounding_scale": grounding_scale, "num_layouts": args.dc_layouts}
    for method, generate in todo.items():
        clock = [0.0]
        scores, images, twin_images = evaluate_generator(timed(generate, clock), graphs, batch_size=args.batch_size)
        n = scores.num_graphs + scores.num_twins
        rows[method] = {**{k: v for k, v in scores.as_dict().items()}, "seconds_per_image": clock[0] / n}
        if method == "plain":
            kept = {"images": images, "twin_images": twin_images}
        print(f"  {name} {method}: rel {scores.relation_accuracy:.3f} swap {scores.swap_accuracy:.3f} "
              f"obj {scores.object_accuracy:.3f} {clock[0] / n * 1000:.1f} ms/image", file=sys.stderr, flush=True)
    if args.timing_rounds:  # interleaved re-timing on one batch: medians, robust to a load that drifts
        batch = graphs[:args.batch_size]
        times: dict[str, list[float]] = {m: [] for m in todo}
        for _ in range(args.timing_rounds):
            for method, generate in todo.items():
                t0 = time.perf_counter()
                generate(batch)
                times[method].append((time.perf_counter() - t0) / len(batch))
        for method, ts in times.items():
            rows[method]["seconds_per_image_pass"] = rows[method]["seconds_per_image"]
            rows[method]["seconds_per_image_rounds"] = ts
            rows[method]["seconds_per_image"] = float(np.median(ts))
    base = rows["plain"]["seconds_per_image"]
    for r in rows.values():
        r["time_ratio"] = r["seconds_per_image"] / base
    dc = {} if args.no_dc else dc_agreement(pipe, graphs, kept["images"], kept["twin_images"], graph_scale, samples,
                                            args.seed, dc_kwargs)
    return {"graph_scale": graph_scale, "grounding_scale": grounding_scale, "methods": rows,
            "diffusion_classifier": {k: {**v, "samples": samples, **dc_kwargs} for k, v in dc.items()}}


def table(result: dict[str, Any]) -> str:
    lines = ["| model | method | relation acc | swap acc | object acc | ms / image | time ratio |",
             "|---|---|---|---|---|---|---|"]
    for model, r in result["models"].items():
        for method, m in r["methods"].items():
            lines.append(f"| {model} | {method} | {m['relation_accuracy']:.3f} | {m['swap_accuracy']:.3f} | "
                         f"{m['object_accuracy']:.3f} | {m['seconds_per_image'] * 1000:.1f} | {m['time_ratio']:.2f} |")
    lines += ["", "| model | DC set | conditioning | (t, noise) pairs | agreement (balanced) | relations | ms / image |",
              "|---|---|---|---|---|---|---|"]
    for model, r in result["models"].items():
        for name, d in r["diffusion_classifier"].items():
            how = (f"layout ({d['num_layouts']} layouts, scale {d['grounding_scale']})" if d.get("grounding")
                   else "graph" if r["graph_scale"] else "text")
            lines.append(f"| {model} | {name} | {how} | {d.get('samples', '')} | {d['agreement_balanced']:.3f} | "
                         f"{d['relations']} | {d['seconds_per_image'] * 1000:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="sd-shapes", help="text-only base: folder or bundled name (default sd-shapes)")
    p.add_argument("--adapter", default=None, help="a SceneGraphPipeline folder with a trained graph adapter")
    p.add_argument("--num-graphs", type=int, default=140)
    p.add_argument("--steps", type=int, default=None, help="denoising steps (default: the model's)")
    p.add_argument("--guidance", type=float, default=None, help="guidance scale (default: the model's)")
    p.add_argument("--dc-samples", type=int, default=16, help="Diffusion-Classifier (t, noise) pairs")
    p.add_argument("--layout", action="store_true",
                   help="also the model grounded in layouts (its layout adapter + layout model): plain sampling and "
                        "the layout-grounded Diffusion Classifier")
    p.add_argument("--methods", default=None, metavar="M1,M2,...",
                   help="only these methods (plain always runs), e.g. cache3,cache5 (default: all)")
    p.add_argument("--timing-rounds", type=int, default=0,
                   help="re-time every method this many interleaved rounds on one batch and report the medians "
                        "(default 0: the time of the accuracy pass)")
    p.add_argument("--no-dc", action="store_true", help="skip the Diffusion-Classifier agreement")
    p.add_argument("--no-text", action="store_true", help="skip the text-only base's rows (e.g. with --layout)")
    p.add_argument("--dc-layout-samples", type=int, default=64,
                   help="(t, noise) pairs of the layout-grounded Diffusion Classifier (default 64)")
    p.add_argument("--dc-layouts", type=int, default=8, help="layouts per candidate, grounded classifier (default 8)")
    p.add_argument("--batch-size", type=int, default=32, help="graphs per generation call")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fk-reward", default="checker", choices=["checker", "dc"],
                   help="FK reward: the shapes checker on the decoded x0 (default) or the Diffusion Classifier")
    p.add_argument("--quick", action="store_true", help="smoke run: 14 graphs, K in (2, 4), N in (2, 3)")
    p.add_argument("--out", default="benchmarks/results/inference_time", help="output stem (.json, .md)")
    args = p.parse_args(argv)
    args.methods = [m.strip() for m in args.methods.split(",")] if args.methods else None
    torch.set_num_threads(1)
    if args.quick:
        args.num_graphs = min(args.num_graphs, 14)
        args.dc_samples = min(args.dc_samples, 8)
    fk_ks = [1, 2, 4] if args.quick else [1, 2, 4, 8]
    intervals = [2, 3] if args.quick else [2, 3, 5]
    settings = settings_of(args.model)
    call = {"num_inference_steps": args.steps or int(settings.get("steps", 15)),
            "guidance_scale": args.guidance if args.guidance is not None else float(settings.get("guidance_scale", 4.0))}
    graphs = held_out_graphs(args.num_graphs)
    result: dict[str, Any] = {"model": args.model, "adapter": args.adapter, "num_graphs": args.num_graphs,
                              "call": call, "threads": torch.get_num_threads(),
                              "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "quick": args.quick,
                              "timing_rounds": args.timing_rounds, "load_avg_start": os.getloadavg()[0],
                              "fk_reward": {"checker": "shapes checker on the decoded predicted x0",
                                            "dc": "Diffusion-Classifier verdicts on the decoded predicted x0"}[args.fk_reward],
                              "models": {}}
    if not args.no_text:
        result["models"]["text"] = run_model("text", load(args.model), 0.0, graphs, call, args, fk_ks, intervals)
    if args.adapter:
        pipe = load(args.adapter)
        from scenegraph_diff.evaluation.conditioning import has_graph_adapter

        if not has_graph_adapter(pipe):
            raise SystemExit(f"--adapter {args.adapter}: no trained graph adapter in the folder")
        scale = float(settings_of(args.adapter).get("graph_scale", 0.6))
        result["models"]["graph"] = run_model("graph", pipe, scale, graphs, call, args, fk_ks, intervals)
    if args.layout:
        from scenegraph_diff.layout import load_layout_model

        pipe = load(args.model)
        if not pipe.is_grounded or not settings.get("layout_model"):
            raise SystemExit(f"--layout: {args.model} has no layout adapter / GLIGEN layers or names no layout model")
        pipe.layout_model = load_layout_model(str(settings["layout_model"]))
        result["models"]["layout"] = run_model("layout", pipe, 0.0, graphs, call, args, fk_ks, intervals,
                                               grounding_scale=float(settings.get("grounding_scale", 1.0)))
    result["load_avg_end"] = os.getloadavg()[0]
    text = table(result)
    text += (f"\n\nload average {result['load_avg_start']:.1f} -> {result['load_avg_end']:.1f}; "
             + (f"times: medians of {args.timing_rounds} interleaved rounds on {args.batch_size} graphs"
                if args.timing_rounds else "times: the accuracy pass"))
    print(text)
    write_results(args.out, result, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
