from __future__ import annotations

import pytest

from scenegraph_diff.conditioning import align_batch, align_graph, find_span
from scenegraph_diff.graph import SceneGraph
from scenegraph_diff.pipelines.testing import tiny_clip_tokenizer

TOK = tiny_clip_tokenizer()


def _graph(text, objects, relations, spans=True):
    d = {"text": text, "objects": [], "relations": []}
    for name in objects:
        o = {"name": name}
        if spans:
            o["span"] = list(find_span(text, name))
        d["objects"].append(o)
    for s, p, o in relations:
        r = {"subject": s, "predicate": p, "object": o}
        if spans:
            r["span"] = list(find_span(text, p))
        d["relations"].append(r)
    return SceneGraph.from_dict(d)


def test_spans_to_token_positions():
    # <bos> a cat on a dog <eos>: positions 0 1 2 3 4 5 6
    g = _graph("a cat on a dog", ["cat", "dog"], [(0, "on", 1)])
    assert align_graph(g, TOK) == (6, [[2], [5]], [[3]])


def test_word_matching_equals_spans():
    with_spans = _graph("a black cat next to a dog", ["cat", "dog"], [(0, "next to", 1)])
    without = _graph("a black cat next to a dog", ["cat", "dog"], [(0, "next to", 1)], spans=False)
    assert align_graph(with_spans, TOK) == align_graph(without, TOK) == (8, [[3], [7]], [[4, 5]])


def test_repeated_words_are_used_in_order():
    g = _graph("a cat on a cat", ["cat", "cat"], [(0, "on", 1)], spans=False)
    assert align_graph(g, TOK)[1] == [[2], [5]]


def test_multi_piece_word_gets_all_its_tokens():
    g = _graph("a doggy", ["doggy"], [], spans=False)
    eot, objs, _ = align_graph(g, TOK)
    n = len(TOK("doggy", add_special_tokens=False)["input_ids"])
    assert n > 1 and objs == [list(range(2, 2 + n))] and eot == 2 + n


def test_prompt_other_than_graph_text_uses_words():
    g = _graph("a cat on a dog", ["cat", "dog"], [(0, "on", 1)])
    eot, objs, rels = align_graph(g, TOK, prompt="the dog and the cat")
    assert objs == [[5], [2]] and rels == [[]] and eot == 6


def test_truncation():
    g = _graph("a cat on a dog", ["cat", "dog"], [(0, "on", 1)])
    assert align_graph(g, TOK, max_length=5) == (4, [[2], []], [[3]])


def test_batch_index_tensors():
    g1 = _graph("a cat on a dog", ["cat", "dog"], [(0, "on", 1)])
    g2 = _graph("a red ball", ["ball"], [])
    al = align_batch([g1, g2], TOK)
    assert al.eot.tolist() == [6, 4]
    assert al.object_index.tolist() == [[0, 0, 1], [2, 5, 3], [0, 1, 2]]
    assert al.relation_index.tolist() == [[0], [3], [0]]


def test_errors():
    with pytest.raises(ValueError, match="no text"):
        align_graph(SceneGraph.from_dict({"objects": [{"name": "cat"}]}), TOK)
    with pytest.raises(ValueError, match="1 prompts for 2 graphs"):
        align_batch([SceneGraph(), SceneGraph()], TOK, ["x"])


def test_graph_batch_puts_eot_state_on_scene_node():
    import torch

    from scenegraph_diff.conditioning import graph_batch
    from scenegraph_diff.text import HashingEmbedder

    g1 = _graph("a cat on a dog", ["cat", "dog"], [(0, "on", 1)])
    g2 = _graph("a red ball", ["ball"], [])
    al = align_batch([g1, g2], TOK, max_length=10)
    pe = torch.randn(2, 10, 16, generator=torch.Generator().manual_seed(0))
    batch = graph_batch([g1, g2], HashingEmbedder(16), pe, al)
    assert torch.equal(batch["scene"].x, torch.stack([pe[0, 6], pe[1, 4]]))
    assert torch.equal(batch["object"].x, HashingEmbedder(16).embed(["cat", "dog", "ball"]))
    plain = graph_batch([g1, g2], HashingEmbedder(16))  # no prompt: collate's zeros
    assert plain["scene"].x.abs().sum() == 0
    other = graph_batch([g1, g2], HashingEmbedder(8), pe, al)  # width mismatch: zeros, no error
    assert other["scene"].x.abs().sum() == 0
