"""GDSS-style score networks (Jo et al., ICML 2022) and the joint (X, A) generator built on them.

* :class:`ScoreNetworkX`: dense GCN layers with ``tanh``, all layer outputs concatenated into an MLP.
* :class:`ScoreNetworkA`: multi-head graph attention over the adjacency powers ``[A, A²]``; each layer
  turns ``c_in`` adjacency channels into ``c_out`` new ones (``tanh(QKᵀ/√d)``, symmetrised, queries and
  keys from GCNs on each channel); all channels are concatenated into an MLP giving a symmetric score.
* Neither network reads ``t`` (as in GDSS); they predict the noise ``ε`` and the score is ``−ε̂/σ(t)``.

Node features for unattributed graphs are one-hot degrees (GDSS's ``max_feat_num``), diffused with their
own SDE. :class:`GDSSGenerator` samples with :class:`~.samplers.PCSampler` or :class:`~.samplers.S4Sampler`.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import Tensor, nn

from ..devices import ModelOnDevice, check_device, randint
from ..weights import AlignedLoadingMixin
from .data import NodeCountSampler, adjacency_to_graphs, graphs_to_adjacency
from .losses import dsm_loss
from .samplers import PCSampler, S4Sampler
from .sde import VESDE, VPSDE, mask_adjacency, mask_nodes, node_noise, symmetric_noise

__all__ = ["ScoreNetworkX", "ScoreNetworkA", "GDSSScoreModel", "GDSSConfig", "GDSSGenerator", "train_gdss",
           "degree_features"]


def _gcn_norm(A: Tensor) -> Tensor:
    """``D^{-1/2} (A + I) D^{-1/2}`` for dense (possibly non-binary) ``A [B, N, N]``."""
    N = A.shape[-1]
    A = A + torch.eye(N, dtype=A.dtype, device=A.device)
    d = A.sum(-1).clamp(min=1e-6).rsqrt()
    return d[:, :, None] * A * d[:, None, :]


class _DenseGCN(nn.Module):
    def __init__(self, dim_in: int, dim_out: int) -> None:
        super().__init__()
        self.lin = nn.Linear(dim_in, dim_out)

    def forward(self, x: Tensor, A_norm: Tensor) -> Tensor:
        return A_norm @ self.lin(x)


def degree_features(A: Tensor, node_mask: Tensor, num_features: int) -> Tensor:
    """One-hot degree (clipped at ``num_features − 1``) ``[B, N, F]``, padded rows zero."""
    deg = A.sum(-1).long().clamp(max=num_features - 1)
    return mask_nodes(torch.nn.functional.one_hot(deg, num_features).float(), node_mask)


class ScoreNetworkX(nn.Module):
    """GCN stack (tanh) → concat of all layers → MLP → ``ε̂_X [B, N, F]``."""

    def __init__(self, num_features: int, depth: int = 2, hidden: int = 16) -> None:
        super().__init__()
        dims = [num_features] + [hidden] * depth
        self.layers = nn.ModuleList([_DenseGCN(a, b) for a, b in zip(dims[:-1], dims[1:])])
        self.mlp = nn.Sequential(nn.Linear(sum(dims), 2 * sum(dims)), nn.ELU(), nn.Linear(2 * sum(dims), num_features))

    def forward(self, X: Tensor, A: Tensor, node_mask: Tensor) -> Tensor:
        An = _gcn_norm(A)
        hs = [X]
        for layer in self.layers:
            hs.append(torch.tanh(layer(hs[-1], An)))
        return mask_nodes(self.mlp(torch.cat(hs, -1)), node_mask)


class _AttentionLayer(nn.Module):
    """``c_in`` adjacency channels → ``c_out`` attention adjacency channels and new node features."""

    def __init__(self, dim_in: int, dim: int, c_in: int, c_out: int, heads: int = 4) -> None:
        super().__init__()
        self.heads, self.dim = heads, dim
        self.q = nn.ModuleList([_DenseGCN(dim_in, dim) for _ in range(c_in)])
        self.k = nn.ModuleList([_DenseGCN(dim_in, dim) for _ in range(c_in)])
        self.v = nn.ModuleList([_DenseGCN(dim_in, dim) for _ in range(c_in)])
        self.mix = nn.Sequential(nn.Linear(2 * c_in, 2 * c_out), nn.ELU(), nn.Linear(2 * c_out, c_out))

    def forward(self, x: Tensor, adjs: Tensor, node_mask: Tensor) -> tuple[Tensor, Tensor]:
        # adjs: [B, N, N, c_in]
        B, N, _, C = adjs.shape
        atts, vals = [], []
        for c in range(C):
            An = _gcn_norm(adjs[..., c])
            q = self.q[c](x, An).reshape(B, N, self.heads, -1).transpose(1, 2)  # [B, h, N, d/h]
            k = self.k[c](x, An).reshape(B, N, self.heads, -1).transpose(1, 2)
            att = torch.tanh(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])).mean(1)  # [B, N, N]
            att = mask_adjacency(0.5 * (att + att.transpose(1, 2)), node_mask)
            atts.append(att)
            vals.append(att @ self.v[c](x, An))
        new_adj = self.mix(torch.cat([adjs, torch.stack(atts, -1)], -1))  # [B, N, N, c_out]
        new_adj = 0.5 * (new_adj + new_adj.transpose(1, 2))
        new_x = torch.tanh(torch.stack(vals, 0).mean(0))
        return mask_nodes(new_x, node_mask), new_adj * mask_adjacency(torch.ones_like(adjs[..., 0]), node_mask)[..., None]


class ScoreNetworkA(nn.Module):
    """Attention over ``[A, A²]`` (``c_init = 2``) → hidden channels → MLP → symmetric ``ε̂_A [B, N, N]``."""

    def __init__(self, num_features: int, depth: int = 3, hidden: int = 16, c_init: int = 2, c_hid: int = 8,
                 c_final: int = 4, heads: int = 4) -> None:
        super().__init__()
        self.c_init = c_init
        chans = [c_init] + [c_hid] * (depth - 1) + [c_final]
        dims = [num_features] + [hidden] * depth
        self.layers = nn.ModuleList([_AttentionLayer(dims[i], dims[i + 1], chans[i], chans[i + 1], heads)
                                     for i in range(depth)])
        total = sum(chans)
        self.mlp = nn.Sequential(nn.Linear(total, 2 * total), nn.ELU(), nn.Linear(2 * total, 1))

    def forward(self, X: Tensor, A: Tensor, node_mask: Tensor) -> Tensor:
        powers = [A]
        for _ in range(self.c_init - 1):
            powers.append(powers[-1] @ A)
        adjs = torch.stack(powers, -1)  # [B, N, N, c_init]
        all_adjs = [adjs]
        x = X
        for layer in self.layers:
            x, adjs = layer(x, adjs, node_mask)
            all_adjs.append(adjs)
        out = self.mlp(torch.cat(all_adjs, -1)).squeeze(-1)
        return mask_adjacency(0.5 * (out + out.transpose(1, 2)), node_mask)


class GDSSScoreModel(AlignedLoadingMixin, ModelMixin, ConfigMixin):
    """The pair of GDSS networks; ``forward(X_t, A_t, node_mask) -> (ε̂_X, ε̂_A)``."""

    @register_to_config
    def __init__(self, num_features: int = 10, depth_x: int = 2, depth_a: int = 3, hidden: int = 16,
                 c_hid: int = 8, c_final: int = 4, heads: int = 4) -> None:
        super().__init__()
        self.net_x = ScoreNetworkX(num_features, depth_x, hidden)
        self.net_a = ScoreNetworkA(num_features, depth_a, hidden, 2, c_hid, c_final, heads)

    def forward(self, X: Tensor, A: Tensor, node_mask: Tensor) -> tuple[Tensor, Tensor]:
        return self.net_x(X, A, node_mask), self.net_a(X, A, node_mask)


@dataclass(frozen=True)
class GDSSConfig:
    """GDSS generic-graph settings (lr 1e-2 per the paper; EMA 0.999), scaled down in steps."""

    num_features: int = 10
    hidden: int = 16
    x_beta: tuple[float, float] = (0.1, 1.0)
    a_sigma: tuple[float, float] = (0.2, 1.0)
    batch_size: int = 32
    max_steps: int = 2000
    lr: float = 5e-3
    ema_decay: float = 0.999
    grad_clip: float = 1.0
    seed: int = 0
    num_threads: int = 1
    progress: bool = True
    device: str = "cpu"  # training device: cpu, cuda, cuda:N or auto

    def __post_init__(self) -> None:
        check_device(self.device, "GDSSConfig.device")


class GDSSGenerator(ModelOnDevice):
    """Samples ``(X, A)`` jointly with a score sampler; adjacency thresholded at 0.5 (GDSS)."""

    def __init__(self, model: GDSSScoreModel, sde_x: VPSDE, sde_a: VESDE, node_counts: Sequence[int]) -> None:
        self.model = model.eval()
        self.sde_x, self.sde_a = sde_x, sde_a
        self.node_counts = [int(n) for n in node_counts]
        self.counts = NodeCountSampler(self.node_counts)

    def score_fn(self, node_mask: Tensor):
        def fn(state: dict[str, Tensor], t: Tensor) -> dict[str, Tensor]:
            ex, ea = self.model(state["X"], state["A"], node_mask)
            sx = self.sde_x.marginal(t)[1].reshape(-1, 1, 1)
            sa = self.sde_a.marginal(t)[1].reshape(-1, 1, 1)
            return {"X": -ex / sx, "A": -ea / sa}

        return fn

    @torch.no_grad()
    def generate(self, num: int, sampler: Any = None, generator: torch.Generator | None = None,
                 node_mask: Tensor | None = None) -> tuple[list[dict], int]:
        sampler = sampler if sampler is not None else S4Sampler(num_steps=100)
        if not isinstance(sampler, (PCSampler, S4Sampler)):
            raise TypeError(f"GDSS networks have no time input: use PCSampler or S4Sampler, got {type(sampler).__name__}")
        m = node_mask if node_mask is not None else self.counts.mask(num, generator)
        m = m.to(self.device)  # [num, N] bool; the sampling state lives with the network
        F = self.model.config.num_features
        init = {"X": node_noise(m, F, generator), "A": self.sde_a.prior_std() * symmetric_noise(m, generator)}
        out, nfe = sampler.sample(self.score_fn(m), {"X": self.sde_x, "A": self.sde_a}, init, m, generator)
        return adjacency_to_graphs((out["A"] > 0.5).float().cpu(), m.cpu()), nfe

    def save_pretrained(self, path: str | Path) -> None:
        path = Path(path)
        self.model.save_pretrained(path / "model")
        meta = {"family": "gdss", "x_beta": [self.sde_x.beta_min, self.sde_x.beta_max],
                "a_sigma": [self.sde_a.sigma_min, self.sde_a.sigma_max], "node_counts": self.node_counts}
        (path / "generator.json").write_text(json.dumps(meta))

    @classmethod
    def from_pretrained(cls, path: str | Path) -> "GDSSGenerator":
        path = Path(path)
        meta = json.loads((path / "generator.json").read_text())
        return cls(GDSSScoreModel.from_pretrained(path / "model"), VPSDE(*meta["x_beta"]), VESDE(*meta["a_sigma"]),
                   meta["node_counts"])


def train_gdss(train_graphs: Sequence[dict], config: GDSSConfig = GDSSConfig()) -> tuple[GDSSGenerator, dict[str, Any]]:
    """Denoising score matching for both networks with the shared Trainer."""
    from ..training import TrainConfig, Trainer

    A, mask = graphs_to_adjacency(train_graphs)
    X = degree_features(A, mask, config.num_features)
    sde_x, sde_a = VPSDE(*config.x_beta), VESDE(*config.a_sigma)
    model = GDSSScoreModel(num_features=config.num_features, hidden=config.hidden)

    def batches(step: int, generator: torch.Generator):
        idx = randint(0, A.shape[0], (config.batch_size,), generator, "cpu")  # the data stay on CPU
        return X[idx], A[idx], mask[idx]

    def step(model, batch, generator):
        X0, A0, m = batch
        lx, la = dsm_loss(model, sde_x, sde_a, X0, A0, m, generator)
        return {"loss": lx + la, "loss_x": lx, "loss_a": la}

    tc = TrainConfig(max_steps=config.max_steps, lr=config.lr, optimizer="adam", schedule="exponential",
                     lr_gamma=0.9995, grad_clip=config.grad_clip, ema_decay=config.ema_decay, seed=config.seed,
                     num_threads=config.num_threads, progress=config.progress, log_every=250,
                     device=config.device)
    trainer = Trainer(model, step, tc)
    t0 = time.perf_counter()
    hist = trainer.fit(batches)
    secs = time.perf_counter() - t0
    gen = GDSSGenerator(trainer.ema_model or trainer.model, sde_x, sde_a, [int(g["num_nodes"]) for g in train_graphs])
    return gen, {"train_seconds": secs, "steps": trainer.step, "final_loss": hist[-1]["loss"], "config": asdict(config),
                 "num_parameters": sum(p.numel() for p in model.parameters())}
