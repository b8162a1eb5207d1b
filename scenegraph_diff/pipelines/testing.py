"""Offline, random-weight Stable Diffusion components for tests and for users' CI.

:func:`tiny_sd_components` builds a UNet, a VAE, a CLIP text model, a CLIP tokenizer (built in memory
from a byte-level vocabulary and merges — no files, no network) and a DDIM scheduler, small enough for
a 64x64 image in ~a second on one CPU thread::

    from diffusers import StableDiffusionPipeline
    from scenegraph_diff.pipelines.testing import tiny_sd_components

    pipe = StableDiffusionPipeline(**tiny_sd_components(seed=0))
    image = pipe("a cat on a dog", num_inference_steps=2, generator=torch.Generator().manual_seed(0)).images[0]

Words of :data:`TINY_WORDS` get whole-word tokens; any other text is still tokenized (byte-level,
character by character).
"""

from __future__ import annotations

from typing import Any, Iterable

import torch

__all__ = ["tiny_sd_components", "tiny_clip_tokenizer", "TINY_WORDS"]

TINY_WORDS: tuple[str, ...] = (
    "a", "an", "the", "of", "and", "photo", "on", "in", "under", "above", "below", "near", "next", "to", "left",
    "right", "behind", "front", "holding", "riding", "wearing", "with", "has", "sit", "sitting", "standing",
    "cat", "dog", "horse", "man", "woman", "person", "table", "chair", "mat", "ball", "box", "cup", "book",
    "car", "tree", "house", "bird", "bowl", "circle", "square", "triangle", "red", "green", "blue", "yellow",
    "black", "white", "brown", "small", "big", "large", "wooden",
)


def tiny_clip_tokenizer(words: Iterable[str] = TINY_WORDS, model_max_length: int = 77) -> Any:
    """A :class:`transformers.CLIPTokenizer` with every byte, and one merge chain per word of ``words``."""
    from ..text.bpe import bytes_to_unicode, clip_tokenizer

    chars = list(bytes_to_unicode().values())
    vocab: dict[str, int] = {}
    for tok in chars + [c + "</w>" for c in chars]:
        vocab.setdefault(tok, len(vocab))
    merges: list[tuple[str, str]] = []
    seen: set[tuple[str, str]] = set()
    for word in words:
        if len(word) < 2:
            continue
        parts = list(word[:-1]) + [word[-1] + "</w>"]
        while len(parts) > 1:  # merge left to right: c+a, ca+t</w>
            pair = (parts[0], parts[1])
            if pair not in seen:
                seen.add(pair)
                merges.append(pair)
                vocab.setdefault(pair[0] + pair[1], len(vocab))
            parts = [parts[0] + parts[1]] + parts[2:]
    for special in ("<|startoftext|>", "<|endoftext|>"):
        vocab.setdefault(special, len(vocab))
    return clip_tokenizer(vocab, merges, model_max_length=model_max_length)


def tiny_sd_components(seed: int = 0, hidden_size: int = 32, model_max_length: int = 77,
                       grounded: bool = False, sd_block_order: bool = False) -> dict[str, Any]:
    """Random-weight SD components, deterministic in ``seed`` (the global RNG is left untouched).

    Args:
        seed: seed of the weight initialisation.
        hidden_size: text-encoder width = UNet ``cross_attention_dim``.
        model_max_length: tokenizer / text-encoder sequence length.
        grounded: build the UNet with GLIGEN's box-grounding layers (``attention_type="gated"``, as a GLIGEN
            checkpoint has them; their gates start at zero).
        sd_block_order: SD's block order (cross-attention down blocks first, the plain block last), which a
            T2I-Adapter (e.g. :func:`~scenegraph_diff.conditioning.layout_adapter.make_layout_adapter`) needs; the
            default puts the plain block first.

    Returns:
        ``dict(unet, vae, text_encoder, tokenizer, scheduler, safety_checker=None, feature_extractor=None,
        image_encoder=None)``: the keyword arguments of :class:`~diffusers.StableDiffusionPipeline`.
        The UNet works on 4x32x32 latents (64x64 images with this VAE's factor of 2).
    """
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = tiny_clip_tokenizer(model_max_length=model_max_length)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(
            sample_size=32, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(16, 32),
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D") if sd_block_order
            else ("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D") if sd_block_order
            else ("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=hidden_size, attention_head_dim=4, norm_num_groups=8,
            attention_type="gated" if grounded else "default",
        )
        vae = AutoencoderKL(
            in_channels=3, out_channels=3, block_out_channels=(8, 16), latent_channels=4, layers_per_block=1,
            down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
            up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"), norm_num_groups=8, sample_size=64,
            scaling_factor=4.0,  # random-weight latents have std ~0.25: scale them to ~unit variance, as SD's 0.18215 does
        )
        text_config = CLIPTextConfig(
            vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
            num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=model_max_length,
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id, layer_norm_eps=1e-5,
        )
        text_encoder = CLIPTextModel(text_config).eval()
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    return dict(unet=unet.eval(), vae=vae.eval(), text_encoder=text_encoder, tokenizer=tokenizer, scheduler=scheduler,
                safety_checker=None, feature_extractor=None, image_encoder=None)
