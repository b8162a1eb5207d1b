"""``LayoutModel``: the interface every scene graph -> layout model implements.

::

    model = load_layout_model("layout-shapes")                # a bundled name or a folder
    layouts = model.sample(graphs, num_samples=4, generator=torch.Generator().manual_seed(0))
    layouts[i][k]          # graph i, sample k: the same SceneGraph with a box on every object

Given boxes are kept exactly (the model completes the layout around them) unless ``resample=True``; a
graph without objects comes back unchanged. A model is a diffusers ``ModelMixin + ConfigMixin`` whose
config holds its vocabulary, so ``save_pretrained`` / ``from_pretrained`` (safetensors + ``config.json``)
round-trip it, and loading goes through :class:`~scenegraph_diff.weights.AlignedLoadingMixin` (a loaded
model computes bit for bit what the saved one did).

Subclasses implement :meth:`LayoutModel.predict_params`: ``(cx, cy, w, h)`` fractions for every object of
a prepared batch (:class:`LayoutInputs`).
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import torch
from diffusers.models.modeling_utils import ModelMixin
from diffusers.configuration_utils import ConfigMixin
from torch import Tensor

from ..graph.hetero import OBJECT
from ..graph.scene_graph import SceneGraph, SceneGraphError, SceneObject
from ..graph.vocab import Vocabulary
from ..weights import AlignedLoadingMixin
from .boxes import BOX_PARAMS, boxes_to_params, params_to_boxes
from ..diffusion.sde import RowGenerators

if TYPE_CHECKING:  # pragma: no cover
    from torch_geometric.data import HeteroData

__all__ = ["LayoutModel", "LayoutInputs", "check_sample_args"]

logger = logging.getLogger(__name__)

#: decimals kept in predicted boxes (given boxes are returned exactly as they came); predicted sizes are
#: >= 1e-3, so rounding never makes a box empty
BOX_DECIMALS = 6


@dataclass
class LayoutInputs:
    """A prepared batch of ``G`` graphs with ``No`` objects in total.

    Attributes:
        batch: the collated ``HeteroData`` (vocabulary ids in ``label``).
        object_batch: ``[No]`` graph index of every object (objects of a graph are consecutive).
        known: ``[No]`` bool, objects whose box is given (kept fixed).
        known_params: ``[No, 4]`` ``(cx, cy, w, h)`` of the given boxes (zeros elsewhere).
        target_params: ``[No, 4]`` ``(cx, cy, w, h)`` of every object's box, for training (``None`` when
            some object has no box).
        graphs: the source graphs (``G``), when prepared by :meth:`LayoutModel.prepare`.
    """

    batch: "HeteroData"
    object_batch: Tensor
    known: Tensor
    known_params: Tensor
    target_params: Tensor | None = None
    graphs: list[SceneGraph] | None = None

    @property
    def num_graphs(self) -> int:
        return int(self.batch["scene"].num_nodes)

    @property
    def num_objects(self) -> int:
        return int(self.object_batch.numel())

    def with_known(self, known: Tensor) -> "LayoutInputs":
        """The same batch with other given boxes (``known [No]`` bool; needs ``target_params``)."""
        if self.target_params is None:
            raise ValueError("with_known needs target_params (every object with a box)")
        if known.shape != self.known.shape:
            raise ValueError(f"known has shape {tuple(known.shape)}, expected {tuple(self.known.shape)}")
        params = torch.where(known[:, None], self.target_params, torch.zeros_like(self.target_params))
        return LayoutInputs(self.batch, self.object_batch, known, params, self.target_params, self.graphs)

    def to(self, device: torch.device | str) -> "LayoutInputs":
        t = None if self.target_params is None else self.target_params.to(device)
        return LayoutInputs(self.batch.to(device), self.object_batch.to(device), self.known.to(device),
                            self.known_params.to(device), t, self.graphs)


def check_sample_args(graphs: Sequence[SceneGraph], num_samples: int, generator: Any,
                      resample: bool) -> list[SceneGraph]:
    """Validate the arguments of :meth:`LayoutModel.sample` (errors name the bad value); return the graphs."""
    if isinstance(graphs, (SceneGraph, str, bytes)) or not isinstance(graphs, Sequence):
        raise TypeError(f"graphs must be a sequence of SceneGraph, got {type(graphs).__name__} "
                        "(wrap a single graph in a list)")
    for i, g in enumerate(graphs):
        if not isinstance(g, SceneGraph):
            raise SceneGraphError(f"graphs[{i}]", f"expected SceneGraph, got {type(g).__name__}")
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples must be an integer >= 1, got {num_samples!r}")
    if isinstance(generator, (list, tuple)):
        if len(generator) != len(graphs) or not all(isinstance(g, torch.Generator) for g in generator):
            raise ValueError(f"a list of generators needs one torch.Generator per graph: got {len(generator)} "
                             f"for {len(graphs)} graphs")
    elif generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, a list of them or None, got {type(generator).__name__}")
    if not isinstance(resample, bool):
        raise TypeError(f"resample must be a bool, got {resample!r}")
    return list(graphs)


class LayoutModel(AlignedLoadingMixin, ModelMixin, ConfigMixin):
    """Base class of the layout models (scene graph -> one box per object).

    A subclass registers its config (which must include the vocabulary: ``objects``, ``attributes``,
    ``predicates``) and implements :meth:`predict_params`.
    """

    #: whether several samples of one graph can differ (False for a deterministic regressor)
    stochastic: bool = False

    @functools.cached_property
    def vocab(self) -> Vocabulary:
        """The model's vocabulary (from its config)."""
        c = self.config
        return Vocabulary(c.objects, c.attributes, c.predicates)

    # ------------------------------------------------------------------ inputs
    def prepare(self, graphs: Sequence[SceneGraph], keep_boxes: bool = True) -> LayoutInputs:
        """Collate ``graphs`` (each with >= 1 object) into :class:`LayoutInputs` on the model's device.

        Labels outside the vocabulary map to ``<unk>`` (id 0). With ``keep_boxes``, objects that have a box
        are ``known``; ``target_params`` is filled when every object has a box.
        """
        from ..graph.hetero import collate

        for i, g in enumerate(graphs):
            if g.num_objects == 0:
                raise SceneGraphError(f"graphs[{i}].objects", "a layout needs at least one object")
        batch = collate(list(graphs), vocab=self.vocab)
        boxes = batch[OBJECT].box.float()  # [No, 4]
        has_box = batch[OBJECT].has_box  # [No]
        params = boxes_to_params(boxes) * has_box[:, None]
        known = has_box.clone() if keep_boxes else torch.zeros_like(has_box)
        target = params if bool(has_box.all()) else None
        inputs = LayoutInputs(batch, batch[OBJECT].batch, known, params * known[:, None], target, list(graphs))
        return inputs.to(self.device)

    # ------------------------------------------------------------------ prediction
    def predict_params(self, inputs: LayoutInputs, generator: torch.Generator | RowGenerators | None = None) -> Tensor:
        """``(cx, cy, w, h)`` fractions ``[No, 4]`` for every object of ``inputs`` (given ones are kept)."""
        raise NotImplementedError

    @torch.no_grad()
    def sample(self, graphs: Sequence[SceneGraph], num_samples: int = 1,
               generator: torch.Generator | Sequence[torch.Generator] | None = None,
               resample: bool = False) -> list[list[SceneGraph]]:
        """Give every object of every graph a box.

        Args:
            graphs: the scene graphs (boxes optional; labels outside the vocabulary are treated as ``<unk>``).
            num_samples: layouts per graph (a deterministic model returns the same one ``num_samples`` times).
            generator: source of all randomness; a fixed seed gives the same layouts. A list (one generator per
                graph) makes each graph's layouts independent of the batch: the same as sampling it alone with
                its generator (up to float rounding of the batched network), as diffusers' generator lists.
            resample: ignore the given boxes and predict every box.

        Returns:
            ``out[i][k]``: graph ``i`` (text, attributes, relations and spans unchanged) with a box on every
            object; given boxes are the input's own values unless ``resample``.
        """
        return self._sample(check_sample_args(graphs, num_samples, generator, resample), num_samples, generator,
                            resample, {})

    def _sample(self, graphs: list[SceneGraph], num_samples: int,
                generator: torch.Generator | Sequence[torch.Generator] | None, resample: bool,
                options: dict[str, Any]) -> list[list[SceneGraph]]:
        """:meth:`sample` on checked arguments; ``options`` go to :meth:`predict_params`."""
        was_training = self.training
        self.eval()
        try:
            out: list[list[SceneGraph]] = [[g] * num_samples if g.num_objects == 0 else [] for g in graphs]
            todo = [i for i, g in enumerate(graphs) if g.num_objects > 0]
            if todo:
                flat = [graphs[i] for i in todo for _ in range(num_samples)]  # graph-major, samples consecutive
                inputs = self.prepare(flat, keep_boxes=not resample)
                gen: Any = generator
                if isinstance(generator, (list, tuple)):  # one per graph: each graph's rows draw from its own
                    gen = RowGenerators(tuple(generator[i] for i in todo), (num_samples,) * len(todo))
                params = self.predict_params(inputs, gen, **options)  # [No, 4]
                if params.shape != (inputs.num_objects, BOX_PARAMS):
                    raise RuntimeError(f"{type(self).__name__}.predict_params returned {tuple(params.shape)}, "
                                       f"expected ({inputs.num_objects}, {BOX_PARAMS})")
                boxes = params_to_boxes(params.float()).cpu().tolist()
                pos = 0
                for k, g in enumerate(flat):
                    objs = []
                    for o in g.objects:
                        box = o.box if (o.box is not None and not resample) else \
                            tuple(round(v, BOX_DECIMALS) for v in boxes[pos])
                        objs.append(SceneObject(o.name, o.attributes, box, o.span))
                        pos += 1
                    out[todo[k // num_samples]].append(SceneGraph(tuple(objs), g.relations, g.text))
            return out
        finally:
            self.train(was_training)

