"""Opt-in cycle-count features (DiGress), warm starts, and the window time grid / threshold of DDIMSampler."""

from __future__ import annotations

import itertools
import json

import networkx as nx
import pytest
import torch

from scenegraph_diff.diffusion.structure import EDGE_CYCLE_DIM, NODE_CYCLE_DIM, cycle_features


def _dense(graphs: list[nx.Graph], N: int) -> tuple[torch.Tensor, torch.Tensor]:
    A = torch.zeros(len(graphs), N, N)
    mask = torch.zeros(len(graphs), N, dtype=torch.bool)
    for b, g in enumerate(graphs):
        mask[b, : g.number_of_nodes()] = True
        for i, j in g.edges():
            A[b, i, j] = A[b, j, i] = 1
    return 2 * A - 1, mask


def _four_cycles_at(g: nx.Graph, v: int) -> int:
    cycles = set()
    for a, b in itertools.permutations(g.neighbors(v), 2):
        for c in set(g.neighbors(a)) & set(g.neighbors(b)):
            if c != v and len({v, a, b, c}) == 4:
                cycles.add(frozenset([frozenset([v, a]), frozenset([a, c]), frozenset([c, b]), frozenset([b, v])]))
    return len(cycles)


def _three_paths(g: nx.Graph, i: int, j: int) -> int:
    return sum(1 for k in g.neighbors(i) for l in g.neighbors(k) if g.has_edge(l, j) and len({i, j, k, l}) == 4)


def test_cycle_counts_match_brute_force():
    gs = [nx.gnp_random_graph(n, p, seed=s) for s, (n, p) in enumerate([(9, 0.4), (12, 0.3), (5, 0.0), (1, 0.0)])]
    gs.append(nx.complete_graph(5))
    x, mask = _dense(gs, 12)
    e, nf = cycle_features(x, mask)
    assert e.shape == (5, 12, 12, EDGE_CYCLE_DIM) and nf.shape == (5, 12, NODE_CYCLE_DIM)
    for b, g in enumerate(gs):
        n = g.number_of_nodes()
        tri = nx.triangles(g)
        clus = nx.clustering(g)
        for i in range(n):
            assert nf[b, i, 0].item() == pytest.approx(tri[i] / n)
            assert nf[b, i, 1].item() == pytest.approx(_four_cycles_at(g, i) / n)
            assert nf[b, i, 2].item() == pytest.approx(clus[i], abs=1e-6)
            for j in range(n):
                common = len(set(g.neighbors(i)) & set(g.neighbors(j))) if i != j else 0
                assert e[b, i, j, 0].item() == pytest.approx(common / n)
                if i != j and g.has_edge(i, j):  # the 4-cycles through the edge
                    assert e[b, i, j, 1].item() == pytest.approx(_three_paths(g, i, j) / n)
        assert e[b, n:].abs().sum() == 0 and e[b, :, n:].abs().sum() == 0 and nf[b, n:].abs().sum() == 0
        assert torch.diagonal(e[b], dim1=0, dim2=1).abs().sum() == 0


def test_cycle_features_permutation_equivariant():
    g = nx.gnp_random_graph(10, 0.4, seed=3)
    x, mask = _dense([g], 11)  # one padded node
    perm = torch.randperm(11, generator=torch.Generator().manual_seed(0))
    e, nf = cycle_features(x, mask)
    e2, nf2 = cycle_features(x[:, perm][:, :, perm], mask[:, perm])
    assert torch.allclose(e2, e[:, perm][:, :, perm], atol=1e-6) and torch.allclose(nf2, nf[:, perm], atol=1e-6)


def test_cycle_features_bad_shapes():
    with pytest.raises(ValueError, match=r"\(2, 3, 4\)"):
        cycle_features(torch.zeros(2, 3, 4), torch.ones(2, 3, dtype=torch.bool))


def test_self_condition_inputs_opt_in():
    from scenegraph_diff.diffusion.losses import self_condition_inputs

    x, mask = _dense([nx.cycle_graph(4), nx.path_graph(3)], 4)
    old = self_condition_inputs(x, mask, True)
    new = self_condition_inputs(x, mask, True, cycles=True)
    assert old["edge_cond"].shape == (2, 4, 4, 4) and old["node_cond"].shape == (2, 4, 3)
    assert new["edge_cond"].shape == (2, 4, 4, 6) and new["node_cond"].shape == (2, 4, 6)
    assert torch.equal(new["edge_cond"][..., :4], old["edge_cond"]) and torch.equal(new["node_cond"][..., :3],
                                                                                     old["node_cond"])
    off = self_condition_inputs(x, mask, True, use=False, cycles=True)
    assert off["edge_cond"].shape == (2, 4, 4, 6) and off["edge_cond"].abs().sum() == 0


TRAIN = [{"num_nodes": 6, "edges": [[0, 1], [1, 2], [2, 0], [3, 4], [4, 5], [5, 3], [2, 3]]},
         {"num_nodes": 1, "edges": []}, {"num_nodes": 4, "edges": [[0, 1], [1, 2], [2, 3], [3, 0]]}]


def test_cycle_generator_trains_samples_round_trips_and_old_meta_unchanged(tmp_path):
    from scenegraph_diff.diffusion.edge_diffusion import EdgeDiffusionConfig, EdgeDiffusionGenerator, train_edge_diffusion
    from scenegraph_diff.diffusion.samplers import DDIMSampler

    with pytest.raises(ValueError, match="needs structure_features"):
        EdgeDiffusionConfig(self_condition=True, cycle_features=True)
    kw = dict(channels=8, num_layers=2, batch_size=3, max_steps=2, self_condition=True, structure_features=True,
              progress=False)
    gen, _ = train_edge_diffusion(TRAIN, EdgeDiffusionConfig(cycle_features=True, **kw))
    assert gen.cycle_features and gen.model.config.edge_cond_dim == 6 and gen.model.config.node_cond_dim == 6
    s = DDIMSampler(num_steps=3, eta=1.0)
    out, nfe = gen.generate(4, s, torch.Generator().manual_seed(0))
    assert nfe == 3
    gen.save_pretrained(tmp_path / "cyc")
    loaded = EdgeDiffusionGenerator.from_pretrained(tmp_path / "cyc")
    assert loaded.cycle_features and loaded.generate(4, s, torch.Generator().manual_seed(0))[0] == out
    # without the option the saved metadata has no new key (old folders load unchanged, new ones are as before)
    old, _ = train_edge_diffusion(TRAIN, EdgeDiffusionConfig(**kw))
    old.save_pretrained(tmp_path / "old")
    meta = json.loads((tmp_path / "old" / "generator.json").read_text())
    assert "cycle_features" not in meta and not EdgeDiffusionGenerator.from_pretrained(tmp_path / "old").cycle_features
    with pytest.raises(ValueError, match="edge_cond_dim=6"):
        EdgeDiffusionGenerator(old.model, old.sde, [3], structure_features=True, cycle_features=True)


def test_warm_start_computes_the_saved_network(tmp_path):
    from scenegraph_diff.diffusion.edge_diffusion import (
        EdgeDiffusionConfig,
        EdgeDiffusionGenerator,
        train_edge_diffusion,
        warm_start,
    )
    from scenegraph_diff.diffusion.losses import self_condition_inputs
    from scenegraph_diff.diffusion.ppgn import EdgeDenoiser

    kw = dict(channels=8, num_layers=2, batch_size=3, max_steps=2, self_condition=True, structure_features=True,
              progress=False)
    old, _ = train_edge_diffusion(TRAIN, EdgeDiffusionConfig(**kw))
    old.save_pretrained(tmp_path / "old")
    new = warm_start(EdgeDenoiser(channels=8, num_layers=2, edge_cond_dim=6, node_cond_dim=6), old.model).eval()
    x, mask = _dense([nx.cycle_graph(5), nx.complete_graph(4)], 5)
    g = torch.Generator().manual_seed(1)
    a_t = torch.randn(2, 5, 5, generator=g)
    a_t = a_t + a_t.transpose(1, 2)
    t = torch.tensor([0.3, 0.7])
    with torch.no_grad():
        ref = old.model(a_t, t, mask, **self_condition_inputs(x, mask, True))
        got = new(a_t, t, mask, **self_condition_inputs(x, mask, True, cycles=True))
    assert torch.allclose(ref, got, atol=1e-5)
    # through the config: the warm-started run starts from the saved weights
    gen, _ = train_edge_diffusion(TRAIN, EdgeDiffusionConfig(cycle_features=True, init_from=str(tmp_path / "old"),
                                                             lr=1e-12, warmup_steps=0, **{**kw, "max_steps": 1}))
    with torch.no_grad():
        got = gen.model(a_t, t, mask, **self_condition_inputs(x, mask, True, cycles=True))
    assert torch.allclose(ref, got, atol=1e-4)
    with pytest.raises(ValueError, match="more condition channels"):
        warm_start(EdgeDenoiser(channels=8, num_layers=2), old.model)


def test_window_time_grid_and_threshold():
    from scenegraph_diff.diffusion.samplers import DDIMSampler, time_grid

    g = time_grid(100, spacing="window", window=(0.15, 0.4, 0.5))
    assert len(g) == 101 and g[0] == 1.0 and g[-1] == pytest.approx(1e-3) and bool((g[1:] < g[:-1]).all())
    assert int(((g[:-1] <= 0.4) & (g[:-1] > 0.15)).sum()) == 50
    assert len(time_grid(2, spacing="window")) == 3 and len(time_grid(3, spacing="window")) == 4
    with pytest.raises(ValueError, match="window"):
        time_grid(10, spacing="window", window=(0.5, 0.4, 0.5))
    assert torch.equal(time_grid(7), torch.linspace(0, 1, 8) * (1e-3 - 1) + 1)  # the default grid is unchanged
    # threshold: 0 is the old rule; a lower threshold keeps a superset of the edges, never padded pairs
    mask = torch.tensor([[True, True, True, False]])
    x0_val = torch.tensor([[[0, -0.3, 0.4, 0.9], [-0.3, 0, -0.6, 0.9], [0.4, -0.6, 0, 0.9], [0.9, 0.9, 0.9, 0]]])
    A0, _ = DDIMSampler(num_steps=1).sample(lambda a, t: x0_val.clone(), _sde(), mask)
    A1, _ = DDIMSampler(num_steps=1, threshold=-0.5).sample(lambda a, t: x0_val.clone(), _sde(), mask)
    assert A0.tolist()[0] == [[0, 0, 1, 0], [0, 0, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]]
    assert A1.tolist()[0] == [[0, 1, 1, 0], [1, 0, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]]


def _sde():
    from scenegraph_diff.diffusion.sde import VPSDE

    return VPSDE(0.1, 20.0)
