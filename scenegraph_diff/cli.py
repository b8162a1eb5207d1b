"""The ``scenegraph-diff`` command line.

Only this module reads argv. Each subcommand is a pair of functions: ``_add_<name>(sub)`` registers its
parser and ``_run_<name>(args) -> int`` turns the arguments into library calls. The ``COMMANDS`` registry at
the bottom lists them. Heavy imports happen inside ``_run_*`` so ``--help`` stays instant.

Conventions (DESIGN.md): machine-readable output on stdout or ``--output``; progress bars and messages
on stderr; bad input gives a one-line error and a non-zero exit (2; 1 when some records or prompts were
skipped and reported), never a traceback: :func:`main` turns any failure into one line (``-v`` adds the
traceback of an internal error).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from pathlib import Path
from typing import Callable, NoReturn, Sequence

from . import __version__
from .graph.scene_graph import SceneGraphError

log = logging.getLogger("scenegraph_diff")


class CLIError(Exception):
    """A user error: printed as one line, exit code 2."""


class _ArgumentParser(argparse.ArgumentParser):
    """``argparse`` with a one-line usage error (``PROG: error: MESSAGE (see --help)``), exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {_one_line(message)} (see {self.prog} --help)\n")


def _one_line(message: object) -> str:
    """``message`` as one line: line breaks (and the white space around them) become one space."""
    return re.sub(r"\s*\n\s*", " ", str(message).strip())


def _check_argv_texts(texts: Sequence[str], what: str) -> None:
    """Fail on an argument that was not valid UTF-8 (Python keeps such bytes as lone surrogates)."""
    for i, t in enumerate(texts):
        bad = re.search("[\ud800-\udfff]", t)
        if bad is not None:
            c = ord(bad.group())
            byte = f"byte 0x{c - 0xDC00:02x}" if 0xDC80 <= c <= 0xDCFF else f"U+{c:04X}"
            raise CLIError(f"{what} {i + 1} is not valid UTF-8 ({byte} at character {bad.start()})")


def _set_threads(n: int) -> None:
    """Fix torch's intra-op thread count (benchmarks on a shared box need a stated, fixed count)."""
    if n < 1:
        raise CLIError(f"--threads must be >= 1, got {n}")
    os.environ.setdefault("OMP_NUM_THREADS", str(n))
    import torch

    torch.set_num_threads(n)


def _add_threads(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1; measured fastest on a loaded 2-core box)")


def _add_device(p: argparse.ArgumentParser, default: str, why: str) -> None:
    p.add_argument("--device", default=default, help=f"cpu, cuda, cuda:N or auto (default {default}: {why})")


def _device(value: str) -> str:
    """Check a ``--device`` value (its form, and that CUDA exists when named) before any work; return it."""
    from .devices import resolve_device

    try:
        resolve_device(value, "--device")
    except (ValueError, RuntimeError) as e:
        raise CLIError(str(e)) from None
    return value


def _check_graph_file(path: str) -> Path:
    """The path of an existing SceneGraph JSONL file (an edge-list file from sample-graphs is refused)."""
    from .graph.jsonl import is_edge_list

    p = Path(path)
    if not p.is_file():
        raise CLIError(f"input file not found: {path}")
    if is_edge_list(p):
        raise CLIError(f"{path}: an edge-list JSONL file (from sample-graphs), not SceneGraph JSON "
                       "({num_nodes, edges} per line)")
    return p


def _read_graphs(path: str, errors: list[str] | None = None) -> list:
    from .graph import read_jsonl

    p = _check_graph_file(path)

    def on_error(lineno: int, err: SceneGraphError) -> None:
        if errors is None:
            raise err
        errors.append(str(err))

    return list(read_jsonl(p, on_error=on_error))


# ---------------------------------------------------------------------------------------------- validate
def _add_validate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("validate", help="check a SceneGraph JSONL file; report every bad line",
                       description="Validate SceneGraph JSON v1 lines. Prints 'line N: field: reason' for each bad "
                                   "line (stderr) and a JSON summary (stdout). Exit 1 if any line is bad, 2 if the "
                                   "file is missing or is an edge-list JSONL file (from sample-graphs).")
    p.add_argument("file", help="JSONL file, one SceneGraph JSON per line")


def _run_validate(args: argparse.Namespace) -> int:
    from .graph import iter_jsonl

    _check_graph_file(args.file)
    good = bad = 0
    for _, item in iter_jsonl(args.file):
        if isinstance(item, SceneGraphError):
            bad += 1
            print(str(item), file=sys.stderr)
        else:
            good += 1
    print(json.dumps({"file": args.file, "valid": good, "invalid": bad}))
    return 1 if bad else 0


# ---------------------------------------------------------------------------------------------- draw
def _add_draw(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("draw", help="draw each graph of a JSONL file to PNG",
                       description="Draw scene graphs (objects with attributes, directed labelled relations) to "
                                   "DIR/00000.png, DIR/00001.png, ... in input order. With --layout, draw each graph's "
                                   "layout instead: every object's box on the canvas with its label, relations as "
                                   "labelled arrows from subject to object (every object needs a box: fill them with "
                                   "`scenegraph-diff layout`).")
    p.add_argument("file", help="SceneGraph JSONL file")
    p.add_argument("--layout", action="store_true", help="draw the boxes (layout) instead of the graph")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--limit", type=int, default=None, help="draw at most this many graphs (>= 0)")
    p.add_argument("--dpi", type=int, default=100, help=f"resolution, {_DPI[0]} to {_DPI[1]} (default 100)")


_DPI = (10, 1000)  # below: matplotlib fails; above: a 12x9-inch figure needs gigabytes


def _run_draw(args: argparse.Namespace) -> int:
    if args.limit is not None and args.limit < 0:
        raise CLIError(f"--limit must be >= 0, got {args.limit}")
    if not _DPI[0] <= args.dpi <= _DPI[1]:
        raise CLIError(f"--dpi must be in {_DPI[0]}..{_DPI[1]}, got {args.dpi}")
    from tqdm import tqdm

    from .graph.draw import draw, draw_layout

    graphs = _read_graphs(args.file)
    if args.limit is not None:
        graphs = graphs[: args.limit]
    if args.layout:  # check every graph before drawing any
        for n, g in enumerate(graphs):
            missing = [i for i, o in enumerate(g.objects) if o.box is None]
            if missing:
                raise CLIError(f"graph {n + 1}: objects[{missing[0]}] ({g.objects[missing[0]].name!r}) has no box "
                               "(fill boxes with `scenegraph-diff layout`)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, g in enumerate(tqdm(graphs, desc="draw", unit="graph", file=sys.stderr, disable=len(graphs) < 20)):
        path = out / f"{i:05d}.png"
        (draw_layout if args.layout else draw)(g, path, dpi=args.dpi)
        paths.append(str(path))
    print(json.dumps({"drawn": len(paths), "out": str(out)}))
    return 0


# ---------------------------------------------------------------------------------------------- convert
def _add_convert(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("convert", help="convert between SceneGraph JSONL and networkx GraphML",
                       description="JSONL -> GraphML: writes DIR/00000.graphml, ... (one file per graph). "
                                   "GraphML (files or folders of *.graphml, sorted by name) -> JSONL.")
    p.add_argument("inputs", nargs="+", help="a .jsonl file, or .graphml files / folders")
    p.add_argument("--output", "-o", required=True, help="output folder (to GraphML) or .jsonl file (to JSONL)")


def _run_convert(args: argparse.Namespace) -> int:
    from .graph.nx import read_graphml, write_graphml
    from .graph import write_jsonl

    ins = [Path(x) for x in args.inputs]
    if len(ins) == 1 and ins[0].suffix == ".jsonl":
        out = Path(args.output)
        if out.suffix == ".jsonl" or (out.exists() and not out.is_dir()):
            raise CLIError(f"--output {args.output!r}: JSONL converts to a folder of .graphml files, give a folder "
                           "(GraphML files or folders convert back to a .jsonl file)")
        graphs = _read_graphs(str(ins[0]))
        out.mkdir(parents=True, exist_ok=True)
        for i, g in enumerate(graphs):
            write_graphml(g, out / f"{i:05d}.graphml")
        print(json.dumps({"converted": len(graphs), "to": "graphml", "out": str(out)}))
        return 0
    files: list[Path] = []
    for p in ins:
        if p.is_dir():
            files.extend(sorted(p.glob("*.graphml")))
        elif p.is_file() and p.suffix == ".graphml":
            files.append(p)
        else:
            raise CLIError(f"not a .jsonl file, .graphml file or folder: {p}")
    if not args.output.endswith(".jsonl"):
        raise CLIError(f"--output must be a .jsonl file when converting GraphML, got {args.output}")
    graphs = [read_graphml(f) for f in files]  # a SceneGraphError names the file
    n = write_jsonl(args.output, graphs)
    print(json.dumps({"converted": n, "to": "jsonl", "out": args.output}))
    return 0


# ---------------------------------------------------------------------------------------------- demo
def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="a tour: example graphs -> validation -> HeteroData batch -> encoding -> drawings",
                       description="Load the bundled example graphs, round-trip them through JSON, HeteroData, "
                                   "networkx and the dense form, batch and embed them, and draw them to PNG.")
    p.add_argument("--out", default="out/demo", help="output folder for the drawings and a summary.json")
    _add_device(p, "cpu", "the untrained encoders are tiny")
    _add_threads(p)


def _run_demo(args: argparse.Namespace) -> int:
    device = _device(args.device)
    _set_threads(args.threads)
    from .demo import run_demo

    summary = run_demo(Path(args.out), device=device)
    print(json.dumps(summary, indent=1))
    return 0


# ---------------------------------------------------------------------------------------------- parse
def _add_parse(sub: argparse._SubParsersAction) -> None:
    from .parsing.tokenize import MAX_CHARS

    p = sub.add_parser("parse", help="parse text into scene graphs (SceneGraph JSON v1 lines)",
                       description="Parse texts (arguments, or --input .txt/.jsonl/.csv, UTF-8) into SceneGraph JSON "
                                   "v1, one line per text in input order, on stdout or --output. Only the first "
                                   f"{MAX_CHARS:,} characters of a longer text are parsed (with a warning).")
    p.add_argument("texts", nargs="*", help="texts to parse")
    p.add_argument("--input", "-i", default=None, help=".txt (one per line), .jsonl ({\"text\": ...}) or .csv file")
    p.add_argument("--output", "-o", default=None, help="write JSON lines here instead of stdout")
    p.add_argument("--backend", default="auto", choices=["auto", "learned", "accurate", "rules"],
                   help="auto = learned parser if its weights are bundled, else rules; accurate = fine-tuned "
                        "MiniLM tagger (more accurate, ~6x slower)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--threads", type=int, default=1, help="BLAS threads of the learned / accurate parser (default 1)")


def _run_parse(args: argparse.Namespace) -> int:
    if args.texts and args.input:
        raise CLIError("give texts as arguments or --input, not both")
    if not args.texts and not args.input:
        raise CLIError("nothing to parse: give texts as arguments or --input FILE")
    if args.batch_size < 1:
        raise CLIError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.threads < 1:
        raise CLIError(f"--threads must be >= 1, got {args.threads}")
    from .graph import write_jsonl
    from .parsing import _default_parser, parse_batch

    parser = _default_parser(args.backend)  # torch-free (numpy): no torch import, so no _set_threads
    if hasattr(parser, "num_threads"):
        parser.num_threads = args.threads
    from .parsing.io import read_texts

    try:
        texts = read_texts(args.input) if args.input else list(args.texts)
    except ValueError as e:
        raise CLIError(str(e)) from None
    if not args.input:
        _check_argv_texts(texts, "text")
    graphs = parse_batch(texts, batch_size=args.batch_size, backend=args.backend)
    if args.output:
        write_jsonl(args.output, graphs)
        print(json.dumps({"parsed": len(graphs), "out": args.output}), file=sys.stderr)
    else:
        sys.stdout.write("".join(g.to_json() + "\n" for g in graphs))
    return 0


# ---------------------------------------------------------------------------------------------- preprocess
def _add_preprocess(sub: argparse._SubParsersAction) -> None:
    from .data.preprocess import add_preprocess_arguments

    p = sub.add_parser("preprocess", help="convert VRD / Visual Genome / COCO / FACTUAL / caption corpora to SceneGraph JSONL shards",
                       description="Resumable, sharded conversion of datasets to SceneGraph JSON v1 JSONL shards + vocab.json + "
                                   "manifest.json. Re-run the same command to resume. Exit 1 if malformed records were skipped.")
    add_preprocess_arguments(p)


def _run_preprocess(args: argparse.Namespace) -> int:
    from .data.preprocess import run_preprocess
    from .data.readers import JSONStreamError

    try:
        return run_preprocess(args, command=[os.path.basename(sys.argv[0]), *sys.argv[1:]])
    except (ValueError, FileExistsError, JSONStreamError) as e:
        raise CLIError(str(e)) from None


# ---------------------------------------------------------------------------------------------- generate
def _add_generate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="prompt(s) -> scene graph(s) -> images (bundled offline shapes model)",
                       description="Parse each prompt into a scene graph and generate images from it. Default model: "
                                   "the bundled 32x32 shapes model (offline). Writes DIR/00000.png (DIR/00000_k.png for "
                                   "--num-images > 1), DIR/00000.json (parsed graph) and DIR/graphs.jsonl, in input "
                                   "order; prints a JSON summary on stdout. Every prompt is checked against what the "
                                   "model can draw first: each one it cannot is reported on stderr and skipped (no "
                                   "files), and the exit code is 1.")
    p.add_argument("prompt", nargs="*", help="prompt text(s), one image set per argument (quote each prompt)")
    p.add_argument("--input", help="prompts file: .txt (one per line; blank lines skipped), .jsonl or .csv "
                                   "(instead of PROMPT)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--num-images", type=int, default=1, help="images per prompt (default 1)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--steps", type=int, default=None, help="denoising steps (default: the model's, 2 for shapes)")
    p.add_argument("--model", default=None, help="Stable Diffusion id/folder (SceneGraphPipeline), a saved "
                                                  "ShapesPipeline folder or a bundled model's name (shapes, sd-shapes); "
                                                  "default: the bundled shapes model")
    p.add_argument("--conditioning", default=None, choices=["text", "graph", "layout", "graph+layout"],
                   help="Stable Diffusion models: text (graph scale 0, no grounding = plain StableDiffusionPipeline), "
                        "graph (the folder's trained graph adapter), layout (boxes from a layout model, drawn in by the "
                        "UNet's GLIGEN layers; the boxes go into the graph JSON) or graph+layout; default: the "
                        "strongest the model supports")
    p.add_argument("--layout-model", default=None, metavar="NAME|DIR",
                   help="layout model of --conditioning layout (default: the model's, layout-shapes for sd-shapes)")
    p.add_argument("--grounding-steps-fraction", type=float, default=None, metavar="F",
                   help="scheduled sampling: ground the first fraction F of the steps (default: the model's, 1)")
    p.add_argument("--grounding-scale", type=float, default=None, metavar="S",
                   help="strength of the layout adapter's residuals (default: the model's, 1)")
    p.add_argument("--guidance", type=float, default=None, help="classifier-free guidance scale (default: the model's)")
    p.add_argument("--graph-scale", type=float, default=None, help="graph offset strength w (default: the model's, "
                                                                    "else RRNet's 0.6)")
    p.add_argument("--scale", type=int, default=1, help="nearest-neighbour upscaling of the PNGs (default 1)")
    p.add_argument("--parser", default="auto", help="parser backend: auto, learned or rules (default auto)")
    p.add_argument("--graph-refiner", default=None, metavar="DIR",
                   help="a saved SceneGraphRefiner (e.g. the --model-dir of benchmarks/scene_graph_unconditional.py): "
                        "refine the parsed graphs (SDEdit) before generating")
    p.add_argument("--refine-strength", type=float, default=0.3, help="fraction re-masked by the refiner (default 0.3)")
    p.add_argument("--refine-steps", type=int, default=5, help="refiner network evaluations (default 5)")
    p.add_argument("--fk-particles", type=int, default=1, metavar="K",
                   help="Stable Diffusion models: FK steering with K particles per image, resampled on a reward of the "
                        "predicted image (stochastic sampler; default 1 = off)")
    p.add_argument("--fk-reward", default="checker", choices=["checker", "dc"],
                   help="FK reward: checker (shapes-world checker; default) or dc (Diffusion Classifier verdicts)")
    p.add_argument("--cache-interval", type=int, default=1, metavar="N",
                   help="Stable Diffusion models: DeepCache, the UNet's deep features refreshed every N steps "
                        "(default 1 = off)")
    p.add_argument("--composed", action="store_true",
                   help="Stable Diffusion models: composed scores, one guided term per relation (Composable Diffusion)")
    _add_device(p, "cpu", "bit-reproducible images; the noise is drawn on CPU on every device")
    _add_threads(p)


def _run_generate(args: argparse.Namespace) -> int:
    if args.input and args.prompt:
        raise CLIError("give PROMPT or --input, not both")
    if args.input:
        from .parsing.io import read_texts

        try:
            texts = read_texts(args.input)
        except ValueError as e:
            raise CLIError(str(e)) from None
        where = [f"line {n}" if Path(args.input).suffix.lower() == ".txt" else f"item {n}"
                 for n, t in enumerate(texts, 1) if t.strip()]
        prompts = [t.strip() for t in texts if t.strip()]
        if not prompts:
            raise CLIError(f"no prompts in {args.input}")
    elif args.prompt:
        _check_argv_texts(args.prompt, "prompt")
        prompts = list(args.prompt)  # several arguments are several prompts, as for `parse`
        where = [f"prompt {i}" for i in range(len(prompts))]
    else:
        raise CLIError("no prompt: give PROMPT or --input FILE")
    from .devices import check_device
    from .generation import GenerateConfig, check_prompts, generate

    try:
        check_device(args.device, "--device")  # its form; whether CUDA exists is asked after the prompt check
        config = GenerateConfig(prompts=tuple(prompts), out=args.out, num_images=args.num_images, seed=args.seed,
                                steps=args.steps, model=args.model, scale=args.scale, parser_backend=args.parser,
                                graph_refiner=args.graph_refiner, refine_strength=args.refine_strength,
                                refine_steps=args.refine_steps, device=args.device, conditioning=args.conditioning,
                                layout_model=args.layout_model, grounding_steps_fraction=args.grounding_steps_fraction,
                                grounding_scale=args.grounding_scale, guidance_scale=args.guidance, graph_scale=args.graph_scale,
                                fk_particles=args.fk_particles, fk_reward=args.fk_reward,
                                cache_interval=args.cache_interval, composed=args.composed)
        if args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        # Parse and check every prompt against the model before torch and diffusers are imported (seconds).
        checked = check_prompts(config)
    except ValueError as e:
        raise CLIError(str(e)) from None
    problems = checked[1]
    for i, problem in enumerate(problems):
        if problem is not None:
            text = prompts[i] if len(prompts[i]) <= 60 else prompts[i][:57] + "..."
            print(f"{where[i]} {text!r}: {problem}", file=sys.stderr)
    todo = sum(p is None for p in problems)
    if todo:
        _device(args.device)
        _set_threads(args.threads)
    from tqdm.auto import tqdm

    with tqdm(total=todo, desc="generate", file=sys.stderr, disable=todo < 50) as bar:
        try:
            summary = generate(config, progress=bar.update, on_error="skip", checked=checked)
        except (ValueError, RuntimeError) as e:
            raise CLIError(str(e)) from None
    print(json.dumps(summary))
    return 1 if summary["skipped"] else 0


# ---------------------------------------------------------------------------------------------- score
def _add_score(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("score", help="label-free relation verdicts of images (Diffusion Classifier), a JSON line each",
                       description="Judge every relation of graph i (line i of --graphs) on image i (DIR/00000.png, "
                                   "DIR/00001.png, ... as generate names them; any size) by the model's denoising "
                                   "error under the graph against the graph with that relation reversed, on shared "
                                   "(timestep, noise) pairs. Prints one JSON line per image: {\"image\": "
                                   "\"00000.png\", \"relations\": [{\"subject\", \"predicate\", \"object\", "
                                   "\"holds\", \"margin\"}, ...]}.")
    p.add_argument("--images", required=True, metavar="DIR", help="folder of 00000.png, 00001.png, ...")
    p.add_argument("--graphs", required=True, metavar="FILE", help="SceneGraph JSONL, one graph per image")
    p.add_argument("--model", default="sd-shapes", help="bundled model name, Stable Diffusion folder or hub id "
                                                         "(default sd-shapes)")
    p.add_argument("--conditioning", default=None, choices=["text", "graph", "layout", "graph+layout"],
                   help="text; graph (the folder's trained graph adapter); layout (each candidate grounded in boxes "
                        "from the layout model, a relation's reversal in the same boxes with its two objects "
                        "exchanged); graph+layout. Default: as generate's (layout for the bundled sd-shapes)")
    p.add_argument("--graph-scale", type=float, default=None, help="graph offset strength (default: the model's, 0.6)")
    p.add_argument("--layout-model", default=None, metavar="NAME|DIR",
                   help="layout model for layout conditioning (default: the model's, e.g. layout-shapes)")
    p.add_argument("--grounding-scale", type=float, default=None,
                   help="layout adapter strength (default: the model's grounding_scale, else 1)")
    p.add_argument("--layouts", type=int, default=8, help="layouts per candidate, layout conditioning (default 8)")
    p.add_argument("--samples", type=int, default=None,
                   help="(timestep, noise) pairs per candidate (default 16; 64 with layout conditioning)")
    p.add_argument("--predicates", default=None, metavar="P1,P2,...",
                   help="also compete each relation against these predicates (e.g. 'left of,right of,above,below'); "
                        "default: only its reversal")
    p.add_argument("--seed", type=int, default=0, help="seed of the shared noises (default 0)")
    p.add_argument("--batch-size", type=int, default=16, help="images per batch (default 16)")
    _add_device(p, "cpu", "reproducible scores")
    _add_threads(p)


def _run_score(args: argparse.Namespace) -> int:
    from .generation import image_name, model_settings

    for name in ("samples", "batch_size", "threads", "layouts"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise CLIError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.graph_scale is not None and not args.graph_scale >= 0:
        raise CLIError(f"--graph-scale must be >= 0, got {args.graph_scale}")
    if args.grounding_scale is not None and not args.grounding_scale >= 0:
        raise CLIError(f"--grounding-scale must be >= 0, got {args.grounding_scale}")
    predicates = tuple(p.strip() for p in args.predicates.split(",")) if args.predicates is not None else ()
    if any(not p for p in predicates):
        raise CLIError(f"--predicates {args.predicates!r}: an empty predicate")
    folder = Path(args.images)
    if not folder.is_dir():
        raise CLIError(f"--images {args.images}: not a folder")
    from .graph import read_jsonl

    graphs = list(read_jsonl(_check_graph_file(args.graphs)))
    if not graphs:
        raise CLIError(f"no graphs in {args.graphs}")
    paths = [folder / image_name(i, 0) for i in range(len(graphs))]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise CLIError(f"{len(graphs)} graphs but no image {missing[0]} (line {paths.index(missing[0]) + 1})")
    try:
        settings = model_settings(args.model)
    except ValueError as e:
        raise CLIError(str(e)) from None
    _device(args.device)
    _set_threads(args.threads)
    import numpy as np
    import torch
    from PIL import Image

    from .bundled import resolve_model
    from .evaluation.conditioning import has_graph_adapter
    from .evaluation.diffusion_classifier import relation_scores
    from .pipelines import SceneGraphPipeline

    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()  # stderr carries one line on failure, and the scoring bar
    transformers_logging.disable_progress_bar()
    try:
        source = resolve_model(args.model)
        pipe = SceneGraphPipeline.from_pretrained(str(source)).to(args.device)
    except (OSError, ValueError) as e:
        raise CLIError(f"model {args.model!r}: cannot load a Stable Diffusion pipeline: {_one_line(e)[:300]}") from None
    pipe.set_progress_bar_config(disable=True)
    adapter = has_graph_adapter(pipe)
    layout_name = args.layout_model or settings.get("layout_model")
    groundable = pipe.is_grounded and layout_name is not None
    conditioning = args.conditioning or ("graph+layout" if adapter and groundable else "layout" if groundable
                                         else "graph" if adapter else "text")
    if "graph" in conditioning and not adapter:
        raise CLIError(f"model {args.model!r} has no trained graph adapter: use --conditioning text or layout")
    grounding = "layout" in conditioning
    if grounding and not pipe.is_grounded:
        raise CLIError(f"model {args.model!r} has no box grounding (a layout_adapter/ or grounding/ folder): use "
                       "--conditioning text or graph")
    if grounding and layout_name is None:
        raise CLIError(f"model {args.model!r} names no layout model: pass --layout-model NAME|DIR")
    if grounding:
        from .layout import load_layout_model

        try:
            pipe.layout_model = load_layout_model(str(layout_name))
        except (OSError, ValueError) as e:
            raise CLIError(f"layout model {layout_name!r}: {_one_line(e)[:300]}") from None
    scale = 0.0 if "graph" not in conditioning else (args.graph_scale if args.graph_scale is not None
                                                     else float(settings.get("graph_scale", 0.6)))
    grounding_scale = (args.grounding_scale if args.grounding_scale is not None
                       else float(settings.get("grounding_scale", 1.0)))
    samples = args.samples if args.samples is not None else (64 if grounding else 16)
    from tqdm.auto import tqdm

    for start in tqdm(range(0, len(graphs), args.batch_size), desc="score", file=sys.stderr,
                      disable=len(graphs) < 50):
        chunk = paths[start:start + args.batch_size]
        images = []
        for path in chunk:
            try:
                with Image.open(path) as im:
                    images.append(np.asarray(im.convert("RGB")))
            except OSError as e:
                raise CLIError(f"{path}: not a readable image ({_one_line(e)[:200]})") from None
        scores = relation_scores(pipe, images, graphs[start:start + len(chunk)], num_samples=samples,
                                 generator=torch.Generator().manual_seed(args.seed), graph_scale=scale,
                                 predicates=predicates, grounding=grounding, grounding_scale=grounding_scale,
                                 num_layouts=args.layouts, layout_seed=args.seed)
        for path, verdicts in zip(chunk, scores):
            print(json.dumps({"image": path.name, "relations": [v.as_dict() for v in verdicts]}), flush=True)
    return 0


# ---------------------------------------------------------------------------------------------- train-shapes
def _add_train_shapes(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train-shapes", help="train the shapes-world graph-to-image model (alone or under torchrun)",
                       description="Train a ShapesPipeline (layout head + pixel-space UNet) on scenes sampled on the "
                                   "fly; saves OUTPUT/pipeline (EMA weights). Under torchrun each rank draws its own "
                                   "scenes (data parallel).")
    p.add_argument("--output", default="runs/shapes", help="run folder (default runs/shapes)")
    p.add_argument("--encoder", default="rhgnn", choices=["rhgnn", "hgcn", "text"], help="conditioning (default rhgnn)")
    p.add_argument("--max-steps", type=int, default=4000, help="optimizer steps (default 4000)")
    p.add_argument("--max-minutes", type=float, default=60.0, help="wall-clock budget (default 60)")
    p.add_argument("--batch-size", type=int, default=32, help="scenes per step and rank (default 32)")
    p.add_argument("--lr", type=float, default=2e-3, help="learning rate (default 2e-3)")
    p.add_argument("--pool-size", type=int, default=None, help="draw from a fixed pool of scenes (default: endless)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in OUTPUT")
    _add_device(p, "auto", "CUDA when available, as train-rectification; one GPU per rank under torchrun")
    _add_threads(p)


def _run_train_shapes(args: argparse.Namespace) -> int:
    device = _device(args.device)
    _set_threads(args.threads)
    from .shapes.train import TrainShapesConfig, train_shapes

    try:
        config = TrainShapesConfig(output_dir=args.output, encoder=args.encoder, max_steps=args.max_steps,
                                   max_minutes=args.max_minutes, batch_size=args.batch_size, lr=args.lr,
                                   pool_size=args.pool_size, seed=args.seed, num_threads=args.threads,
                                   device=device)
    except ValueError as e:
        raise CLIError(str(e)) from None
    path = train_shapes(config, resume=args.resume)
    print(json.dumps({"pipeline": str(path)}))
    return 0


# ---------------------------------------------------------------------------------------------- sd-shapes
def _add_train_sd_shapes(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train-sd-shapes", help="train sd-shapes: a small Stable Diffusion on shapes-world captions "
                                               "(alone or under torchrun)",
                       description="Train a complete StableDiffusionPipeline (CLIP-format BPE tokenizer, AutoencoderKL, "
                                   "CLIP text tower + UNet2DConditionModel) text-only on captions of scenes sampled on "
                                   "the fly, with caption dropout for classifier-free guidance. Stages: vae, decoder "
                                   "(fine-tune the decoder, encoder frozen), unet. Saves OUTPUT/pipeline (EMA weights); "
                                   "--export DIR also writes a bundle-ready copy (fp16 UNet/VAE). Resumable; under "
                                   "torchrun each rank draws its own scenes.")
    p.add_argument("--output", default="runs/sd_shapes", help="run folder (default runs/sd_shapes)")
    p.add_argument("--stages", default="vae,decoder,unet", help="comma-separated stages (default vae,decoder,unet)")
    p.add_argument("--data-root", default=None, help="datasets root with factual/train.csv for the tokenizer corpus "
                                                     "(default ../shared/datasets when present)")
    p.add_argument("--unet-minutes", type=float, default=124.0,
                   help="UNet-stage training budget in minutes, over all resumes (default 124; 0 = steps only)")
    p.add_argument("--unet-steps", type=int, default=30000, help="UNet-stage step cap (default 30000)")
    p.add_argument("--vae-steps", type=int, default=1500, help="VAE steps (default 1500)")
    p.add_argument("--decoder-steps", type=int, default=750, help="decoder fine-tuning steps (default 750)")
    p.add_argument("--batch-size", type=int, default=64, help="scenes per UNet step and rank (default 64)")
    p.add_argument("--unet-channels", default="64,128", help="UNet widths (default 64,128)")
    p.add_argument("--text-layers", type=int, default=4, help="text-encoder layers (default 4)")
    p.add_argument("--checkpoint-every", type=int, default=1000, help="UNet steps between checkpoints (default 1000)")
    p.add_argument("--export", default=None, help="also write the trained pipeline, bundle-ready, to this folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue every stage from its newest checkpoint")
    _add_device(p, "auto", "CUDA when available; one GPU per rank under torchrun")
    _add_threads(p)


def _run_train_sd_shapes(args: argparse.Namespace) -> int:
    device = _device(args.device)
    from .shapes.sd_shapes import SDShapesConfig, export_pipeline, train_sd_shapes

    stages = tuple(s.strip() for s in args.stages.split(",") if s.strip())
    try:
        channels = tuple(int(c) for c in args.unet_channels.split(","))
    except ValueError:
        raise CLIError(f"--unet-channels {args.unet_channels!r}: expected comma-separated integers") from None
    _set_threads(args.threads)
    try:
        config = SDShapesConfig(output_dir=args.output, data_root=args.data_root,
                                unet_minutes=args.unet_minutes or None, unet_steps=args.unet_steps,
                                vae_steps=args.vae_steps, decoder_steps=args.decoder_steps, batch_size=args.batch_size,
                                unet_channels=channels, text_layers=args.text_layers,
                                checkpoint_every=args.checkpoint_every, seed=args.seed, num_threads=args.threads,
                                device=device)
        path = train_sd_shapes(config, resume=args.resume, stages=stages)
    except (ValueError, FileNotFoundError) as e:
        raise CLIError(str(e)) from None
    result = {"pipeline": str(path)}
    if args.export and "unet" in stages and os.environ.get("RANK", "0") == "0":
        result["export"] = str(export_pipeline(args.output, args.export))
    print(json.dumps(result))
    return 0


# ---------------------------------------------------------------------------------------------- train-grounding
def _add_train_grounding(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train-grounding", help="train box grounding (layout adapter or GLIGEN) on a frozen sd-shapes "
                                               "(alone or under torchrun)",
                       description="Train box grounding for a trained shapes-world Stable Diffusion folder with its VAE, "
                                   "text encoder and UNet frozen, on rendered scenes (caption + each object's phrase and "
                                   "box). --method adapter (default): a T2I-Adapter reading a layout map of phrase "
                                   "embeddings, added to the UNet's down blocks; writes OUTPUT/layout_adapter. --method "
                                   "gligen: GLIGEN's gated self-attention + position net; writes OUTPUT/grounding. Both "
                                   "are a few MB; --into DIR copies them into a pipeline folder, which "
                                   "SceneGraphPipeline and `generate --conditioning layout` then use. Resumable.")
    p.add_argument("--method", default="adapter", choices=["adapter", "gligen"],
                   help="what to train (default adapter; gligen is position-blind on sd-shapes after 1000 steps, see "
                        "the README)")
    p.add_argument("--model", default="sd-shapes", help="the frozen base: bundled name or folder (default sd-shapes)")
    p.add_argument("--output", default="runs/sd_shapes_grounding", help="run folder (default runs/sd_shapes_grounding)")
    p.add_argument("--minutes", type=float, default=50.0,
                   help="training budget in minutes, over all resumes (default 50; 0 = steps only)")
    p.add_argument("--steps", type=int, default=20000, help="step cap (default 20000)")
    p.add_argument("--batch-size", type=int, default=64, help="scenes per step and rank (default 64)")
    p.add_argument("--lr", type=float, default=5e-4, help="learning rate (default 5e-4)")
    p.add_argument("--gate-init", type=float, default=1.0,
                   help="gligen: initial gates of the fusers (default 1, output layers zeroed instead; 0 = GLIGEN's zero "
                        "gates)")
    p.add_argument("--checkpoint-every", type=int, default=500, help="steps between checkpoints (default 500)")
    p.add_argument("--into", default=None, metavar="DIR",
                   help="also copy the trained layers into this pipeline folder as DIR/layout_adapter or DIR/grounding "
                        "(fp16)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint")
    _add_device(p, "auto", "CUDA when available; one GPU per rank under torchrun")
    _add_threads(p)


def _run_train_grounding(args: argparse.Namespace) -> int:
    device = _device(args.device)
    from .shapes.sd_shapes_grounding import GroundingConfig, export_grounding, train_grounding

    _set_threads(args.threads)
    try:
        config = GroundingConfig(model=args.model, output_dir=args.output, minutes=args.minutes or None,
                                 steps=args.steps, batch_size=args.batch_size, lr=args.lr, gate_init=args.gate_init,
                                 method=args.method, checkpoint_every=args.checkpoint_every, seed=args.seed, num_threads=args.threads,
                                 device=device)
        path = train_grounding(config, resume=args.resume)
        result = {"grounding": str(path)}
        if args.into and os.environ.get("RANK", "0") == "0":
            result["into"] = str(export_grounding(path, args.into))
    except (ValueError, FileNotFoundError) as e:
        raise CLIError(str(e)) from None
    print(json.dumps(result))
    return 0


# ---------------------------------------------------------------------------------------------- models
def _add_models(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the bundled models (name, folder, size, what each was trained on)",
                       description="List the models bundled in the package. Every --model option accepts these names "
                                   "as well as a folder or a hub id.")
    p.add_argument("--json", action="store_true", help="one JSON object per model instead of a table")


def _run_models(args: argparse.Namespace) -> int:
    from .bundled import bundled_models

    models = bundled_models()
    if args.json:
        for m in models:
            print(json.dumps(m.as_dict()))
        return 0
    width = max((len(m.name) for m in models), default=4)
    print(f"{'name':<{width}}  {'size':>8}  {'kind':<20}  folder / description")
    for m in models:
        print(f"{m.name:<{width}}  {m.size_bytes / 2**20:>6.1f}MB  {m.kind:<20}  {m.folder}")
        print(f"{'':<{width}}  {'':>8}  {'':<20}  {m.description}")
    return 0


# ---------------------------------------------------------------------------------------------- layout
_LAYOUT_CHUNK = 256  # graphs per model call (bounds memory; the seeded generator runs through the chunks in order)


def _add_layout(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("layout", help="fill the object boxes of scene graphs with a layout model",
                       description="Read SceneGraph JSONL, give every object a box ([x0, y0, x1, y1] in [0, 1]) and "
                                   "write the same graphs (text, attributes, relations unchanged) as JSONL. Boxes "
                                   "already in the input are kept (the model completes the layout around them) unless "
                                   "--resample. With --num-samples K > 1 each input graph gives K consecutive output "
                                   "lines (line K*i + k is sample k of input graph i). A bad input line stops the "
                                   "command (exit 2) before anything is written.")
    p.add_argument("file", help="SceneGraph JSONL file")
    p.add_argument("-o", "--output", default=None, help="output JSONL (written atomically; default: stdout)")
    p.add_argument("--model", default="layout-shapes", metavar="NAME|DIR",
                   help="bundled layout model (layout-shapes, layout-vrd; see `scenegraph-diff models`) or a folder "
                        "saved by train-layout (default layout-shapes)")
    p.add_argument("--num-samples", type=int, default=1, metavar="K", help="layouts per graph (default 1)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0); the same seed gives the same boxes")
    p.add_argument("--resample", action="store_true", help="ignore the input's boxes and predict every box")
    p.add_argument("--steps", type=int, default=None, help="diffusion models: DDIM steps per layout (1..50; "
                                                           "default: the model's)")
    p.add_argument("--guidance-scale", type=float, default=None, metavar="W",
                   help="diffusion models: relation guidance (1 = none; > 1 doubles the network evaluations per step; "
                        "default: the model's)")
    _add_threads(p)


def _run_layout(args: argparse.Namespace) -> int:
    if args.num_samples < 1:
        raise CLIError(f"--num-samples must be >= 1, got {args.num_samples}")
    if args.seed < 0:
        raise CLIError(f"--seed must be >= 0, got {args.seed}")
    if args.steps is not None and not 1 <= args.steps <= 50:
        raise CLIError(f"--steps must be in 1..50, got {args.steps}")
    graphs = _read_graphs(args.file)
    _set_threads(args.threads)
    import torch
    from tqdm.auto import tqdm

    from .layout import DiffusionLayoutModel, load_layout_model

    try:
        model = load_layout_model(args.model)
    except (FileNotFoundError, ValueError) as e:
        raise CLIError(str(e)) from None
    options = {}
    if args.steps is not None:
        if not isinstance(model, DiffusionLayoutModel):
            raise CLIError(f"--steps: {args.model} is a {type(model).__name__}, which has no sampler steps")
        options["num_steps"] = args.steps
    if args.guidance_scale is not None:
        if not isinstance(model, DiffusionLayoutModel):
            raise CLIError(f"--guidance-scale: {args.model} is a {type(model).__name__}, which has no guidance")
        if not 0 <= args.guidance_scale <= 20:
            raise CLIError(f"--guidance-scale must be in [0, 20], got {args.guidance_scale}")
        options["guidance_scale"] = args.guidance_scale
    generator = torch.Generator().manual_seed(args.seed)
    out = []
    quiet = len(graphs) < 2 * _LAYOUT_CHUNK
    with tqdm(total=len(graphs), desc="layout", unit="graph", file=sys.stderr, disable=quiet) as bar:
        for start in range(0, len(graphs), _LAYOUT_CHUNK):
            chunk = graphs[start:start + _LAYOUT_CHUNK]
            for samples in model.sample(chunk, args.num_samples, generator, args.resample, **options):
                out.extend(samples)
            bar.update(len(chunk))
    from .graph import write_jsonl

    if args.output is None:
        write_jsonl(sys.stdout, out)
    else:
        write_jsonl(args.output, out)
        print(json.dumps({"graphs": len(graphs), "written": len(out), "output": args.output}), file=sys.stderr)
    return 0


def _add_train_layout(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train-layout", help="train a scene graph -> layout model (alone or under torchrun)",
                       description="Train a layout model (regression baseline or box diffusion, HGCN or R-HGNN "
                                   "encoder) on shapes-world scenes or on a folder prepared by `scenegraph-diff "
                                   "preprocess vrd` (its train split). Saves OUTPUT/model (EMA weights; load it with "
                                   "`scenegraph-diff layout --model OUTPUT/model`) and OUTPUT/train_info.json. "
                                   "Resumable; under torchrun each rank draws its own batches (data parallel; gloo on "
                                   "CPU).")
    p.add_argument("--model", default="diffusion", choices=["regression", "diffusion"], help="(default diffusion)")
    p.add_argument("--encoder", default="rhgnn", choices=["hgcn", "rhgnn"], help="graph encoder (default rhgnn)")
    p.add_argument("--data", default="shapes", metavar="shapes|DIR",
                   help="'shapes' (scenes sampled from the shapes world) or a prepared VRD folder (default shapes)")
    p.add_argument("--output", default="runs/layout", help="run folder (default runs/layout)")
    p.add_argument("--max-steps", type=int, default=20000, help="optimizer steps (default 20000)")
    p.add_argument("--max-minutes", type=float, default=15.0, help="wall-clock budget, 0 = steps only (default 15)")
    p.add_argument("--batch-size", type=int, default=64, help="graphs per step and rank (default 64)")
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (default 1e-3)")
    p.add_argument("--weight-decay", type=float, default=0.0, help="AdamW weight decay (default 0)")
    p.add_argument("--dim", type=int, default=64, help="model width (default 64)")
    p.add_argument("--num-layers", type=int, default=2, help="graph layers (default 2)")
    p.add_argument("--attn-layers", type=int, default=1, help="object self-attention layers (default 1)")
    p.add_argument("--dropout", type=float, default=0.0, help="dropout (default 0)")
    p.add_argument("--steps", type=int, default=10, help="diffusion: default DDIM steps of the saved model (default 10)")
    p.add_argument("--guidance-scale", type=float, default=1.0,
                   help="diffusion: default relation guidance of the saved model (default 1 = none)")
    p.add_argument("--relation-drop", type=float, default=0.15,
                   help="diffusion: fraction of training graphs shown without their relations, for guidance "
                        "(default 0.15)")
    p.add_argument("--pool-size", type=int, default=100000, help="shapes: scenes in the training pool (default 100000)")
    p.add_argument("--checkpoint-every", type=int, default=1000, help="steps between checkpoints (default 1000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in OUTPUT")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    _add_device(p, "cpu", "the models are small; one GPU per rank under torchrun with cuda")
    _add_threads(p)


def _run_train_layout(args: argparse.Namespace) -> int:
    device = _device(args.device)
    if args.data != "shapes" and not Path(args.data).is_dir():
        raise CLIError(f"--data {args.data!r}: neither 'shapes' nor a folder (prepare one with "
                       "`scenegraph-diff preprocess vrd -o DIR`)")
    _set_threads(args.threads)
    from .layout.train import TrainLayoutConfig, train_layout

    try:
        config = TrainLayoutConfig(output_dir=args.output, model=args.model, encoder=args.encoder, data=args.data,
                                   max_steps=args.max_steps, max_minutes=args.max_minutes or None,
                                   batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
                                   dim=args.dim, num_layers=args.num_layers, attn_layers=args.attn_layers,
                                   dropout=args.dropout, num_inference_steps=args.steps, pool_size=args.pool_size,
                                   guidance_scale=args.guidance_scale, relation_drop_prob=args.relation_drop,
                                   checkpoint_every=args.checkpoint_every, seed=args.seed, num_threads=args.threads,
                                   device=device, progress=not args.no_progress)
        path = train_layout(config, resume=args.resume)
    except (ValueError, KeyError, FileNotFoundError) as e:
        raise CLIError(str(e).strip("'\"")) from None
    if os.environ.get("RANK", "0") == "0":
        print(json.dumps({"model": str(path), "train_info": str(Path(args.output) / "train_info.json")}))
    return 0


# ---------------------------------------------------------------------------------------------- rectification
def _add_train_rectification(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train-rectification", help="train relation rectification (RRNet) for an SD pipeline",
                       description="Train the scene-graph encoder + conditioner of a SceneGraphPipeline with RRNet's "
                                   "objective on DATA_ROOT/<relation>/index.json folders, or on shapes-world swap "
                                   "pairs rendered on the fly (--data shapes; SD stays frozen). Saves "
                                   "OUTPUT/graph_encoder, OUTPUT/graph_conditioner (safetensors) and OUTPUT/loss.png. "
                                   "Runs alone or under torchrun (DDP).")
    p.add_argument("--data", default="folder", choices=["folder", "shapes"],
                   help="folder: RRNet's <relation>/index.json layout under --data-root; shapes: swap pairs of the "
                        "shapes world rendered on the fly (all four predicates, 1-3 objects, 0-3 relations)")
    p.add_argument("--data-root", default=None, help="folder with <relation>/index.json sub-folders (--data folder)")
    p.add_argument("--eot-only", action="store_true", help="a fresh conditioner writes only RRNet's EOT offset "
                                                           "(default: also per-token offsets on object / relation words)")
    p.add_argument("--min-relations", type=int, default=0, help="--data shapes: scenes with at least this many "
                                                                "relations (default 0)")
    p.add_argument("--save-pipeline", action="store_true", help="also write the whole SceneGraphPipeline to "
                                                                "OUTPUT/pipeline (usable as generate --model)")
    p.add_argument("--relation", action="append", default=None, help="relation folder to use (repeatable; default all)")
    p.add_argument("--model", default="tiny", help="bundled model name (sd-shapes), SD 1.x/2.x pipeline folder or id, or "
                                                   "'tiny' (offline random weights)")
    p.add_argument("--graph-encoder", default=None, help="folder of a pretrained SceneGraphEncoder (default: fresh)")
    p.add_argument("--conv", default="hgcn", choices=["hgcn", "rhgnn"], help="layer of a fresh encoder (default hgcn)")
    p.add_argument("--output", default="runs/rectification", help="run folder (default runs/rectification)")
    p.add_argument("--steps", type=int, default=500, help="optimizer steps (default 500, as RRNet)")
    p.add_argument("--lr", type=float, default=3e-4, help="AdamW learning rate (default 3e-4, as RRNet)")
    p.add_argument("--batch-size", type=int, default=1, help="triples per step and rank (default 1)")
    p.add_argument("--resolution", type=int, default=512, help="image size for VAE encoding (default 512)")
    p.add_argument("--neg-bound", type=float, default=1.0, help="clamp of the swapped-pair MSE (default 1.0)")
    p.add_argument("--timestep-power", type=float, default=1.0, help="p(t) ~ (t+1)^power (default 1: favour large t)")
    p.add_argument("--ema-decay", type=float, default=None, help="EMA of the weights (default off)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in OUTPUT")
    _add_threads(p)


def _run_train_rectification(args: argparse.Namespace) -> int:
    _set_threads(args.threads)
    from .conditioning.rectification import RectificationConfig, RectificationRunConfig, run_rectification

    try:
        objective = RectificationConfig(neg_bound=args.neg_bound, timestep_power=args.timestep_power,
                                        batch_size=args.batch_size, resolution=args.resolution)
        config = RectificationRunConfig(
            data_root=args.data_root, data=args.data, use_tokens=not args.eot_only, min_relations=args.min_relations,
            save_pipeline=args.save_pipeline, output_dir=args.output, model=args.model,
            relations=tuple(args.relation) if args.relation else None, graph_encoder=args.graph_encoder,
            conv=args.conv, max_steps=args.steps, lr=args.lr, ema_decay=args.ema_decay, seed=args.seed,
            device=args.device, num_threads=args.threads, objective=objective)
        result = run_rectification(config, resume=args.resume)
    except (ValueError, FileNotFoundError) as e:
        raise CLIError(str(e)) from None
    print(json.dumps(result))
    return 0



# ---------------------------------------------------------------------------------------------- graph diffusion
def _add_train_graph_diffusion(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train-graph-diffusion", help="train a graph generator (edge / gdss / pard) on a GDSS graph set",
                       description="Train a generic-graph diffusion generator on the train split of a GDSS set "
                                   "(community_small, ego_small, grid, enzymes) and save it (safetensors + JSON).")
    p.add_argument("--dataset", required=True, help="community_small, ego_small, grid or enzymes")
    p.add_argument("--family", default="edge", help="edge (time-conditioned PPGN, few-step; default), gdss or pard")
    p.add_argument("--out", required=True, help="output folder for the trained generator")
    p.add_argument("--steps", type=int, default=2500, help="optimizer steps (default 2500)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--channels", type=int, default=None, help="edge family: PPGN channels (default 32)")
    p.add_argument("--layers", type=int, default=None, help="edge family: PPGN layers (default 4)")
    p.add_argument("--structure-features", action="store_true",
                   help="edge family: self-conditioning + structural features (components, heat kernels) of x̂₀")
    p.add_argument("--data-root", default=None, help="folder holding graphs/<dataset>.jsonl (default ../shared/datasets)")
    _add_device(p, "auto", "CUDA when available; the saved weights do not depend on where they were trained")
    _add_threads(p)


def _run_train_graph_diffusion(args: argparse.Namespace) -> int:
    device = _device(args.device)
    _set_threads(args.threads)
    from .diffusion.data import GRAPH_DATASETS, load_graph_dataset
    from .diffusion.generators import FAMILIES, train_generator

    if args.dataset not in GRAPH_DATASETS:
        raise CLIError(f"--dataset must be one of {', '.join(GRAPH_DATASETS)}, got {args.dataset!r}")
    if args.family not in FAMILIES:
        raise CLIError(f"--family must be one of {', '.join(FAMILIES)}, got {args.family!r}")
    if args.steps < 1 or args.batch_size < 1:
        raise CLIError(f"--steps and --batch-size must be >= 1, got {args.steps}, {args.batch_size}")
    options: dict = {}
    if args.channels is not None:
        options["channels"] = args.channels
    if args.layers is not None:
        options["num_layers"] = args.layers
    if args.structure_features:
        options.update(self_condition=True, structure_features=True)
    if options and args.family != "edge":
        raise CLIError(f"--channels, --layers and --structure-features are options of --family edge, not {args.family}")
    if any(options.get(k, 1) < 1 for k in ("channels", "num_layers")):
        raise CLIError(f"--channels and --layers must be >= 1, got {args.channels}, {args.layers}")
    train, _ = load_graph_dataset(args.dataset, args.data_root)
    gen, info = train_generator(args.family, train, args.steps, args.batch_size, args.threads, args.seed,
                                device=device, **options)
    gen.save_pretrained(args.out)
    (Path(args.out) / "train_info.json").write_text(json.dumps(info, indent=1))
    print(json.dumps({"out": args.out, "family": args.family, "dataset": args.dataset, "device": str(gen.device),
                      "train_seconds": round(info["train_seconds"], 1), "final_loss": info["final_loss"]}))
    return 0


def _add_sample_graphs(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sample-graphs", help="sample graphs from a trained generator to edge-list JSONL",
                       description="Sample graphs from a generator folder written by train-graph-diffusion. Output: an "
                                   'edge-list JSONL file, one {"num_nodes", "edges"} JSON object per line (networks; '
                                   "not SceneGraph JSON: validate/draw/convert refuse it), or SceneGraph JSONL, one "
                                   "SceneGraph JSON v1 per line, for a typed scene-graph model (e.g. "
                                   "runs/factual_typed).")
    p.add_argument("--model", required=True, help="generator folder")
    p.add_argument("--num", type=int, required=True, help="number of graphs")
    p.add_argument("--out", required=True, help="output JSONL file (edge-list JSONL, e.g. edges.jsonl, for networks)")
    p.add_argument("--sampler", default="ddpm", help="ddim, ddpm (default), s4, pc; pard models: steps per block; "
                                                      "ignored for scene-graph models (absorbing diffusion)")
    p.add_argument("--steps", type=int, default=50, help="sampler steps (default 50)")
    p.add_argument("--seed", type=int, default=0)
    _add_device(p, "cpu", "bit-reproducible samples; the noise is drawn on CPU on every device")
    _add_threads(p)


def _run_sample_graphs(args: argparse.Namespace) -> int:
    device = _device(args.device)
    _set_threads(args.threads)
    from .diffusion.generators import SAMPLER_KINDS, load_generator, sample_graphs
    from .graph import atomic_write

    if args.num < 1:
        raise CLIError(f"--num must be >= 1, got {args.num}")
    if args.sampler not in SAMPLER_KINDS:
        raise CLIError(f"--sampler must be one of {', '.join(SAMPLER_KINDS)}, got {args.sampler!r}")
    if args.steps < 1:
        raise CLIError(f"--steps must be >= 1, got {args.steps}")
    gen = load_generator(args.model, device)
    from .diffusion.scene_graph_refiner import SceneGraphRefiner

    if isinstance(gen, SceneGraphRefiner):  # typed scene-graph model: SceneGraph JSON v1 lines
        import torch

        graphs_sg = gen.sample(args.num, num_steps=args.steps, generator=torch.Generator().manual_seed(args.seed))
        text, nfe, num = "".join(g.to_json() + "\n" for g in graphs_sg), args.steps, len(graphs_sg)
    else:
        try:
            graphs, nfe = sample_graphs(gen, args.num, args.sampler, args.steps, args.seed)
        except TypeError as e:
            raise CLIError(str(e)) from e
        text, num = "".join(json.dumps(g) + "\n" for g in graphs), len(graphs)
    atomic_write(args.out, text)
    print(json.dumps({"out": args.out, "num": num, "nfe_per_graph": nfe}))
    return 0


# ---------------------------------------------------------------------------------------------- linkpred
def _add_linkpred(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("linkpred", help="link-prediction sweep from a YAML config (Cora/CiteSeer, IMDB, VRD)",
                       description="Train every model row of CONFIG for every seed (early stopping on validation), "
                                   "write OUT/<row>/seed_<s>.json, then OUT/results.md and OUT/summary.json. "
                                   "Re-running skips finished seeds. Works under torchrun (DDP, gloo).")
    p.add_argument("config", help="YAML config (see benchmarks/linkpred/*.yaml)")
    p.add_argument("--out", default=None, help="output folder (default: runs/linkpred/<config name>)")
    p.add_argument("--data-root", default=None, help="datasets root (default: ../shared/datasets)")
    p.add_argument("--only", nargs="+", default=None, metavar="ROW", help="run only these model rows")
    p.add_argument("--seeds", default=None, help="override the seeds, e.g. 0,1,2")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N or auto (default: the config's device, else cpu)")
    p.add_argument("--jobs", type=int, default=1,
                   help="run this many seeds at a time, one process each with --threads threads (default 1)")
    _add_threads(p)


def _run_linkpred(args: argparse.Namespace) -> int:
    import dataclasses

    import yaml

    from .linkpred.config import LinkPredConfig
    from .linkpred.runner import run_sweep

    path = Path(args.config)
    if not path.is_file():
        raise CLIError(f"config file not found: {args.config}")
    try:
        cfg = LinkPredConfig.from_dict(yaml.safe_load(path.read_text()) or {})
        overrides = {"threads": args.threads}
        if args.seeds is not None:
            overrides["seeds"] = tuple(int(s) for s in args.seeds.split(",") if s.strip())
        if args.device is not None:
            overrides["device"] = args.device
        cfg = dataclasses.replace(cfg, **overrides)
    except (ValueError, TypeError, yaml.YAMLError) as e:
        raise CLIError(f"{path}: {e}".splitlines()[0]) from None
    _set_threads(args.threads)
    out = Path(args.out) if args.out else Path("runs") / "linkpred" / path.stem
    try:
        summary = run_sweep(cfg, out, data_root=args.data_root, progress=not args.no_progress, only=args.only,
                            jobs=args.jobs)
    except ValueError as e:
        raise CLIError(str(e)) from None
    if os.environ.get("RANK", "0") == "0":  # under torchrun only rank 0 reports
        print(json.dumps({"out": str(out), "summary": summary}))
    return 0


# ---------------------------------------------------------------------------------------------- registry
# (name, add_parser, run). Add new subcommands here.
COMMANDS: list[tuple[str, Callable[[argparse._SubParsersAction], None], Callable[[argparse.Namespace], int]]] = [
    ("validate", _add_validate, _run_validate),
    ("draw", _add_draw, _run_draw),
    ("convert", _add_convert, _run_convert),
    ("demo", _add_demo, _run_demo),
    ("parse", _add_parse, _run_parse),
    ("preprocess", _add_preprocess, _run_preprocess),
    ("generate", _add_generate, _run_generate),
    ("score", _add_score, _run_score),
    ("train-shapes", _add_train_shapes, _run_train_shapes),
    ("train-graph-diffusion", _add_train_graph_diffusion, _run_train_graph_diffusion),
    ("sample-graphs", _add_sample_graphs, _run_sample_graphs),
    ("linkpred", _add_linkpred, _run_linkpred),
    ("train-rectification", _add_train_rectification, _run_train_rectification),
    ("train-sd-shapes", _add_train_sd_shapes, _run_train_sd_shapes),
    ("train-grounding", _add_train_grounding, _run_train_grounding),
    ("models", _add_models, _run_models),
    ("layout", _add_layout, _run_layout),
    ("train-layout", _add_train_layout, _run_train_layout),
]


def build_parser() -> argparse.ArgumentParser:
    """The ``scenegraph-diff`` argument parser: one sub-parser per entry of :data:`COMMANDS`."""
    parser = _ArgumentParser(
        prog="scenegraph-diff",
        description="Relation-aware text-to-image generation with scene graphs (PyG + diffusers).",
    )
    parser.add_argument("--version", action="version", version=f"scenegraph-diff {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level on stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for _name, add, _run in COMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``scenegraph-diff`` with ``argv`` (default ``sys.argv[1:]``); return the exit code.

    0: done; 1: some input records or prompts were skipped (each reported on stderr); 2: bad input or
    arguments (one line on stderr); 130: interrupted. Any other failure is reported as one line too
    (``internal error``, exit 1); ``-v`` adds its traceback.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not args.command:
        parser.print_help(sys.stderr)
        return 2
    if not args.verbose:  # third-party warnings (e.g. "requires torchvision") would break the one-line contract
        for var in ("TRANSFORMERS_VERBOSITY", "DIFFUSERS_VERBOSITY", "HF_HUB_VERBOSITY"):
            os.environ.setdefault(var, "error")
    run = {name: r for name, _a, r in COMMANDS}[args.command]
    prefix = f"scenegraph-diff {args.command}"
    try:
        return int(run(args) or 0)
    except (CLIError, SceneGraphError) as e:
        print(f"{prefix}: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prefix}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `scenegraph-diff parse ... | head`
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except OSError as e:  # a missing file, a path through a file, a full disk, no permission, ...
        reason = e.strerror if e.strerror and e.filename is not None else str(e)
        where = f"{e.filename}: " if e.filename is not None and str(e.filename) not in reason else ""
        print(f"{prefix}: error: {_one_line(where + reason)}", file=sys.stderr)
        return 2
    except MemoryError:
        print(f"{prefix}: error: out of memory", file=sys.stderr)
        return 1
    except Exception as e:  # a bug: still one line (and the traceback with -v)
        if args.verbose:
            import traceback

            traceback.print_exc()
        print(f"{prefix}: internal error ({type(e).__name__}: {_one_line(e)[:300]}); please report it "
              "(-v shows the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
