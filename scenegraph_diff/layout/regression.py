"""``RegressionLayoutModel``: one box per object by regression (the sg2im baseline).

The shapes model's :class:`~scenegraph_diff.shapes.layout.LayoutHead` generalised from the shapes world
to any vocabulary: object classes, attributes and predicates get learnt embeddings, the typed graph is
encoded by HGCN or R-HGNN layers (:class:`~.encoder.LayoutGraphEncoder`), and an MLP maps each object's
embedding to ``(cx, cy, w, h)`` through a sigmoid. Given boxes enter as object features (a flag and the
box), so the model also completes layouts; trained with sg2im's L1 box loss on the objects whose box
was not given (:func:`regression_loss`). Deterministic: every sample of a graph is the same layout.
"""

from __future__ import annotations

from typing import Sequence

import torch
from diffusers.configuration_utils import register_to_config
from torch import Tensor, nn

from ..diffusion.sde import RowGenerators
from .base import LayoutInputs, LayoutModel
from .boxes import BOX_PARAMS
from .encoder import LayoutGraphEncoder

__all__ = ["RegressionLayoutModel", "regression_loss"]


class RegressionLayoutModel(LayoutModel):
    r"""Scene graph -> boxes by regression.

    .. math::
        (c_x, c_y, w, h)_o = \sigma(\mathrm{MLP}(\mathrm{Enc}(G, [k_o, k_o \mathbf{b}_o])_o))

    with :math:`k_o` = 1 when object :math:`o`'s box :math:`\mathbf{b}_o` is given.

    Args:
        objects, attributes, predicates: the vocabulary (``<unk>`` is added as id 0 of each).
        encoder: ``"hgcn"`` or ``"rhgnn"``.
        dim, num_layers, heads, attn_layers, dropout: of the :class:`~.encoder.LayoutGraphEncoder`.

    Shapes:
        ``forward(inputs)`` -> ``[No, 4]`` ``(cx, cy, w, h)`` in ``(0, 1)``.
    """

    @register_to_config
    def __init__(self, objects: Sequence[str] = (), attributes: Sequence[str] = (), predicates: Sequence[str] = (),
                 encoder: str = "rhgnn", dim: int = 64, num_layers: int = 2, heads: int = 2, attn_layers: int = 1,
                 dropout: float = 0.0) -> None:
        super().__init__()
        v = self.vocab  # validates the labels
        self.graph_encoder = LayoutGraphEncoder(v.num_objects, v.num_attributes, v.num_predicates, 1 + BOX_PARAMS,
                                                encoder, dim, num_layers, heads, attn_layers, dropout)
        self.head = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, BOX_PARAMS))

    def forward(self, inputs: LayoutInputs) -> Tensor:
        """Predicted ``(cx, cy, w, h)`` ``[No, 4]`` in ``(0, 1)`` (given boxes not yet substituted)."""
        feats = torch.cat([inputs.known[:, None].float(), inputs.known_params], -1)  # [No, 5]
        h = self.graph_encoder(inputs.batch, feats)  # [No, D]
        return torch.sigmoid(self.head(h))

    def predict_params(self, inputs: LayoutInputs, generator: torch.Generator | None = None) -> Tensor:
        """``[No, 4]``: the regression output, with the given boxes where known (``generator`` is unused)."""
        pred = self(inputs)
        return torch.where(inputs.known[:, None], inputs.known_params, pred)

    def extra_repr(self) -> str:
        c = self.config
        return f"encoder={c.encoder!r}, dim={c.dim}, objects={len(c.objects)}, predicates={len(c.predicates)}"


def regression_loss(model: nn.Module, inputs: LayoutInputs) -> dict[str, Tensor]:
    """sg2im's L1 box loss, averaged over the objects whose box is not given.

    Args:
        model: a :class:`RegressionLayoutModel`, possibly wrapped (``DistributedDataParallel``): it is called.
        inputs: with ``target_params``.
    """
    if inputs.target_params is None:
        raise ValueError("regression_loss needs target_params (every object with a box)")
    pred = model(inputs)  # [No, 4]
    free = (~inputs.known).float()[:, None]  # [No, 1]
    l1 = ((pred - inputs.target_params).abs() * free).sum() / (free.sum() * BOX_PARAMS).clamp(min=1.0)
    return {"loss": l1, "l1": l1}
