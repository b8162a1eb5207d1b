"""PARD-style block-autoregressive graph diffusion (Zhao et al., ICLR 2024), second generator family.

1. **Order.** :func:`peeling_blocks` repeatedly peels off every node of minimum degree in the remaining
   graph; each peeled set is a block. The order is a function of the graph only (permutation
   invariant), and reversed it generates from the dense core outwards.
2. **Factorisation.** ``p(G) = Π_i p(|B_i| | B_<i) p(B_i | B_<i, |B_i|)``. One shared denoiser
   (an :class:`~.ppgn.EdgeDenoiser` with condition channels: "pair known", its value, "node is new")
   runs a short diffusion over the new block's edges (new–new and new–old) with the earlier blocks
   fixed; a block-size head predicts the next block's size from the graph so far (0 = stop).
3. **Training** draws one random prefix per graph and step (PARD trains all blocks in parallel with a
   causal network; drawing prefixes optimises the same objective in expectation, with a plain
   equivariant network). Sampling uses :class:`~.samplers.DDIMSampler` per block.

Cost: network evaluations per graph = Σ_blocks (denoiser steps) + (blocks + 1) size-head calls.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import Tensor, nn

from ..devices import ModelOnDevice, check_device, multinomial, randint
from ..weights import AlignedLoadingMixin
from .data import adjacency_to_graphs, graphs_to_adjacency
from .losses import sample_time
from .ppgn import EdgeDenoiser
from .samplers import DDIMSampler
from .sde import VPSDE, mask_adjacency, symmetric_noise

__all__ = ["peeling_blocks", "PARDModel", "PARDConfig", "PARDGenerator", "train_pard"]


def peeling_blocks(num_nodes: int, edges: Sequence[Sequence[int]]) -> list[list[int]]:
    """Degree-peeling partial order, in *generation* order (first block = last peeled = densest core).

    Each round removes all nodes whose degree in the remaining graph is minimal.
    """
    adj: list[set[int]] = [set() for _ in range(num_nodes)]
    for u, v in edges:
        if u != v:
            adj[u].add(v)
            adj[v].add(u)
    remaining = set(range(num_nodes))
    peeled: list[list[int]] = []
    while remaining:
        deg = {v: len(adj[v] & remaining) for v in remaining}
        dmin = min(deg.values())
        block = sorted(v for v, d in deg.items() if d == dmin)
        peeled.append(block)
        remaining -= set(block)
    return peeled[::-1]


class PARDModel(AlignedLoadingMixin, ModelMixin, ConfigMixin):
    """Shared block denoiser + block-size head.

    Args:
        channels, num_layers: of the denoiser.
        max_block: largest block size the head can emit (classes ``0..max_block``; 0 = stop).
        max_nodes: graph size cap (used to normalise the head's scalar inputs).
    """

    @register_to_config
    def __init__(self, channels: int = 32, num_layers: int = 4, max_block: int = 20, max_nodes: int = 20) -> None:
        super().__init__()
        self.denoiser = EdgeDenoiser(channels=channels, num_layers=num_layers, edge_cond_dim=2, node_cond_dim=1)
        self.head_net = EdgeDenoiser(channels=channels // 2, num_layers=2)
        self.head = nn.Sequential(nn.Linear(channels // 2 + 2, 64), nn.SiLU(), nn.Linear(64, max_block + 1))

    def denoise(self, A_t: Tensor, t: Tensor, node_mask: Tensor, known: Tensor, A_known: Tensor, new: Tensor) -> Tensor:
        """Edge logits ``[B, N, N]``; ``known`` ``[B, N, N]`` bool, ``A_known`` ``{0,1}``, ``new`` ``[B, N]`` bool."""
        kv = mask_adjacency(2 * A_known - 1, node_mask) * known
        x = torch.where(known, kv, A_t)
        cond = torch.stack([known.float(), kv], -1)
        return self.denoiser(x, t, node_mask, edge_cond=cond, node_cond=new.float()[..., None])

    def block_size_logits(self, A: Tensor, node_mask: Tensor, num_blocks: Tensor) -> Tensor:
        """Logits over the next block's size ``[B, max_block + 1]`` given the graph so far (``{0,1}``)."""
        B = A.shape[0]
        _, h = self.head_net(mask_adjacency(2 * A - 1, node_mask), A.new_zeros(B), node_mask, return_hidden=True)
        m = node_mask.float()
        pair = m[:, :, None] * m[:, None, :]
        pooled = (h * pair[..., None]).sum((1, 2)) / pair.sum((1, 2)).clamp(min=1)[:, None]
        n = m.sum(1, keepdim=True) / self.config.max_nodes
        return self.head(torch.cat([pooled, n, num_blocks.float()[:, None] / self.config.max_nodes], -1))


def _order_graph(g: dict) -> tuple[Tensor, list[int]]:
    """Adjacency reordered so blocks are contiguous (generation order) and the block sizes."""
    blocks = peeling_blocks(g["num_nodes"], g["edges"])
    order = [v for b in blocks for v in b]
    A, _ = graphs_to_adjacency([g])
    A = A[0][order][:, order]
    return A, [len(b) for b in blocks]


@dataclass(frozen=True)
class PARDConfig:
    channels: int = 32
    num_layers: int = 4
    beta_min: float = 0.1
    beta_max: float = 20.0
    batch_size: int = 32
    max_steps: int = 2000
    lr: float = 2e-3
    ema_decay: float = 0.995
    grad_clip: float = 1.0
    seed: int = 0
    num_threads: int = 1
    progress: bool = True
    device: str = "cpu"  # training device: cpu, cuda, cuda:N or auto

    def __post_init__(self) -> None:
        check_device(self.device, "PARDConfig.device")


class PARDGenerator(ModelOnDevice):
    """Samples block by block. ``generate(num, sampler)`` with ``sampler = {"steps_per_block": K}``
    or a :class:`DDIMSampler`."""

    def __init__(self, model: PARDModel, sde: VPSDE) -> None:
        self.model = model.eval()
        self.sde = sde

    @torch.no_grad()
    def generate(self, num: int, sampler: Any = None, generator: torch.Generator | None = None) -> tuple[list[dict], float]:
        if isinstance(sampler, dict):
            sampler = DDIMSampler(num_steps=int(sampler.get("steps_per_block", 20)))
        sampler = sampler if sampler is not None else DDIMSampler(num_steps=20)
        Nmax = self.model.config.max_nodes
        dev = self.device  # the sampling state lives with the network; draws use the generator's device
        A = torch.zeros(num, Nmax, Nmax, device=dev)
        n = torch.zeros(num, dtype=torch.long, device=dev)
        nblocks = torch.zeros(num, dtype=torch.long, device=dev)
        active = torch.ones(num, dtype=torch.bool, device=dev)
        nfe = torch.zeros(num, device=dev)
        ar = torch.arange(Nmax, device=dev)
        while active.any():
            idx = active.nonzero().flatten()
            mask_old = ar[None] < n[idx, None]
            logits = self.model.block_size_logits(A[idx], mask_old, nblocks[idx])
            nfe[idx] += 1
            size = multinomial(F.softmax(logits, -1), 1, generator=generator).flatten()
            if (nblocks[idx] == 0).any():  # the first block may not be empty
                first = nblocks[idx] == 0
                logits0 = logits[first].clone()
                logits0[:, 0] = -float("inf")
                size[first] = multinomial(F.softmax(logits0, -1), 1, generator=generator).flatten()
            size = torch.minimum(size, Nmax - n[idx])
            stop = size == 0
            active[idx[stop]] = False
            idx, size = idx[~stop], size[~stop]
            if idx.numel() == 0:
                break
            n_old = n[idx]
            n_new = n_old + size
            node_mask = ar[None] < n_new[:, None]
            old = ar[None] < n_old[:, None]
            new = node_mask & ~old
            known = old[:, :, None] & old[:, None, :]
            A_known = A[idx]

            def x0_fn(A_t: Tensor, t: Tensor, node_mask=node_mask, known=known, A_known=A_known, new=new) -> Tensor:
                logits = self.model.denoise(A_t, t, node_mask, known, A_known, new)
                return mask_adjacency(torch.tanh(0.5 * logits), node_mask)

            A_new, k = sampler.sample(x0_fn, self.sde, node_mask, generator, known_mask=known, known_values=A_known)
            nfe[idx] += k
            A[idx] = A_new
            n[idx] = n_new
            nblocks[idx] += 1
            active[idx[n_new >= Nmax]] = False
        node_mask = ar[None] < n[:, None]
        return adjacency_to_graphs(A.cpu(), node_mask.cpu()), float(nfe.mean())

    def save_pretrained(self, path: str | Path) -> None:
        path = Path(path)
        self.model.save_pretrained(path / "model")
        (path / "generator.json").write_text(json.dumps({"family": "pard", "sde": [self.sde.beta_min, self.sde.beta_max]}))

    @classmethod
    def from_pretrained(cls, path: str | Path) -> "PARDGenerator":
        path = Path(path)
        meta = json.loads((path / "generator.json").read_text())
        return cls(PARDModel.from_pretrained(path / "model"), VPSDE(*meta["sde"]))


def train_pard(train_graphs: Sequence[dict], config: PARDConfig = PARDConfig()) -> tuple[PARDGenerator, dict[str, Any]]:
    """Train the shared block denoiser and the size head together (sum of BCE and CE)."""
    from ..training import TrainConfig, Trainer

    ordered = [_order_graph(g) for g in train_graphs]
    Nmax = max(g["num_nodes"] for g in train_graphs)
    max_block = max(max(s) for _, s in ordered)
    sde = VPSDE(config.beta_min, config.beta_max)
    model = PARDModel(config.channels, config.num_layers, max_block=max_block, max_nodes=Nmax)

    def batches(step: int, generator: torch.Generator):
        gi = randint(0, len(ordered), (config.batch_size,), generator, "cpu").tolist()
        A = torch.zeros(config.batch_size, Nmax, Nmax)
        n_old, n_new, nb, target = [], [], [], []
        for b, i in enumerate(gi):
            Ai, sizes = ordered[i]
            k = int(randint(0, len(sizes) + 1, (1,), generator, "cpu"))  # k = blocks already known
            cum = [0]
            for s in sizes:
                cum.append(cum[-1] + s)
            A[b, : Ai.shape[0], : Ai.shape[0]] = Ai
            n_old.append(cum[k])
            n_new.append(cum[min(k + 1, len(sizes))])
            nb.append(k)
            target.append(sizes[k] if k < len(sizes) else 0)
        return A, torch.tensor(n_old), torch.tensor(n_new), torch.tensor(nb), torch.tensor(target)

    def step(model, batch, generator):
        A, n_old, n_new, nb, target = batch  # on the training device
        ar = torch.arange(Nmax, device=A.device)
        old = ar[None] < n_old[:, None]
        node_mask = ar[None] < n_new[:, None]
        new = node_mask & ~old
        head_loss = F.cross_entropy(model.block_size_logits(A * (old[:, :, None] & old[:, None, :]), old, nb), target)
        has_new = new.any(1)
        if has_new.any():
            A1, m1, o1, nw = A[has_new], node_mask[has_new], old[has_new], new[has_new]
            known = o1[:, :, None] & o1[:, None, :]
            t = sample_time(A1.shape[0], generator, device=A1.device)
            a0 = mask_adjacency(2 * A1 - 1, m1)
            a_t = mask_adjacency(sde.perturb(a0, t, symmetric_noise(m1, generator)), m1)
            logits = model.denoise(a_t, t, m1, known, A1, nw)
            valid = torch.triu(mask_adjacency(torch.ones_like(A1), m1), diagonal=1).bool() & ~known
            edge_loss = F.binary_cross_entropy_with_logits(logits[valid], A1[valid])
        else:
            edge_loss = A.new_zeros(())
        return {"loss": edge_loss + head_loss, "edge_loss": edge_loss, "head_loss": head_loss}

    tc = TrainConfig(max_steps=config.max_steps, lr=config.lr, schedule="cosine", warmup_steps=100, min_lr_ratio=0.05,
                     grad_clip=config.grad_clip, ema_decay=config.ema_decay, seed=config.seed,
                     num_threads=config.num_threads, progress=config.progress, log_every=250,
                     device=config.device)
    trainer = Trainer(model, step, tc)
    t0 = time.perf_counter()
    hist = trainer.fit(batches)
    secs = time.perf_counter() - t0
    gen = PARDGenerator(trainer.ema_model or trainer.model, sde)
    tail = hist[-100:]
    return gen, {"train_seconds": secs, "steps": trainer.step, "final_loss": sum(h["loss"] for h in tail) / len(tail),
                 "config": asdict(config), "num_parameters": sum(p.numel() for p in model.parameters())}
