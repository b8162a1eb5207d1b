r"""Feynman–Kac (FK) steering (Singhal et al., 2025): particle resampling on a reward of the predicted image.

https://arxiv.org/abs/2501.06848 — run :math:`K` sampling trajectories (*particles*) per prompt; at chosen steps,
score each particle's predicted clean image :math:`\hat x_0(x_t)` with a reward :math:`r`, turn the scores into
potentials and resample the particles of each prompt in proportion to them (multinomial, with replacement), so
compute flows to the trajectories that are heading for a high reward. At the end the particle with the highest
reward on its final image is returned. Potentials, for a particle whose ancestors had rewards :math:`r_s`:

* ``"max"``: :math:`G_t = \exp(\lambda \max_{s \le t} r_s)` (the paper's default);
* ``"difference"``: :math:`G_t = \exp(\lambda (r_t - r_{t'}))`, :math:`t'` the previous resampling step;
* ``"sum"``: :math:`G_t = \exp(\lambda \sum_{s \le t} r_s)`.

It runs inside any diffusers text-to-image pipeline as a ``callback_on_step_end`` (resampling: the callback
returns the reindexed ``latents`` and reindexes the scheduler's multistep history) plus a UNet forward hook that
keeps the last noise prediction (for :math:`\hat x_0`). Resampled copies of a particle only diverge under a
*stochastic* sampler: :func:`stochastic_scheduler` gives the SDE variant of the pipeline's scheduler. Each
particle has its own ``torch.Generator``, and particle 0 of every prompt uses the prompt's own generator, so
``num_particles=1`` is exactly plain sampling with that scheduler.

Rewards are callables ``reward(images [N, 3, H, W] in [0, 1], graphs) -> [N]``: :func:`checker_reward` (the
shapes-world checker), :func:`dc_reward` (the Diffusion Classifier's relation verdicts) or any user function.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from ..graph.scene_graph import SceneGraph

__all__ = ["Reward", "FKConfig", "FKSteering", "FKResult", "fk_generate", "particle_generators",
           "stochastic_scheduler", "checker_reward", "dc_reward", "POTENTIALS"]

logger = logging.getLogger(__name__)

#: ``reward(images [N, 3, H, W] float in [0, 1], graphs (N)) -> [N]`` (higher is better)
Reward = Callable[[Tensor, Sequence[SceneGraph]], Tensor]

POTENTIALS: tuple[str, ...] = ("max", "difference", "sum")


@dataclass(frozen=True)
class FKConfig:
    r"""Settings of FK steering.

    Args:
        num_particles: :math:`K \ge 1` particles per image.
        potential: ``"max"``, ``"difference"`` or ``"sum"`` (see the module docstring).
        temperature: :math:`\lambda \ge 0` (0: uniform resampling).
        resample_every: resample after steps ``every - 1, 2 * every - 1, ...`` (never after the last step).
    """

    num_particles: int = 4
    potential: str = "max"
    temperature: float = 10.0
    resample_every: int = 3

    def __post_init__(self) -> None:
        if isinstance(self.num_particles, bool) or not isinstance(self.num_particles, int) or self.num_particles < 1:
            raise ValueError(f"num_particles must be an integer >= 1, got {self.num_particles!r}")
        if self.potential not in POTENTIALS:
            raise ValueError(f"potential must be one of {', '.join(POTENTIALS)}; got {self.potential!r}")
        if not self.temperature >= 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature!r}")
        if isinstance(self.resample_every, bool) or not isinstance(self.resample_every, int) or self.resample_every < 1:
            raise ValueError(f"resample_every must be an integer >= 1, got {self.resample_every!r}")

    def resample_steps(self, num_steps: int) -> list[int]:
        """The step indices after which particles are resampled, for ``num_steps`` denoising steps."""
        return [i for i in range(num_steps - 1) if (i + 1) % self.resample_every == 0]


def particle_generators(seeds: Sequence[int], num_particles: int) -> list[torch.Generator]:
    """CPU generators, image-major (``[i0 k0, i0 k1, ..., i1 k0, ...]``): particle 0 of image ``i`` is seeded with
    ``seeds[i]`` (so one particle is plain sampling), particle ``k > 0`` with a seed derived from ``(seeds[i], k)``."""
    return [torch.Generator().manual_seed(s if k == 0 else (s * 1_000_003 + 104_729 * k) % (2**63))
            for s in seeds for k in range(num_particles)]


def stochastic_scheduler(scheduler: Any) -> tuple[Any, dict[str, Any]]:
    """A stochastic sampler of the same family as ``scheduler``, and the pipeline keywords it needs.

    ``DPMSolverMultistepScheduler`` -> its ``sde-dpmsolver++`` variant; ``DDIMScheduler`` -> itself with ``eta=1``
    (DDPM-like noise); schedulers that already add noise (``DDPMScheduler``, an SDE DPM-Solver) are returned as
    they are. Raises ValueError for others (name the class)."""
    from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler

    if isinstance(scheduler, DPMSolverMultistepScheduler):
        if scheduler.config.algorithm_type in ("sde-dpmsolver", "sde-dpmsolver++"):
            return scheduler, {}
        kind = "sde-dpmsolver++" if scheduler.config.algorithm_type == "dpmsolver++" else "sde-dpmsolver"
        return DPMSolverMultistepScheduler.from_config(scheduler.config, algorithm_type=kind), {}
    if isinstance(scheduler, DDIMScheduler):
        return scheduler, {"eta": 1.0}
    if isinstance(scheduler, DDPMScheduler):
        return scheduler, {}
    raise ValueError(f"FK steering has no stochastic variant of {type(scheduler).__name__}; use a DDIM, DDPM or "
                     "DPM-Solver multistep scheduler")


def checker_reward(images: Tensor, graphs: Sequence[SceneGraph]) -> Tensor:
    """The shapes-world checker's score of each image: the fraction of its graph's objects found and relations
    satisfied (``[N]``, in [0, 1]). Images ``[N, 3, H, W]`` in [0, 1]."""
    from ..shapes.checker import check

    arr = images.detach().float().clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()  # [N, H, W, 3]
    out = []
    for im, g in zip(arr, graphs):
        v = check(im, g)
        n = len(v.objects) + len(v.relations)
        out.append((v.objects_found + v.relations_satisfied) / n if n else 1.0)
    return torch.tensor(out, dtype=torch.float32)


def dc_reward(pipe: Any, num_samples: int = 8, graph_scale: float = 0.0, seed: int = 0) -> Reward:
    """A reward from the Diffusion Classifier (:func:`~scenegraph_diff.evaluation.relation_scores` under ``pipe``):
    the fraction of each graph's relations it judges to hold (1 for a graph without relations). Its noises are
    drawn from a generator seeded with ``seed`` on every call."""
    from ..evaluation.diffusion_classifier import relation_scores

    def reward(images: Tensor, graphs: Sequence[SceneGraph]) -> Tensor:
        scores = relation_scores(pipe, images, graphs, num_samples=num_samples, graph_scale=graph_scale,
                                 generator=torch.Generator().manual_seed(seed))
        return torch.tensor([sum(v.holds for v in s) / len(s) if s else 1.0 for s in scores], dtype=torch.float32)

    return reward


class FKSteering:
    r"""The FK-steering ``callback_on_step_end`` of one pipeline call (and the UNet hook it reads).

    The call's batch holds ``N * K`` rows, image-major (``num_images_per_prompt=K``): rows ``i * K .. i * K + K - 1``
    are the particles of image ``i``, resampled among themselves only.

    Args:
        pipe: the pipeline (its ``unet``, ``vae``, ``scheduler`` and guidance scale are read).
        reward: see :data:`Reward`.
        graphs: ``N * K`` graphs, one per row (each image's graph repeated ``K`` times).
        config: the :class:`FKConfig`.
        generator: CPU generator of the resampling draws (default: seeded with 0).

    Use it as a context manager around the call (it hooks the UNet), passing it as ``callback_on_step_end`` with
    ``callback_on_step_end_tensor_inputs=["latents"]``. :attr:`history` records ``(step, rewards [N*K],
    ancestors [N*K])`` of every resampling.
    """

    tensor_inputs = ["latents"]

    def __init__(self, pipe: Any, reward: Reward, graphs: Sequence[SceneGraph], config: FKConfig,
                 generator: torch.Generator | None = None) -> None:
        if len(graphs) % config.num_particles:
            raise ValueError(f"{len(graphs)} graphs is not a multiple of num_particles={config.num_particles}")
        scheduler = pipe.scheduler
        if float(getattr(scheduler, "init_noise_sigma", 1.0)) != 1.0:
            raise ValueError(f"FK steering reads x0 from alphas_cumprod; {type(scheduler).__name__} scales its "
                             "inputs (init_noise_sigma != 1): use a DDIM, DDPM or DPM-Solver scheduler")
        if scheduler.config.prediction_type not in ("epsilon", "v_prediction"):
            raise ValueError(f"FK steering needs an epsilon or v_prediction model, not "
                             f"{scheduler.config.prediction_type!r}")
        self.pipe, self.reward, self.graphs, self.config = pipe, reward, list(graphs), config
        self.generator = generator if generator is not None else torch.Generator().manual_seed(0)
        self.history: list[tuple[int, Tensor, Tensor]] = []
        self._last: tuple[Tensor, Tensor, Tensor] | None = None  # (sample, timestep, noise prediction)
        self._state: Tensor | None = None  # [N*K] running potential statistic
        self._handle: Any = None

    # -- the UNet hook
    def _capture(self, module: torch.nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        sample = args[0] if args else kwargs["sample"]
        timestep = args[1] if len(args) > 1 else kwargs["timestep"]
        pred = output[0] if isinstance(output, tuple) else output.sample
        self._last = (sample, timestep, pred)

    def __enter__(self) -> "FKSteering":
        self._handle = self.pipe.unet.register_forward_hook(self._capture, with_kwargs=True)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    # -- prediction and reward
    def predicted_x0(self, rows: int) -> Tensor:
        r""":math:`\hat x_0 = (x_t - \sqrt{1 - \bar\alpha_t}\,\hat\epsilon) / \sqrt{\bar\alpha_t}` (or the
        ``v_prediction`` form) of the last UNet call, with classifier-free guidance applied: ``[rows, C, h, w]``."""
        if self._last is None:
            raise RuntimeError("FKSteering: no UNet call seen (use it as a context manager around the call)")
        sample, timestep, pred = self._last
        pred = pred.float()
        if pred.size(0) == 2 * rows:  # [uncond, cond]
            uncond, cond = pred.chunk(2)
            pred = uncond + float(self.pipe.guidance_scale) * (cond - uncond)
        x_t = sample[-rows:].float()
        t = int(timestep.flatten()[0]) if isinstance(timestep, Tensor) else int(timestep)
        acp = self.pipe.scheduler.alphas_cumprod[t].to(x_t.device, torch.float32)
        a, s = acp.sqrt(), (1 - acp).sqrt()
        if self.pipe.scheduler.config.prediction_type == "epsilon":
            return (x_t - s * pred) / a
        return a * x_t - s * pred

    @torch.no_grad()
    def decode(self, latents: Tensor) -> Tensor:
        """``[N, C, h, w]`` latents -> ``[N, 3, H, W]`` images in [0, 1] (the pipeline's VAE)."""
        vae = self.pipe.vae
        x = vae.decode(latents.to(vae.dtype) / vae.config.scaling_factor, return_dict=False)[0]
        return (x.float() / 2 + 0.5).clamp(0, 1)

    def potentials(self, rewards: Tensor) -> Tensor:
        """Log-potentials ``[N*K]`` of ``rewards [N*K]`` (and the running statistic updated, before reindexing)."""
        lam = float(self.config.temperature)
        prev = self._state
        if self.config.potential == "difference":
            score = rewards - (prev if prev is not None else torch.zeros_like(rewards))
            self._state = rewards
        elif self.config.potential == "max":
            score = rewards if prev is None else torch.maximum(prev, rewards)
            self._state = score
        else:
            score = rewards if prev is None else prev + rewards
            self._state = score
        return lam * score

    def resample(self, log_potentials: Tensor) -> Tensor:
        """Ancestor indices ``[N*K]``: each image's ``K`` particles drawn (multinomial, with replacement) among its
        own particles with probabilities ``softmax(log_potentials)`` of the group."""
        k = self.config.num_particles
        logits = log_potentials.view(-1, k).double()  # [N, K]
        probs = torch.softmax(logits, dim=1)
        local = torch.multinomial(probs.float(), k, replacement=True, generator=self.generator)  # [N, K]
        return (local + torch.arange(logits.size(0)).unsqueeze(1) * k).flatten()

    def _reindex_scheduler(self, ancestors: Tensor, shape: torch.Size) -> None:
        """Reorder the scheduler's per-row history (tensors shaped like the latents, alone or in lists)."""
        def fix(v: Any) -> Any:
            if isinstance(v, Tensor) and v.shape == shape:
                return v[ancestors.to(v.device)]
            return v

        for name, value in vars(self.pipe.scheduler).items():
            if isinstance(value, list):
                setattr(self.pipe.scheduler, name, [fix(v) for v in value])
            elif isinstance(value, tuple):
                setattr(self.pipe.scheduler, name, tuple(fix(v) for v in value))
            else:
                fixed = fix(value)
                if fixed is not value:
                    setattr(self.pipe.scheduler, name, fixed)

    # -- the callback
    def __call__(self, pipe: Any, step_index: int, timestep: Any, callback_kwargs: dict[str, Any]) -> dict[str, Any]:
        """``callback_on_step_end``: after a resampling step, the latents ``[N*K, C, h, w]`` of the drawn ancestors."""
        if self.config.num_particles == 1 or step_index not in self.config.resample_steps(pipe.num_timesteps):
            return callback_kwargs
        latents = callback_kwargs["latents"]
        if latents.size(0) != len(self.graphs):
            raise ValueError(f"FKSteering: the batch has {latents.size(0)} rows but {len(self.graphs)} graphs were "
                             "given (one per particle)")
        rewards = self.reward(self.decode(self.predicted_x0(latents.size(0))), self.graphs).float().cpu()
        ancestors = self.resample(self.potentials(rewards))
        self._state = self._state[ancestors]
        self.history.append((step_index, rewards, ancestors))
        self._reindex_scheduler(ancestors, latents.shape)
        callback_kwargs["latents"] = latents[ancestors.to(latents.device)]
        return callback_kwargs


@dataclass(frozen=True)
class FKResult:
    """What :func:`fk_generate` returns.

    Attributes:
        images: ``N`` images ``[H, W, 3]`` float in [0, 1]: each image's best final particle.
        rewards: ``[N]`` the chosen particles' final rewards (NaN for ``K = 1``: no reward is evaluated).
        particle_rewards: ``[N, K]`` the final rewards of every particle (NaN for ``K = 1``).
        history: the :attr:`FKSteering.history` of the call.
    """

    images: list[np.ndarray]
    rewards: Tensor
    particle_rewards: Tensor
    history: list[tuple[int, Tensor, Tensor]]


def fk_generate(pipe: Any, graphs: Sequence[SceneGraph], reward: Reward, config: FKConfig,
                generator: Sequence[torch.Generator], prompts: Sequence[str] | None = None,
                resample_generator: torch.Generator | None = None, **call_kwargs: Any) -> FKResult:
    """Generate one image per graph with FK steering.

    Args:
        pipe: a Stable Diffusion pipeline (a graph pipeline gets ``scene_graph=`` too). Its scheduler is used as
            it is: pass a stochastic one (:func:`stochastic_scheduler`) for resampling to pay off.
        graphs: ``N`` graphs; the prompts are their texts (or ``prompts``).
        reward: scores decoded predictions (see :data:`Reward`).
        config: particles, potential, temperature, resampling steps.
        generator: ``N * K`` CPU generators, image-major (:func:`particle_generators`).
        resample_generator: generator of the resampling draws (default: seeded with 0).
        **call_kwargs: passed to ``pipe(...)`` (``num_inference_steps``, ``guidance_scale``, ``graph_scale``, ...).

    Returns:
        an :class:`FKResult`.
    """
    from ..evaluation.conditioning import graph_text

    graphs = list(graphs)
    k = config.num_particles
    if len(generator) != len(graphs) * k:
        raise ValueError(f"{len(generator)} generators for {len(graphs)} graphs x {k} particles")
    prompts = list(prompts) if prompts is not None else [graph_text(g) for g in graphs]
    rows = [g for g in graphs for _ in range(k)]
    steering = FKSteering(pipe, reward, rows, config, resample_generator)
    extra = {"scene_graph": graphs} if hasattr(pipe, "graph_conditioner") else {}
    with steering:
        out = pipe(prompts, num_images_per_prompt=k, generator=list(generator), output_type="np",
                   callback_on_step_end=steering, callback_on_step_end_tensor_inputs=["latents"], **extra,
                   **call_kwargs)
    images = np.asarray(out.images)  # [N*K, H, W, 3]
    if k == 1:  # nothing to choose: no reward evaluation (one particle costs what plain sampling costs)
        return FKResult(list(images), torch.full((len(graphs),), float("nan")),
                        torch.full((len(graphs), 1), float("nan")), steering.history)
    final = reward(torch.from_numpy(images).permute(0, 3, 1, 2).float(), rows).float().view(len(graphs), k)
    best = final.argmax(1)  # [N]
    chosen = [images[i * k + int(b)] for i, b in enumerate(best)]
    return FKResult(chosen, final[torch.arange(len(graphs)), best], final, steering.history)
