"""PyG datasets over prepared SceneGraph JSONL folders, and the GDSS graph-generation sets.

- :class:`SceneGraphDataset` — an in-memory PyG ``Dataset`` of ``HeteroData`` (schema:
  :mod:`scenegraph_diff.graph.hetero`) for one split of a prepared folder: small and medium sets
  (VRD, FACTUAL, COCO). Built directly from the shards; nothing is pickled or cached on disk.
- :class:`StreamingSceneGraphDataset` — an ``IterableDataset`` streaming the shards for sets that do
  not fit in memory (Visual Genome, parsed caption corpora). Shards are divided between DataLoader
  workers and DDP ranks; an optional shuffle buffer uses a seeded ``torch.Generator``.
- :class:`GraphGenerationDataset` — GDSS's ``community_small`` / ``ego_small`` / ``grid`` /
  ``enzymes`` as PyG ``Data`` (undirected ``edge_index`` in both directions), GDSS's split.

Node features: pass a label embedder (:mod:`scenegraph_diff.text`; anything with ``.dim`` and
``embed(labels) -> Tensor [n, dim]``) to fill ``x``; the folder's ``vocab.json`` fills ``label``.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any, Callable, Iterator, Union

import torch
from torch.utils.data import IterableDataset, get_worker_info
from torch_geometric.data import Data, Dataset, HeteroData, InMemoryDataset

from ..graph.hetero import LabelEmbedder, to_hetero_data
from ..graph.scene_graph import SceneGraph
from ..graph.vocab import Vocabulary
from .shards import iter_shard, load_manifest

__all__ = ["SceneGraphDataset", "StreamingSceneGraphDataset", "GraphGenerationDataset", "DropRelations"]

PathLike = Union[str, "Path"]


def _shards(root: Path, split: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The manifest records of the shards of ``split``, and the manifest."""
    m = load_manifest(root)
    if split not in m["splits"]:
        raise KeyError(f"split {split!r} not in {str(root)!r} (have {sorted(m['splits'])})")
    return list(m["splits"][split]["shards"]), m


class SceneGraphDataset(Dataset):
    r"""One split of a prepared folder as an in-memory PyG dataset of ``HeteroData`` scene graphs.

    Items are kept as a list of ``HeteroData`` (not one collated store: the schema's ``scene`` node
    type carries no tensors, which ``InMemoryDataset.separate`` cannot slice).

    Args:
        root: a folder written by ``scenegraph-diff preprocess`` (with ``manifest.json``).
        split: which split (``"train"``, ``"test"``, ...).
        embedder: optional label embedder filling ``x`` ``[n, D]`` on every node type.
        vocab: vocabulary for ``label`` ids (default: the folder's ``vocab.json``).
        transform: PyG transform applied on access.
        pre_filter: keep only graphs for which ``pre_filter(graph: SceneGraph)`` is true.
        max_graphs: read at most this many graphs.

    Attributes:
        vocab: the vocabulary; ``ids``: the source id of each graph (image id, line number, ...).

    Example:
        >>> ds = SceneGraphDataset("prepared/vrd", split="test")   # doctest: +SKIP
        >>> ds[0]["object"].label, ds.graph(0).triplets()           # doctest: +SKIP
    """

    def __init__(
        self,
        root: PathLike,
        split: str = "train",
        embedder: LabelEmbedder | None = None,
        vocab: Vocabulary | None = None,
        transform: Callable[[HeteroData], HeteroData] | None = None,
        pre_filter: Callable[[SceneGraph], bool] | None = None,
        max_graphs: int | None = None,
    ) -> None:
        super().__init__(None, transform)
        self.prepared_root = Path(root)
        self.split = split
        shards, manifest = _shards(self.prepared_root, split)
        self.vocab = vocab if vocab is not None else Vocabulary.load(self.prepared_root / manifest["vocab"]["path"])
        graphs: list[SceneGraph] = []
        ids: list[str] = []
        for shard in shards:
            if max_graphs is not None and len(graphs) >= max_graphs:
                break
            for source_id, g in iter_shard(self.prepared_root, shard):  # errors name the file
                if max_graphs is not None and len(graphs) >= max_graphs:
                    break
                if pre_filter is None or pre_filter(g):
                    graphs.append(g)
                    ids.append(source_id)
        self.graphs = graphs
        self.ids = ids
        self.data_list = [to_hetero_data(g, embedder=embedder, vocab=self.vocab) for g in graphs]

    def len(self) -> int:
        return len(self.data_list)

    def get(self, idx: int) -> HeteroData:
        return self.data_list[idx]

    def graph(self, idx: int) -> SceneGraph:
        """The :class:`SceneGraph` of item ``idx`` (as stored, before transforms)."""
        return self.graphs[idx]

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.prepared_root.name!r}, split={self.split!r}, {len(self)} graphs)"


class StreamingSceneGraphDataset(IterableDataset):
    r"""Stream one split of a prepared folder shard by shard (bounded memory).

    Shards are assigned round-robin to ``(rank, worker)`` pairs: with ``world_size`` DDP ranks and
    ``W`` DataLoader workers, reader ``rank * W + worker`` reads shards ``k`` with
    ``k % (world_size * W) == rank * W + worker``, so every graph is read exactly once per epoch.

    Args:
        root: a prepared folder.
        split: which split.
        embedder, vocab: as :class:`SceneGraphDataset`.
        transform: applied to each ``HeteroData``.
        shuffle_buffer: when > 0, shuffle shard order and graphs within a buffer of this size.
        seed: seed of the shuffle (``seed + epoch`` via :meth:`set_epoch`).
        rank, world_size: DDP position (default: from the ``torchrun`` environment).
        as_scene_graph: yield :class:`SceneGraph` objects instead of ``HeteroData``.
    """

    def __init__(
        self,
        root: PathLike,
        split: str = "train",
        embedder: LabelEmbedder | None = None,
        vocab: Vocabulary | None = None,
        transform: Callable[[HeteroData], HeteroData] | None = None,
        shuffle_buffer: int = 0,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        as_scene_graph: bool = False,
    ) -> None:
        super().__init__()
        from ..training import distributed_env

        self.root = Path(root)
        self.split = split
        self.shards, manifest = _shards(self.root, split)
        self.paths = [self.root / s["path"] for s in self.shards]
        self.num_graphs = int(manifest["splits"][split]["graphs"])
        self.vocab = vocab if vocab is not None else Vocabulary.load(self.root / manifest["vocab"]["path"])
        self.embedder = embedder
        self.transform = transform
        if shuffle_buffer < 0:
            raise ValueError(f"shuffle_buffer must be >= 0, got {shuffle_buffer}")
        self.shuffle_buffer = shuffle_buffer
        self.seed = seed
        self.epoch = 0
        env_rank, env_world, _ = distributed_env()
        self.rank = env_rank if rank is None else rank
        self.world_size = env_world if world_size is None else world_size
        self.as_scene_graph = as_scene_graph

    def set_epoch(self, epoch: int) -> None:
        """Change the shuffle for a new epoch."""
        self.epoch = epoch

    def _my_shards(self) -> list[dict[str, Any]]:
        info = get_worker_info()
        workers, worker = (1, 0) if info is None else (info.num_workers, info.id)
        readers = self.world_size * workers
        me = self.rank * workers + worker
        order = list(range(len(self.paths)))
        if self.shuffle_buffer:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(len(order), generator=g).tolist()
        return [self.shards[k] for i, k in enumerate(order) if i % readers == me]

    def _convert(self, g: SceneGraph) -> Any:
        if self.as_scene_graph:
            return g
        data = to_hetero_data(g, embedder=self.embedder, vocab=self.vocab)
        return self.transform(data) if self.transform is not None else data

    def __iter__(self) -> Iterator[Any]:
        graphs = (g for s in self._my_shards() for _, g in iter_shard(self.root, s))  # errors name the file
        if not self.shuffle_buffer:
            for g in graphs:
                yield self._convert(g)
            return
        info = get_worker_info()
        gen = torch.Generator().manual_seed(self.seed + self.epoch + 7919 * (self.rank * 1000 + (info.id if info else 0)))
        buf: list[SceneGraph] = []
        for g in graphs:
            buf.append(g)
            if len(buf) >= self.shuffle_buffer:
                j = int(torch.randint(len(buf), (1,), generator=gen))
                buf[j], buf[-1] = buf[-1], buf[j]
                yield self._convert(buf.pop())
        while buf:
            j = int(torch.randint(len(buf), (1,), generator=gen))
            buf[j], buf[-1] = buf[-1], buf[j]
            yield self._convert(buf.pop())

    def __len__(self) -> int:
        """Graphs in the split (over all ranks and workers)."""
        return self.num_graphs

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.root.name!r}, split={self.split!r}, {len(self.paths)} shards, {self.num_graphs} graphs)"


class GraphGenerationDataset(InMemoryDataset):
    r"""A GDSS graph-generation set as PyG ``Data`` graphs (``edge_index`` ``[2, 2E]``, ``num_nodes``).

    Args:
        name: ``"community_small"``, ``"ego_small"``, ``"grid"`` or ``"enzymes"``.
        split: ``"train"`` or ``"test"`` (GDSS's split: the first 20 % are the test set).
        data_root: folder holding ``graphs/<name>.jsonl`` (default ``../shared/datasets``).
        transform: PyG transform applied on access.
    """

    def __init__(self, name: str, split: str = "train", data_root: PathLike | None = None,
                 transform: Callable[[Data], Data] | None = None) -> None:
        from ..diffusion.data import load_graph_dataset

        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        super().__init__(None, transform)
        self.name = name
        self.split = split
        train, test = load_graph_dataset(name, data_root)
        data_list = []
        for g in train if split == "train" else test:
            e = torch.as_tensor(g["edges"], dtype=torch.long).reshape(-1, 2).t()  # [2, E], u < v
            edge_index = torch.cat([e, e.flip(0)], dim=1)  # [2, 2E] both directions
            data_list.append(Data(edge_index=edge_index, num_nodes=int(g["num_nodes"])))
        self.data, self.slices = self.collate(data_list)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.name!r}, split={self.split!r}, {len(self)} graphs)"


class DropRelations:
    r"""Transform: drop each ``relation`` node (and its edges) with probability ``p``.

    A data augmentation for scene-graph encoders. Never mutates its input; randomness comes from
    the ``generator`` given at construction (deterministic for a seeded generator).

    Args:
        p: drop probability in ``[0, 1]``.
        generator: the random source (default: a fresh unseeded one).
    """

    def __init__(self, p: float, generator: torch.Generator | None = None) -> None:
        if not 0.0 <= p <= 1.0 or math.isnan(p):
            raise ValueError(f"DropRelations: p must be in [0, 1], got {p!r}")
        self.p = p
        self.generator = generator

    def __call__(self, data: HeteroData) -> HeteroData:
        out = copy.copy(data)
        n = data["relation"].num_nodes or 0
        keep = torch.rand(n, generator=self.generator) >= self.p  # [Nr]
        new_id = torch.cumsum(keep.long(), 0) - 1  # [Nr] old relation id -> new id
        store = out["relation"]
        for key, value in list(data["relation"].items()):
            if isinstance(value, torch.Tensor) and value.dim() > 0 and value.size(0) == n:
                store[key] = value[keep]
            elif isinstance(value, list) and len(value) == n:
                store[key] = [v for v, k in zip(value, keep.tolist()) if k]
        store.num_nodes = int(keep.sum())
        for edge_type in data.edge_types:
            src, _, dst = edge_type
            if "relation" not in (src, dst):
                continue
            ei = data[edge_type].edge_index  # [2, E]
            col = 0 if src == "relation" else 1
            mask = keep[ei[col]]  # [E]
            ei = ei[:, mask].clone()
            ei[col] = new_id[ei[col]]
            out[edge_type].edge_index = ei
        return out

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(p={self.p})"
