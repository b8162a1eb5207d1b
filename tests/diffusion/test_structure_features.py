"""Structural (DiGress-style) features of the self-conditioning estimate and the generator that uses them."""

from __future__ import annotations

import networkx as nx
import pytest
import torch

from scenegraph_diff.diffusion.structure import (
    EDGE_STRUCT_DIM,
    NODE_STRUCT_DIM,
    structure_features,
)


def _dense(graphs: list[nx.Graph], N: int) -> tuple[torch.Tensor, torch.Tensor]:
    A = torch.zeros(len(graphs), N, N)
    mask = torch.zeros(len(graphs), N, dtype=torch.bool)
    for b, g in enumerate(graphs):
        mask[b, : g.number_of_nodes()] = True
        for i, j in g.edges():
            A[b, i, j] = A[b, j, i] = 1
    return 2 * A - 1, mask


def test_components_degrees_and_heat_kernel_match_networkx():
    gs = [nx.gnp_random_graph(n, p, seed=s) for s, (n, p) in enumerate([(9, 0.2), (12, 0.15), (5, 0.0), (1, 0.0)])]
    x, mask = _dense(gs, 12)
    e, nf = structure_features(x, mask)
    assert e.shape == (4, 12, 12, EDGE_STRUCT_DIM) and nf.shape == (4, 12, NODE_STRUCT_DIM)
    assert torch.isfinite(e).all() and torch.isfinite(nf).all()
    for b, g in enumerate(gs):
        n = g.number_of_nodes()
        comp = {v: k for k, c in enumerate(nx.connected_components(g)) for v in c}
        same = torch.tensor([[float(comp[i] == comp[j]) for j in range(n)] for i in range(n)])
        assert torch.equal(e[b, :n, :n, 0], same)
        assert torch.allclose(nf[b, :n, 2], torch.full((n,), nx.number_connected_components(g) / n))
        assert torch.allclose(nf[b, :n, 1], torch.tensor([g.degree(i) / n for i in range(n)]))
        L = torch.tensor(nx.normalized_laplacian_matrix(g, nodelist=range(n)).toarray(), dtype=torch.float32)
        L = L + torch.diag((L.diagonal() == 0).float())  # isolated nodes: L_ii = 1 in our convention
        assert torch.allclose(e[b, :n, :n, 1], torch.linalg.matrix_exp(-L), atol=1e-4)
        assert e[b, n:].abs().sum() == 0 and e[b, :, n:].abs().sum() == 0 and nf[b, n:].abs().sum() == 0


def test_permutation_equivariant():
    x, mask = _dense([nx.connected_caveman_graph(2, 5)], 10)
    perm = torch.randperm(10, generator=torch.Generator().manual_seed(0))
    e, nf = structure_features(x, mask)
    e2, nf2 = structure_features(x[:, perm][:, :, perm], mask[:, perm])
    assert torch.allclose(e2, e[:, perm][:, :, perm], atol=1e-5) and torch.allclose(nf2, nf[:, perm], atol=1e-5)


def test_bad_shapes_are_named():
    with pytest.raises(ValueError, match=r"\(2, 3, 4\)"):
        structure_features(torch.zeros(2, 3, 4), torch.ones(2, 3, dtype=torch.bool))


def test_generator_with_structure_features_trains_samples_and_round_trips(tmp_path):
    from scenegraph_diff.diffusion.edge_diffusion import (
        EdgeDiffusionConfig,
        EdgeDiffusionGenerator,
        train_edge_diffusion,
    )
    from scenegraph_diff.diffusion.samplers import DDIMSampler

    train = [{"num_nodes": 6, "edges": [[0, 1], [1, 2], [2, 0], [3, 4], [4, 5], [5, 3], [2, 3]]},
             {"num_nodes": 1, "edges": []}, {"num_nodes": 4, "edges": [[0, 1], [2, 3]]}]
    with pytest.raises(ValueError, match="needs self_condition"):
        train_edge_diffusion(train, EdgeDiffusionConfig(max_steps=1, structure_features=True, progress=False))
    gen, info = train_edge_diffusion(train, EdgeDiffusionConfig(channels=8, num_layers=2, batch_size=3, max_steps=3,
                                                                self_condition=True, structure_features=True,
                                                                progress=False))
    assert gen.structure_features and gen.self_condition and info["steps"] == 3
    out, nfe = gen.generate(5, DDIMSampler(num_steps=3, eta=1.0), torch.Generator().manual_seed(0))
    again, _ = gen.generate(5, DDIMSampler(num_steps=3, eta=1.0), torch.Generator().manual_seed(0))
    assert nfe == 3 and out == again and all(g["num_nodes"] in (1, 4, 6) for g in out)
    gen.save_pretrained(tmp_path)
    loaded = EdgeDiffusionGenerator.from_pretrained(tmp_path)
    assert loaded.structure_features
    assert loaded.generate(5, DDIMSampler(num_steps=3, eta=1.0), torch.Generator().manual_seed(0))[0] == out
    with pytest.raises(ValueError, match="edge_cond_dim=4"):
        EdgeDiffusionGenerator(loaded.model.__class__(channels=8, num_layers=1), loaded.sde, [3], structure_features=True)
