import pytest
import torch

from scenegraph_diff.diffusion.data import NodeCountSampler, adjacency_to_graphs, graphs_to_adjacency
from scenegraph_diff.diffusion.edge_diffusion import EdgeDiffusionGenerator
from scenegraph_diff.diffusion.gdss import GDSSGenerator, GDSSScoreModel
from scenegraph_diff.diffusion.losses import dsm_loss, edge_x0_loss
from scenegraph_diff.diffusion.pard import PARDGenerator, PARDModel, peeling_blocks
from scenegraph_diff.diffusion.ppgn import EdgeDenoiser
from scenegraph_diff.diffusion.samplers import DDIMSampler, PCSampler, S4Sampler
from scenegraph_diff.diffusion.sde import VESDE, VPSDE, SubVPSDE, symmetric_noise

torch.set_num_threads(1)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _mask(sizes, N):
    return torch.arange(N)[None] < torch.tensor(sizes)[:, None]


def _check_adj(A, mask):
    assert torch.isfinite(A).all()
    assert torch.equal(A, A.transpose(1, 2))
    assert (A.diagonal(dim1=1, dim2=2) == 0).all()
    pad = ~(mask[:, :, None] & mask[:, None, :])
    assert (A[pad] == 0).all()


@pytest.mark.parametrize("sde", [VPSDE(), SubVPSDE(), VESDE(0.2, 1.0)])
def test_sde_marginals_and_transition(sde):
    t = torch.tensor([0.01, 0.5, 1.0])
    a, s = sde.marginal(t)
    assert (s[1:] > s[:-1]).all() and (a <= 1).all()
    if isinstance(sde, VPSDE) and not isinstance(sde, SubVPSDE):
        assert torch.allclose(a**2 + s**2, torch.ones(3), atol=1e-5)
    ratio, std = sde.transition(t[1:2], 0.1)
    assert ratio.item() >= 1.0 and std.item() >= 0


def test_sde_rejects_bad_schedule():
    with pytest.raises(ValueError, match="beta_min"):
        VPSDE(2.0, 1.0)
    with pytest.raises(ValueError, match="sigma_min"):
        VESDE(1.0, 0.5)


def test_symmetric_noise_masks_padding():
    m = _mask([3, 5, 0], 5)
    z = symmetric_noise(m, _gen())
    _check_adj(z, m)
    assert z[1].abs().sum() > 0


def test_adjacency_round_trip():
    gs = [{"num_nodes": 4, "edges": [[0, 1], [1, 2], [2, 3]]}, {"num_nodes": 2, "edges": []}, {"num_nodes": 1, "edges": []}]
    A, m = graphs_to_adjacency(gs)
    assert adjacency_to_graphs(A, m) == gs
    with pytest.raises(ValueError, match="max_nodes"):
        graphs_to_adjacency(gs, max_nodes=3)


def test_denoiser_is_permutation_equivariant_and_symmetric():
    torch.manual_seed(0)
    model = EdgeDenoiser(channels=8, num_layers=2).eval()
    m = _mask([6], 6)
    A = symmetric_noise(m, _gen(1))
    t = torch.tensor([0.3])
    out = model(A, t, m)
    perm = torch.randperm(6, generator=_gen(2))
    out_p = model(A[:, perm][:, :, perm], t, m)
    assert torch.allclose(out[:, perm][:, :, perm], out_p, atol=1e-5)
    assert torch.allclose(out, out.transpose(1, 2))


def test_denoiser_ignores_padding():
    torch.manual_seed(0)
    model = EdgeDenoiser(channels=8, num_layers=2).eval()
    A = symmetric_noise(_mask([4], 4), _gen(1))
    small = model(A, torch.tensor([0.5]), _mask([4], 4))
    Ap = torch.zeros(1, 7, 7)
    Ap[:, :4, :4] = A
    Ap[:, 5, 6] = Ap[:, 6, 5] = 3.0  # garbage on padded nodes must not leak
    big = model(Ap, torch.tensor([0.5]), _mask([4], 7))
    assert torch.allclose(small, big[:, :4, :4], atol=1e-5)


def _edge_generator():
    torch.manual_seed(0)
    return EdgeDiffusionGenerator(EdgeDenoiser(channels=8, num_layers=2), VPSDE(), [1, 3, 5, 6])


@pytest.mark.parametrize("sampler", [DDIMSampler(num_steps=4), DDIMSampler(num_steps=3, eta=1.0), S4Sampler(num_steps=3),
                                     DDIMSampler(num_steps=3, eta=1.0, x0_sample=True, spacing="quadratic"),
                                     PCSampler(num_steps=2)])
def test_edge_samplers_symmetric_deterministic_no_nan(sampler):
    gen = _edge_generator()
    m = _mask([6, 1, 0, 3], 6)
    g1, nfe = gen.generate(4, sampler, _gen(5), node_mask=m)
    g2, _ = gen.generate(4, sampler, _gen(5), node_mask=m)
    assert g1 == g2
    assert [g["num_nodes"] for g in g1] == [6, 1, 0, 3]
    assert g1[1]["edges"] == [] and g1[2]["edges"] == []
    expected = {DDIMSampler: sampler.num_steps, S4Sampler: sampler.num_steps, PCSampler: 2 * sampler.num_steps}
    assert nfe == expected[type(sampler)]


def test_ddim_adjacency_masked_and_completion_keeps_known():
    gen = _edge_generator()
    m = _mask([5, 2, 1], 5)
    known_vals = torch.zeros(3, 5, 5)
    known_vals[0, 0, 1] = known_vals[0, 1, 0] = 1.0
    known = torch.zeros(3, 5, 5, dtype=torch.bool)
    known[0, :3, :3] = True
    A, _ = DDIMSampler(num_steps=3).sample(gen.x0_fn(m), gen.sde, m, _gen(0), known_mask=known, known_values=known_vals)
    _check_adj(A, m)
    assert A[0, 0, 1] == 1 and A[0, 0, 2] == 0 and A[0, 1, 2] == 0


def test_sdedit_refinement_at_small_t_keeps_graph():
    gen = _edge_generator()
    m = _mask([5], 5)
    A0 = torch.zeros(1, 5, 5)
    for i, j in [(0, 1), (1, 2), (3, 4)]:
        A0[0, i, j] = A0[0, j, i] = 1
    # from t_start ~ 0 the x0-prediction barely matters: the input's sign decides the output only through the model,
    # so check the plumbing: output is a valid masked adjacency and deterministic
    A1, _ = DDIMSampler(num_steps=2).sample(gen.x0_fn(m), gen.sde, m, _gen(0), A_init=A0, t_start=0.05)
    A2, _ = DDIMSampler(num_steps=2).sample(gen.x0_fn(m), gen.sde, m, _gen(0), A_init=A0, t_start=0.05)
    _check_adj(A1, m)
    assert torch.equal(A1, A2)


def test_edge_loss_finite_and_trains():
    torch.manual_seed(0)
    model = EdgeDenoiser(channels=8, num_layers=1)
    A, m = graphs_to_adjacency([{"num_nodes": 4, "edges": [[0, 1], [1, 2], [2, 3], [0, 3]]}] * 8)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    g = _gen(0)
    first = None
    for _ in range(40):
        loss = edge_x0_loss(model, VPSDE(), A, m, g)
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert torch.isfinite(loss) and loss.item() < first


def test_gdss_networks_symmetric_and_pc_runs():
    torch.manual_seed(0)
    model = GDSSScoreModel(num_features=4, hidden=8)
    m = _mask([5, 1, 0], 5)
    X = torch.randn(3, 5, 4) * m[..., None]
    A = symmetric_noise(m, _gen(0))
    ex, ea = model(X, A, m)
    assert torch.allclose(ea, ea.transpose(1, 2)) and (ex[~m] == 0).all()
    lx, la = dsm_loss(model, VPSDE(0.1, 1.0), VESDE(0.2, 1.0), X, (A > 0).float(), m, _gen(0))
    assert torch.isfinite(lx + la)
    gen = GDSSGenerator(model.eval(), VPSDE(0.1, 1.0), VESDE(0.2, 1.0), [1, 5])
    g1, nfe = gen.generate(3, PCSampler(num_steps=3), _gen(1), node_mask=m)
    g2, _ = gen.generate(3, PCSampler(num_steps=3), _gen(1), node_mask=m)
    assert g1 == g2 and nfe == 6 and g1[2] == {"num_nodes": 0, "edges": []}
    with pytest.raises(TypeError, match="no time input"):
        gen.generate(2, DDIMSampler(num_steps=2), _gen(1))


def test_peeling_blocks_star_and_permutation_invariance():
    star = [(0, i) for i in range(1, 5)]
    assert peeling_blocks(5, star) == [[0], [1, 2, 3, 4]]
    # path 0-1-2-3: leaves peeled first, then the middle pair
    assert peeling_blocks(4, [(0, 1), (1, 2), (2, 3)]) == [[1, 2], [0, 3]]
    edges = [(0, 1), (0, 2), (1, 2), (2, 3), (3, 4), (4, 5), (3, 5), (5, 6)]
    perm = [3, 6, 0, 5, 1, 4, 2]
    b1 = peeling_blocks(7, edges)
    b2 = peeling_blocks(7, [(perm[u], perm[v]) for u, v in edges])
    assert [sorted(perm[v] for v in b) for b in b1] == [sorted(b) for b in b2]


def test_pard_generates_valid_graphs_deterministically():
    torch.manual_seed(0)
    gen = PARDGenerator(PARDModel(channels=8, num_layers=1, max_block=3, max_nodes=6), VPSDE())
    g1, nfe = gen.generate(4, {"steps_per_block": 2}, _gen(3))
    g2, _ = gen.generate(4, {"steps_per_block": 2}, _gen(3))
    assert g1 == g2 and nfe > 0
    for g in g1:
        assert 1 <= g["num_nodes"] <= 6
        assert all(0 <= u < v < g["num_nodes"] for u, v in g["edges"])


def test_node_count_sampler():
    s = NodeCountSampler([3, 3, 5])
    m = s.mask(100, _gen(0))
    assert set(m.sum(1).tolist()) <= {3, 5} and m.shape == (100, 5)
    with pytest.raises(ValueError, match="at least one"):
        NodeCountSampler([])


def test_self_conditioned_generator_feeds_back_and_is_deterministic():
    torch.manual_seed(0)
    gen = EdgeDiffusionGenerator(EdgeDenoiser(channels=8, num_layers=1, edge_cond_dim=1), VPSDE(), [4, 5])
    assert gen.self_condition
    m = _mask([5, 4], 5)
    fn = gen.x0_fn(m)
    A = symmetric_noise(m, _gen(0))
    first = fn(A, torch.full((2,), 0.5))
    second = fn(A, torch.full((2,), 0.5))  # same input, but now conditioned on the first estimate
    assert not torch.allclose(first, second)
    g1, _ = gen.generate(2, DDIMSampler(num_steps=3, eta=1.0), _gen(1), node_mask=m)
    g2, _ = gen.generate(2, DDIMSampler(num_steps=3, eta=1.0), _gen(1), node_mask=m)
    assert g1 == g2
    A0, mm = graphs_to_adjacency(g1)
    _check_adj(A0, mm)
    loss = edge_x0_loss(gen.model.train(), VPSDE(), A0, mm, _gen(0), self_condition=True)
    assert torch.isfinite(loss)
