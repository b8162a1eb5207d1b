"""The README's demo: a short tour of the library on the bundled example graphs.

Loads ``assets/examples.jsonl``; round-trips every graph through JSON, HeteroData, networkx and the dense
form; batches them into one PyG batch with hashing-embedder node features; encodes the batch with a
randomly initialised scene-graph encoder when one is available; shows that "a cat on a dog" and "a dog on
a cat" get different scene embeddings; draws every graph to PNG.
"""

from __future__ import annotations

import json
import time
from importlib import resources
from pathlib import Path
from typing import Any

__all__ = ["run_demo", "example_graphs"]


def example_graphs() -> list:
    """The bundled example scene graphs (``scenegraph_diff/assets/examples.jsonl``)."""
    from .graph import read_jsonl

    with resources.files("scenegraph_diff").joinpath("assets/examples.jsonl").open("rb") as f:
        return list(read_jsonl(f))


def run_demo(out: Path, device: str = "cpu") -> dict[str, Any]:
    """Run the tour, write drawings and ``summary.json`` to ``out``; return the summary.

    ``device``: where the (untrained) encoders run: ``"cpu"`` (default), ``"cuda"``, ``"cuda:N"`` or ``"auto"``;
    a CUDA device without CUDA raises ``RuntimeError``, a bad value ``ValueError``.
    """
    from .devices import resolve_device

    dev = resolve_device(device, "device")
    from .graph import SceneGraph, Vocabulary, from_dense, from_hetero_data, from_networkx, to_dense, to_hetero_data, to_networkx
    from .graph.dense import dense_canonical
    from .graph.draw import draw
    from .graph.hetero import collate
    from .text import HashingEmbedder

    t0 = time.perf_counter()
    graphs = example_graphs()
    vocab = Vocabulary.from_graphs(graphs)
    embedder = HashingEmbedder(64)
    round_trips = {
        "json": all(SceneGraph.from_json(g.to_json()) == g for g in graphs),
        "hetero": all(from_hetero_data(to_hetero_data(g)) == g for g in graphs),
        "networkx": all(from_networkx(to_networkx(g)) == g for g in graphs),
        "dense": from_dense(to_dense(graphs, vocab), vocab) == [dense_canonical(g, vocab) for g in graphs],
    }
    batch = collate(graphs, embedder=embedder, vocab=vocab)
    summary: dict[str, Any] = {
        "graphs": len(graphs),
        "vocabulary": repr(vocab),
        "round_trips_lossless": round_trips,
        "batch": {nt: int(batch[nt].num_nodes) for nt in batch.node_types},
        "edges": {"__".join(et): int(batch[et].edge_index.shape[1]) for et in batch.edge_types},
    }
    encoded = _encode(graphs, embedder, dev)
    if encoded is not None:
        summary["encoder"] = encoded
    out.mkdir(parents=True, exist_ok=True)
    for i, g in enumerate(graphs):
        draw(g, out / f"graph_{i:02d}.png")
    summary["drawings"] = str(out)
    summary["seconds"] = round(time.perf_counter() - t0, 2)
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def _encode(graphs: list, embedder: Any, device: Any = "cpu") -> dict[str, Any] | None:
    """Encode with an untrained SceneGraphEncoder (if the nn package provides one): direction check."""
    try:
        from .nn import SceneGraphEncoder
    except ImportError:  # the encoder needs diffusers (a core dependency, but keep the tour robust)
        return None
    import torch

    from .graph.hetero import collate

    results = {}
    for layer in ("hgcn", "rhgnn"):
        with torch.random.fork_rng(devices=[]):  # seeded (CPU) weights without touching the caller's global RNG
            torch.manual_seed(0)
            enc = SceneGraphEncoder(in_channels=embedder.dim, hidden_channels=64, out_channels=32, conv=layer)
        enc.to(device).eval()
        with torch.no_grad():
            scene = enc(collate(graphs, embedder=embedder).to(device)).scene_embedding.cpu()
        cat_dog, dog_cat = scene[1], scene[2]
        results[layer] = {
            "scene_embedding_shape": list(scene.shape),
            "cat_on_dog_vs_dog_on_cat_distance": round(float((cat_dog - dog_cat).norm()), 4),
        }
    return results
