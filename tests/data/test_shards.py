"""Resumable sharded output (scenegraph_diff.data.shards)."""

from __future__ import annotations

import hashlib
import json

import pytest

from scenegraph_diff.data.readers import Record, iter_lines
from scenegraph_diff.data.shards import (
    Outcome,
    ShardWriter,
    iter_manifest_graphs,
    load_manifest,
    run_job,
)
from scenegraph_diff.graph import SceneGraph


def convert_words(batch: list[Record]) -> list[Outcome]:
    """Top level (picklable): 'x y' -> graph x -y-> ..., 'bad' lines skipped, 'drop' lines filtered."""
    out = []
    for rec in batch:
        if rec.value == "bad":
            out.append(Outcome.skip("in.txt", rec.line, "bad word"))
        elif rec.value == "drop":
            out.append(Outcome(filtered="dropped"))
        else:
            split = "odd" if rec.index % 2 else "even"
            out.append(Outcome.of(split, str(rec.line), SceneGraph.from_triplets([], objects=rec.value.split()), extra=1))
    return out


def corpus(tmp_path, n=23):
    words = [("bad" if i == 5 else "drop" if i == 8 else f"w{i} v{i}") for i in range(n)]
    p = tmp_path / "in.txt"
    p.write_text("\n".join(words) + "\n")
    return p


def run(tmp_path, out, workers=1, chunk=4, batch=3, keep=None):
    src = corpus(tmp_path)
    w = ShardWriter(out, "toy", {"chunk": chunk}, ["toy", "cmd"])
    run_job(w, iter_lines(src, w.position), convert_words, chunk_size=chunk, batch_size=batch, workers=workers,
            keep=keep, progress=False)
    w.finish()
    return w


def tree(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_layout_counts_and_checksums(tmp_path):
    w = run(tmp_path, tmp_path / "out")
    m = load_manifest(tmp_path / "out")
    assert m["records_in"] == 23 and m["skipped"] == 1 and m["filtered"] == {"dropped": 1}
    assert m["splits"]["even"]["graphs"] + m["splits"]["odd"]["graphs"] == 21
    assert m["stats"] == {"extra": 21}
    assert m["command"] == ["toy", "cmd"] and m["settings"] == {"chunk": 4}
    for split in m["splits"].values():
        for s in split["shards"]:
            data = (tmp_path / "out" / s["path"]).read_bytes()
            assert hashlib.sha256(data).hexdigest() == s["sha256"] and data.count(b"\n") == s["graphs"]
    assert (tmp_path / "out" / "skipped.txt").read_text() == "in.txt:6: bad word\n"
    ids_graphs = list(iter_manifest_graphs(tmp_path / "out", "odd", verify=True))
    assert [i for i, _ in ids_graphs][:2] == ["2", "4"] and ids_graphs[0][1].objects[0].name == "w1"
    assert not (tmp_path / "out" / ".progress.json").exists()
    assert json.loads((tmp_path / "out" / "vocab.json").read_text())["objects"][:2] == ["v0", "v1"]
    assert w.complete


def test_workers_do_not_change_the_output(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    run(tmp_path, a, workers=1)
    run(tmp_path, b, workers=2)
    assert tree(a) == tree(b)


def test_resume_after_partial_run_is_byte_identical(tmp_path):
    ref = tmp_path / "ref"
    run(tmp_path, ref)
    out = tmp_path / "out"
    src = corpus(tmp_path)
    w = ShardWriter(out, "toy", {"chunk": 4}, ["toy", "cmd"])
    recs = list(iter_lines(src))
    w.commit_chunk(convert_words(recs[:4]), 4, recs[3].position)
    (out / "even" / "part-00001.jsonl").write_text("stale from a killed run\n")  # shard of an uncommitted chunk
    (out / ".part-00001.jsonl.x.tmp").write_text("torn")
    w2 = ShardWriter(out, "toy", {"chunk": 4}, ["toy", "cmd"])
    assert w2.chunks == 1 and w2.records == 4
    assert not (out / "even" / "part-00001.jsonl").exists() and not (out / ".part-00001.jsonl.x.tmp").exists()
    run(tmp_path, out)
    assert tree(out) == tree(ref)


def test_finished_run_is_not_redone_and_other_settings_refused(tmp_path):
    run(tmp_path, tmp_path / "out")
    before = tree(tmp_path / "out")
    assert ShardWriter(tmp_path / "out", "toy", {"chunk": 4}, ["other"]).complete
    assert tree(tmp_path / "out") == before
    with pytest.raises(FileExistsError, match="other settings"):
        ShardWriter(tmp_path / "out", "toy", {"chunk": 5}, [])
    w = ShardWriter(tmp_path / "out", "toy", {"chunk": 5}, [], overwrite=True)
    assert w.chunks == 0 and not list((tmp_path / "out").rglob("part-*"))


def test_keep_filters_records_for_shard_i_of_n(tmp_path):
    w = run(tmp_path, tmp_path / "out", keep=lambda r: r.index % 3 == 1)
    lines = [i for i, _ in iter_manifest_graphs(tmp_path / "out")]
    assert sorted(int(x) for x in lines) == [i + 1 for i in range(23) if i % 3 == 1 and i not in (5, 8)]
    assert w.manifest["records_in"] == 23


def test_verify_detects_corruption(tmp_path):
    run(tmp_path, tmp_path / "out")
    m = load_manifest(tmp_path / "out")
    path = tmp_path / "out" / m["splits"]["even"]["shards"][0]["path"]
    path.write_text(path.read_text().replace("w0", "w9"))
    with pytest.raises(ValueError, match="does not match the manifest"):
        list(iter_manifest_graphs(tmp_path / "out", verify=True))
    with pytest.raises(KeyError, match="split 'nope'"):
        list(iter_manifest_graphs(tmp_path / "out", "nope"))


def test_vocab_from_label_counts_equals_vocab_from_graphs(tmp_path):
    from scenegraph_diff.graph import Vocabulary

    run(tmp_path, tmp_path / "out")
    graphs = [g for _, g in iter_manifest_graphs(tmp_path / "out")]
    assert Vocabulary.load(tmp_path / "out" / "vocab.json") == Vocabulary.from_graphs(graphs)


def convert_pid(batch: list[Record]) -> list[Outcome]:
    """Top level (picklable): which process converted the batch."""
    import os
    import time

    time.sleep(0.002)
    return [Outcome(filtered=str(os.getpid()), id=str(rec.index)) for rec in batch]


def test_pool_and_this_process_share_the_work_in_order(tmp_path):
    import multiprocessing as mp
    import os

    from scenegraph_diff.data.shards import _batches, _pooled

    src = corpus(tmp_path, n=120)
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    with ctx.Pool(2) as pool:
        out = list(_pooled(_batches(iter_lines(src), 10, 2, None), convert_pid, pool, workers=3))
    ids = [int(o.id) for _, outs in out for o in outs]
    assert ids == list(range(120))  # input order, nothing lost or repeated
    assert [m[2] for m, _ in out].count(True) == 12  # chunk ends kept with their batches
    pids = {o.filtered for _, outs in out for o in outs}
    assert str(os.getpid()) in pids and len(pids) >= 2  # this process converts too


def _partial(tmp_path, out, chunks):
    """A run killed after committing ``chunks`` chunks of 4 records."""
    recs = list(iter_lines(corpus(tmp_path)))
    w = ShardWriter(out, "toy", {"chunk": 4}, ["toy", "cmd"])
    for k in range(chunks):
        part = recs[4 * k : 4 * k + 4]
        w.commit_chunk(convert_words(part), len(part), part[-1].position)
    return w


@pytest.mark.parametrize("damage", ["truncate", "edit", "delete", "ids"])
def test_resume_redoes_a_shard_changed_after_it_was_committed(tmp_path, caplog, damage):
    """A committed shard whose sha256 no longer matches is redone (with a warning), with every later chunk."""
    ref = tmp_path / "ref"
    run(tmp_path, ref)
    out = tmp_path / "out"
    _partial(tmp_path, out, chunks=4)
    shard = out / ("odd/part-00001.ids" if damage == "ids" else "odd/part-00001.jsonl")
    if damage == "truncate":
        shard.write_bytes(shard.read_bytes()[:-7])
    elif damage == "edit":
        shard.write_text(shard.read_text().replace("w7", "w8"))
    else:
        shard.unlink() if damage == "delete" else shard.write_text("9\n9\n")
    with caplog.at_level("WARNING", logger="scenegraph_diff.data.shards"):
        w = ShardWriter(out, "toy", {"chunk": 4}, ["toy", "cmd"])
    assert w.chunks == 1 and w.records == 4  # back to the start of chunk 1
    assert any(str(shard) in r.getMessage() and "redoing" in r.getMessage() for r in caplog.records)
    assert not (out / "even/part-00003.jsonl").exists()  # later chunks are redone too
    run(tmp_path, out)
    assert tree(out) == tree(ref)


def test_resume_keeps_label_counts_and_skips_of_the_chunks_it_keeps(tmp_path):
    ref = tmp_path / "ref"
    run(tmp_path, ref)
    out = tmp_path / "out"
    _partial(tmp_path, out, chunks=3)  # chunk 1 holds the skipped record (line 6)
    shard = out / "even/part-00002.jsonl"
    shard.write_text("")
    w = ShardWriter(out, "toy", {"chunk": 4}, ["toy", "cmd"])
    assert w.chunks == 2 and w.state["skipped"] == ["in.txt:6: bad word"]
    run(tmp_path, out)
    assert tree(out) == tree(ref)


def test_rerun_of_a_finished_run_redoes_a_truncated_shard(tmp_path, caplog):
    ref = tmp_path / "ref"
    run(tmp_path, ref)
    out = tmp_path / "out"
    run(tmp_path, out)
    shard = out / "even/part-00002.jsonl"
    shard.write_bytes(shard.read_bytes()[:-3])
    with caplog.at_level("WARNING", logger="scenegraph_diff.data.shards"):
        w = ShardWriter(out, "toy", {"chunk": 4}, ["toy", "cmd"])
    assert not w.complete
    assert any(str(shard) in r.getMessage() for r in caplog.records)
    run(tmp_path, out)
    assert tree(out) == tree(ref)
    assert ShardWriter(out, "toy", {"chunk": 4}, ["toy", "cmd"]).complete  # intact now: not redone
