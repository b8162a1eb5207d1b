"""SDEdit graph refinement as an option of ``SceneGraphPipeline`` (tiny random-weight components, CPU)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from scenegraph_diff.diffusion import SceneGraphDenoiser, SceneGraphRefiner
from scenegraph_diff.graph import SceneGraph, Vocabulary
from scenegraph_diff.pipelines import SceneGraphPipeline
from scenegraph_diff.pipelines.testing import tiny_sd_components

GRAPHS = [
    SceneGraph.from_dict({"text": "a cat on a dog", "objects": [{"name": "cat"}, {"name": "dog"}],
                          "relations": [{"subject": 0, "predicate": "on", "object": 1}]}),
    SceneGraph.from_dict({"text": "a man holding a cup near a table",
                          "objects": [{"name": "man"}, {"name": "cup"}, {"name": "table"}],
                          "relations": [{"subject": 0, "predicate": "holding", "object": 1},
                                        {"subject": 1, "predicate": "near", "object": 2}]}),
]
KW = {"num_inference_steps": 2, "output_type": "np"}


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def refiner() -> SceneGraphRefiner:
    vocab = Vocabulary.from_graphs(GRAPHS)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = SceneGraphDenoiser(vocab.num_objects, vocab.num_predicates, hidden=16, num_layers=1, heads=2)
    return SceneGraphRefiner(model, vocab, [2, 3])


@pytest.fixture(scope="module")
def pipe(refiner):
    p = SceneGraphPipeline(**tiny_sd_components(seed=0), graph_refiner=refiner)
    p.set_progress_bar_config(disable=True)
    with torch.no_grad():  # open the gates so that the graph changes the image
        p.graph_conditioner.gate_eot.fill_(5.0)
        p.graph_conditioner.gate_token.fill_(5.0)
    return p


def test_strength_zero_is_identity(pipe):
    assert pipe.refine_graphs(GRAPHS, 0.0) == GRAPHS
    a = pipe(scene_graph=GRAPHS, generator=_gen(), **KW).images
    b = pipe(scene_graph=GRAPHS, refine_graph_strength=0.0, graph_generator=_gen(1), generator=_gen(), **KW).images
    plain = SceneGraphPipeline(**{k: getattr(pipe, k) for k in pipe.components})
    plain.set_progress_bar_config(disable=True)
    c = plain(scene_graph=GRAPHS, generator=_gen(), **KW).images
    assert np.array_equal(a, b) and np.array_equal(a, c)


def test_refinement_is_deterministic_and_wired_through(pipe, refiner):
    r1 = pipe.refine_graphs(GRAPHS, 1.0, num_steps=3, generator=_gen(3))
    r2 = pipe.refine_graphs(GRAPHS, 1.0, num_steps=3, generator=_gen(3))
    direct = refiner.refine(GRAPHS, strength=1.0, num_steps=3, generator=_gen(3))
    assert [g.to_dict() for g in r1] == [g.to_dict() for g in r2] == [g.to_dict() for g in direct]
    assert [len(g.objects) for g in r1] == [2, 3]  # objects are re-typed, never added or dropped
    assert [g.text for g in r1] == [g.text for g in GRAPHS]
    a = pipe(scene_graph=GRAPHS, refine_graph_strength=1.0, refine_graph_steps=3, graph_generator=_gen(3),
             generator=_gen(), **KW).images
    b = pipe(scene_graph=GRAPHS, refine_graph_strength=1.0, refine_graph_steps=3, graph_generator=_gen(3),
             generator=_gen(), **KW).images
    c = pipe(scene_graph=r1, generator=_gen(), **KW).images  # = encoding the refined graphs directly
    assert np.array_equal(a, b) and np.array_equal(a, c)


def test_refinement_changes_graphs_for_some_seed(pipe):
    changed = [pipe.refine_graphs(GRAPHS, 1.0, generator=_gen(s)) != GRAPHS for s in range(5)]
    assert any(changed)


def test_refined_parsed_prompt(pipe, monkeypatch):
    from scenegraph_diff import parsing

    monkeypatch.setattr(parsing, "parse_batch", lambda prompts: [GRAPHS[0] for _ in prompts])
    a = pipe("a cat on a dog", refine_graph_strength=0.5, graph_generator=_gen(4), generator=_gen(), **KW).images
    refined = pipe.refine_graphs([GRAPHS[0]], 0.5, generator=_gen(4))
    b = pipe("a cat on a dog", scene_graph=refined, generator=_gen(), **KW).images
    assert np.array_equal(a, b)


def test_from_pretrained_takes_a_refiner(pipe, refiner, tmp_path):
    pipe.save_pretrained(tmp_path / "pipe")
    refiner.save_pretrained(tmp_path / "refiner")
    loaded = SceneGraphPipeline.from_pretrained(tmp_path / "pipe",
                                                graph_refiner=SceneGraphRefiner.from_pretrained(tmp_path / "refiner"))
    assert loaded.graph_refiner is not None
    assert ([g.to_dict() for g in loaded.refine_graphs(GRAPHS, 0.7, generator=_gen(2))] ==
            [g.to_dict() for g in pipe.refine_graphs(GRAPHS, 0.7, generator=_gen(2))])
    assert SceneGraphPipeline.from_pretrained(tmp_path / "pipe").graph_refiner is None


def test_refinement_errors(pipe):
    comps = {k: getattr(pipe, k) for k in pipe.components}
    bare = SceneGraphPipeline(**comps)
    with pytest.raises(ValueError, match="refine_graph_strength=0.3 needs a graph_refiner"):
        bare(scene_graph=GRAPHS[0], refine_graph_strength=0.3, **KW)
    with pytest.raises(ValueError, match="refine_graph_strength must be in \\[0, 1\\], got 1.5"):
        pipe(scene_graph=GRAPHS[0], refine_graph_strength=1.5, **KW)
    with pytest.raises(ValueError, match="refine_graph_steps must be >= 1, got 0"):
        pipe(scene_graph=GRAPHS[0], refine_graph_strength=0.3, refine_graph_steps=0, **KW)
    with pytest.raises(TypeError, match="graph_refiner is a str"):
        SceneGraphPipeline(**comps, graph_refiner="runs/refiner")
