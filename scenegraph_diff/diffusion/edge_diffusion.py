"""One-shot graph generation with a time-conditioned x₀-predicting denoiser (the few-step family).

:class:`EdgeDiffusionGenerator` bundles an :class:`~.ppgn.EdgeDenoiser`, its VP SDE and the training
node-count distribution; any sampler of :mod:`.samplers` draws graphs from it. Training uses the
shared :class:`scenegraph_diff.training.Trainer`; this module only supplies the step.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import Tensor, nn

from ..devices import ModelOnDevice, check_device, randint
from .data import NodeCountSampler, adjacency_to_graphs, graphs_to_adjacency
from .losses import edge_x0_loss
from .lowrank import LowRankEdgeDenoiser
from .ppgn import EdgeDenoiser
from .samplers import DDIMSampler, PCSampler, S4Sampler, score_from_x0
from .sde import VPSDE

logger = logging.getLogger(__name__)

__all__ = ["EdgeDiffusionConfig", "EdgeDiffusionGenerator", "cond_dims", "size_bucketed_batches", "train_edge_diffusion",
           "warm_start"]


@dataclass(frozen=True)
class EdgeDiffusionConfig:
    """Model and training settings (defaults: the community/ego runs of the benchmark)."""

    channels: int = 32
    num_layers: int = 4
    beta_min: float = 0.1
    beta_max: float = 20.0
    batch_size: int = 32
    max_steps: int = 3000
    lr: float = 2e-3
    warmup_steps: int = 100
    ema_decay: float = 0.995
    grad_clip: float = 1.0
    seed: int = 0
    num_threads: int = 1
    output_dir: str | None = None
    progress: bool = True
    self_condition: bool = False
    structure_features: bool = False  # DiGress-style features of the self-conditioning x̂₀ (needs self_condition)
    device: str = "cpu"  # training device: cpu, cuda, cuda:N or auto
    # size-bucketed batches: draw ``size_buckets * batch_size`` graphs at once, sort them by size and use them as the
    # next ``size_buckets`` batches (uniform marginals, little padding; the O(N^3) network pays for the largest graph of
    # a batch). 0 = independent random batches (the community/ego runs).
    size_buckets: int = 0
    checkpoint_every: int = 1000
    # denoiser: "ppgn" (EdgeDenoiser, O(N^3 C) per layer) or "lowrank" (LowRankEdgeDenoiser, O(N^2 C^2), for N in
    # the hundreds); ``channels`` is the PPGN width or the low-rank node width, ``pair_channels`` the low-rank
    # pair width
    architecture: str = "ppgn"
    pair_channels: int = 16
    rank: int = 16
    log_every: int = 250
    # opt-in DiGress cycle counts of x̂₀ (triangles / 4-cycles per pair and node, :func:`.structure.cycle_features`;
    # needs structure_features)
    cycle_features: bool = False
    # warm start: a saved EdgeDiffusionGenerator folder whose weights initialise the network; input channels the
    # saved model lacks (e.g. the cycle features) get zero weights, so the warm-started network computes exactly
    # the saved one until training moves them
    init_from: str | None = None

    def __post_init__(self) -> None:
        check_device(self.device, "EdgeDiffusionConfig.device")
        if self.size_buckets < 0:
            raise ValueError(f"size_buckets must be >= 0, got {self.size_buckets}")
        if self.architecture not in ("ppgn", "lowrank"):
            raise ValueError(f"architecture must be 'ppgn' or 'lowrank', got {self.architecture!r}")
        if self.cycle_features and not self.structure_features:
            raise ValueError("cycle_features=True needs structure_features=True")


class EdgeDiffusionGenerator(ModelOnDevice):
    """Denoiser + SDE + node-count distribution. ``generate`` returns ``{"num_nodes", "edges"}`` dicts."""

    def __init__(self, model: EdgeDenoiser | LowRankEdgeDenoiser, sde: VPSDE, node_counts: Sequence[int], structure_features: bool = False,
                 cycle_features: bool = False) -> None:
        if cycle_features and not structure_features:
            raise ValueError("cycle_features=True needs structure_features=True")
        if structure_features:
            e, nd = cond_dims(True, True, cycle_features)
            if (model.config.edge_cond_dim, model.config.node_cond_dim) != (e, nd):
                raise ValueError(f"structure_features{' + cycle_features' if cycle_features else ''} needs "
                                 f"edge_cond_dim={e}, node_cond_dim={nd}; the model has {model.config.edge_cond_dim}, "
                                 f"{model.config.node_cond_dim}")
        self.structure_features = structure_features
        self.cycle_features = cycle_features
        self.model = model.eval()
        self.sde = sde
        self.node_counts = [int(n) for n in node_counts]
        self.sampler_counts = NodeCountSampler(self.node_counts)

    @property
    def self_condition(self) -> bool:
        return self.structure_features or self.model.config.edge_cond_dim == 1

    @torch.no_grad()
    def x0_fn(self, node_mask: Tensor):
        """``(A_t, t) -> x̂₀``; with self-conditioning the previous call's x̂₀ is fed back (a fresh closure per
        sampling run)."""
        if not self.self_condition:
            return lambda A_t, t: self.model.x0_prediction(A_t, t, node_mask)
        prev: list[Tensor] = []

        from .losses import self_condition_inputs

        def fn(A_t: Tensor, t: Tensor) -> Tensor:
            sc = prev[-1] if prev else torch.zeros_like(A_t)
            x0 = self.model.x0_prediction(A_t, t, node_mask,
                                          **self_condition_inputs(sc, node_mask, self.structure_features, use=bool(prev),
                                                                  cycles=self.cycle_features))
            prev[:] = [x0]
            return x0

        return fn

    @torch.no_grad()
    def generate(self, num: int, sampler: Any = None, generator: torch.Generator | None = None,
                 node_mask: Tensor | None = None, batch_size: int = 64) -> tuple[list[dict], int]:
        """Sample ``num`` graphs. ``sampler``: a :class:`DDIMSampler` (default, 50 steps), :class:`PCSampler`
        or :class:`S4Sampler`. Returns the graphs and the network evaluations per graph."""
        sampler = sampler if sampler is not None else DDIMSampler()
        if node_mask is None:
            node_mask = self.sampler_counts.mask(num, generator)
        node_mask = node_mask.to(self.device)  # [num, N] bool; the sampling state lives with the network
        graphs: list[dict] = []
        nfe = 0
        # big graphs first, each chunk trimmed to its own largest graph (the network is O(N^3))
        order = torch.argsort(node_mask.sum(1), descending=True, stable=True)
        node_mask = node_mask[order]
        for s in range(0, num, batch_size):
            m = node_mask[s : s + batch_size]
            m = m[:, : max(int(m.sum(1).max()), 1)]
            if isinstance(sampler, DDIMSampler):
                A, nfe = sampler.sample(self.x0_fn(m), self.sde, m, generator)
            elif isinstance(sampler, (PCSampler, S4Sampler)):
                from .sde import symmetric_noise

                init = {"A": self.sde.prior_std() * symmetric_noise(m, generator)}
                out, nfe = sampler.sample(score_from_x0(self.x0_fn(m), self.sde), {"A": self.sde}, init, m, generator)
                A = (out["A"] > 0).float()
            else:
                raise TypeError(f"unsupported sampler {type(sampler).__name__}")
            graphs += adjacency_to_graphs(A.cpu(), m.cpu())
        out: list[dict] = [{}] * num
        for k, g in zip(order.tolist(), graphs):  # back to the order of ``node_mask``
            out[k] = g
        return out, nfe

    def save_pretrained(self, path: str | Path) -> None:
        """``model/`` (diffusers ``save_pretrained``, safetensors) + ``generator.json`` (SDE, node counts)."""
        path = Path(path)
        self.model.save_pretrained(path / "model")
        meta = {"family": "edge", "sde": {"beta_min": self.sde.beta_min, "beta_max": self.sde.beta_max}, "node_counts": self.node_counts,
                "structure_features": self.structure_features,
                **({"cycle_features": True} if self.cycle_features else {}),
                "architecture": "lowrank" if isinstance(self.model, LowRankEdgeDenoiser) else "ppgn"}
        (path / "generator.json").write_text(json.dumps(meta))

    @classmethod
    def from_pretrained(cls, path: str | Path) -> "EdgeDiffusionGenerator":
        path = Path(path)
        if not (path / "generator.json").is_file():
            raise FileNotFoundError(f"no generator.json in {path}")
        meta = json.loads((path / "generator.json").read_text())
        model_cls = LowRankEdgeDenoiser if meta.get("architecture", "ppgn") == "lowrank" else EdgeDenoiser
        model = model_cls.from_pretrained(path / "model")
        return cls(model, VPSDE(**meta["sde"]), meta["node_counts"], meta.get("structure_features", False),
                   meta.get("cycle_features", False))


def cond_dims(self_condition: bool, structure: bool, cycles: bool = False) -> tuple[int, int]:
    """``(edge_cond_dim, node_cond_dim)`` of the denoiser for these self-conditioning inputs."""
    from .structure import EDGE_CYCLE_DIM, EDGE_STRUCT_DIM, NODE_CYCLE_DIM, NODE_STRUCT_DIM

    if not structure:
        return (1 if self_condition else 0), 0
    return (1 + EDGE_STRUCT_DIM + (EDGE_CYCLE_DIM if cycles else 0),
            NODE_STRUCT_DIM + (NODE_CYCLE_DIM if cycles else 0))


def warm_start(model: nn.Module, saved: nn.Module) -> nn.Module:
    """Copy ``saved``'s weights into ``model`` (same architecture, possibly more condition channels). The input
    layer's columns are matched by role (``A_t``, diagonal, pair mask, edge conditions, node conditions of ``i``,
    of ``j``), and the columns ``saved`` lacks are zero, so ``model`` computes what ``saved`` does when fed the same
    conditions plus any values in the new channels."""
    if not (isinstance(model, EdgeDenoiser) and isinstance(saved, EdgeDenoiser)):
        raise TypeError("warm_start supports EdgeDenoiser (PPGN) models")
    cs, cm = saved.config, model.config
    if cs.edge_cond_dim > cm.edge_cond_dim or cs.node_cond_dim > cm.node_cond_dim:
        raise ValueError("warm_start: the saved model has more condition channels than the new one")
    state = saved.state_dict()
    own = model.state_dict()
    base = 3
    for name, w in state.items():
        if own[name].shape == w.shape:
            own[name] = w.clone()
            continue
        if not name.endswith(".weight") or w.dim() != 2 or w.shape[0] != own[name].shape[0]:
            raise ValueError(f"warm_start: {name} has shape {tuple(w.shape)} vs {tuple(own[name].shape)}")
        new = torch.zeros_like(own[name])
        es, em, ns, nm = cs.edge_cond_dim, cm.edge_cond_dim, cs.node_cond_dim, cm.node_cond_dim
        new[:, : base + es] = w[:, : base + es]
        new[:, base + em : base + em + ns] = w[:, base + es : base + es + ns]
        new[:, base + em + nm : base + em + nm + ns] = w[:, base + es + ns : base + es + 2 * ns]
        own[name] = new
    model.load_state_dict(own)
    return model


def edge_step(sde: VPSDE, self_condition: bool = False, structure: bool = False, cycles: bool = False):
    """The training step for :class:`~scenegraph_diff.training.Trainer`: batch = ``(A0, node_mask)``."""

    def step(model, batch, generator):
        A0, mask = batch
        loss = edge_x0_loss(model, sde, A0, mask, generator, self_condition=self_condition, structure=structure,
                            cycles=cycles)
        return {"loss": loss}

    return step


def size_bucketed_batches(A: Tensor, mask: Tensor, batch_size: int, buckets: int = 0):
    """Batch function ``(step, generator) -> (A0 [b, n, n], node_mask [b, n])`` for the :class:`Trainer`.

    Args:
        A: ``[G, N, N]`` 0/1 adjacency of the training set; mask: ``[G, N]`` bool.
        batch_size: graphs per batch ``b``.
        buckets: 0 = independent uniform draws per step; ``k > 0`` = at every ``k``-th step draw ``k * b`` graphs
            uniformly (with replacement), sort them by size and serve them as the next ``k`` batches, each trimmed to
            its largest graph ``n``. The marginal of every graph stays uniform; the pool is a pure function of the
            generator state at a multiple of ``k``, so a resume from a checkpoint at such a step is bit-exact.
    """
    sizes = mask.sum(1)
    pool: dict[str, Any] = {}

    def batches(step: int, generator: torch.Generator):
        if buckets <= 0:
            idx = randint(0, A.shape[0], (batch_size,), generator, "cpu")  # the data stay on CPU
        else:
            if step % buckets == 0 or pool.get("start") != step - step % buckets:
                draw = randint(0, A.shape[0], (buckets * batch_size,), generator, "cpu")
                order = torch.argsort(sizes[draw], stable=True)
                chunks = list(draw[order].split(batch_size))
                perm = randint(0, 2**31 - 1, (buckets,), generator, "cpu").argsort()  # bucket order shuffled
                pool.update(start=step - step % buckets, chunks=[chunks[int(k)] for k in perm])
            idx = pool["chunks"][step % buckets]
        n = max(int(mask[idx].sum(1).max()), 1)
        return A[idx][:, :n, :n], mask[idx][:, :n]

    return batches


def train_edge_diffusion(train_graphs: Sequence[dict], config: EdgeDiffusionConfig = EdgeDiffusionConfig()
                         ) -> tuple[EdgeDiffusionGenerator, dict[str, Any]]:
    """Train on edge-list graphs; returns the EMA generator and ``{"train_seconds", "final_loss", ...}``."""
    from ..training import TrainConfig, Trainer

    A, mask = graphs_to_adjacency(train_graphs)
    sde = VPSDE(config.beta_min, config.beta_max)
    if config.structure_features and not config.self_condition:
        raise ValueError("structure_features=True needs self_condition=True")
    st, cy = config.structure_features, config.cycle_features
    e_dim, n_dim = cond_dims(config.self_condition, st, cy)
    dims = {"edge_cond_dim": e_dim, "node_cond_dim": n_dim}
    if config.architecture == "lowrank":
        model: nn.Module = LowRankEdgeDenoiser(channels=config.channels, pair_channels=config.pair_channels,
                                               num_layers=config.num_layers, rank=config.rank, **dims)
    else:
        model = EdgeDenoiser(channels=config.channels, num_layers=config.num_layers, **dims)
    if config.init_from is not None:
        warm_start(model, EdgeDiffusionGenerator.from_pretrained(config.init_from).model)

    batches = size_bucketed_batches(A, mask, config.batch_size, config.size_buckets)

    tc = TrainConfig(max_steps=config.max_steps, lr=config.lr, schedule="cosine", warmup_steps=config.warmup_steps,
                     min_lr_ratio=0.05, grad_clip=config.grad_clip, ema_decay=config.ema_decay, seed=config.seed,
                     num_threads=config.num_threads, output_dir=config.output_dir, progress=config.progress,
                     log_every=config.log_every,
                     checkpoint_every=config.checkpoint_every if config.output_dir else None,
                     device=config.device)
    trainer = Trainer(model, edge_step(sde, config.self_condition, st, cy), tc)
    t0, c0 = time.perf_counter(), time.process_time()
    hist = trainer.fit(batches, resume=config.output_dir is not None)
    secs, cpu = time.perf_counter() - t0, time.process_time() - c0
    ema = trainer.ema_model if trainer.ema_model is not None else trainer.model
    gen = EdgeDiffusionGenerator(ema, sde, [int(g["num_nodes"]) for g in train_graphs], st, cy)
    tail = [h["loss"] for h in hist[-100:]]
    return gen, {"train_seconds": max(secs, float(trainer.train_seconds)), "train_seconds_this_run": secs,
                 "train_cpu_seconds_this_run": cpu, "train_cpu_seconds": cpu, "steps": trainer.step,
                 "final_loss": sum(tail) / max(len(tail), 1),
                 "config": asdict(config), "num_parameters": sum(p.numel() for p in model.parameters())}
