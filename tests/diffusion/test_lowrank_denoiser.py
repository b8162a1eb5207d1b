"""LowRankEdgeDenoiser (the O(N²) edge denoiser) and size-bucketed training batches."""

import pytest
import torch

from scenegraph_diff.diffusion.data import graphs_to_adjacency
from scenegraph_diff.diffusion.edge_diffusion import (
    EdgeDiffusionConfig,
    EdgeDiffusionGenerator,
    size_bucketed_batches,
    train_edge_diffusion,
)
from scenegraph_diff.diffusion.lowrank import LowRankEdgeDenoiser
from scenegraph_diff.diffusion.samplers import DDIMSampler
from scenegraph_diff.diffusion.sde import VPSDE, symmetric_noise
from scenegraph_diff.diffusion.structure import EDGE_STRUCT_DIM, NODE_STRUCT_DIM

torch.set_num_threads(1)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _mask(sizes, N):
    return torch.arange(N)[None] < torch.tensor(sizes)[:, None]


def _model(**kw):
    torch.manual_seed(0)
    cfg = dict(channels=8, pair_channels=4, num_layers=2, rank=3)
    cfg.update(kw)
    return LowRankEdgeDenoiser(**cfg).eval()


def test_permutation_equivariant_symmetric_with_conditions():
    model = _model(edge_cond_dim=2, node_cond_dim=3)
    m = _mask([7], 7)
    A = symmetric_noise(m, _gen(1))
    ec = torch.rand(1, 7, 7, 2, generator=_gen(2))
    ec = ec + ec.transpose(1, 2)
    nc = torch.rand(1, 7, 3, generator=_gen(3))
    t = torch.tensor([0.4])
    with torch.no_grad():
        out = model(A, t, m, edge_cond=ec, node_cond=nc)
        perm = torch.randperm(7, generator=_gen(4))
        out_p = model(A[:, perm][:, :, perm], t, m, edge_cond=ec[:, perm][:, :, perm], node_cond=nc[:, perm])
    assert torch.allclose(out[:, perm][:, :, perm], out_p, atol=1e-5)
    assert torch.allclose(out, out.transpose(1, 2))
    assert (out.diagonal(dim1=1, dim2=2) < -10).all()


def test_padding_does_not_leak_and_conditions_are_checked():
    model = _model()
    A = symmetric_noise(_mask([4], 4), _gen(1))
    with torch.no_grad():
        small = model(A, torch.tensor([0.5]), _mask([4], 4))
        Ap = torch.zeros(1, 6, 6)
        Ap[:, :4, :4] = A
        Ap[:, 4, 5] = Ap[:, 5, 4] = 3.0
        big = model(Ap, torch.tensor([0.5]), _mask([4], 6))
    assert torch.allclose(small, big[:, :4, :4], atol=1e-5)
    with pytest.raises(ValueError, match="conditions"):
        model(A, torch.tensor([0.5]), _mask([4], 4), edge_cond=torch.zeros(1, 4, 4, 1))
    with pytest.raises(ValueError, match="channels"):
        LowRankEdgeDenoiser(channels=0)


def test_x0_prediction_range_and_gradients():
    model = _model(rank=0, num_powers=0).train()
    m = _mask([5, 3], 5)
    A = symmetric_noise(m, _gen(0))
    x0 = model.x0_prediction(A, torch.tensor([0.2, 0.9]), m)
    assert x0.shape == (2, 5, 5) and x0.abs().max() <= 1 and (x0[1, 3:] == 0).all()
    x0.sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_generator_trains_samples_deterministically_and_round_trips(tmp_path):
    train = [{"num_nodes": 6, "edges": [[0, 1], [1, 2], [2, 3], [3, 4], [4, 5]]},
             {"num_nodes": 4, "edges": [[0, 1], [1, 2], [2, 3], [3, 0]]}, {"num_nodes": 5, "edges": [[0, 1]]}]
    cfg = EdgeDiffusionConfig(architecture="lowrank", channels=8, pair_channels=4, num_layers=2, rank=2,
                              batch_size=2, max_steps=3, self_condition=True, structure_features=True,
                              size_buckets=2, progress=False)
    gen, info = train_edge_diffusion(train, cfg)
    assert isinstance(gen.model, LowRankEdgeDenoiser) and info["steps"] == 3
    assert gen.model.config.edge_cond_dim == 1 + EDGE_STRUCT_DIM and gen.model.config.node_cond_dim == NODE_STRUCT_DIM
    out, nfe = gen.generate(4, DDIMSampler(num_steps=3, eta=1.0), _gen(0))
    again, _ = gen.generate(4, DDIMSampler(num_steps=3, eta=1.0), _gen(0))
    assert nfe == 3 and out == again and all(g["num_nodes"] in (4, 5, 6) for g in out)
    gen.save_pretrained(tmp_path)
    loaded = EdgeDiffusionGenerator.from_pretrained(tmp_path)
    assert isinstance(loaded.model, LowRankEdgeDenoiser)
    assert loaded.generate(4, DDIMSampler(num_steps=3, eta=1.0), _gen(0))[0] == out
    with pytest.raises(ValueError, match="architecture"):
        EdgeDiffusionConfig(architecture="dense")


def test_size_bucketed_batches_uniform_sorted_and_resumable():
    sizes = [3, 9, 5, 7, 4, 8, 6, 2]
    graphs = [{"num_nodes": n, "edges": [[0, 1]]} for n in sizes]
    A, mask = graphs_to_adjacency(graphs)
    f = size_bucketed_batches(A, mask, batch_size=2, buckets=4)
    g = _gen(0)
    widths = [f(s, g)[0].shape[1] for s in range(4)]
    pool = []
    g2 = _gen(0)
    for s in range(4):
        a, m = f(s, g2)
        pool.append(sorted(m.sum(1).tolist()))
    flat = sorted(v for b in pool for v in b)
    # each batch is one contiguous slice of the sorted pool of 8 draws
    for b in pool:
        lo, hi = b[0], b[-1]
        assert sum(lo < v < hi for v in flat) <= sum(lo < v < hi for v in b)
    assert widths == [max(b) for b in pool]
    # a fresh closure fed the same generator state at a pool boundary serves the same batches (resume)
    h = size_bucketed_batches(A, mask, batch_size=2, buckets=4)
    g3 = _gen(0)
    assert [sorted(h(s, g3)[1].sum(1).tolist()) for s in range(4)] == pool
    # buckets = 0: independent draws, width = largest graph of the batch
    a0, m0 = size_bucketed_batches(A, mask, 3, 0)(0, _gen(1))
    assert a0.shape[1] == int(m0.sum(1).max()) and a0.shape[0] == 3

