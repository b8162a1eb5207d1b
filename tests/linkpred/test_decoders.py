import pytest
import torch

from scenegraph_diff.linkpred.decoders import CNDecoder, DistMultDecoder, DotDecoder, MLPDecoder, common_neighbors
from scenegraph_diff.linkpred.splits import to_undirected

# 0-1, 0-2, 1-2, 1-3, 2-3, 3-4 (both directions)
EDGES = to_undirected(torch.tensor([[0, 0, 1, 1, 2, 3], [1, 2, 2, 3, 3, 4]]))


def _brute_cn(edge_index, n, pairs):
    adj = torch.zeros(n, n, dtype=torch.bool)
    adj[edge_index[0], edge_index[1]] = True
    return [set((adj[i] & adj[j]).nonzero().flatten().tolist()) for i, j in pairs.t().tolist()]


def test_common_neighbors_hand_written_graph():
    pairs = torch.tensor([[0, 1, 0, 4, 2], [3, 2, 4, 2, 2]])
    pid, node = common_neighbors(EDGES, 5, pairs)
    got = [set(node[pid == k].tolist()) for k in range(pairs.size(1))]
    assert got == [{1, 2}, {0, 3}, set(), {3}, {0, 1, 3}]
    assert got == _brute_cn(EDGES, 5, pairs)


def test_common_neighbors_random_graph_matches_brute_force():
    g = torch.Generator().manual_seed(0)
    ei = to_undirected(torch.randint(0, 30, (2, 80), generator=g))
    pairs = torch.randint(0, 30, (2, 50), generator=g)
    pid, node = common_neighbors(ei, 30, pairs)
    got = [set(node[pid == k].tolist()) for k in range(50)]
    assert got == _brute_cn(ei, 30, pairs)


@pytest.mark.parametrize("make", [lambda: DotDecoder(), lambda: DistMultDecoder(8, 2), lambda: MLPDecoder(8), lambda: CNDecoder(8)])
def test_decoders_are_symmetric_and_permutation_equivariant(make):
    torch.manual_seed(0)
    dec = make().eval()
    h = torch.randn(5, 8)
    pairs = torch.tensor([[0, 1, 3], [3, 2, 4]])
    s = dec(h, pairs, EDGES)
    assert s.shape == (3,)
    assert torch.allclose(s, dec(h, pairs.flip(0), EDGES), atol=1e-6)
    perm = torch.randperm(5)  # relabel nodes: new id of old node i is inv[i]
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(5)
    s2 = dec(h[perm], inv[pairs], inv[EDGES])
    assert torch.allclose(s, s2, atol=1e-5)


def test_cn_decoder_uses_common_neighbours():
    torch.manual_seed(0)
    dec = CNDecoder(4).eval()
    h = torch.randn(5, 4)
    pairs = torch.tensor([[0], [3]])
    base = dec(h, pairs, EDGES)
    h2 = h.clone()
    h2[1] += 1.0  # node 1 is a common neighbour of (0, 3)
    assert not torch.allclose(base, dec(h2, pairs, EDGES))
    h3 = h.clone()
    h3[4] += 1.0  # node 4 is not
    assert torch.allclose(base, dec(h3, pairs, EDGES))
    with pytest.raises(ValueError, match="needs the message-passing edge_index"):
        dec(h, pairs)


def test_distmult_relation_specific():
    dec = DistMultDecoder(3, num_relations=2)
    with torch.no_grad():
        dec.rel[1] = torch.tensor([1.0, 0.0, -1.0])
    h = torch.tensor([[1.0, 2.0, 3.0], [1.0, 1.0, 1.0]])
    pairs = torch.tensor([[0, 0], [1, 1]])
    assert dec(h, pairs, rel=torch.tensor([0, 1])).tolist() == [6.0, -2.0]
    assert repr(dec) == "DistMultDecoder(3, num_relations=2)"
    with pytest.raises(ValueError, match="num_relations must be >= 1, got 0"):
        DistMultDecoder(3, 0)
