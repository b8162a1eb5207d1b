"""Pure GCN propagation, neighbour overlap and the NCN/NCNC predictor."""

import pytest
import torch

from scenegraph_diff.linkpred.decoders import NCNDecoder, _cap_per_query, neighbour_overlap
from scenegraph_diff.linkpred.encoders import PureGCNEncoder, gcn_norm_propagate
from scenegraph_diff.linkpred.splits import to_undirected

EDGES = to_undirected(torch.tensor([[0, 0, 1, 1, 2, 3], [1, 2, 2, 3, 3, 4]]))


def test_gcn_norm_propagate_matches_dense_formula():
    g = torch.Generator().manual_seed(0)
    ei = to_undirected(torch.randint(0, 12, (2, 30), generator=g))
    x = torch.randn(12, 5, generator=g)
    a = torch.zeros(12, 12)
    a[ei[1], ei[0]] = 1.0  # duplicates binarised
    a.fill_diagonal_(0.0)
    a = a + torch.eye(12)
    d = a.sum(1).rsqrt()
    want = d[:, None] * a * d[None, :] @ x
    assert torch.allclose(gcn_norm_propagate(x, ei), want, atol=1e-5)
    with pytest.raises(ValueError, match="outside \\[0, 12\\)"):
        gcn_norm_propagate(x, torch.tensor([[0], [12]]))


def test_pure_gcn_encoder_shapes_and_sparse_input():
    torch.manual_seed(0)
    enc = PureGCNEncoder(6, 4, num_layers=2).eval()
    x = (torch.rand(5, 6) > 0.5).float()
    out = enc(x, EDGES)
    assert out.shape == (5, 4)
    assert torch.allclose(out, enc(x.to_sparse(), EDGES), atol=1e-6)
    with pytest.raises(ValueError, match="num_layers must be >= 1, got 0"):
        PureGCNEncoder(6, 4, num_layers=0)


def test_pure_gcn_jk_input_is_a_polynomial_filter():
    """With ``jk_input`` the output is ``Σ_{l=0..L} w_l Â^l (W x + b)`` (dense formula, dropout off)."""
    torch.manual_seed(0)
    enc = PureGCNEncoder(6, 4, num_layers=3, jk=True, jk_input=True).eval()
    with torch.no_grad():
        enc.jk_weight.copy_(torch.tensor([0.5, -1.0, 2.0, 0.25]))
    x = torch.rand(5, 6)
    n = 5
    a = torch.eye(n)
    a[EDGES[1], EDGES[0]] = 1.0
    a = ((a + a.t()) > 0).float()
    a.fill_diagonal_(1.0)
    d = a.sum(1).rsqrt()
    ah = d[:, None] * a * d[None, :]
    z = enc.lin(x)
    want = 0.5 * z - 1.0 * ah @ z + 2.0 * ah @ ah @ z + 0.25 * ah @ ah @ ah @ z
    torch.testing.assert_close(enc(x, torch.cat([EDGES, EDGES.flip(0)], 1)), want, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="jk_input=True needs jk=True"):
        PureGCNEncoder(6, 4, jk=False, jk_input=True)


def _brute_overlap(edge_index, n, pairs):
    adj = torch.zeros(n, n, dtype=torch.bool)
    adj[edge_index[0], edge_index[1]] = True
    out = []
    for i, j in pairs.t().tolist():
        ni, nj = set(adj[i].nonzero().flatten().tolist()), set(adj[j].nonzero().flatten().tolist())
        out.append((ni & nj, ni - nj - {j}, nj - ni - {i}))
    return out


def test_neighbour_overlap_matches_brute_force():
    g = torch.Generator().manual_seed(1)
    ei = to_undirected(torch.randint(0, 25, (2, 70), generator=g))
    pairs = torch.randint(0, 25, (2, 40), generator=g)
    parts = neighbour_overlap(ei, 25, pairs)
    got = [tuple(set(n[p == k].tolist()) for p, n in parts) for k in range(40)]
    assert got == _brute_overlap(ei, 25, pairs)


def test_cap_per_query_keeps_at_most_cap_each():
    pid = torch.tensor([0, 0, 0, 0, 1, 2, 2, 2])
    keep = _cap_per_query(pid, 2)
    assert torch.bincount(pid[keep], minlength=3).tolist() == [2, 1, 2]
    assert _cap_per_query(pid, 0).all()


@pytest.mark.parametrize("completion,mode", [(False, "detached"), (True, "detached"), (True, "recursive")])
def test_ncn_decoder_symmetric_and_equivariant(completion, mode):
    torch.manual_seed(0)
    dec = NCNDecoder(8, completion=completion, pt=0.75, completion_mode=mode).eval()
    h = torch.randn(5, 8)
    pairs = torch.tensor([[0, 1, 3, 0], [3, 2, 4, 4]])
    s = dec(h, pairs, EDGES)
    assert s.shape == (4,)
    assert torch.allclose(s, dec(h, pairs.flip(0), EDGES), atol=1e-5)
    perm = torch.randperm(5)
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(5)
    assert torch.allclose(s, dec(h[perm], inv[pairs], inv[EDGES]), atol=1e-5)


def test_ncnc_completion_adds_residual_neighbours_only_when_alpha_positive():
    torch.manual_seed(0)
    ncn = NCNDecoder(8).eval()
    ncnc = NCNDecoder(8, completion=True, alpha=0.0, scale=1.0, offset=0.0).eval()
    ncnc.load_state_dict(ncn.state_dict())
    h = torch.randn(5, 8)
    pairs = torch.tensor([[0, 4], [4, 1]])  # (0, 4): no common neighbour, residual neighbours 1, 2 and 3
    assert torch.allclose(ncn(h, pairs, EDGES), ncnc(h, pairs, EDGES), atol=1e-6)
    ncnc.alpha = 1.0
    assert not torch.allclose(ncn(h, pairs, EDGES), ncnc(h, pairs, EDGES))
    w = ncnc.completion_weights(torch.tensor([-10.0, 0.0, 10.0]))
    assert (w[1:] > w[:-1]).all() and 0 <= float(w.min()) and float(w.max()) <= 1.0
    with pytest.raises(ValueError, match="pt must be in \\(0, 1\\], got 0.0"):
        NCNDecoder(8, pt=0.0)
    with pytest.raises(ValueError, match="needs the message-passing edge_index"):
        ncnc(h, pairs)


def test_ncnc_recursive_mode_scores_missing_edges_on_z_with_gradient():
    """``recursive``: the completion weights come from the predictor applied to ``z = h + xlin(h)``
    and carry gradient; ``detached``: from ``h`` without gradient. Same weights, different scores."""
    torch.manual_seed(0)
    det = NCNDecoder(8, completion=True, alpha=1.0, scale=1.0, offset=0.0).eval()
    rec = NCNDecoder(8, completion=True, alpha=1.0, scale=1.0, offset=0.0, completion_mode="recursive").eval()
    rec.load_state_dict(det.state_dict())
    h = torch.randn(5, 8)
    pairs = torch.tensor([[0], [4]])  # no common neighbour: the score depends on completion only via q
    # The recursive weight of the missing edge (1, 4) is the detached model's score of (1, 4) on z.
    z = h + det.xlin(h)
    zz = z + det.xlin(z)
    want = det.completion_weights(det._ncn(z, zz, torch.tensor([[1], [4]]), EDGES))
    got = rec.completion_weights(rec._ncn(z, zz, torch.tensor([[1], [4]]), EDGES))
    torch.testing.assert_close(got, want)
    assert not torch.allclose(det(h, pairs, EDGES), rec(h, pairs, EDGES))
    seen = {}
    for name, dec in (("det", det), ("rec", rec)):
        orig = dec.completion_weights
        dec.completion_weights = lambda lg, orig=orig, name=name: seen.setdefault(name, orig(lg))
        dec(h, pairs, EDGES).sum().backward()
    assert seen["rec"].requires_grad and not seen["det"].requires_grad
    with pytest.raises(ValueError, match="completion_mode must be 'detached' or 'recursive', got 'x'"):
        NCNDecoder(8, completion_mode="x")
