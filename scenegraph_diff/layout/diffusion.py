"""``DiffusionLayoutModel``: continuous box diffusion conditioned on the typed scene graph.

Every object's box ``(cx, cy, w, h)`` (scaled to ``[-1, 1]``) is diffused with the graph-diffusion
package's VP SDE (:class:`~scenegraph_diff.diffusion.sde.VPSDE`); the network predicts the clean boxes
``x̂₀`` of all objects at once from the noisy ones, the diffusion time and the graph: noisy boxes are object
features of a :class:`~.encoder.LayoutGraphEncoder` (HGCN or R-HGNN over the typed graph, reverse edge
types included, then self-attention among the objects), so box information flows along the relations
at every denoising step.

* **sampling**: DDIM on the VP marginals (:meth:`DDIMSampler.sample_features
  <scenegraph_diff.diffusion.samplers.DDIMSampler.sample_features>`), ``num_inference_steps`` network
  evaluations (default 10; 1 = the network's one-shot guess from noise), deterministic given the noise
  (``eta = 0``); several layouts per graph come from several noise draws.
* **completion (inpainting)**: given boxes are conditioning (a flag and the clean box as object features,
  trained with random subsets given) *and* re-imposed on the state at every step (replacement), and
  returned exactly.
* **relation guidance** (classifier-free guidance, Ho & Salimans 2022, over the relations): trained with the
  relations of some graphs dropped (objects kept), the network also predicts ``x̂₀`` for the graph without its
  relations; sampling with ``guidance_scale`` ``w > 1`` uses ``x̂₀(∅) + w (x̂₀(G) - x̂₀(∅))``, which pushes the
  boxes further in the direction the relations imply (two network evaluations per step).
* **training**: :func:`diffusion_loss`, x₀-prediction MSE on the objects whose box is not given, with
  ``t ~ U[1e-3, 1]`` per graph; run by the shared :class:`~scenegraph_diff.training.Trainer`.
"""

from __future__ import annotations

from typing import Sequence

import torch
from diffusers.configuration_utils import register_to_config
from torch import Tensor, nn

from ..devices import randn
from ..diffusion.losses import sample_time
from ..diffusion.ppgn import timestep_embedding
from ..diffusion.samplers import DDIMSampler
from ..diffusion.sde import VPSDE, RowGenerators
from ..graph.scene_graph import SceneGraph
from .base import LayoutInputs, LayoutModel, check_sample_args
from .boxes import BOX_PARAMS
from .encoder import LayoutGraphEncoder

__all__ = ["DiffusionLayoutModel", "diffusion_loss", "MAX_INFERENCE_STEPS"]

#: the few-step regime this model is built for (more steps are allowed by the sampler, not by this API)
MAX_INFERENCE_STEPS = 50


def _check_steps(num_steps: int, name: str) -> int:
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or not 1 <= num_steps <= MAX_INFERENCE_STEPS:
        raise ValueError(f"{name} must be an integer in 1..{MAX_INFERENCE_STEPS}, got {num_steps!r}")
    return num_steps


def _check_guidance(w: float, name: str) -> float:
    if isinstance(w, bool) or not isinstance(w, (int, float)) or not 0.0 <= w <= 20.0:
        raise ValueError(f"{name} must be a number in [0, 20], got {w!r}")
    return float(w)


def without_relations(inputs: LayoutInputs, model: "DiffusionLayoutModel") -> LayoutInputs:
    """The unconditional branch of relation guidance: the same objects (and given boxes), no relations."""
    if inputs.graphs is None:
        raise ValueError("relation guidance needs inputs prepared by LayoutModel.prepare (with their graphs)")
    bare = model.prepare([SceneGraph(g.objects, (), g.text) for g in inputs.graphs])
    return LayoutInputs(bare.batch, bare.object_batch, inputs.known, inputs.known_params, inputs.target_params,
                        bare.graphs)


class DiffusionLayoutModel(LayoutModel):
    r"""Scene graph -> boxes by denoising diffusion (x₀-prediction network, DDIM sampler).

    Args:
        objects, attributes, predicates: the vocabulary (``<unk>`` is added as id 0 of each).
        encoder: ``"hgcn"`` or ``"rhgnn"``.
        dim, num_layers, heads, attn_layers, dropout: of the :class:`~.encoder.LayoutGraphEncoder`.
        beta_min, beta_max: the VP SDE's noise schedule.
        num_inference_steps: default network evaluations per layout (1 to 50).
        eta: DDIM noise (0 = deterministic given the initial noise, 1 = ancestral).
        guidance_scale: default relation guidance ``w`` (1 = none: one network evaluation per step; otherwise
            two, so NFE = 2 x steps).
        spacing: DDIM time grid, ``"uniform"`` or ``"quadratic"`` (default: denser near the clean end, where
            the last steps place the boxes).

    Shapes:
        ``forward(inputs, x_t [No, 4], t [G])`` -> ``x̂₀`` ``[No, 4]`` (boxes scaled to ``[-1, 1]``).
    """

    stochastic = True

    @register_to_config
    def __init__(self, objects: Sequence[str] = (), attributes: Sequence[str] = (), predicates: Sequence[str] = (),
                 encoder: str = "rhgnn", dim: int = 64, num_layers: int = 2, heads: int = 2, attn_layers: int = 1,
                 dropout: float = 0.0, beta_min: float = 0.1, beta_max: float = 20.0, num_inference_steps: int = 10,
                 eta: float = 0.0, spacing: str = "quadratic", guidance_scale: float = 1.0) -> None:
        super().__init__()
        _check_guidance(guidance_scale, "guidance_scale")
        _check_steps(num_inference_steps, "num_inference_steps")
        DDIMSampler(num_inference_steps, eta, spacing)  # validates eta
        if spacing not in ("uniform", "quadratic"):
            raise ValueError(f"spacing must be 'uniform' or 'quadratic', got {spacing!r}")
        self.sde = VPSDE(beta_min, beta_max)
        v = self.vocab
        # object features: noisy box (4), given flag (1), given box (4)
        self.graph_encoder = LayoutGraphEncoder(v.num_objects, v.num_attributes, v.num_predicates, 1 + 2 * BOX_PARAMS,
                                                encoder, dim, num_layers, heads, attn_layers, dropout, geometry=True)
        self.time = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.head = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, BOX_PARAMS))

    def forward(self, inputs: LayoutInputs, x_t: Tensor, t: Tensor) -> Tensor:
        """Predicted clean boxes ``x̂₀`` ``[No, 4]`` (``2 (cx, cy, w, h) - 1``) from noisy ones ``x_t [No, 4]`` at
        times ``t [G]`` (one per graph)."""
        if x_t.shape != (inputs.num_objects, BOX_PARAMS):
            raise ValueError(f"x_t has shape {tuple(x_t.shape)}, expected [{inputs.num_objects}, {BOX_PARAMS}]")
        if t.shape != (inputs.num_graphs,):
            raise ValueError(f"t has shape {tuple(t.shape)}, expected [{inputs.num_graphs}]")
        k = inputs.known[:, None].to(x_t.dtype)
        feats = torch.cat([x_t, k, k * (2 * inputs.known_params - 1)], -1)  # [No, 9]
        cond = self.time(timestep_embedding(t, self.config.dim))  # [G, D]
        boxes = torch.where(inputs.known[:, None], inputs.known_params, (x_t + 1) / 2)  # [No, 4] for pair geometry
        h = self.graph_encoder(inputs.batch, feats, cond, boxes)  # [No, D]
        return self.head(h + cond[inputs.object_batch])

    def predict_params(self, inputs: LayoutInputs, generator: torch.Generator | RowGenerators | None = None,
                       num_steps: int | None = None, eta: float | None = None,
                       guidance_scale: float | None = None) -> Tensor:
        """Sample ``(cx, cy, w, h)`` ``[No, 4]`` with DDIM (given boxes kept exactly).

        Args:
            num_steps: DDIM steps (default ``config.num_inference_steps``); network evaluations = steps, or
                2 x steps with guidance.
            eta: DDIM noise (default ``config.eta``).
            guidance_scale: relation guidance ``w`` (default ``config.guidance_scale``; 1 = none).
        """
        from torch_geometric.utils import to_dense_batch

        c = self.config
        sampler = DDIMSampler(_check_steps(c.num_inference_steps if num_steps is None else num_steps, "num_steps"),
                              c.eta if eta is None else eta, c.spacing)
        w = _check_guidance(c.guidance_scale if guidance_scale is None else guidance_scale, "guidance_scale")
        bare = without_relations(inputs, self) if w != 1.0 else None
        G = inputs.num_graphs
        known_dense, node_mask = to_dense_batch(inputs.known, inputs.object_batch, batch_size=G)  # [G, N]
        values, _ = to_dense_batch(2 * inputs.known_params - 1, inputs.object_batch, batch_size=G)  # [G, N, 4]

        def x0_fn(x: Tensor, t: Tensor) -> Tensor:  # x [G, N, 4], t [G]
            out = torch.zeros_like(x)
            pred = self(inputs, x[node_mask], t)  # [No, 4]
            if bare is not None:
                pred_bare = self(bare, x[node_mask], t)
                pred = pred_bare + w * (pred - pred_bare)
            out[node_mask] = pred.clamp(-1.0, 1.0)
            return out

        x0, _ = sampler.sample_features(x0_fn, self.sde, node_mask, BOX_PARAMS, generator,
                                        known_mask=known_dense, known_values=values)
        params = (x0[node_mask] + 1) / 2  # [No, 4]
        return torch.where(inputs.known[:, None], inputs.known_params, params)

    @torch.no_grad()
    def sample(self, graphs: Sequence[SceneGraph], num_samples: int = 1,
               generator: torch.Generator | Sequence[torch.Generator] | None = None,
               resample: bool = False, *, num_steps: int | None = None, eta: float | None = None,
               guidance_scale: float | None = None) -> list[list[SceneGraph]]:
        """:meth:`LayoutModel.sample`, with the sampler's ``num_steps`` (DDIM steps, default
        ``config.num_inference_steps``), ``eta`` (default ``config.eta``) and relation ``guidance_scale``
        (default ``config.guidance_scale``) as keyword options."""
        graphs = check_sample_args(graphs, num_samples, generator, resample)
        if num_steps is not None:
            _check_steps(num_steps, "num_steps")
        if eta is not None and not 0.0 <= eta <= 1.0:
            raise ValueError(f"eta must be in [0, 1], got {eta!r}")
        if guidance_scale is not None:
            _check_guidance(guidance_scale, "guidance_scale")
        return self._sample(graphs, num_samples, generator, resample,
                            {"num_steps": num_steps, "eta": eta, "guidance_scale": guidance_scale})

    def network_evaluations(self, num_steps: int | None = None, guidance_scale: float | None = None) -> int:
        """Network evaluations per layout for these sampler settings (defaults: the config's)."""
        steps = self.config.num_inference_steps if num_steps is None else num_steps
        w = self.config.guidance_scale if guidance_scale is None else guidance_scale
        return steps * (1 if w == 1.0 else 2)

    def extra_repr(self) -> str:
        c = self.config
        return (f"encoder={c.encoder!r}, dim={c.dim}, objects={len(c.objects)}, predicates={len(c.predicates)}, "
                f"num_inference_steps={c.num_inference_steps}")


def diffusion_loss(model: nn.Module, inputs: LayoutInputs, generator: torch.Generator | None = None,
                   snr_weight: float = 0.0) -> dict[str, Tensor]:
    """x₀-prediction MSE on the objects whose box is not given; ``t ~ U[1e-3, 1]`` per graph.

    Args:
        model: a :class:`DiffusionLayoutModel`, possibly wrapped (``DistributedDataParallel``): it is called.
        inputs: with ``target_params``.
        generator: draws ``t`` and the noise.
        snr_weight: ``γ > 0`` weights each graph's error by ``1 + min(SNR(t), γ)`` (``SNR = α² / σ²``), so
            the nearly clean end, where the last sampler steps place boxes to the pixel, is not drowned by the
            noisy end; ``0`` = plain x₀-MSE.
    """
    if inputs.target_params is None:
        raise ValueError("diffusion_loss needs target_params (every object with a box)")
    sde = getattr(model, "module", model).sde
    dev = inputs.target_params.device
    x0 = 2 * inputs.target_params - 1  # [No, 4]
    t = sample_time(inputs.num_graphs, generator, device=dev)  # [G]
    a, s = sde.marginal(t[inputs.object_batch])  # [No] each
    x_t = a[:, None] * x0 + s[:, None] * randn(x0.shape, generator, dev)
    pred = model(inputs, x_t, t)
    free = (~inputs.known).float()[:, None]  # [No, 1]
    err = (pred - x0) ** 2 * free  # [No, 4]
    denom = (free.sum() * BOX_PARAMS).clamp(min=1.0)
    mse = err.sum() / denom
    if snr_weight > 0:
        w = 1 + ((a / s) ** 2).clamp(max=snr_weight)  # [No]
        return {"loss": (err * w[:, None]).sum() / denom, "mse": mse.detach()}
    return {"loss": mse, "mse": mse}
