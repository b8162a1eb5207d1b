import pytest
import torch

from scenegraph_diff.linkpred.splits import (
    edge_keys,
    hetero_link_split,
    random_link_split,
    sample_negatives,
    undirected_edges,
)

from ._graphs import random_graph


def _keys(ei, n):
    return set(edge_keys(ei, n).tolist())


def test_random_split_sizes_disjoint_and_complete():
    data = random_graph()
    n = data.num_nodes
    s = random_link_split(data.edge_index, n, 0.1, 0.2, torch.Generator().manual_seed(0))
    all_edges = _keys(undirected_edges(data.edge_index), n)
    tr, va, te = _keys(s.train_pos, n), _keys(s.val_pos, n), _keys(s.test_pos, n)
    assert len(va) == int(0.1 * len(all_edges)) and len(te) == int(0.2 * len(all_edges))
    assert not (tr & va) and not (tr & te) and not (va & te)
    assert tr | va | te == all_edges
    # One negative per positive, negatives are non-edges, unique and disjoint between val and test.
    assert s.val_neg.size(1) == s.val_pos.size(1) and s.test_neg.size(1) == s.test_pos.size(1)
    vn, tn = _keys(s.val_neg, n), _keys(s.test_neg, n)
    assert len(vn) == s.val_neg.size(1) and len(tn) == s.test_neg.size(1)
    assert not (vn & all_edges) and not (tn & all_edges) and not (vn & tn)
    assert (s.val_neg[0] != s.val_neg[1]).all()


@pytest.mark.parametrize("with_val", [False, True])
def test_no_heldout_edge_in_message_passing(with_val):
    data = random_graph()
    n = data.num_nodes
    s = random_link_split(data.edge_index, n, generator=torch.Generator().manual_seed(1))
    va, te = _keys(s.val_pos, n), _keys(s.test_pos, n)
    for stage in ("train", "val"):
        mp = _keys(s.message_passing_edges(stage, with_val=with_val), n)
        assert not (mp & va) and not (mp & te)
    mp_test = _keys(s.message_passing_edges("test", with_val=with_val), n)
    assert not (mp_test & te)
    assert bool(mp_test & va) == with_val
    with pytest.raises(ValueError, match="stage must be"):
        s.message_passing_edges("dev")


def test_split_is_deterministic_under_a_generator():
    data = random_graph()
    a = random_link_split(data.edge_index, data.num_nodes, generator=torch.Generator().manual_seed(3))
    b = random_link_split(data.edge_index, data.num_nodes, generator=torch.Generator().manual_seed(3))
    c = random_link_split(data.edge_index, data.num_nodes, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a.test_pos, b.test_pos) and torch.equal(a.test_neg, b.test_neg)
    assert not torch.equal(a.test_pos, c.test_pos)


def test_extra_validation_negatives_leave_the_rest_of_the_split_unchanged():
    data = random_graph()
    n = data.num_nodes
    one = random_link_split(data.edge_index, n, generator=torch.Generator().manual_seed(3))
    two = random_link_split(data.edge_index, n, generator=torch.Generator().manual_seed(3), val_negatives=2)
    for k in ("train_pos", "val_pos", "test_pos", "test_neg"):
        assert torch.equal(getattr(one, k), getattr(two, k)), k
    nv = one.val_pos.size(1)
    assert two.val_neg.size(1) == 2 * nv and torch.equal(two.val_neg[:, :nv], one.val_neg)
    vn, tn = _keys(two.val_neg, n), _keys(two.test_neg, n)
    assert len(vn) == 2 * nv and not (vn & tn)  # unique, disjoint from test negatives
    assert not (vn & _keys(undirected_edges(data.edge_index), n))  # and non-edges
    with pytest.raises(ValueError, match="val_negatives must be >= 1, got 0"):
        random_link_split(data.edge_index, n, val_negatives=0)


def test_sample_negatives_avoids_excluded_pairs():
    excl = torch.sort(edge_keys(torch.tensor([[0, 1, 2], [1, 2, 3]]), 5)).values
    neg = sample_negatives(200, 5, excl, torch.Generator().manual_seed(0))
    assert neg.shape == (2, 200)
    assert not (set(edge_keys(neg, 5).tolist()) & set(excl.tolist()))
    assert (neg[0] != neg[1]).all()
    with pytest.raises(ValueError, match="cannot draw 8 unique negatives"):
        sample_negatives(8, 5, excl, unique=True)  # 10 pairs - 3 edges = 7


def test_bad_ratios():
    data = random_graph()
    with pytest.raises(ValueError, match="bad ratios"):
        random_link_split(data.edge_index, data.num_nodes, 0.6, 0.5)


def test_hetero_split_has_no_leak_through_reverse_types():
    from ._graphs import random_hetero

    data = random_hetero()
    fwd = [("movie", "to", "director"), ("movie", "to", "actor")]
    rev = [("director", "to", "movie"), ("actor", "to", "movie")]
    train, val, test = hetero_link_split(data, fwd, rev, 0.1, 0.2, seed=0)
    for f, r in zip(fwd, rev):
        n_dst = data[f[2]].num_nodes

        def pos(d):
            ei, y = d[f].edge_label_index, d[f].edge_label
            return set((ei[0][y == 1] * n_dst + ei[1][y == 1]).tolist())

        def mp(d):
            a = d[f].edge_index
            b = d[r].edge_index.flip(0)
            return set((a[0] * n_dst + a[1]).tolist()) | set((b[0] * n_dst + b[1]).tolist())

        va, te = pos(val), pos(test)
        assert va and te and not (va & te)
        assert not (mp(train) & (va | te)), "held-out edge in the training message-passing graph"
        assert not (mp(val) & (va | te))
        assert not (mp(test) & te)
        # one negative per positive
        assert int((val[f].edge_label == 0).sum()) == len(va)


def test_hetero_split_disjoint_train_keeps_targets_out_of_message_passing():
    from ._graphs import random_hetero

    data = random_hetero()
    fwd, rev = [("movie", "to", "actor")], [("actor", "to", "movie")]
    train, _, _ = hetero_link_split(data, fwd, rev, 0.1, 0.2, seed=0, disjoint_train_ratio=0.3)
    n_dst = data["actor"].num_nodes
    sup = train[fwd[0]].edge_label_index
    sup_keys = set((sup[0] * n_dst + sup[1]).tolist())
    a, b = train[fwd[0]].edge_index, train[rev[0]].edge_index.flip(0)
    mp = set((a[0] * n_dst + a[1]).tolist()) | set((b[0] * n_dst + b[1]).tolist())
    assert sup_keys and not (sup_keys & mp)


def test_hetero_split_checks_edge_types():
    from ._graphs import random_hetero

    with pytest.raises(ValueError, match="not in the graph"):
        hetero_link_split(random_hetero(), [("movie", "to", "studio")], [("studio", "to", "movie")])
