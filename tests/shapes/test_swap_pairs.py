"""Swap-pair data for relation rectification (scenegraph_diff.shapes.swap_pairs)."""

import numpy as np
import pytest
import torch

from scenegraph_diff.shapes import check
from scenegraph_diff.shapes.swap_pairs import SwapPairStream, swap_pair_images
from scenegraph_diff.shapes.world import sample_scene


def scenes(n, seed=0, **kw):
    g = torch.Generator().manual_seed(seed)
    return [sample_scene(g, 32, **kw) for _ in range(n)]


def test_positive_satisfies_the_graph_and_negative_its_reverse():
    graphs = scenes(12, num_objects=3, num_relations=2)
    pos, neg, has = swap_pair_images(graphs, torch.Generator().manual_seed(1))
    assert pos.shape == neg.shape == (12, 32, 32, 3) and all(has)
    for g, p, n in zip(graphs, pos, neg):
        assert check(p, g).all_correct
        assert check(n, g.swapped()).all_correct
        assert not any(check(n, g).relations)  # every named relation is reversed in the negative


def test_graphs_without_relations_have_no_negative():
    graphs = scenes(3, num_objects=1)
    pos, neg, has = swap_pair_images(graphs, torch.Generator().manual_seed(1))
    assert has == [False] * 3 and np.array_equal(pos, neg)


@pytest.fixture(scope="module")
def pipe():
    from scenegraph_diff.pipelines import SceneGraphPipeline
    from scenegraph_diff.pipelines.testing import tiny_sd_components

    return SceneGraphPipeline(**tiny_sd_components())


def test_stream_batch_matches_the_rectification_step(pipe):
    from scenegraph_diff.conditioning.rectification import RectificationConfig, Rectifier, rectification_step

    stream = SwapPairStream(pipe, batch_size=4)
    batch = stream(0, torch.Generator().manual_seed(0))
    assert batch["positive"].shape == (4, 4, 16, 16) and batch["prompt_embeds"].shape[0] == 4
    assert batch["negative_mask"].dtype == torch.bool
    again = stream(0, torch.Generator().manual_seed(0))
    assert torch.equal(batch["positive"], again["positive"]) and torch.equal(batch["negative"], again["negative"])
    step = rectification_step(pipe.unet, pipe.scheduler, RectificationConfig())
    out = step(Rectifier(pipe.graph_encoder, pipe.graph_conditioner), batch, torch.Generator().manual_seed(0))
    assert torch.isfinite(out["loss"])


def test_min_relations_filters_scenes(pipe):
    stream = SwapPairStream(pipe, batch_size=6, min_relations=1)
    assert bool(stream(0, torch.Generator().manual_seed(3))["negative_mask"].all())


def test_masked_negative_term_ignores_examples_without_a_twin(pipe):
    from scenegraph_diff.conditioning.rectification import RectificationConfig, Rectifier, rectification_step

    batch = SwapPairStream(pipe, batch_size=4)(0, torch.Generator().manual_seed(0))
    step = rectification_step(pipe.unet, pipe.scheduler, RectificationConfig(pos_weight=0.0, neg_weight=1.0))
    model = Rectifier(pipe.graph_encoder, pipe.graph_conditioner)
    none = dict(batch, negative_mask=torch.zeros(4, dtype=torch.bool))
    assert step(model, none, torch.Generator().manual_seed(0))["loss"].item() == 0.0
    some = dict(batch, negative_mask=torch.tensor([True, False, False, False]))
    assert step(model, some, torch.Generator().manual_seed(0))["loss"].item() < 0.0


def test_bad_arguments_name_the_value(pipe):
    with pytest.raises(ValueError, match="batch_size"):
        SwapPairStream(pipe, batch_size=0)
    with pytest.raises(ValueError, match="min_relations"):
        SwapPairStream(pipe, batch_size=2, min_relations=4)


@pytest.mark.parametrize("use_tokens", [True, False])
def test_run_rectification_on_shapes_swap_pairs(tmp_path, use_tokens):
    from scenegraph_diff.conditioning.rectification import (
        RectificationConfig,
        RectificationRunConfig,
        run_rectification,
    )
    from scenegraph_diff.conditioning import GraphConditioner

    cfg = RectificationRunConfig(data="shapes", model="tiny", output_dir=str(tmp_path), max_steps=2,
                                 checkpoint_every=None, device="cpu", progress=False, use_tokens=use_tokens,
                                 objective=RectificationConfig(batch_size=2))
    result = run_rectification(cfg)
    assert result["steps"] == 2
    cond = GraphConditioner.from_pretrained(result["graph_conditioner"])
    assert (cond.proj_token is not None) == use_tokens
    assert not cond.is_identity  # the gates moved


def test_folder_data_needs_a_root():
    from scenegraph_diff.conditioning.rectification import RectificationRunConfig

    with pytest.raises(ValueError, match="data_root"):
        RectificationRunConfig(data="folder")
    with pytest.raises(ValueError, match="data must be"):
        RectificationRunConfig(data="pictures")


def test_cli_trains_an_adapter_on_shapes_swap_pairs(tmp_path, capsys):
    import json

    from scenegraph_diff.cli import main

    rc = main(["train-rectification", "--data", "shapes", "--model", "tiny", "--output", str(tmp_path), "--steps", "1",
               "--batch-size", "2", "--eot-only", "--save-pipeline", "--device", "cpu"])
    assert rc == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    from scenegraph_diff.conditioning import GraphConditioner

    assert GraphConditioner.from_pretrained(result["graph_conditioner"]).proj_token is None
    assert (tmp_path / "pipeline" / "model_index.json").is_file()


def test_parsed_spans_locate_synonym_predicates():
    from scenegraph_diff import parse
    from scenegraph_diff.shapes.swap_pairs import with_parsed_spans

    g = next(s for s in scenes(200, seed=4, num_objects=3, num_relations=2)
             if any(w in (s.text or "") for w in ("beneath", "under", "over")))
    out = with_parsed_spans(g, parse(g.text))
    assert out.objects == tuple(o.__class__(o.name, o.attributes, box=o.box, span=n.span)
                                for o, n in zip(g.objects, out.objects))
    assert all(o.span is not None for o in out.objects) and all(r.span is not None for r in out.relations)
    for r in out.relations:
        word = g.text[r.span[0]:r.span[1]]
        assert word.split()[-1] in {"left", "right", "above", "over", "below", "under", "beneath", "of"}, word
