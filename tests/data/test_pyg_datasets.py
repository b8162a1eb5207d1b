"""PyG datasets over prepared folders (scenegraph_diff.data.dataset)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from scenegraph_diff.data.dataset import (
    DropRelations,
    GraphGenerationDataset,
    SceneGraphDataset,
    StreamingSceneGraphDataset,
)
from scenegraph_diff.data.factual import FactualConfig, prepare_factual
from scenegraph_diff.graph import SceneGraph
from scenegraph_diff.graph.hetero import from_hetero_data, to_hetero_data
from scenegraph_diff.text import HashingEmbedder

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "datasets"
SHARED = Path(__file__).resolve().parents[3] / "shared" / "datasets"


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    out = tmp_path_factory.mktemp("factual")
    src = tmp_path_factory.mktemp("src")
    rows = ["image_id,region_id,caption,scene_graph"]
    rows += [f'{i},{i},cap {i},"( a{i % 4} , on , b{i % 3} ) , ( a{i % 4} , is , red )"' for i in range(30)]
    (src / "train.csv").write_text("\n".join(rows) + "\n")
    prepare_factual(FactualConfig(str(src), str(out), splits=("train",), chunk_size=7, progress=False))
    return out


def test_in_memory_dataset(prepared):
    ds = SceneGraphDataset(prepared, "train", embedder=HashingEmbedder(8))
    assert len(ds) == 30 and ds.ids[:2] == ["0/0", "1/1"]
    d = ds[5]
    assert d["object"].x.shape == (2, 8) and d["relation"].x.shape == (1, 8)
    assert ds.vocab.label("object", int(d["object"].label[0])) == "a1"
    assert from_hetero_data(d).triplets() == ds.graph(5).without_text().triplets() == [("a1", "on", "b2")]
    assert len(SceneGraphDataset(prepared, "train", max_graphs=4)) == 4
    assert len(SceneGraphDataset(prepared, "train", pre_filter=lambda g: g.objects[0].name == "a0")) == 8
    with pytest.raises(KeyError, match="split 'dev'"):
        SceneGraphDataset(prepared, "dev")


def test_in_memory_dataset_batches_with_pyg_loader(prepared):
    from torch_geometric.loader import DataLoader

    batch = next(iter(DataLoader(SceneGraphDataset(prepared, "train"), batch_size=4)))
    assert batch.num_graphs == 4 and batch["object"].label.shape == (8,)


@pytest.mark.parametrize("world_size,workers", [(1, 1), (2, 1), (3, 2)])
def test_streaming_reads_every_graph_once(prepared, world_size, workers):
    texts = []
    for rank in range(world_size):
        ds = StreamingSceneGraphDataset(prepared, "train", rank=rank, world_size=world_size, as_scene_graph=True)
        if workers == 1:
            texts += [g.text for g in ds]
        else:
            loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=workers)
            texts += [g.text for g in loader]
    assert sorted(texts) == sorted(f"cap {i}" for i in range(30))
    assert len(ds) == 30


def test_streaming_shuffle_is_seeded(prepared):
    def order(seed, epoch=0):
        ds = StreamingSceneGraphDataset(prepared, "train", shuffle_buffer=5, seed=seed, as_scene_graph=True)
        ds.set_epoch(epoch)
        return [g.text for g in ds]

    assert order(0) == order(0)
    assert order(0) != order(1) and order(0) != order(0, epoch=1)
    assert sorted(order(0)) == sorted(f"cap {i}" for i in range(30))
    assert order(0) != [f"cap {i}" for i in range(30)]
    d = next(iter(StreamingSceneGraphDataset(prepared, "train")))
    assert d["relation"].num_nodes == 1


@pytest.fixture()
def damaged(prepared, tmp_path):
    """A copy of the prepared folder, to damage."""
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(prepared, out)
    return out


@pytest.mark.parametrize("damage, message", [
    ("cut mid-line", r"part-00001\.jsonl: line 7: json: "),
    ("cut a line", r"part-00001\.jsonl: 6 graphs, but manifest\.json records 7"),
    ("short ids", r"part-00001\.ids: 3 ids for 7 graphs"),
    ("no ids", r"part-00001\.ids"),
    ("no shard", r"part-00001\.jsonl"),
])
@pytest.mark.parametrize("streaming", [False, True], ids=["in_memory", "streaming"])
def test_dataset_errors_name_the_file(damaged, damage, message, streaming):
    shard = damaged / "train" / "part-00001.jsonl"
    ids = shard.with_suffix(".ids")
    if damage == "cut mid-line":
        shard.write_bytes(shard.read_bytes()[:-9])
    elif damage == "cut a line":
        shard.write_text("".join(shard.read_text().splitlines(keepends=True)[:-1]))
    elif damage == "short ids":
        ids.write_text("a\nb\nc\n")
    else:
        (ids if damage == "no ids" else shard).unlink()
    with pytest.raises((ValueError, OSError), match=message):
        if streaming:
            list(StreamingSceneGraphDataset(damaged, "train", as_scene_graph=True))
        else:
            SceneGraphDataset(damaged, "train")


def test_drop_relations_transform():
    g = SceneGraph.from_triplets([("a", "on", "b"), ("b", "under", "c"), ("c", "near", "a")])
    d = to_hetero_data(g)
    kept = DropRelations(0.5, torch.Generator().manual_seed(3))(d)
    assert d["relation"].num_nodes == 3  # input untouched
    out = from_hetero_data(kept)
    assert set(out.triplets()) < set(g.triplets()) and len(out.triplets()) == kept["relation"].num_nodes
    assert from_hetero_data(DropRelations(0.0)(d)).triplets() == g.triplets()
    assert from_hetero_data(DropRelations(1.0)(d)).num_relations == 0
    with pytest.raises(ValueError, match="p must be in"):
        DropRelations(1.5)


@pytest.mark.skipif(not (SHARED / "graphs").is_dir(), reason="needs ../shared/datasets/graphs")
def test_graph_generation_dataset():
    train = GraphGenerationDataset("community_small", "train")
    test = GraphGenerationDataset("community_small", "test")
    assert (len(train), len(test)) == (80, 20)
    d = test[0]
    ei = d.edge_index
    assert set(map(tuple, ei.t().tolist())) == set(map(tuple, ei.flip(0).t().tolist()))  # undirected
    assert 12 <= d.num_nodes <= 20
    with pytest.raises(ValueError, match="split must be"):
        GraphGenerationDataset("grid", "val")
