"""``SceneGraph`` in, ``SceneGraph`` out: sampling, completion and SDEdit-style refinement with a trained
:class:`~.scene_graph_diffusion.SceneGraphDenoiser` and its :class:`~scenegraph_diff.graph.Vocabulary`.

This is the object a pipeline holds (e.g. ``SceneGraphPipeline(..., graph_refiner=refiner)``) to clean up a
parsed graph before encoding it::

    refiner = SceneGraphRefiner.from_pretrained("runs/factual_typed")
    fixed = refiner.refine([parsed], strength=0.3, generator=torch.Generator().manual_seed(0))
    completed = refiner.complete([objects_only_graph])   # sample the missing relations
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import torch

from ..devices import ModelOnDevice, randint
from ..graph.scene_graph import SceneGraph
from ..graph.vocab import UNK, Vocabulary
from ..weights import align_weights_
from .scene_graph_data import collate_typed, scene_graphs_to_typed, typed_to_scene_graphs
from .scene_graph_diffusion import SceneGraphDenoiser, TypedDiffusion, TypedGraphBatch

__all__ = ["SceneGraphRefiner"]


class SceneGraphRefiner(ModelOnDevice):
    """Typed scene-graph diffusion over a fixed vocabulary (attributes are passed through unchanged)."""

    def __init__(self, model: SceneGraphDenoiser, vocab: Vocabulary, node_counts: Sequence[int] = (1, 2, 3)) -> None:
        if model.config.num_classes != vocab.num_objects or model.config.num_predicates != vocab.num_predicates:
            raise ValueError(f"model sizes ({model.config.num_classes} classes, {model.config.num_predicates} predicates) "
                             f"do not match the vocabulary ({vocab.num_objects}, {vocab.num_predicates})")
        # Never sample <unk> (id 0 of every vocabulary table; edge state p + 1 is predicate p).
        self.diffusion = TypedDiffusion(model.eval(), banned_classes=(0,), banned_edge_states=(1,))
        self.vocab = vocab
        self.node_counts = [int(n) for n in node_counts]

    @property
    def model(self) -> SceneGraphDenoiser:
        """The denoiser (``.device`` / ``.to(device)`` act on it)."""
        return self.diffusion.model

    def _batch(self, graphs: Sequence[SceneGraph]) -> TypedGraphBatch:
        """The graphs as a padded batch on the denoiser's device."""
        return collate_typed(scene_graphs_to_typed(graphs, self.vocab), self.vocab.num_predicates).to(self.device)

    def _decode(self, graphs: Sequence[SceneGraph], b: TypedGraphBatch, cls, edg) -> list[SceneGraph]:
        b, cls, edg = b.to("cpu"), cls.cpu(), edg.cpu()
        out = typed_to_scene_graphs(cls, edg, b.node_mask, self.vocab, b.boxes, b.has_box)
        # keep the input's surface names/attributes where the class was not changed
        res = []
        for g, o in zip(graphs, out):
            objs = tuple(type(x)(g.objects[i].name if self.vocab.index("object", g.objects[i].name) ==
                                 self.vocab.index("object", x.name) else x.name, g.objects[i].attributes, x.box)
                         for i, x in enumerate(o.objects))
            # a kept out-of-vocabulary predicate (<unk>) gets its input label back
            given = {(r.subject, r.object): r.predicate for r in reversed(g.relations)}
            rels = tuple(r if r.predicate != UNK else type(r)(r.subject, given[(r.subject, r.object)], r.object)
                         for r in o.relations if r.predicate != UNK or (r.subject, r.object) in given)
            res.append(SceneGraph(objs, rels, text=getattr(g, "text", None)))
        return res

    @torch.no_grad()
    def complete(self, graphs: Sequence[SceneGraph], num_steps: int = 10, temperature: float = 0.0,
                 generator: torch.Generator | None = None) -> list[SceneGraph]:
        """Keep objects and existing relations; sample relations for every pair that has none."""
        b = self._batch(graphs)
        known_e = b.edges > 0
        cls, edg, _, _ = self.diffusion.sample(b, b.node_mask, known_e, num_steps, temperature, generator=generator)
        return self._decode(graphs, b, cls, edg)

    @torch.no_grad()
    def refine(self, graphs: Sequence[SceneGraph], strength: float = 0.3, num_steps: int = 5, temperature: float = 0.0,
               generator: torch.Generator | None = None) -> list[SceneGraph]:
        """SDEdit: re-mask a fraction ``strength`` of objects and relation slots, denoise back."""
        b = self._batch(graphs)
        cls, edg = self.diffusion.refine(b, strength, num_steps, temperature, generator)
        return self._decode(graphs, b, cls, edg)

    @torch.no_grad()
    def sample(self, num: int, num_steps: int = 10, temperature: float = 1.0,
               generator: torch.Generator | None = None) -> list[SceneGraph]:
        """Unconditional graphs (object count drawn from the training distribution)."""
        counts = torch.tensor(self.node_counts)
        n = counts[randint(0, len(counts), (num,), generator, "cpu")]
        N = int(n.max())
        mask = torch.arange(N)[None] < n[:, None]
        b = TypedGraphBatch(torch.zeros(num, N, dtype=torch.long), torch.zeros(num, N, N, dtype=torch.long), mask,
                            torch.zeros(num, N, 4), torch.zeros(num, N, dtype=torch.bool)).to(self.device)
        cls, edg, _, _ = self.diffusion.sample(b, torch.zeros_like(b.node_mask), torch.zeros_like(b.edges, dtype=torch.bool),
                                               num_steps, temperature, generator=generator)
        return typed_to_scene_graphs(cls.cpu(), edg.cpu(), mask, self.vocab)

    def save_pretrained(self, path: str | Path) -> None:
        path = Path(path)
        self.diffusion.model.save_pretrained(path / "model")
        self.vocab.save(path / "vocab.json")
        (path / "generator.json").write_text(json.dumps({"family": "scene_graph", "node_counts": self.node_counts}))

    @classmethod
    def from_pretrained(cls, path: str | Path) -> "SceneGraphRefiner":
        """Load a refiner written by :meth:`save_pretrained` (the denoiser's weights in owned, aligned memory)."""
        path = Path(path)
        if not (path / "generator.json").is_file():
            raise FileNotFoundError(f"no generator.json in {path}")
        meta = json.loads((path / "generator.json").read_text())
        model = align_weights_(SceneGraphDenoiser.from_pretrained(path / "model"))  # owned, aligned: bit-exact
        return cls(model, Vocabulary.load(path / "vocab.json"), meta["node_counts"])
