"""Train / load / sample any generic-graph generator family by name (used by the CLI and benchmarks)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import torch

__all__ = ["FAMILIES", "train_generator", "load_generator", "make_sampler", "SAMPLER_KINDS"]

FAMILIES = ("edge", "gdss", "pard")
SAMPLER_KINDS = ("ddim", "ddpm", "s4", "pc", "pard")


def train_generator(family: str, train_graphs: Sequence[dict], max_steps: int, batch_size: int = 32,
                    num_threads: int = 1, seed: int = 0, progress: bool = True, device: str = "cpu",
                    **options: Any) -> tuple[Any, dict[str, Any]]:
    """Train a generator of ``family`` (``edge``, ``gdss`` or ``pard``) on edge-list graphs.

    ``device``: training device (``cpu``, ``cuda``, ``cuda:N`` or ``auto``); the returned generator's network
    stays there (move it with ``.to``). ``options``: further fields of the family's config (e.g. ``channels``,
    ``num_layers``, ``self_condition``, ``structure_features`` of :class:`~.edge_diffusion.EdgeDiffusionConfig`);
    an unknown name raises ``TypeError``.
    """
    kw = dict(max_steps=max_steps, batch_size=batch_size, num_threads=num_threads, seed=seed, progress=progress,
              device=device, **options)
    if family == "edge":
        from .edge_diffusion import EdgeDiffusionConfig, train_edge_diffusion

        return train_edge_diffusion(train_graphs, EdgeDiffusionConfig(**kw))
    if family == "gdss":
        from .gdss import GDSSConfig, train_gdss

        return train_gdss(train_graphs, GDSSConfig(**kw))
    if family == "pard":
        from .pard import PARDConfig, train_pard

        return train_pard(train_graphs, PARDConfig(**kw))
    raise ValueError(f"unknown generator family {family!r}; expected one of {FAMILIES}")


def load_generator(path: str | Path, device: str | torch.device = "cpu") -> Any:
    """Load a folder written by a generator's ``save_pretrained`` (family read from ``generator.json``) onto
    ``device`` (``cpu``, ``cuda``, ``cuda:N`` or ``auto``; a CUDA device without CUDA raises ``RuntimeError``)."""
    from ..devices import resolve_device

    dev = resolve_device(device, "device")
    path = Path(path)
    meta_path = path / "generator.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"no generator.json in {path} (train one with `scenegraph-diff train-graph-diffusion`)")
    family = json.loads(meta_path.read_text()).get("family", "edge")
    if family == "edge":
        from .edge_diffusion import EdgeDiffusionGenerator as cls
    elif family == "gdss":
        from .gdss import GDSSGenerator as cls  # type: ignore[assignment]
    elif family == "pard":
        from .pard import PARDGenerator as cls  # type: ignore[assignment]
    elif family == "scene_graph":
        from .scene_graph_refiner import SceneGraphRefiner as cls  # type: ignore[assignment]
    else:
        raise ValueError(f"{meta_path}: unknown family {family!r}")
    return cls.from_pretrained(path).to(dev)


def make_sampler(kind: str, steps: int) -> Any:
    """``ddim`` (η=0), ``ddpm`` (DDIM η=1), ``s4``, ``pc`` (2 evaluations per step) or ``pard`` (steps per block)."""
    from .samplers import DDIMSampler, PCSampler, S4Sampler

    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if kind == "ddim":
        return DDIMSampler(num_steps=steps)
    if kind == "ddpm":
        return DDIMSampler(num_steps=steps, eta=1.0)
    if kind == "s4":
        return S4Sampler(num_steps=steps)
    if kind == "pc":
        return PCSampler(num_steps=steps)
    if kind == "pard":
        return DDIMSampler(num_steps=steps, eta=1.0)
    raise ValueError(f"unknown sampler {kind!r}; expected one of {SAMPLER_KINDS}")


@torch.no_grad()
def sample_graphs(generator_model: Any, num: int, kind: str, steps: int, seed: int = 0) -> tuple[list[dict], float]:
    """``num`` edge-list graphs and the network evaluations per graph.

    Runs on the generator's device; the noise comes from a CPU ``torch.Generator`` seeded with ``seed``
    (drawn on CPU, moved to the device), so a seed draws the same noise on every device."""
    return generator_model.generate(num, make_sampler(kind, steps), torch.Generator().manual_seed(seed))
