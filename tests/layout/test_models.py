"""Layout models (scenegraph_diff.layout): the common sample() contract, equivariance, direction, completion,
determinism, save/load, errors. Tiny untrained models unless said otherwise; each test runs in well under a second."""

from __future__ import annotations

import math

import pytest
import torch

from scenegraph_diff.graph import SceneGraph, SceneGraphError
from scenegraph_diff.layout import (
    DiffusionLayoutModel,
    RegressionLayoutModel,
    boxes_to_params,
    load_layout_model,
    params_to_boxes,
)

VOCAB = dict(objects=["circle", "square", "triangle"], attributes=["red", "green", "blue"],
             predicates=["left of", "right of", "above", "below"])
KINDS = [(RegressionLayoutModel, "hgcn"), (RegressionLayoutModel, "rhgnn"), (DiffusionLayoutModel, "hgcn"),
         (DiffusionLayoutModel, "rhgnn")]


def tiny(cls, encoder: str = "rhgnn", seed: int = 0, **kw):
    torch.manual_seed(seed)
    extra = {"num_inference_steps": 3} if cls is DiffusionLayoutModel else {}
    return cls(**VOCAB, encoder=encoder, dim=16, num_layers=2, heads=2, attn_layers=1, **extra, **kw).eval()


def graph(swap: bool = False, box: bool = False) -> SceneGraph:
    s, o = (1, 0) if swap else (0, 1)
    objs = [{"name": "circle", "attributes": ["red"]}, {"name": "square", "attributes": ["blue"]},
            {"name": "triangle", "attributes": ["green"]}]
    if box:
        objs[2]["box"] = [0.1, 0.2, 0.35, 0.45]
    return SceneGraph.from_dict({"text": "a red circle left of a blue square", "objects": objs,
                                 "relations": [{"subject": s, "predicate": "left of", "object": o},
                                               {"subject": 2, "predicate": "above", "object": 1}]})


def boxes(g: SceneGraph) -> torch.Tensor:
    return torch.tensor([o.box for o in g.objects], dtype=torch.float64)


def _forward(model, inputs, seed: int = 0) -> torch.Tensor:
    if isinstance(model, DiffusionLayoutModel):
        g = torch.Generator().manual_seed(seed)
        x_t = torch.randn(inputs.num_objects, 4, generator=g)
        return model(inputs, x_t, torch.full((inputs.num_graphs,), 0.5)), x_t
    return model(inputs), None


# ---------------------------------------------------------------------------------------------- boxes
def test_box_parametrisation_round_trip_and_clamping():
    b = torch.tensor([[0.1, 0.2, 0.5, 0.9], [0.0, 0.0, 1.0, 1.0]])
    assert torch.allclose(params_to_boxes(boxes_to_params(b)), b, atol=1e-6)
    out = params_to_boxes(torch.tensor([[1.2, -0.3, 0.5, 2.0], [0.5, 0.5, -1.0, 0.0]]))
    x0, y0, x1, y1 = out.unbind(-1)
    assert torch.all((out >= 0) & (out <= 1)) and torch.all(x1 > x0) and torch.all(y1 > y0)
    assert torch.allclose(out[0], torch.tensor([0.5, 0.0, 1.0, 1.0]))  # shifted in, width kept
    with pytest.raises(ValueError, match=r"shape \[\.\.\., 4\], got \(3,\)"):
        params_to_boxes(torch.zeros(3, 5)[0, :3])


# ---------------------------------------------------------------------------------------------- contract
@pytest.mark.parametrize("cls,encoder", KINDS)
def test_sample_gives_every_object_a_box_and_keeps_the_rest(cls, encoder):
    m = tiny(cls, encoder)
    g = graph()
    out = m.sample([g, SceneGraph()], num_samples=3, generator=torch.Generator().manual_seed(0))
    assert len(out) == 2 and [len(x) for x in out] == [3, 3]
    assert all(s == SceneGraph() for s in out[1])  # a graph without objects comes back unchanged
    for s in out[0]:
        assert s.text == g.text and s.relations == g.relations
        assert [(o.name, o.attributes) for o in s.objects] == [(o.name, o.attributes) for o in g.objects]
        assert all(o.box is not None for o in s.objects)
        assert SceneGraph.from_json(s.to_json()) == s  # valid JSON v1 boxes
    if cls is DiffusionLayoutModel:  # samples differ; the regressor gives one layout
        assert not torch.allclose(boxes(out[0][0]), boxes(out[0][1]))
    else:
        assert out[0][0] == out[0][1] == out[0][2]


@pytest.mark.parametrize("cls,encoder", KINDS)
def test_completion_keeps_given_boxes_exactly(cls, encoder):
    m = tiny(cls, encoder)
    g = graph(box=True)
    (s,), = m.sample([g], generator=torch.Generator().manual_seed(1))
    assert s.objects[2].box == g.objects[2].box  # exact, the input's own floats
    assert s.objects[0].box is not None and s.objects[0].box != g.objects[2].box
    (r,), = m.sample([g], generator=torch.Generator().manual_seed(1), resample=True)
    assert r.objects[2].box != g.objects[2].box


def test_given_boxes_condition_the_other_boxes():
    for cls in (RegressionLayoutModel, DiffusionLayoutModel):
        m = tiny(cls)
        g = graph(box=True)
        moved = SceneGraph.from_dict({**g.to_dict(), "objects": [*g.to_dict()["objects"][:2],
                                                                 {**g.to_dict()["objects"][2], "box": [0.6, 0.6, 0.9, 0.9]}]})
        a = m.sample([g], generator=torch.Generator().manual_seed(0))[0][0]
        b = m.sample([moved], generator=torch.Generator().manual_seed(0))[0][0]
        assert not torch.allclose(boxes(a)[:2], boxes(b)[:2])


@pytest.mark.parametrize("cls,encoder", KINDS)
def test_deterministic_under_a_fixed_generator(cls, encoder):
    m = tiny(cls, encoder)
    a = m.sample([graph(), graph(swap=True)], 2, torch.Generator().manual_seed(5))
    b = m.sample([graph(), graph(swap=True)], 2, torch.Generator().manual_seed(5))
    assert a == b
    if cls is DiffusionLayoutModel:
        c = m.sample([graph(), graph(swap=True)], 2, torch.Generator().manual_seed(6))
        assert a != c


# ---------------------------------------------------------------------------------------------- equivariance
@pytest.mark.parametrize("cls,encoder", KINDS)
def test_network_is_permutation_equivariant_in_the_objects(cls, encoder):
    m = tiny(cls, encoder)
    g = graph(box=True)
    perm = [2, 0, 1]  # new object k is old object perm[k]
    inv = {old: new for new, old in enumerate(perm)}
    d = g.to_dict()
    d["objects"] = [d["objects"][i] for i in perm]
    d["relations"] = [{**r, "subject": inv[r["subject"]], "object": inv[r["object"]]} for r in d["relations"]]
    gp = SceneGraph.from_dict(d)
    with torch.no_grad():
        inputs, inputs_p = m.prepare([g]), m.prepare([gp])
        out, x_t = _forward(m, inputs)
        if x_t is None:
            out_p = m(inputs_p)
        else:
            out_p = m(inputs_p, x_t[perm], torch.full((1,), 0.5))
    assert torch.allclose(out[perm], out_p, atol=1e-5)


# ---------------------------------------------------------------------------------------------- direction
@pytest.mark.parametrize("cls,encoder", KINDS)
def test_swapping_subject_and_object_changes_the_boxes(cls, encoder):
    m = tiny(cls, encoder)
    with torch.no_grad():
        a, _ = _forward(m, m.prepare([graph()]))
        b, _ = _forward(m, m.prepare([graph(swap=True)]))
    assert (a[:2] - b[:2]).abs().max() > 1e-4


def test_trained_regression_puts_the_subject_of_left_of_on_the_left():
    """A tiny regressor trained briefly on 'A left of B' (A's box on the left) learns which side is which, for
    pairs it has seen in either order."""
    from scenegraph_diff.layout.regression import regression_loss

    torch.manual_seed(0)
    m = RegressionLayoutModel(**VOCAB, encoder="rhgnn", dim=16, num_layers=2, heads=2, attn_layers=1)
    names = [("circle", "red"), ("square", "blue"), ("triangle", "green")]
    data = [SceneGraph.from_dict({"objects": [
        {"name": names[i][0], "attributes": [names[i][1]], "box": [0.15, 0.4, 0.35, 0.6]},
        {"name": names[j][0], "attributes": [names[j][1]], "box": [0.65, 0.4, 0.85, 0.6]}][::order],
        "relations": [{"subject": 0 if order == 1 else 1, "predicate": "left of", "object": 1 if order == 1 else 0}]})
        for i in range(3) for j in range(3) if i != j for order in (1, -1)]
    opt = torch.optim.Adam(m.parameters(), 1e-2)
    inputs = m.prepare(data, keep_boxes=False)
    for _ in range(60):
        opt.zero_grad()
        regression_loss(m, inputs)["loss"].backward()
        opt.step()
    test = SceneGraph.from_dict({"objects": [{"name": "circle", "attributes": ["red"]},
                                             {"name": "triangle", "attributes": ["green"]}],
                                 "relations": [{"subject": 1, "predicate": "left of", "object": 0}]})
    (s,), (t,) = m.sample([test, test.swapped()])
    cx = lambda b: (b[0] + b[2]) / 2  # noqa: E731
    assert cx(s.objects[1].box) < cx(s.objects[0].box) - 0.2  # triangle (subject) on the left
    assert cx(t.objects[0].box) < cx(t.objects[1].box) - 0.2  # swapped: circle on the left


# ---------------------------------------------------------------------------------------------- save / load
@pytest.mark.parametrize("cls,encoder", KINDS)
def test_save_pretrained_load_layout_model_round_trip(cls, encoder, tmp_path):
    m = tiny(cls, encoder)
    m.save_pretrained(tmp_path / "m")
    assert (tmp_path / "m" / "config.json").is_file()
    assert list((tmp_path / "m").glob("*.safetensors"))
    loaded = load_layout_model(str(tmp_path / "m"))
    assert type(loaded) is cls and loaded.vocab == m.vocab and not loaded.training
    a = m.sample([graph(box=True)], 2, torch.Generator().manual_seed(3))[0]
    b = loaded.sample([graph(box=True)], 2, torch.Generator().manual_seed(3))[0]
    for x, y in zip(a, b):
        assert all(math.isclose(u, v, abs_tol=1e-6) for ox, oy in zip(x.objects, y.objects)
                   for u, v in zip(ox.box, oy.box))


def test_load_layout_model_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such folder"):
        load_layout_model(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load_layout_model(str(tmp_path / "empty"))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text('{"_class_name": "UNet2DModel"}')
    with pytest.raises(ValueError, match="'UNet2DModel', not a layout model"):
        load_layout_model(str(tmp_path / "other"))
    with pytest.raises(FileNotFoundError, match="not a bundled model"):
        load_layout_model("someone/layout")


# ---------------------------------------------------------------------------------------------- errors
def test_bad_sample_arguments_name_the_value():
    m = tiny(DiffusionLayoutModel)
    with pytest.raises(TypeError, match="wrap a single graph in a list"):
        m.sample(graph())
    with pytest.raises(SceneGraphError, match=r"graphs\[1\]: expected SceneGraph, got dict"):
        m.sample([graph(), {"objects": []}])
    with pytest.raises(ValueError, match="num_samples must be an integer >= 1, got 0"):
        m.sample([graph()], num_samples=0)
    with pytest.raises(TypeError, match="generator must be a torch.Generator, a list of them or None, got int"):
        m.sample([graph()], generator=0)
    with pytest.raises(ValueError, match="one torch.Generator per graph: got 1 for 2 graphs"):
        m.sample([graph(), graph()], generator=[torch.Generator()])
    with pytest.raises(TypeError, match="resample must be a bool, got 'yes'"):
        m.sample([graph()], resample="yes")
    with pytest.raises(ValueError, match="num_steps must be an integer in 1..50, got 0"):
        m.sample([graph()], num_steps=0)


def test_bad_configs_fail_at_construction():
    with pytest.raises(ValueError, match="encoder must be one of .*got 'gcn'"):
        RegressionLayoutModel(**VOCAB, encoder="gcn")
    with pytest.raises(ValueError, match=r"dim \(10\) must be divisible by heads \(4\)"):
        DiffusionLayoutModel(**VOCAB, dim=10, heads=4)
    with pytest.raises(ValueError, match="num_inference_steps must be an integer in 1..50, got 0"):
        DiffusionLayoutModel(**VOCAB, num_inference_steps=0)
    with pytest.raises(SceneGraphError, match="duplicate label 'circle'"):
        RegressionLayoutModel(objects=["circle", "circle"])


def test_unknown_labels_are_unk_not_errors():
    m = tiny(RegressionLayoutModel)
    g = SceneGraph.from_dict({"objects": [{"name": "zebra"}, {"name": "circle"}],
                              "relations": [{"subject": 0, "predicate": "eats", "object": 1}]})
    (s,), = m.sample([g])
    assert all(o.box is not None for o in s.objects)
    assert m.prepare([g]).batch["object"].label.tolist() == [0, 1]


def test_relation_guidance():
    m = tiny(DiffusionLayoutModel)
    g = [graph(), graph(box=True)]
    plain = m.sample(g, 2, torch.Generator().manual_seed(0))
    assert m.sample(g, 2, torch.Generator().manual_seed(0), guidance_scale=1.0) == plain
    guided = m.sample(g, 2, torch.Generator().manual_seed(0), guidance_scale=3.0)
    assert guided != plain
    assert guided[1][0].objects[2].box == g[1].objects[2].box  # completion still exact
    # a graph without relations is its own unconditional branch: guidance does nothing
    lone = [SceneGraph(graph().objects)]
    assert m.sample(lone, 1, torch.Generator().manual_seed(0), guidance_scale=3.0) == \
        m.sample(lone, 1, torch.Generator().manual_seed(0))
    assert m.network_evaluations(4, 1.0) == 4 and m.network_evaluations(4, 2.0) == 8
    with pytest.raises(ValueError, match=r"guidance_scale must be a number in \[0, 20\], got -1"):
        m.sample(g, guidance_scale=-1)


def test_a_generator_per_graph_makes_each_layout_independent_of_its_batch():
    """Diffusers' habit: graph i's layouts from generator i are those of graph i sampled alone with it."""
    from scenegraph_diff.layout import load_layout_model
    from scenegraph_diff.shapes.evaluation import held_out_graphs

    m = load_layout_model("layout-shapes")
    graphs = held_out_graphs(6)
    graphs.insert(2, SceneGraph(()))  # an empty graph in the middle: no rows of its own
    alone = [m.sample([g], num_samples=2, generator=torch.Generator().manual_seed(10 + i), resample=True)[0]
             for i, g in enumerate(graphs)]
    batched = m.sample(graphs, num_samples=2, generator=[torch.Generator().manual_seed(10 + i)
                                                         for i in range(len(graphs))], resample=True)
    for a, b in zip(alone, batched):
        for x, y in zip(a, b):
            assert [c for o in x.objects for c in o.box] == pytest.approx([c for o in y.objects for c in o.box], abs=2e-6)
    assert [o.box for o in batched[0][0].objects] != [o.box for o in batched[0][1].objects]
