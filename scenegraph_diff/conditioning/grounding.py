"""Box grounding for Stable Diffusion UNets: GLIGEN's gated self-attention (Li et al., CVPR 2023).

A *grounded* UNet is a :class:`~diffusers.UNet2DConditionModel` built with ``attention_type="gated"``: every
transformer block gets a ``fuser`` (:class:`~diffusers.models.attention.GatedSelfAttentionDense`, gates
``tanh(alpha)`` initialised at 0) and the UNet a ``position_net`` (Fourier-embedded ``[x0, y0, x1, y1]`` box +
phrase embedding -> one grounding token per object). Real GLIGEN checkpoints (e.g.
``masterful/gligen-1-4-generation-text-box``) are such UNets; so is sd-shapes once :func:`gated_unet` has added the
layers and ``scenegraph-diff train-grounding`` has trained them with the base weights frozen (GLIGEN's recipe).

Without grounding inputs (no ``"gligen"`` entry in ``cross_attention_kwargs``) a grounded UNet computes exactly
what its base UNet computes: the fusers only run when grounding tokens are given.

Grounding inputs follow diffusers' GLIGEN convention: ``boxes [B, N, 4]`` (normalised ``x0, y0, x1, y1``),
``positive_embeddings [B, N, D]`` (the text encoder's pooled output of each object's phrase, ``D`` = the UNet's
``cross_attention_dim``), ``masks [B, N]`` (1 = a real object, 0 = padding), ``N`` = :data:`MAX_OBJECTS` (30).

The trained layers can be stored on their own (:func:`save_grounding`, a ``grounding/`` folder of a few MB beside a
pipeline's components) and put back on the base UNet by :func:`load_grounding`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Callable, Mapping, Sequence

import torch
from torch import Tensor, nn

from ..graph.scene_graph import SceneGraph

__all__ = ["MAX_OBJECTS", "GROUNDING_FOLDER", "object_phrase", "is_grounded", "is_grounding_key", "gated_unet",
           "grounding_state_dict", "freeze_base_", "save_grounding", "load_grounding", "phrase_embeddings",
           "PhraseEncoder", "grounding_inputs", "set_grounding_enabled"]

logger = logging.getLogger(__name__)

#: Grounding tokens per image (diffusers' and GLIGEN's ``max_objs``); shorter lists are padded with masked tokens.
MAX_OBJECTS = 30

#: Sub-folder of a pipeline folder that holds only the grounding layers (see :func:`save_grounding`).
GROUNDING_FOLDER = "grounding"

_WEIGHTS = "grounding.safetensors"
_CONFIG = "config.json"


def object_phrase(graph: SceneGraph, index: int) -> str:
    """The grounding phrase of ``graph.objects[index]``: its attributes then its name (``"red circle"``)."""
    if not 0 <= index < len(graph.objects):
        raise IndexError(f"object index {index} out of range for a graph with {len(graph.objects)} objects")
    o = graph.objects[index]
    return " ".join([*o.attributes, o.name])


def is_grounded(unet: nn.Module) -> bool:
    """Whether ``unet`` has GLIGEN's grounding layers (a ``position_net``, ``attention_type`` gated)."""
    return getattr(unet, "position_net", None) is not None


def is_grounding_key(name: str) -> bool:
    """Whether a parameter / state-dict key belongs to the grounding layers (``position_net.*`` or a ``fuser``)."""
    return name.startswith("position_net.") or ".fuser." in name


def gated_unet(unet: nn.Module, seed: int = 0, gate_init: float = 0.0) -> nn.Module:
    """A copy of the (ungrounded) ``unet`` with GLIGEN's layers added: same config but ``attention_type="gated"``,
    every base weight copied, the new layers freshly initialised (seeded; the global RNG is untouched) so that the
    copy computes what ``unet`` computes until they are trained.

    Args:
        unet: the base UNet.
        seed: seed of the new layers' initialisation.
        gate_init: GLIGEN zero-initialises the gates ``alpha`` (``gate_init=0``, the default). Any other value sets
            both gates of every fuser to it and zero-initialises the fusers' output layers instead (attention
            ``to_out`` and the feed-forward's last linear): the start is the same (the fusers add nothing), but the
            gradients reach the fuser weights from the first step instead of waiting for the gates to open, which
            Adam moves by at most ~``lr`` per step (measured on sd-shapes: ``|alpha|`` <= 0.08 after 500 steps at
            ``lr = 3e-4``).

    Raises:
        ValueError: ``unet`` is already grounded, or is not a ``UNet2DConditionModel`` with ``attention_type`` default.
    """
    from diffusers import UNet2DConditionModel

    if is_grounded(unet):
        raise ValueError("gated_unet: the UNet already has grounding layers (position_net)")
    if not isinstance(unet, UNet2DConditionModel) or unet.config.attention_type != "default":
        raise ValueError(f"gated_unet: expected a UNet2DConditionModel with attention_type 'default', got "
                         f"{type(unet).__name__} with attention_type {getattr(unet.config, 'attention_type', None)!r}")
    config = {k: v for k, v in unet.config.items() if not k.startswith("_")}
    config["attention_type"] = "gated"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        grounded = UNet2DConditionModel.from_config(config)
    missing, unexpected = grounded.load_state_dict(unet.state_dict(), strict=False)
    wrong = [k for k in missing if not is_grounding_key(k)]
    if unexpected or wrong:  # a diffusers change in the gated blocks' layout: fail loudly, not half-loaded
        raise RuntimeError(f"gated_unet: base weights do not fit the gated UNet (unexpected {unexpected[:3]}, "
                           f"missing {wrong[:3]})")
    if gate_init != 0.0:
        from diffusers.models.attention import GatedSelfAttentionDense

        with torch.no_grad():
            for module in grounded.modules():
                if isinstance(module, GatedSelfAttentionDense):
                    module.alpha_attn.fill_(gate_init)
                    module.alpha_dense.fill_(gate_init)
                    for layer in (module.attn.to_out[0], module.ff.net[-1]):
                        layer.weight.zero_()
                        if layer.bias is not None:
                            layer.bias.zero_()
    param = next(unet.parameters())
    torch.nn.Module.to(grounded, device=param.device, dtype=param.dtype)  # diffusers' .to warns on every cast
    return grounded.train(unet.training)


def grounding_state_dict(unet: nn.Module) -> dict[str, Tensor]:
    """The grounding layers' tensors of a grounded ``unet`` (``position_net.*`` and every ``fuser``)."""
    if not is_grounded(unet):
        raise ValueError("grounding_state_dict: the UNet has no grounding layers")
    return {k: v for k, v in unet.state_dict().items() if is_grounding_key(k)}


def freeze_base_(unet: nn.Module) -> list[nn.Parameter]:
    """Freeze every base weight of a grounded ``unet`` and unfreeze its grounding layers (in place); return the
    trainable parameters."""
    if not is_grounded(unet):
        raise ValueError("freeze_base_: the UNet has no grounding layers")
    trainable = []
    for name, p in unet.named_parameters():
        p.requires_grad_(is_grounding_key(name))
        if p.requires_grad:
            trainable.append(p)
    return trainable


def save_grounding(unet: nn.Module, directory: str | Path, dtype: torch.dtype | None = None,
                   info: Mapping[str, object] | None = None) -> Path:
    """Write the grounding layers of ``unet`` to ``directory`` (``grounding.safetensors`` + ``config.json``).

    Args:
        unet: a grounded UNet.
        directory: the folder to write (usually ``<pipeline>/grounding``).
        dtype: store the tensors in this dtype (e.g. ``torch.float16``; default: as they are).
        info: extra JSON-serialisable entries for ``config.json`` (training steps, minutes, ...).
    """
    from safetensors.torch import save_file

    tensors = {k: (v if dtype is None else v.to(dtype)).detach().cpu().contiguous()
               for k, v in grounding_state_dict(unet).items()}
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(directory / _WEIGHTS))
    config = {"attention_type": "gated", "cross_attention_dim": unet.config.cross_attention_dim,
              "block_out_channels": list(unet.config.block_out_channels), "max_objects": MAX_OBJECTS,
              **dict(info or {})}
    (directory / _CONFIG).write_text(json.dumps(config, indent=1) + "\n")
    return directory


def load_grounding(unet: nn.Module, directory: str | Path) -> nn.Module:
    """``unet`` with the grounding layers stored in ``directory`` (by :func:`save_grounding`).

    An ungrounded ``unet`` is first extended by :func:`gated_unet` (a new module is returned; ``unet`` is left as
    it was); a grounded one gets the layers loaded in place. The tensors are cast to the UNet's dtype.

    Raises:
        FileNotFoundError: ``directory`` lacks ``grounding.safetensors``.
        ValueError: the stored layers do not fit ``unet`` (names the first mismatching key).
    """
    from safetensors.torch import load_file

    directory = Path(directory)
    path = directory / _WEIGHTS
    if not path.is_file():
        raise FileNotFoundError(f"no grounding layers at {path}")
    config_path = directory / _CONFIG
    config = json.loads(config_path.read_text()) if config_path.is_file() else {}
    if "cross_attention_dim" in config and config["cross_attention_dim"] != unet.config.cross_attention_dim:
        raise ValueError(f"{directory}: grounding layers for cross_attention_dim {config['cross_attention_dim']}, but "
                         f"the UNet has {unet.config.cross_attention_dim}")
    tensors = load_file(str(path))
    target = unet if is_grounded(unet) else gated_unet(unet)
    own = grounding_state_dict(target)
    for key, value in tensors.items():
        if key not in own:
            raise ValueError(f"{path}: key {key!r} is not a grounding layer of this UNet")
        if own[key].shape != value.shape:
            raise ValueError(f"{path}: {key!r} has shape {tuple(value.shape)}, the UNet's is {tuple(own[key].shape)}")
    missing = sorted(set(own) - set(tensors))
    if missing:
        raise ValueError(f"{path}: grounding layer {missing[0]!r} of this UNet is not stored ({len(missing)} missing)")
    param = next(target.parameters())
    target.load_state_dict({k: v.to(param.dtype) for k, v in tensors.items()}, strict=False)
    return target


@torch.no_grad()
def phrase_embeddings(text_encoder: nn.Module, tokenizer: object, phrases: Sequence[str]) -> Tensor:
    """GLIGEN's phrase features: the text encoder's pooled output of each phrase, ``[P, D]`` (on the encoder's
    device and dtype)."""
    if not phrases:
        raise ValueError("phrase_embeddings: no phrases")
    param = next(text_encoder.parameters())
    ids = tokenizer(list(phrases), padding=True, truncation=True, return_tensors="pt")  # type: ignore[operator]
    out = text_encoder(input_ids=ids.input_ids.to(param.device), attention_mask=ids.attention_mask.to(param.device))
    return out.pooler_output


class PhraseEncoder:
    """:func:`phrase_embeddings` with a cache: each distinct phrase is encoded once (the text encoder is frozen).

    Args:
        text_encoder: a CLIP text model (its ``pooler_output`` is used).
        tokenizer: its tokenizer.
    """

    def __init__(self, text_encoder: nn.Module, tokenizer: object) -> None:
        self.text_encoder = text_encoder
        self.tokenizer = tokenizer
        self._cache: dict[str, Tensor] = {}

    def __call__(self, phrases: Sequence[str]) -> Tensor:
        """``[P, D]`` embeddings of ``phrases``."""
        todo = sorted({p for p in phrases if p not in self._cache})
        if todo:
            for p, e in zip(todo, phrase_embeddings(self.text_encoder, self.tokenizer, todo)):
                self._cache[p] = e
        return torch.stack([self._cache[p] for p in phrases])


def grounding_inputs(graphs: Sequence[SceneGraph], encode: Callable[[Sequence[str]], Tensor],
                     max_objects: int = MAX_OBJECTS) -> dict[str, Tensor]:
    """GLIGEN inputs for a batch of graphs: every object with a ``box`` becomes one grounding token.

    Args:
        graphs: ``B`` scene graphs; objects without a box are not grounded (left to the text prompt).
        encode: ``phrases -> [P, D]`` (e.g. a :class:`PhraseEncoder`); its device and dtype are the outputs'.
        max_objects: tokens per image; objects past it are dropped with a warning.

    Returns:
        ``{"boxes": [B, N, 4], "positive_embeddings": [B, N, D], "masks": [B, N]}`` with ``N = max_objects``.

    Raises:
        ValueError: no graph has a boxed object.
    """
    if max_objects < 1:
        raise ValueError(f"max_objects must be >= 1, got {max_objects}")
    items: list[list[tuple[str, tuple[float, ...]]]] = []
    for gi, g in enumerate(graphs):
        row = [(object_phrase(g, i), tuple(float(c) for c in o.box)) for i, o in enumerate(g.objects)
               if o.box is not None]
        if len(row) > max_objects:
            logger.warning("graph %d has %d boxed objects; grounding the first %d", gi, len(row), max_objects)
            row = row[:max_objects]
        items.append(row)
    phrases = [p for row in items for p, _ in row]
    if not phrases:
        raise ValueError("grounding_inputs: no object of any graph has a box")
    embeds = encode(phrases)  # [P, D]
    b, d = len(graphs), embeds.size(-1)
    boxes = embeds.new_zeros(b, max_objects, 4)
    positive = embeds.new_zeros(b, max_objects, d)
    masks = embeds.new_zeros(b, max_objects)
    k = 0
    for gi, row in enumerate(items):
        for j, (_, box) in enumerate(row):
            boxes[gi, j] = torch.tensor(box, dtype=boxes.dtype)
            positive[gi, j] = embeds[k]
            masks[gi, j] = 1.0
            k += 1
    return {"boxes": boxes, "positive_embeddings": positive, "masks": masks}


def set_grounding_enabled(unet: nn.Module, enabled: bool) -> None:
    """Switch every fuser of a grounded ``unet`` on or off (GLIGEN's scheduled sampling turns them off after the
    first steps). A no-op on an ungrounded UNet."""
    from diffusers.models.attention import GatedSelfAttentionDense

    for module in unet.modules():
        if isinstance(module, GatedSelfAttentionDense):
            module.enabled = enabled
