import json
from pathlib import Path

import networkx as nx
import numpy as np
import pytest

from scenegraph_diff.metrics import graph_mmd, mmd2, orbit_counts, orbit_counts_bruteforce

FIX = Path(__file__).parents[1] / "fixtures" / "graphs"


def _load(name):
    return [json.loads(line) for line in (FIX / f"{name}_mini.jsonl").read_text().splitlines()]


def _random_graph(rng: np.random.Generator):
    n = int(rng.integers(1, 9))
    p = float(rng.uniform(0.1, 0.9))
    edges = [(i, j) for i in range(n) for j in range(i + 1, n) if rng.random() < p]
    return n, edges


def test_orbit_counts_match_bruteforce_on_200_random_graphs():
    rng = np.random.default_rng(0)
    for _ in range(200):
        n, edges = _random_graph(rng)
        np.testing.assert_array_equal(orbit_counts(n, edges), orbit_counts_bruteforce(n, edges))


def test_orbit_counts_known_graphlets():
    # K4: every node is in orbit 14 once, 3 triangles, degree 3.
    k4 = orbit_counts(4, [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)])
    assert (k4[:, 14] == 1).all() and (k4[:, 3] == 3).all() and (k4[:, 0] == 3).all()
    assert k4[:, [1, 2, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]].sum() == 0
    # paw: triangle 0-1-2 with tail 3 at node 2
    paw = orbit_counts(4, [(0, 1), (1, 2), (0, 2), (2, 3)])
    assert paw[3, 9] == 1 and paw[0, 10] == 1 and paw[1, 10] == 1 and paw[2, 11] == 1
    # star centre 0
    star = orbit_counts(4, [(0, 1), (0, 2), (0, 3)])
    assert star[0, 7] == 1 and star[1:, 6].tolist() == [1, 1, 1] and star[0, 2] == 3
    # 4-cycle and path
    assert (orbit_counts(4, [(0, 1), (1, 2), (2, 3), (3, 0)])[:, 8] == 1).all()
    path = orbit_counts(4, [(0, 1), (1, 2), (2, 3)])
    assert path[:, 4].tolist() == [1, 0, 0, 1] and path[:, 5].tolist() == [0, 1, 1, 0]


def test_orbit_counts_real_graphs_match_bruteforce():
    for g in _load("community_small") + _load("ego_small"):
        np.testing.assert_array_equal(orbit_counts(g["num_nodes"], g["edges"]),
                                      orbit_counts_bruteforce(g["num_nodes"], g["edges"]))


@pytest.mark.parametrize("name", ["community_small", "ego_small"])
def test_mmd_of_set_with_itself_is_zero(name):
    gs = _load(name)
    out = graph_mmd(gs, gs, metrics=("degree", "cluster", "orbit", "spectral"))
    for k, v in out.items():
        assert abs(v) < 1e-12, (k, v)


def test_mmd_positive_and_sensitive():
    gs = _load("community_small")
    paths = [nx.path_graph(g["num_nodes"]) for g in gs]
    far = graph_mmd(paths, gs)
    near = graph_mmd(gs[4:], gs[:4])
    for k in far:
        assert far[k] > near[k] >= 0, (k, far[k], near[k])


def test_gaussian_emd_matches_direct_formula():
    # Two pmfs on 3 bins: EMD = |0.5-0| + |0.5-0.5| = 0.5 ; biased MMD of {x} vs {y} = 2 - 2k
    x = np.array([[1.0, 1.0, 0.0]])
    y = np.array([[0.0, 2.0, 0.0]])
    k = np.exp(-(0.5**2) / 2)
    assert mmd2(x, y, "gaussian_emd", sigma=1.0) == pytest.approx(2 - 2 * k)
    assert mmd2(x, y, "gaussian_emd", sigma=1.0, scale=10.0) == pytest.approx(2 - 2 * np.exp(-(0.05**2) / 2))


def test_isolated_nodes_removed_from_generated_only():
    g = {"num_nodes": 5, "edges": [[0, 1], [1, 2]]}  # nodes 3, 4 isolated
    h = {"num_nodes": 3, "edges": [[0, 1], [1, 2]]}
    assert graph_mmd([g], [h])["degree"] == pytest.approx(0.0, abs=1e-12)
    assert graph_mmd([g], [h], remove_isolated_generated=False)["degree"] > 0


def test_empty_generated_graph_does_not_crash():
    out = graph_mmd([{"num_nodes": 0, "edges": []}, {"num_nodes": 1, "edges": []}], _load("ego_small"),
                    metrics=("degree", "cluster", "orbit", "spectral"))
    assert all(np.isfinite(v) for v in out.values())


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="unknown metric"):
        graph_mmd(_load("ego_small"), _load("ego_small"), metrics=("nope",))
    with pytest.raises(ValueError, match="out of range"):
        orbit_counts(2, [(0, 5)])
    with pytest.raises(TypeError, match="networkx.Graph"):
        graph_mmd([[1, 2]], _load("ego_small"))
