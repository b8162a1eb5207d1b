import pytest
import torch

from scenegraph_diff.diffusion.scene_graph_data import TypedGraph, collate_typed, scene_graphs_to_typed, typed_to_scene_graphs
from scenegraph_diff.diffusion.scene_graph_diffusion import SceneGraphDenoiser, TypedDiffusion, pair_geometry
from scenegraph_diff.graph import SceneGraph, Vocabulary

torch.set_num_threads(1)
P = 4


def _graphs():
    return [
        TypedGraph((1, 2, 3), ((0, 0, 10, 10), (20, 0, 30, 10), (0, 20, 10, 30)), frozenset({(0, 1, 1), (2, 0, 3)})),
        TypedGraph((0, 4), ((0, 0, 5, 5), (1, 1, 4, 4)), frozenset({(0, 1, 2), (0, 1, 4)})),
        TypedGraph((2,), ((0, 0, 1, 1),), frozenset()),
    ]


def _model():
    torch.manual_seed(0)
    return SceneGraphDenoiser(num_classes=5, num_predicates=P, hidden=16, num_layers=1, heads=2).eval()


def test_collate_soft_targets_and_masks():
    b = collate_typed(_graphs(), P)
    assert b.classes.shape == (3, 3) and b.node_mask.sum().item() == 6
    assert torch.allclose(b.edge_target[1, 0, 1], torch.tensor([0, 0, 0.5, 0, 0.5]))
    assert b.edge_target[0, 1, 0, 0] == 1  # real pair without relation -> "no edge"
    assert b.edge_target[2].sum() == 0  # padding


def test_pair_geometry_direction_sensitive():
    boxes = torch.tensor([[[0.0, 0, 10, 10], [20, 0, 30, 10]]])
    g = pair_geometry(boxes, torch.ones(1, 2, dtype=torch.bool))
    assert g[0, 0, 1, 0] > 0 > g[0, 1, 0, 0]  # object is right of subject vs left


def test_loss_finite_and_padding_invariant():
    diff = TypedDiffusion(_model())
    out = diff.loss(collate_typed(_graphs(), P), torch.Generator().manual_seed(0))
    assert torch.isfinite(out["loss"])


def test_completion_keeps_known_and_respects_require_edge():
    diff = TypedDiffusion(_model())
    b = collate_typed(_graphs(), P)
    B, N = b.classes.shape
    annotated = torch.zeros(B, N, N, dtype=torch.bool)
    annotated[0, 0, 1] = annotated[0, 2, 0] = annotated[1, 0, 1] = True
    b.edges = torch.zeros_like(b.edges)
    cls, edg, score, nfe = diff.sample(b, b.node_mask, ~annotated, num_steps=3, temperature=0.0, require_edge=annotated)
    assert nfe == 3
    assert torch.equal(cls[b.node_mask], b.classes[b.node_mask])
    assert (edg[annotated] >= 1).all() and (edg[annotated] <= P).all()
    assert (edg[~annotated] == 0).all()
    assert ((score[annotated] > 0) & (score[annotated] <= 1)).all()


def test_unconditional_sampling_deterministic_with_generator():
    diff = TypedDiffusion(_model())
    b = collate_typed(_graphs(), P)
    none_n = torch.zeros_like(b.node_mask)
    none_e = torch.zeros_like(b.edges, dtype=torch.bool)
    r1 = diff.sample(b, none_n, none_e, 4, 1.0, generator=torch.Generator().manual_seed(1))
    r2 = diff.sample(b, none_n, none_e, 4, 1.0, generator=torch.Generator().manual_seed(1))
    assert torch.equal(r1[0], r2[0]) and torch.equal(r1[1], r2[1])
    assert (r1[0][b.node_mask] < 5).all() and (r1[1] <= P).all()


def test_refine_strength_zero_is_identity_and_bad_strength_raises():
    diff = TypedDiffusion(_model())
    b = collate_typed(_graphs(), P)
    cls, edg = diff.refine(b, strength=0.0, generator=torch.Generator().manual_seed(0))
    assert torch.equal(cls[b.node_mask], b.classes[b.node_mask])
    pv = b.node_mask[:, :, None] & b.node_mask[:, None, :] & ~torch.eye(3, dtype=torch.bool)
    assert torch.equal(edg[pv], b.edges[pv])
    with pytest.raises(ValueError, match="strength"):
        diff.refine(b, strength=1.5)


def test_scene_graph_round_trip_through_typed():
    g = SceneGraph.from_dict({"objects": [{"name": "cat"}, {"name": "mat"}],
                              "relations": [{"subject": 0, "predicate": "on", "object": 1}]})
    vocab = Vocabulary.from_graphs([g])
    tg = scene_graphs_to_typed([g], vocab)
    b = collate_typed(tg, vocab.num_predicates)
    back = typed_to_scene_graphs(b.classes, b.edges, b.node_mask, vocab)
    assert back[0].to_dict()["relations"] == g.to_dict()["relations"]
    assert [o.name for o in back[0].objects] == ["cat", "mat"]


def test_refiner_save_load_complete_and_refine(tmp_path):
    from scenegraph_diff.diffusion.scene_graph_refiner import SceneGraphRefiner

    gs = [SceneGraph.from_dict({"objects": [{"name": "cat", "attributes": ["black"]}, {"name": "mat"}, {"name": "dog"}],
                                "relations": [{"subject": 0, "predicate": "on", "object": 1}]}),
          SceneGraph.from_dict({"objects": [{"name": "dog"}], "relations": []})]
    vocab = Vocabulary.from_graphs(gs)
    torch.manual_seed(0)
    model = SceneGraphDenoiser(vocab.num_objects, vocab.num_predicates, hidden=16, num_layers=1, heads=2)
    SceneGraphRefiner(model, vocab, [1, 3]).save_pretrained(tmp_path)
    ref = SceneGraphRefiner.from_pretrained(tmp_path)
    done = ref.complete(gs, num_steps=2)
    assert [o.name for o in done[0].objects] == ["cat", "mat", "dog"]
    assert done[0].objects[0].attributes == ("black",)
    assert ("cat", "on", "mat") in done[0].triplets()
    same = ref.refine(gs, strength=0.0, generator=torch.Generator().manual_seed(0))
    assert same[0].triplets() == gs[0].triplets()
    samples = ref.sample(3, num_steps=2, generator=torch.Generator().manual_seed(0))
    assert len(samples) == 3 and all(1 <= s.num_objects <= 3 for s in samples)


def test_refiner_never_emits_unk_and_keeps_unknown_labels():
    from scenegraph_diff.diffusion.scene_graph_refiner import SceneGraphRefiner

    train = [SceneGraph.from_triplets([("cat", "on", "mat"), ("dog", "near", "cat")])]
    vocab = Vocabulary.from_graphs(train)
    torch.manual_seed(0)
    model = SceneGraphDenoiser(vocab.num_objects, vocab.num_predicates, hidden=16, num_layers=1, heads=2)
    with torch.no_grad():  # make <unk> the model's favourite class and predicate (edge state 1)
        model.node_out.bias[0] = 50.0
        model.edge_out[1].bias[1] = 50.0
    ref = SceneGraphRefiner(model, vocab, [2, 3])
    # "zebra" and "riding" are out of vocabulary (<unk> inside the model)
    gs = [SceneGraph.from_triplets([("zebra", "riding", "cat"), ("cat", "on", "mat")])]
    for seed in range(5):
        for out in (ref.refine(gs, strength=1.0, num_steps=3, generator=torch.Generator().manual_seed(seed)),
                    ref.sample(4, num_steps=3, generator=torch.Generator().manual_seed(seed)),
                    ref.complete(gs, num_steps=3)):
            for g in out:
                assert "<unk>" not in [o.name for o in g.objects] + [p for _, p, _ in g.triplets()]
    kept = ref.complete(gs, num_steps=2)[0]  # known entries stay: the OOV labels come back
    assert ("zebra", "riding", "cat") in kept.triplets()
