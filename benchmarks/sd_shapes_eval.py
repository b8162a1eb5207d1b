"""sd-shapes benchmark: text-only Stable Diffusion on the shapes world vs graph conditioning, scored by the checker.

For ``--num-graphs`` held-out graphs (1–3 objects, 0–3 relations, cycled strata, a seed no training run uses)
plus the swapped twin of every graph with a relation (``A r B`` -> ``B r A``, re-captioned), each method
generates one image per graph from the *same* per-prompt noise (seeded by the caption), and
:func:`scenegraph_diff.shapes.check` scores it:

* object / relation / graph accuracy on the graphs; swap accuracy (relation accuracy on the twins) and pair
  accuracy (the relation holds for the graph *and* its reverse for the twin: ~25 % when direction is ignored);
* images/s, batched, one torch thread (median of ``--repeats``), and UNet evaluations per image;
* the ratio of each method's images/s to the bundled ``ShapesPipeline`` measured in the same run.

Methods: ``text`` (the sd-shapes model, prompts only), ``shapes`` (the bundled layout-painting reference),
and any ``--method NAME=FOLDER`` (a saved ``SceneGraphPipeline`` folder: graph-conditioned). With
``--curve RUN_DIR`` it instead scores every UNet checkpoint of a ``train-sd-shapes`` run (accuracy against
training minutes; the minutes come from the checkpoints' step and the run's measured seconds per step); with
``--grounding-curve RUN_DIR`` every checkpoint of a ``train-grounding`` run, on oracle layouts.

Outputs: a markdown table on stdout, ``--out/sd_shapes_eval.{json,md}``, ``--out/sd_shapes_samples.png`` (each
row one prompt, each column a method), and with ``--curve`` ``--out/sd_shapes_curve.{json,md,png}``.

    python benchmarks/sd_shapes_eval.py --out benchmarks/results/sd_shapes
    python benchmarks/sd_shapes_eval.py --curve runs/sd_shapes --num-graphs 140 --out benchmarks/results/sd_shapes
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
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
    swap_twins,
)

Generator = Callable[[list[SceneGraph]], list[Any]]


def shapes_generator(pipe: Any, seed: int) -> Generator:
    """The bundled ``ShapesPipeline`` as a ``generate(graphs)`` callable (graphs in, float images out)."""

    def generate(graphs: list[SceneGraph]) -> list[np.ndarray]:
        out = pipe(list(graphs), generator=torch.Generator().manual_seed(seed), batch_size=len(graphs))
        return [np.asarray(im, dtype=np.float32) / 255.0 for im in out.images]

    return generate


def images_per_second(generate: Generator, graphs: list[SceneGraph], repeats: int) -> float:
    """Median images/s of ``generate(graphs)`` over ``repeats`` runs (one batch)."""
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        generate(graphs)
        rates.append(len(graphs) / (time.perf_counter() - t0))
    return statistics.median(rates)


def sample_grid(rows: list[tuple[str, dict[str, np.ndarray]]], path: Path) -> None:
    """A PNG grid: one row per prompt (its text on the left), one column per method."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    methods = list(rows[0][1])
    fig = Figure(figsize=(1.25 * len(methods) + 3.2, 1.25 * len(rows) + 0.4))
    FigureCanvasAgg(fig)
    for r, (prompt, images) in enumerate(rows):
        for c, name in enumerate(methods):
            ax = fig.add_subplot(len(rows), len(methods), r * len(methods) + c + 1)
            ax.imshow(images[name], interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(name, fontsize=6)
            if c == 0:
                ax.set_ylabel("\n".join(prompt[i:i + 34] for i in range(0, len(prompt), 34)), fontsize=5,
                              rotation=0, ha="right", va="center")
    fig.tight_layout()
    fig.savefig(path, dpi=130)


def table(results: list[dict[str, Any]], meta: str) -> str:
    head = ("| method | object | relation | graph | swap | pair | images/s | vs ShapesPipeline | UNet evals/image |\n"
            "|---|---|---|---|---|---|---|---|---|\n")
    body = "".join(
        f"| {r['method']} | {100 * r['object_accuracy']:.1f} % | {100 * r['relation_accuracy']:.1f} % | "
        f"{100 * r['graph_accuracy']:.1f} % | {100 * r['swap_accuracy']:.1f} % | {100 * r['pair_accuracy']:.1f} % | "
        f"{r['images_per_s']:.1f} | {r.get('speed_ratio', float('nan')):.2f}x | {r['unet_evals_per_image']} |\n"
        for r in results)
    return head + body + meta


def curve_table(rows: list[dict[str, Any]], step_label: str, minutes_label: str, minutes_key: str) -> str:
    """Markdown table of a checkpoint curve: step, minutes (``?`` when unknown) and the checker's accuracies."""
    head = (f"| {step_label} | {minutes_label} | object | relation | graph | swap | pair |\n"
            "|---|---|---|---|---|---|---|\n")
    return head + "".join(
        f"| {r['step']} | {r[minutes_key] if r[minutes_key] is not None else '?'} | "
        f"{100 * r['object_accuracy']:.1f} % | {100 * r['relation_accuracy']:.1f} % | {100 * r['graph_accuracy']:.1f} % | "
        f"{100 * r['swap_accuracy']:.1f} % | {100 * r['pair_accuracy']:.1f} % |\n" for r in rows)


def run_curve(args: argparse.Namespace, graphs: list[SceneGraph]) -> int:
    from scenegraph_diff.shapes.sd_shapes import pipeline_from_checkpoint

    run = Path(args.curve)
    info = json.loads((run / "train_info.json").read_text())
    vae_minutes = float(info.get("vae", {}).get("minutes", 0.0))
    ckpts = sorted((run / "unet" / "checkpoints").glob("checkpoint-*"))
    rows = []
    for ck in ckpts:
        step = int(ck.name.split("-")[1])
        state = json.loads((ck / "trainer_state.json").read_text())
        minutes = round(state["train_seconds"] / 60, 1) if "train_seconds" in state else None
        pipe = pipeline_from_checkpoint(run, ck)
        gen = pipeline_generator(pipe, seed=args.seed, num_inference_steps=args.steps, guidance_scale=args.guidance)
        scores, _, _ = evaluate_generator(gen, graphs, batch_size=args.batch_size)
        row = {"checkpoint": ck.name, "step": step, "unet_minutes": minutes, "vae_minutes": vae_minutes,
               **scores.as_dict()}
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    body = curve_table(rows, "UNet step", "minutes (UNet stage)", "unet_minutes")
    meta = (f"\n{len(graphs)} held-out graphs + swapped twins per checkpoint (EMA weights), {args.steps} steps, "
            f"guidance {args.guidance}; VAE stage {vae_minutes:.1f} min before the UNet stage; load average "
            f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs.\n")
    out = Path(args.out)
    write_results(out / "sd_shapes_curve", {"rows": rows, "num_graphs": len(graphs)}, body + meta)
    print(body + meta)
    _plot_curve(rows, out / "sd_shapes_curve.png")
    return 0


def run_adapter_curve(args: argparse.Namespace, graphs: list[SceneGraph]) -> int:
    """Score every checkpoint of a ``train-rectification --save-pipeline`` run (the adapter's accuracy curve)."""
    from scenegraph_diff.conditioning.rectification import Rectifier
    from scenegraph_diff.pipelines import SceneGraphPipeline
    from scenegraph_diff.training import load_weights

    run = Path(args.adapter_curve)
    pipe = SceneGraphPipeline.from_pretrained(run / "pipeline")
    pipe.set_progress_bar_config(disable=True)
    rows = []
    for ck in sorted(run.glob("checkpoint-*")):
        state = json.loads((ck / "trainer_state.json").read_text())
        load_weights(Rectifier(pipe.graph_encoder, pipe.graph_conditioner), ck, ema=False)
        gen = pipeline_generator(pipe, seed=args.seed, with_graphs=True, num_inference_steps=args.steps,
                                 guidance_scale=args.guidance, graph_scale=args.graph_scale)
        scores, _, _ = evaluate_generator(gen, graphs, batch_size=args.batch_size)
        rows.append({"checkpoint": ck.name, "step": int(state["step"]),
                     "unet_minutes": round(state.get("train_seconds", 0.0) / 60, 1), **scores.as_dict()})
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    body = curve_table(rows, "adapter step", "minutes", "unet_minutes")
    meta = (f"\n{run.name}: {len(graphs)} held-out graphs + swapped twins per checkpoint, graph scale "
            f"{args.graph_scale}, {args.steps} steps, guidance {args.guidance}; load average {os.getloadavg()[0]:.1f}.\n")
    out = Path(args.out)
    write_results(out / f"adapter_curve_{run.name}", {"rows": rows, "num_graphs": len(graphs)}, body + meta)
    print(body + meta)
    return 0


def world_layouts(graphs: list[SceneGraph], seed: int) -> list[SceneGraph]:
    """``graphs`` with every unboxed graph given a layout sampled from the shapes world's own rules (rejection
    sampling, seeded per caption): the oracle layout, so that a grounding curve measures the grounding alone."""
    from scenegraph_diff.graph import SceneObject
    from scenegraph_diff.shapes.evaluation import prompt_seed
    from scenegraph_diff.shapes.world import sample_layout

    out = []
    for g in graphs:
        if all(o.box is not None for o in g.objects):
            out.append(g)
            continue
        boxes = sample_layout(g, torch.Generator().manual_seed(prompt_seed(g.text or "", seed + 1)))
        objs = tuple(SceneObject(o.name, o.attributes, box=b.fractions(32)) for o, b in zip(g.objects, boxes))
        out.append(SceneGraph(objs, g.relations, g.text))
    return out


def run_grounding_curve(args: argparse.Namespace, graphs: list[SceneGraph]) -> int:
    """Score every checkpoint of a ``train-grounding`` run with oracle (world-sampled) layouts, text prompt + boxes
    (the grounding's accuracy against training minutes); the first row is the base model without grounding."""
    from scenegraph_diff.bundled import resolve_model
    from scenegraph_diff.conditioning.grounding import gated_unet
    from scenegraph_diff.pipelines import SceneGraphPipeline
    from scenegraph_diff.shapes.evaluation import prompt_seed
    from scenegraph_diff.shapes.sd_shapes_grounding import GroundedUNetForTraining
    from scenegraph_diff.training import load_weights

    run = Path(args.grounding_curve)
    config = json.loads((run / "config.json").read_text())
    pipe = SceneGraphPipeline.from_pretrained(resolve_model(config.get("model", args.model)))
    pipe.set_progress_bar_config(disable=True)
    if config.get("method", "gligen") == "adapter":
        from scenegraph_diff.conditioning.layout_adapter import LayoutAdapterForTraining, make_layout_adapter

        size = int(pipe.unet.config.sample_size * pipe.vae_scale_factor)
        adapter = make_layout_adapter(pipe.unet, pipe.text_encoder.config.hidden_size, pipe.vae_scale_factor)
        wrapper = LayoutAdapterForTraining(pipe.unet, adapter, size)
        pipe.layout_adapter = wrapper.adapter
    else:
        wrapper = GroundedUNetForTraining(gated_unet(pipe.unet, gate_init=float(config.get("gate_init", 0.0))))
        pipe.register_modules(unet=wrapper.unet)

    def generator(grounding: bool):
        def generate(batch: list[SceneGraph]) -> list[np.ndarray]:
            batch = world_layouts(batch, args.seed)
            gens = [torch.Generator().manual_seed(prompt_seed(g.text or "", args.seed)) for g in batch]
            out = pipe([g.text or "" for g in batch], scene_graph=batch, generator=gens, output_type="np",
                       num_inference_steps=args.steps, guidance_scale=args.guidance, graph_scale=0.0,
                       grounding=grounding)
            return list(out.images)
        return generate

    rows = []
    scores, _, _ = evaluate_generator(generator(False), graphs, batch_size=args.batch_size)
    rows.append({"checkpoint": "base (no grounding)", "step": 0, "minutes": 0.0, **scores.as_dict()})
    print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    for ck in sorted((run / "checkpoints").glob("checkpoint-*"), key=lambda c: int(c.name.split("-")[1])):
        state = json.loads((ck / "trainer_state.json").read_text())
        load_weights(wrapper, ck, ema=True)
        scores, _, _ = evaluate_generator(generator(True), graphs, batch_size=args.batch_size)
        rows.append({"checkpoint": ck.name, "step": int(state["step"]),
                     "minutes": round(state.get("train_seconds", 0.0) / 60, 1), **scores.as_dict()})
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    body = curve_table(rows, "grounding step", "minutes", "minutes")
    meta = (f"\n{run.name}: {len(graphs)} held-out graphs + swapped twins per checkpoint (EMA layers), oracle layouts "
            f"(the held-out scenes' own boxes; the twins' sampled by the world's rules), prompt = caption, "
            f"{args.steps} steps, guidance {args.guidance}; step 0 = the base UNet, no grounding; load average "
            f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs.\n")
    out = Path(args.out)
    write_results(out / "grounding_curve", {"rows": rows, "num_graphs": len(graphs)}, body + meta)
    print(body + meta)
    _plot_curve(rows, out / "grounding_curve.png", xlabel="grounding training minutes (base UNet frozen)",
                minutes_key="minutes")
    return 0


def _plot_curve(rows: list[dict[str, Any]], path: Path, xlabel: str | None = None,
                minutes_key: str = "unet_minutes") -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 3.2))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    x = [r[minutes_key] if r[minutes_key] is not None else r["step"] for r in rows]
    for key, label in (("object_accuracy", "object"), ("relation_accuracy", "relation"),
                       ("swap_accuracy", "swap"), ("graph_accuracy", "graph")):
        ax.plot(x, [100 * r[key] for r in rows], marker="o", label=label)
    ax.set_xlabel(xlabel or ("training minutes (UNet stage)" if rows and rows[0][minutes_key] is not None
                             else "UNet step"))
    ax.set_ylabel("checker accuracy (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=130)


def cli_generator(model: str, work: Path, extra: list[str]) -> Generator:
    """``generate(graphs)`` through the command line, as a user runs it: the graphs' captions go into a prompts
    file, ``scenegraph-diff generate --input prompts.txt --out DIR --model MODEL`` parses and draws them, and the
    PNGs come back in order. A prompt the CLI skips (a parse it cannot draw) comes back as a black image."""
    import subprocess

    from PIL import Image

    calls = {"n": 0}

    def generate(graphs: list[SceneGraph]) -> list[np.ndarray]:
        calls["n"] += 1
        folder = work / f"call{calls['n']:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "prompts.txt").write_text("".join((g.text or "") + "\n" for g in graphs), encoding="utf-8")
        cmd = [sys.executable, "-m", "scenegraph_diff.cli", "generate", "--input", str(folder / "prompts.txt"),
               "--out", str(folder / "images"), "--model", model, *extra]
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        if proc.returncode not in (0, 1) or not (folder / "images").is_dir():
            raise RuntimeError(f"generate failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
        out = []
        for i in range(len(graphs)):
            path = folder / "images" / f"{i:05d}.png"
            out.append(np.asarray(Image.open(path), dtype=np.float32) / 255.0 if path.is_file()
                       else np.zeros((32, 32, 3), np.float32))
        return out

    return generate


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="sd-shapes", help="text-only base: bundled name or folder (default sd-shapes)")
    ap.add_argument("--method", action="append", default=[], help="NAME=FOLDER of a SceneGraphPipeline (repeatable)")
    ap.add_argument("--no-shapes", action="store_true", help="skip the ShapesPipeline reference row")
    ap.add_argument("--cli", action="append", default=[],
                    help="NAME=MODEL[:ARGS]: also score `scenegraph-diff generate --input prompts.txt --model MODEL` "
                         "(ARGS: extra CLI arguments, space-separated), parser included (repeatable)")
    ap.add_argument("--curve", default=None, help="score every UNet checkpoint of this train-sd-shapes run instead")
    ap.add_argument("--adapter-curve", default=None,
                    help="score every checkpoint of this train-rectification --save-pipeline run instead")
    ap.add_argument("--grounding-curve", default=None,
                    help="score every checkpoint of this train-grounding run (oracle layouts) instead")
    ap.add_argument("--num-graphs", type=int, default=504)
    ap.add_argument("--steps", type=int, default=None, help="denoising steps (default: the pipeline's DEFAULT_STEPS)")
    ap.add_argument("--guidance", type=float, default=None, help="classifier-free guidance scale (default: DEFAULT_GUIDANCE)")
    ap.add_argument("--graph-scale", type=float, default=1.0, help="graph offset strength of --method rows (default 1.0, "
                                                                   "the training scale)")
    ap.add_argument("--seed-stream", type=int, default=None, help="held-out graph seed (default: the test stream; "
                                                                 "use another one to tune)")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--grid-rows", type=int, default=8)
    ap.add_argument("--out", default="runs/sd_shapes_eval")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from scenegraph_diff.shapes.sd_shapes import DEFAULT_GUIDANCE, DEFAULT_STEPS

    args.steps = DEFAULT_STEPS if args.steps is None else args.steps
    args.guidance = DEFAULT_GUIDANCE if args.guidance is None else args.guidance
    graphs = held_out_graphs(args.num_graphs) if args.seed_stream is None else held_out_graphs(args.num_graphs,
                                                                                               seed=args.seed_stream)
    if args.curve:
        return run_curve(args, graphs)
    if args.adapter_curve:
        return run_adapter_curve(args, graphs)
    if args.grounding_curve:
        return run_grounding_curve(args, graphs)

    from diffusers import StableDiffusionPipeline

    from scenegraph_diff.bundled import resolve_model

    evals = 2 * args.steps if args.guidance > 1 else args.steps
    methods: list[tuple[str, Generator, int]] = []
    base = StableDiffusionPipeline.from_pretrained(resolve_model(args.model))
    base.set_progress_bar_config(disable=True)
    methods.append(("text-only (sd-shapes)", pipeline_generator(base, seed=args.seed, num_inference_steps=args.steps,
                                                                 guidance_scale=args.guidance), evals))
    for spec in args.method:
        name, _, folder = spec.partition("=")
        if not name or not folder:
            print(f"sd_shapes_eval: bad --method {spec!r} (want NAME=FOLDER)", file=sys.stderr)
            return 2
        from scenegraph_diff.pipelines import SceneGraphPipeline

        pipe = SceneGraphPipeline.from_pretrained(folder)
        pipe.set_progress_bar_config(disable=True)
        methods.append((name, pipeline_generator(pipe, seed=args.seed, with_graphs=True, num_inference_steps=args.steps,
                                                 guidance_scale=args.guidance, graph_scale=args.graph_scale), evals))
    for spec in args.cli:
        name, _, rest = spec.partition("=")
        model, _, extra = rest.partition(":")
        if not name or not model:
            print(f"sd_shapes_eval: bad --cli {spec!r} (want NAME=MODEL[:ARGS])", file=sys.stderr)
            return 2
        methods.append((name, cli_generator(model, Path(args.out) / "cli" / name.replace(" ", "_"), extra.split()),
                        evals))
    if not args.no_shapes:
        from scenegraph_diff.shapes.pipeline import DEFAULT_STEPS as SHAPES_STEPS
        from scenegraph_diff.shapes.pipeline import ShapesPipeline, bundled_model_path

        shapes = ShapesPipeline.from_pretrained(bundled_model_path())
        methods.append(("ShapesPipeline (layout painter + repair)", shapes_generator(shapes, args.seed), SHAPES_STEPS))

    twins = swap_twins(graphs)
    show = [i for i, _ in twins][: args.grid_rows // 2] + [i for i in range(len(graphs)) if not graphs[i].relations][:2]
    timing = graphs[: args.batch_size]
    results, grid_rows = [], [(graphs[i].text or "", {}) for i in show]
    twin_rows = [(t.text or "", {}) for _, t in twins[: args.grid_rows - len(show)]]
    for name, gen, n_evals in methods:
        scores, images, twin_images = evaluate_generator(gen, graphs, batch_size=args.batch_size)
        rate = images_per_second(gen, timing, args.repeats)
        row = {"method": name, **scores.as_dict(), "images_per_s": rate, "unet_evals_per_image": n_evals}
        results.append(row)
        for (_, cells), i in zip(grid_rows, show):
            cells[name] = images[i]
        for (_, cells), im in zip(twin_rows, twin_images):
            cells[name] = im
        print(json.dumps(row), file=sys.stderr, flush=True)
    ref = next((r["images_per_s"] for r in results if r["method"].startswith("ShapesPipeline")), None)
    for r in results:
        r["speed_ratio"] = r["images_per_s"] / ref if ref else float("nan")
    meta = (f"\n{len(graphs)} held-out graphs ({sum(len(g.relations) for g in graphs)} relations) + {len(twins)} swapped "
            f"twins; 32x32; one image per graph, per-prompt seeds shared by every method; sd-shapes at "
            f"{args.steps} DPM-Solver++ steps, guidance {args.guidance}; images/s batched ({len(timing)}), torch threads "
            f"= {args.threads}, median of {args.repeats}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs.\n")
    text = table(results, meta)
    print(text)
    out = Path(args.out)
    write_results(out / "sd_shapes_eval", {"results": results, "num_graphs": len(graphs), "num_twins": len(twins),
                                           "steps": args.steps, "guidance": args.guidance, "threads": args.threads,
                                           "loadavg": os.getloadavg()}, text)
    sample_grid(grid_rows + twin_rows, out / "sd_shapes_samples.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
