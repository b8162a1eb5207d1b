"""Box grounding through a spatial adapter: a layout map of phrase embeddings read by a T2I-Adapter.

GLIGEN (:mod:`~scenegraph_diff.conditioning.grounding`) hands boxes to the UNet as tokens, and the UNet's own
features must tell each pixel where it lies to use them; GLIGEN's paper feeds *spatially aligned* conditions
(semantic maps, depth, ...) through the UNet's input side instead. This module does that for boxes: every boxed
object paints its phrase embedding (the text encoder's pooled output, as GLIGEN's tokens use; scaled to norm
``sqrt(D)``) into its box on an image-sized map ``[B, D, H, W]`` (overlaps add), and a diffusers
:class:`~diffusers.T2IAdapter` (``full_adapter``, one level per UNet down block, ``downscale_factor`` = the VAE's
scale factor) turns the map into one residual per down block, which the frozen UNet adds through its
``down_intrablock_additional_residuals`` input (diffusers' T2I-Adapter route). The adapter is created with its
input convolution and every bias at zero, so an untrained adapter leaves the UNet's output unchanged.

Stored as a ``layout_adapter/`` folder beside a pipeline's components: the adapter in diffusers' format
(``T2IAdapter.from_pretrained`` loads it) plus ``layout_adapter.json`` (what the map is made of).
:class:`~scenegraph_diff.pipelines.SceneGraphPipeline` picks it up from a pipeline folder; ``scenegraph-diff
train-grounding --method adapter`` trains it on a frozen sd-shapes.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import Tensor, nn

__all__ = ["LAYOUT_ADAPTER_FOLDER", "layout_maps", "make_layout_adapter", "save_layout_adapter",
           "load_layout_adapter", "LayoutResiduals", "LayoutAdapterForTraining"]

#: Sub-folder of a pipeline folder that holds the layout adapter (see :func:`save_layout_adapter`).
LAYOUT_ADAPTER_FOLDER = "layout_adapter"

_SETTINGS = "layout_adapter.json"
_MAP_KIND = "phrase-embedding boxes (pooled text-encoder output, norm sqrt(D)), summed"


def layout_maps(boxes: Tensor, embeddings: Tensor, masks: Tensor, height: int, width: int | None = None) -> Tensor:
    """Paint each object's phrase embedding into its box.

    Args:
        boxes: ``[B, N, 4]`` normalised ``x0, y0, x1, y1`` (y downwards), as GLIGEN's inputs
            (:func:`~scenegraph_diff.conditioning.grounding.grounding_inputs`).
        embeddings: ``[B, N, D]`` phrase embeddings.
        masks: ``[B, N]``, 1 for a real object, 0 for padding.
        height, width: the map's size in pixels (``width`` defaults to ``height``).

    Returns:
        ``[B, D, height, width]``: at each pixel whose centre lies in an object's box, that object's embedding
        rescaled to norm ``sqrt(D)``; overlapping boxes add; zero elsewhere.

    Raises:
        ValueError: mismatching shapes or a non-positive size.
    """
    width = height if width is None else width
    if height < 1 or width < 1:
        raise ValueError(f"layout_maps: size must be >= 1, got {height}x{width}")
    if boxes.dim() != 3 or boxes.size(-1) != 4 or embeddings.dim() != 3 or masks.dim() != 2 \
            or boxes.shape[:2] != embeddings.shape[:2] or boxes.shape[:2] != masks.shape:
        raise ValueError(f"layout_maps: want boxes [B, N, 4], embeddings [B, N, D], masks [B, N]; got "
                         f"{tuple(boxes.shape)}, {tuple(embeddings.shape)}, {tuple(masks.shape)}")
    dtype = embeddings.dtype if embeddings.is_floating_point() else torch.float32
    ys = (torch.arange(height, device=boxes.device, dtype=torch.float32) + 0.5) / height  # [H]
    xs = (torch.arange(width, device=boxes.device, dtype=torch.float32) + 0.5) / width  # [W]
    b = boxes.float()
    in_x = (xs.view(1, 1, -1) >= b[..., 0:1]) & (xs.view(1, 1, -1) < b[..., 2:3])  # [B, N, W]
    in_y = (ys.view(1, 1, -1) >= b[..., 1:2]) & (ys.view(1, 1, -1) < b[..., 3:4])  # [B, N, H]
    inside = (in_y.unsqueeze(-1) & in_x.unsqueeze(-2)).float() * masks.float().view(*masks.shape, 1, 1)
    e = embeddings.float()
    e = e * (math.sqrt(e.size(-1)) / e.norm(dim=-1, keepdim=True).clamp_min(1e-6))  # [B, N, D], norm sqrt(D)
    return torch.einsum("bnhw,bnd->bdhw", inside, e).to(dtype)


def make_layout_adapter(unet: nn.Module, in_channels: int, downscale_factor: int, num_res_blocks: int = 1) -> nn.Module:
    """A :class:`~diffusers.T2IAdapter` for ``unet`` whose output is zero until trained.

    Args:
        unet: the (frozen) :class:`~diffusers.UNet2DConditionModel`; one adapter level per entry of its
            ``block_out_channels``.
        in_channels: channels of the layout map (the phrase embedding width ``D``).
        downscale_factor: image pixels per latent pixel (the pipeline's ``vae_scale_factor``).
        num_res_blocks: residual blocks per level.
    """
    from diffusers import T2IAdapter

    if in_channels < 1 or downscale_factor < 1 or num_res_blocks < 1:
        raise ValueError(f"make_layout_adapter: in_channels={in_channels}, downscale_factor={downscale_factor}, "
                         f"num_res_blocks={num_res_blocks} must all be >= 1")
    for i, block in enumerate(unet.down_blocks):
        # diffusers adds a T2I-Adapter residual inside a cross-attention block (before its downsampler) but after a
        # plain block: a plain block that downsamples would get a residual of the wrong size.
        if not getattr(block, "has_cross_attention", False) and getattr(block, "downsamplers", None) is not None:
            raise ValueError(f"make_layout_adapter: down block {i} ({type(block).__name__}) downsamples without "
                             "cross-attention; a T2I-Adapter fits UNets whose plain down blocks come last (as SD's)")
    adapter = T2IAdapter(in_channels=in_channels, channels=list(unet.config.block_out_channels),
                         num_res_blocks=num_res_blocks, downscale_factor=downscale_factor, adapter_type="full_adapter")
    with torch.no_grad():
        for name, p in adapter.named_parameters():
            if name.endswith("bias") or name.startswith("adapter.conv_in."):
                p.zero_()
    return adapter


def save_layout_adapter(adapter: nn.Module, directory: str | Path, dtype: torch.dtype | None = None,
                        info: Mapping[str, object] | None = None) -> Path:
    """Write ``adapter`` to ``directory`` (diffusers' format + ``layout_adapter.json``); return the folder.

    Args:
        adapter: a :class:`~diffusers.T2IAdapter` of :func:`make_layout_adapter`.
        directory: the folder (usually ``<pipeline>/layout_adapter``).
        dtype: store the weights in this dtype (e.g. ``torch.float16``); the module itself is left as it is.
        info: extra JSON entries (training steps, minutes, ...).
    """
    import copy

    directory = Path(directory)
    out = adapter if dtype is None else nn.Module.to(copy.deepcopy(adapter), dtype=dtype)  # torch's cast: no warning
    out.save_pretrained(directory)
    (directory / _SETTINGS).write_text(json.dumps({"map": _MAP_KIND, **dict(info or {})}, indent=1) + "\n")
    return directory


def load_layout_adapter(directory: str | Path, dtype: torch.dtype | None = None) -> nn.Module:
    """The :class:`~diffusers.T2IAdapter` stored in ``directory`` by :func:`save_layout_adapter`.

    Raises:
        FileNotFoundError: ``directory`` is not a layout adapter folder.
    """
    from diffusers import T2IAdapter

    directory = Path(directory)
    if not (directory / _SETTINGS).is_file() or not (directory / "config.json").is_file():
        raise FileNotFoundError(f"{directory} is not a layout adapter folder (no {_SETTINGS} / config.json)")
    adapter = T2IAdapter.from_pretrained(directory)
    return adapter.to(dtype) if dtype is not None else adapter.float()


class LayoutResiduals:
    """While active, every call of ``unet`` gets the adapter's residuals as ``down_intrablock_additional_residuals``.

    The residuals (one ``[R, C_i, h_i, w_i]`` per down block, ``R`` rows) are repeated to the UNet's batch (``2R``
    under classifier-free guidance: grounding in both halves, as diffusers' adapter pipeline does). ``enabled``
    switches them off part-way (scheduled sampling, see
    :class:`~scenegraph_diff.pipelines.callbacks.GroundingCutoffCallback`).

    Args:
        unet: the UNet to feed.
        residuals: the adapter's outputs.
    """

    def __init__(self, unet: nn.Module, residuals: Sequence[Tensor]) -> None:
        self.unet = unet
        self.residuals = list(residuals)
        self.enabled = True
        self._handle: Any = None

    def _hook(self, module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        if not self.enabled or kwargs.get("down_intrablock_additional_residuals") is not None:
            return args, kwargs
        sample = args[0] if args else kwargs["sample"]
        rows = self.residuals[0].size(0)
        if sample.size(0) % rows:
            raise ValueError(f"layout residuals for {rows} rows, but the UNet is called on {sample.size(0)}")
        reps = sample.size(0) // rows
        kwargs = {**kwargs, "down_intrablock_additional_residuals": [
            (r.repeat(reps, 1, 1, 1) if reps > 1 else r).to(sample.dtype) for r in self.residuals]}
        return args, kwargs

    def __enter__(self) -> "LayoutResiduals":
        self._handle = self.unet.register_forward_pre_hook(self._hook, with_kwargs=True)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None


class LayoutAdapterForTraining(nn.Module):
    """A frozen UNet and a trainable layout adapter with one ``forward`` for the trainer / DDP (the same inputs as
    :class:`~scenegraph_diff.shapes.sd_shapes_grounding.GroundedUNetForTraining`).

    Args:
        unet: the frozen UNet (its parameters are set to ``requires_grad=False`` here).
        adapter: the :class:`~diffusers.T2IAdapter` to train.
        image_size: the map's size in pixels (the images' size).
    """

    def __init__(self, unet: nn.Module, adapter: nn.Module, image_size: int) -> None:
        super().__init__()
        self.unet = unet.requires_grad_(False)
        self.adapter = adapter
        self.image_size = int(image_size)

    def forward(self, noisy: Tensor, timesteps: Tensor, states: Tensor, boxes: Tensor, positive: Tensor,
                masks: Tensor) -> Tensor:
        """Predicted noise ``[B, 4, h, w]``; ``states [B, L, D]``, ``boxes [B, N, 4]``, ``positive [B, N, D]``,
        ``masks [B, N]``."""
        maps = layout_maps(boxes, positive, masks, self.image_size).to(noisy.dtype)
        residuals = list(self.adapter(maps))
        return self.unet(noisy, timesteps, states, down_intrablock_additional_residuals=residuals).sample

