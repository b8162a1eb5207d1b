"""The datasets/ scripts as users run them: SIGKILL + re-run gives byte-identical output, exit codes."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FIX = REPO / "tests" / "fixtures" / "datasets"
STANDIN = REPO / "tests" / "data"


def env(**extra):
    e = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([str(REPO), str(STANDIN)]))
    e.update(extra)
    return e


def script(name, *args, **kw):
    return subprocess.run([sys.executable, str(REPO / "datasets" / name), *map(str, args)], capture_output=True,
                          text=True, env=env(**kw), timeout=300)


def tree(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def run_twice_with_kills(tmp_path, name, args, rng, **kw):
    """The same command (relative ``-o out``) run uninterrupted in ``ref/`` and killed + re-run in ``run/``."""
    cmd = [sys.executable, str(REPO / "datasets" / name), *map(str, args), "-o", "out"]
    (tmp_path / "ref").mkdir()
    (tmp_path / "run").mkdir()
    ref = subprocess.run(cmd, env=env(), cwd=tmp_path / "ref", capture_output=True, text=True, timeout=300)
    out = tmp_path / "run" / "out"
    kills = 0
    for _ in range(2):
        proc = subprocess.Popen(cmd, env=env(**kw), cwd=tmp_path / "run", stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 120  # kill at a random moment after the first committed chunk
        while not (out / ".progress.json").exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.4))
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            kills += not (out / "manifest.json").exists()
        proc.wait()
    assert kills >= 1, "the run finished before it could be killed"
    final = subprocess.run(cmd, env=env(), cwd=tmp_path / "run", capture_output=True, text=True, timeout=300)
    assert final.returncode == ref.returncode, final.stderr
    assert tree(out) == tree(tmp_path / "ref" / "out")
    return ref, out


def test_parse_captions_sigkill_resume_is_byte_identical(tmp_path):
    src = tmp_path / "corpus.txt"
    lines = [f"a thing{i} on a mat{i % 7}" if i % 97 else "" for i in range(1500)]  # blank lines are skipped
    src.write_text("\n".join(lines) + "\n")
    args = [src, "--parse-fn", "standin_parser:parse_batch", "--chunk-size", "50", "--batch-size", "25",
            "--no-progress", "--workers", "2"]
    ref, out = run_twice_with_kills(tmp_path, "parse_captions.py", args, random.Random(7), STANDIN_DELAY="0.0015")
    assert ref.returncode == 1, ref.stderr  # the blank lines were skipped and reported
    n = sum(1 for f in (out / "all").glob("*.jsonl") for _ in f.open())
    assert n == 1500 - 16  # no record lost or duplicated (16 blank lines skipped)
    assert (out / "skipped.txt").read_text().splitlines()[0] == "corpus.txt:1: empty text"


def test_prepare_visual_genome_sigkill_resume_is_byte_identical(tmp_path):
    sys.path.insert(0, str(REPO))
    from scenegraph_diff.data.synthetic import write_synthetic_vg

    counts = write_synthetic_vg(tmp_path / "vg", num_images=600, seed=1)
    args = ["--data-root", tmp_path / "vg", "--chunk-size", "15", "--min-object-instances", "30",
            "--min-attribute-instances", "30", "--min-relationship-instances", "30", "--no-progress"]
    ref, out = run_twice_with_kills(tmp_path, "prepare_visual_genome.py", args, random.Random(3))
    assert ref.returncode == 0, ref.stderr
    m = json.loads((out / "manifest.json").read_text())
    assert m["records_in"] == counts["images"] == 600
    assert sum(s["graphs"] for s in m["splits"].values()) + sum(m["filtered"].values()) == 600


@pytest.mark.parametrize("name", ["prepare_vrd.py", "prepare_visual_genome.py", "prepare_coco.py",
                                  "prepare_factual.py", "parse_captions.py"])
def test_help(name):
    r = script(name, "--help")
    assert r.returncode == 0 and "--output" in r.stdout


def test_exit_codes_and_reports(tmp_path):
    bad = script("prepare_factual.py", "--data-root", FIX / "factual", "-o", tmp_path / "f", "--no-progress")
    assert bad.returncode == 1
    assert "train.csv:5: scene_graph[0]: expected ( n ) or ( s , p , o )" in bad.stderr
    assert "skipped: 4" in bad.stderr
    ok = script("prepare_factual.py", "--data-root", FIX / "factual", "--splits", "dev", "-o", tmp_path / "d",
                "--no-progress", "--chunk-size", "1")
    assert ok.returncode == 1  # dev.csv has an empty caption
    good_dir = tmp_path / "good"
    good_dir.mkdir()
    (good_dir / "train.csv").write_text('image_id,region_id,caption,scene_graph\n1,2,a cat,"( cat )"\n')
    good = script("prepare_factual.py", "--data-root", good_dir, "--splits", "train", "-o", tmp_path / "g", "--no-progress")
    assert good.returncode == 0, good.stderr
    missing = script("prepare_vrd.py", "--data-root", tmp_path / "nope", "-o", tmp_path / "v")
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and "not found" in missing.stderr
    other = script("prepare_factual.py", "--data-root", good_dir, "--splits", "train", "-o", tmp_path / "g",
                   "--vocab-min-count", "2", "--no-progress")
    assert other.returncode == 2 and "other settings" in other.stderr


def test_json_syntax_error_is_fatal_with_file_and_line(tmp_path):
    (tmp_path / "relationships.json").write_text('[{"image_id": 1, "relationships": []},\n{"image_id": 2,,}]')
    r = script("prepare_visual_genome.py", "--data-root", tmp_path, "-o", tmp_path / "out", "--no-progress")
    assert r.returncode == 2 and "relationships.json:2: invalid JSON" in r.stderr
