"""Seeded synthetic graphs and fixture paths shared by the link-prediction tests."""

from pathlib import Path

import torch

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "linkpred"


def random_graph(num_nodes: int = 60, p_in: float = 0.25, p_out: float = 0.02, feats: int = 8, seed: int = 0):
    """A seeded two-block stochastic block model as a PyG ``Data`` (undirected, both directions)."""
    from torch_geometric.data import Data

    g = torch.Generator().manual_seed(seed)
    block = torch.arange(num_nodes) % 2
    prob = torch.where(block[:, None] == block[None, :], p_in, p_out)
    upper = torch.triu(torch.rand(num_nodes, num_nodes, generator=g) < prob, diagonal=1)
    u, v = upper.nonzero().t()
    edge_index = torch.cat([torch.stack([u, v]), torch.stack([v, u])], 1)
    x = torch.rand(num_nodes, feats, generator=g).lt(0.3).float()
    x[:, 0] = block.float()
    return Data(x=x, edge_index=edge_index, num_nodes=num_nodes)


def random_hetero(seed: int = 0):
    """A small movie/director/actor ``HeteroData`` with the IMDB schema (edges in both directions)."""
    from torch_geometric.data import HeteroData

    g = torch.Generator().manual_seed(seed)
    d = HeteroData()
    n = {"movie": 40, "director": 12, "actor": 30}
    for t, k in n.items():
        d[t].x = torch.rand(k, 6, generator=g).lt(0.4).float()
    md = torch.stack([torch.arange(40), torch.randint(0, 12, (40,), generator=g)])
    ma = torch.stack([torch.arange(40).repeat(3), torch.randint(0, 30, (120,), generator=g)])
    ma = torch.unique(ma, dim=1)
    d["movie", "to", "director"].edge_index = md
    d["movie", "to", "actor"].edge_index = ma
    d["director", "to", "movie"].edge_index = md.flip(0)
    d["actor", "to", "movie"].edge_index = ma.flip(0)
    return d
