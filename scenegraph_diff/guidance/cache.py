"""``DeepCache``: reuse a UNet's deep features across denoising steps (Ma et al., CVPR 2024).

https://arxiv.org/abs/2312.00858 — adjacent denoising steps change a UNet's high-level (deep, low-resolution)
features very little, so they can be computed on a *refresh* step and reused on the next ``interval - 1`` steps,
on which only a shallow branch runs: ``conv_in``, the first ``branch - 1`` layers of the first down block, the
last ``branch`` layers of the last up block (which read the fresh skip connections and the cached deep feature)
and ``conv_out``.

This implementation is a set of diffusers hooks (:class:`diffusers.hooks.HookRegistry`): every module off the
shallow branch (the deep down blocks, the mid block, the deep up blocks and the off-branch layers of the
outermost blocks) returns, on a cached step, what it returned on the last refresh step, so the UNet's own
``forward`` runs unchanged and any :class:`~diffusers.UNet2DConditionModel` (SD 1.x/2.x, the bundled sd-shapes,
``tiny_sd_components``) is supported. ``interval=1`` refreshes on every step: the output is bit-identical to the
uncached UNet. (The ``DeepCache`` package on PyPI patches a pipeline instead; it is not a dependency of ours.)

Example::

    with DeepCache(pipe.unet, interval=3):
        images = pipe(prompt, num_inference_steps=15).images
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from diffusers.hooks import HookRegistry, ModelHook

__all__ = ["DeepCache"]

logger = logging.getLogger(__name__)

_HOOK = "scenegraph_diff_deepcache"


class _State:
    """What the UNet-level hook decides for the current forward pass and the cached modules read."""

    def __init__(self) -> None:
        self.refresh = True
        self.calls = 0
        self.last_t: float | None = None
        self.last_key: tuple | None = None
        self.full_steps = 0
        self.cached_steps = 0


class _StepHook(ModelHook):
    """On the UNet: decide whether this forward pass refreshes the cache (every ``interval``-th pass of a
    trajectory; a new trajectory — the timestep did not decrease, or the batch shape changed — refreshes)."""

    _is_stateful = True

    def __init__(self, state: _State, interval: int) -> None:
        super().__init__()
        self.state, self.interval = state, interval

    def pre_forward(self, module: torch.nn.Module, *args: Any, **kwargs: Any) -> tuple[tuple[Any], dict[str, Any]]:
        sample = args[0] if args else kwargs["sample"]
        timestep = args[1] if len(args) > 1 else kwargs["timestep"]
        t = float(timestep.flatten()[0]) if isinstance(timestep, torch.Tensor) else float(timestep)
        ehs = kwargs.get("encoder_hidden_states", args[2] if len(args) > 2 else None)
        key = (tuple(sample.shape), None if ehs is None else tuple(ehs.shape), sample.device, sample.dtype)
        s = self.state
        if s.last_t is None or t >= s.last_t or key != s.last_key:
            s.calls = 0  # a new trajectory
        s.refresh = s.calls % self.interval == 0
        s.calls += 1
        s.last_t, s.last_key = t, key
        if s.refresh:
            s.full_steps += 1
        else:
            s.cached_steps += 1
        return args, kwargs

    def reset_state(self, module: torch.nn.Module) -> torch.nn.Module:
        self.state.calls, self.state.last_t, self.state.last_key, self.state.refresh = 0, None, None, True
        return module


class _CachedModuleHook(ModelHook):
    """On a module off the shallow branch: run and remember it on refresh steps, return the memory otherwise."""

    _is_stateful = True

    def __init__(self, state: _State) -> None:
        super().__init__()
        self.state = state
        self.output: Any = None

    def new_forward(self, module: torch.nn.Module, *args: Any, **kwargs: Any) -> Any:
        if self.state.refresh or self.output is None:
            self.output = self.fn_ref.original_forward(*args, **kwargs)
        return self.output

    def reset_state(self, module: torch.nn.Module) -> torch.nn.Module:
        self.output = None
        return module


def _layers(block: torch.nn.Module) -> list[list[torch.nn.Module]]:
    """The layers of a UNet block in order: ``[resnet_i, attention_i]`` (no attention in plain blocks)."""
    resnets = list(block.resnets)
    attentions = list(getattr(block, "attentions", None) or [])
    if attentions and len(attentions) != len(resnets):
        raise ValueError(f"{type(block).__name__}: {len(resnets)} resnets but {len(attentions)} attentions; "
                         "DeepCache expects one attention per resnet")
    return [[r, *([attentions[i]] if attentions else [])] for i, r in enumerate(resnets)]


class DeepCache:
    r"""Cache a :class:`~diffusers.UNet2DConditionModel`'s deep features; refresh them every ``interval`` steps.

    On refresh steps the UNet runs in full (and every module off the shallow branch stores its output); on the
    ``interval - 1`` steps after it, only the shallow branch is computed. The step count restarts whenever the
    timestep does not decrease from one forward pass to the next or the input shapes change (a new call of the
    pipeline), so the first step of every call is a refresh step.

    Args:
        unet: the UNet (a :class:`~diffusers.UNet2DConditionModel` or any UNet with ``down_blocks``,
            ``mid_block`` and ``up_blocks`` whose blocks have ``resnets`` and optional ``attentions``).
        interval: :math:`N \ge 1`, steps per refresh (1 = no caching, bit-identical output).
        branch: how many layers of the last up block stay live, :math:`1 \le b \le` ``layers_per_block + 1``
            (1: the shallowest branch, fastest; larger: more of the outermost level is recomputed).

    Use it as a context manager (hooks removed on exit) or call :meth:`enable` / :meth:`disable`.
    :attr:`full_steps` / :attr:`cached_steps` count the UNet passes of each kind.

    Not combined with particle resampling (:mod:`.fk`): the cached features belong to the rows of the refresh
    step.

    Raises:
        ValueError: a bad ``interval`` or ``branch`` (names it), or a UNet without the expected blocks.
    """

    def __init__(self, unet: torch.nn.Module, interval: int, branch: int = 1) -> None:
        if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
            raise ValueError(f"interval must be an integer >= 1, got {interval!r}")
        for name in ("down_blocks", "mid_block", "up_blocks", "conv_in", "conv_out"):
            if getattr(unet, name, None) is None:
                raise ValueError(f"DeepCache needs a UNet with {name}; {type(unet).__name__} has none")
        up_layers = _layers(unet.up_blocks[-1])
        if isinstance(branch, bool) or not isinstance(branch, int) or not 1 <= branch <= len(up_layers):
            raise ValueError(f"branch must be an integer in [1, {len(up_layers)}] (the layers of the last up block), "
                             f"got {branch!r}")
        self.unet, self.interval, self.branch = unet, interval, branch
        self._state = _State()
        self._cached: list[torch.nn.Module] = []
        self._enabled = False
        if interval > 1:
            self._cached = self._deep_modules()

    def _deep_modules(self) -> list[torch.nn.Module]:
        """The modules off the shallow branch, each the outermost such module (its children run inside it)."""
        unet, b = self.unet, self.branch
        first, last = unet.down_blocks[0], unet.up_blocks[-1]
        out: list[torch.nn.Module] = []
        for layer in _layers(first)[b - 1:]:  # first down block: layers b-1.. feed only skipped up layers
            out.extend(layer)
        out.extend(getattr(first, "downsamplers", None) or [])
        out.extend(unet.down_blocks[1:])
        out.append(unet.mid_block)
        out.extend(unet.up_blocks[:-1])
        up_layers = _layers(last)
        for layer in up_layers[: len(up_layers) - b]:  # last up block: all but its last b layers
            out.extend(layer)
        if getattr(last, "upsamplers", None):
            raise ValueError(f"the last up block ({type(last).__name__}) has upsamplers; DeepCache expects the "
                             "outermost level to end the UNet")
        return out

    @property
    def full_steps(self) -> int:
        """UNet passes computed in full since construction."""
        return self._state.full_steps

    @property
    def cached_steps(self) -> int:
        """UNet passes that reused the cached deep features."""
        return self._state.cached_steps

    def enable(self) -> "DeepCache":
        """Install the hooks (a no-op for ``interval=1``, apart from counting steps)."""
        if self._enabled:
            raise RuntimeError("DeepCache is already enabled")
        HookRegistry.check_if_exists_or_initialize(self.unet).register_hook(_StepHook(self._state, self.interval),
                                                                            _HOOK)
        for module in self._cached:
            HookRegistry.check_if_exists_or_initialize(module).register_hook(_CachedModuleHook(self._state), _HOOK)
        self._enabled = True
        return self

    def disable(self) -> None:
        """Remove the hooks and drop the cached features."""
        if not self._enabled:
            return
        for module in [self.unet, *self._cached]:
            module._diffusers_hook.remove_hook(_HOOK, recurse=False)
        self._state.last_t = None
        self._enabled = False

    def reset(self) -> None:
        """Forget the cached features: the next UNet pass refreshes."""
        self._state.last_t = None

    def __enter__(self) -> "DeepCache":
        return self.enable()

    def __exit__(self, *exc: Any) -> None:
        self.disable()

    def __repr__(self) -> str:
        return f"DeepCache(interval={self.interval}, branch={self.branch}, cached_modules={len(self._cached)})"
