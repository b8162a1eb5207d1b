"""GLIGEN box grounding: the grounded UNet, its stored layers, and SceneGraphPipeline's grounding mode, on tiny
random-weight components (the code path of SD 1.5 + a GLIGEN checkpoint)."""

from __future__ import annotations

import hashlib
import warnings

import numpy as np
import pytest
import torch

from scenegraph_diff.conditioning.grounding import (
    MAX_OBJECTS, PhraseEncoder, freeze_base_, gated_unet, grounding_inputs, grounding_state_dict, is_grounded,
    is_grounding_key, load_grounding, object_phrase, save_grounding, set_grounding_enabled,
)
from scenegraph_diff.graph.scene_graph import Relation, SceneGraph, SceneObject
from scenegraph_diff.pipelines.testing import tiny_sd_components

LEFT = (0.05, 0.3, 0.4, 0.7)
RIGHT = (0.6, 0.3, 0.95, 0.7)


def _graph(a_box=LEFT, b_box=RIGHT) -> SceneGraph:
    return SceneGraph((SceneObject("cat", ("black",), box=a_box), SceneObject("dog", (), box=b_box)),
                      (Relation(0, "left of", 1),), "a black cat left of a dog")


def _open_gates(unet: torch.nn.Module, seed: int = 1) -> None:
    """Give the zero-initialised GLIGEN layers non-zero weights, as training would."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in unet.named_parameters():
            if is_grounding_key(name):
                p.copy_(torch.randn(p.shape, generator=g) * (0.5 if p.ndim == 0 else 0.2))


def _hash(tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for k in sorted(tensors):
        h.update(k.encode())
        h.update(tensors[k].detach().float().numpy().tobytes())
    return h.hexdigest()


def _unet_inputs(unet: torch.nn.Module, b: int = 2) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    d = unet.config.cross_attention_dim
    x = torch.randn(b, 4, 32, 32, generator=g)
    ctx = torch.randn(b, 7, d, generator=g)
    gligen = {"boxes": torch.rand(b, MAX_OBJECTS, 4, generator=g),
              "positive_embeddings": torch.randn(b, MAX_OBJECTS, d, generator=g),
              "masks": (torch.arange(MAX_OBJECTS) < 2).float().expand(b, -1).clone()}
    return x, ctx, gligen


# ------------------------------------------------------------------ the grounded UNet
def test_gated_unet_computes_the_base_unet_until_trained() -> None:
    base = tiny_sd_components()["unet"]
    unet = gated_unet(base)
    assert is_grounded(unet) and not is_grounded(base)
    x, ctx, gligen = _unet_inputs(base)
    with torch.no_grad():
        ref = base(x, 10, ctx).sample
        assert torch.equal(unet(x, 10, ctx).sample, ref)  # no grounding tokens: the fusers do not run
        assert torch.equal(unet(x, 10, ctx, cross_attention_kwargs={"gligen": gligen}).sample, ref)  # zero gates
        _open_gates(unet)
        assert not torch.allclose(unet(x, 10, ctx, cross_attention_kwargs={"gligen": gligen}).sample, ref)
        assert torch.equal(unet(x, 10, ctx).sample, ref)
    with pytest.raises(ValueError, match="already has grounding layers"):
        gated_unet(unet)


def test_open_gate_init_starts_at_the_base_and_trains_from_step_one() -> None:
    base = tiny_sd_components()["unet"]
    unet = gated_unet(base, gate_init=1.0)
    x, ctx, gligen = _unet_inputs(base)
    with torch.no_grad():
        assert torch.equal(unet(x, 10, ctx, cross_attention_kwargs={"gligen": gligen}).sample, base(x, 10, ctx).sample)
    for u, expect_grad in ((unet, True), (gated_unet(base), False)):  # GLIGEN's zero gates: no gradient yet
        freeze_base_(u)
        u(x, 500, ctx, cross_attention_kwargs={"gligen": gligen}).sample.pow(2).mean().backward()
        grads = [p.grad.abs().sum() for n, p in u.named_parameters() if n.endswith("attn.to_out.0.weight")
                 and ".fuser." in n]
        assert grads and all((g > 0) == expect_grad for g in grads)


def test_freeze_base_trains_only_the_grounding_layers() -> None:
    unet = gated_unet(tiny_sd_components()["unet"])
    trainable = freeze_base_(unet)
    names = {n for n, p in unet.named_parameters() if p.requires_grad}
    assert names and all(is_grounding_key(n) for n in names) and len(trainable) == len(names)
    base_before = _hash({k: v for k, v in unet.state_dict().items() if not is_grounding_key(k)})
    ground_before = _hash(grounding_state_dict(unet))
    opt = torch.optim.AdamW(trainable, lr=1e-2)
    x, ctx, gligen = _unet_inputs(unet)
    for _ in range(2):
        loss = unet(x, 500, ctx, cross_attention_kwargs={"gligen": gligen}).sample.pow(2).mean()
        loss.backward()
        opt.step()
        opt.zero_grad()
    assert _hash({k: v for k, v in unet.state_dict().items() if not is_grounding_key(k)}) == base_before
    assert _hash(grounding_state_dict(unet)) != ground_before


def test_grounding_layers_round_trip(tmp_path) -> None:
    base = tiny_sd_components()["unet"]
    unet = gated_unet(base)
    _open_gates(unet)
    save_grounding(unet, tmp_path / "g", info={"steps": 2})
    loaded = load_grounding(base, tmp_path / "g")
    assert not is_grounded(base)  # a new module; the base is left as it was
    x, ctx, gligen = _unet_inputs(base)
    with torch.no_grad():
        a = unet(x, 10, ctx, cross_attention_kwargs={"gligen": gligen}).sample
        b = loaded(x, 10, ctx, cross_attention_kwargs={"gligen": gligen}).sample
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    half = load_grounding(base, save_grounding(unet, tmp_path / "h", dtype=torch.float16))
    with torch.no_grad():
        c = half(x, 10, ctx, cross_attention_kwargs={"gligen": gligen}).sample
    torch.testing.assert_close(a, c, rtol=0, atol=5e-2)


def test_load_grounding_errors_name_the_problem(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="grounding.safetensors"):
        load_grounding(tiny_sd_components()["unet"], tmp_path)
    unet = gated_unet(tiny_sd_components()["unet"])
    save_grounding(unet, tmp_path / "g")
    other = tiny_sd_components(hidden_size=16)["unet"]
    with pytest.raises(ValueError, match="cross_attention_dim 32"):
        load_grounding(other, tmp_path / "g")


# ------------------------------------------------------------------ grounding inputs
def test_grounding_inputs_boxes_masks_and_phrases() -> None:
    parts = tiny_sd_components()
    encode = PhraseEncoder(parts["text_encoder"], parts["tokenizer"])
    g1 = _graph()
    g2 = SceneGraph((SceneObject("ball"), SceneObject("cup", ("red",), box=(0.1, 0.1, 0.2, 0.3))))
    out = grounding_inputs([g1, g2], encode)
    assert out["boxes"].shape == (2, MAX_OBJECTS, 4) and out["positive_embeddings"].shape == (2, MAX_OBJECTS, 32)
    assert out["masks"][0, :2].tolist() == [1, 1] and out["masks"][0, 2:].sum() == 0
    assert out["masks"][1].sum() == 1  # the unboxed ball is not grounded
    torch.testing.assert_close(out["boxes"][1, 0], torch.tensor([0.1, 0.1, 0.2, 0.3]))
    torch.testing.assert_close(out["positive_embeddings"][1, 0], encode(["red cup"])[0])
    assert object_phrase(g1, 0) == "black cat"
    assert not torch.allclose(encode(["black cat"]), encode(["dog"]))
    with pytest.raises(ValueError, match="no object of any graph has a box"):
        grounding_inputs([SceneGraph((SceneObject("cat"),))], encode)
    many = SceneGraph(tuple(SceneObject("cat", box=(0.0, 0.0, 0.1, 0.1)) for _ in range(3)))
    assert grounding_inputs([many], encode, max_objects=2)["masks"].sum() == 2


# ------------------------------------------------------------------ the pipeline
def _pipe(grounded: bool = True, open_gates: bool = True):
    from scenegraph_diff.pipelines import SceneGraphPipeline

    parts = tiny_sd_components(grounded=grounded)
    if grounded and open_gates:
        _open_gates(parts["unet"])
    pipe = SceneGraphPipeline(**parts)
    pipe.set_progress_bar_config(disable=True)
    return pipe


CALL = dict(num_inference_steps=2, guidance_scale=3.0, output_type="np", graph_scale=0.0)


def _run(pipe, graphs, seed: int = 0, **kw):
    kw.setdefault("generator", torch.Generator().manual_seed(seed))
    return pipe(scene_graph=graphs, **{**CALL, **kw}).images


def test_grounding_off_is_plain_stable_diffusion() -> None:
    from diffusers import StableDiffusionPipeline

    pipe = _pipe()
    plain = StableDiffusionPipeline(**{k: getattr(pipe, k) for k in ("vae", "text_encoder", "tokenizer", "unet",
                                                                      "scheduler")},
                                    safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    plain.set_progress_bar_config(disable=True)
    g = _graph()
    ref = plain(g.text, generator=torch.Generator().manual_seed(0), num_inference_steps=2, guidance_scale=3.0,
                output_type="np").images
    assert np.array_equal(_run(pipe, [g], grounding=False), ref)
    assert not np.allclose(_run(pipe, [g]), ref)  # boxes given + grounded UNet: grounded by default


def test_boxes_steer_the_image_and_direction_matters() -> None:
    pipe = _pipe()
    a = _run(pipe, [_graph(LEFT, RIGHT)])
    b = _run(pipe, [_graph(RIGHT, LEFT)])  # the same text, the boxes swapped
    assert not np.allclose(a, b, atol=1e-4)
    assert np.array_equal(a, _run(pipe, [_graph(LEFT, RIGHT)]))  # deterministic under a fixed generator
    # batched rows are independent of each other's boxes
    both = _run(pipe, [_graph(LEFT, RIGHT), _graph(RIGHT, LEFT)], generator=[torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)])
    np.testing.assert_allclose(both[0], a[0], atol=1e-5)
    np.testing.assert_allclose(both[1], b[0], atol=1e-5)


def test_grounding_steps_fraction_and_fusers_restored() -> None:
    from diffusers.models.attention import GatedSelfAttentionDense

    pipe = _pipe()
    g = _graph()
    full = _run(pipe, [g], num_inference_steps=4)
    part = _run(pipe, [g], num_inference_steps=4, grounding_steps_fraction=0.25)
    assert not np.allclose(full, part)
    assert all(m.enabled for m in pipe.unet.modules() if isinstance(m, GatedSelfAttentionDense))
    set_grounding_enabled(pipe.unet, True)
    with pytest.raises(ValueError, match="grounding_steps_fraction"):
        _run(pipe, [g], grounding_steps_fraction=0.0)


def test_grounding_errors() -> None:
    with pytest.raises(ValueError, match="GLIGEN layers"):
        _run(_pipe(grounded=False), [_graph()], grounding=True)
    bare = SceneGraph((SceneObject("cat"),), (), "a cat")
    with pytest.raises(ValueError, match="no object has a box"):
        _run(_pipe(), [bare], grounding=True)
    assert _run(_pipe(), [bare]).shape == (1, 64, 64, 3)  # auto: nothing to ground, plain text


def test_matches_diffusers_gligen_pipeline() -> None:
    """Our grounding mode computes what diffusers' own StableDiffusionGLIGENPipeline computes (same boxes, phrases,
    guidance and scheduled sampling): the convention of real GLIGEN checkpoints is kept."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from diffusers import StableDiffusionGLIGENPipeline

    pipe = _pipe()
    theirs = StableDiffusionGLIGENPipeline(
        **{k: getattr(pipe, k) for k in ("vae", "text_encoder", "tokenizer", "unet", "scheduler")},
        safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    theirs.set_progress_bar_config(disable=True)
    g = _graph()
    ref = theirs(g.text, gligen_phrases=["black cat", "dog"], gligen_boxes=[list(LEFT), list(RIGHT)],
                 gligen_scheduled_sampling_beta=0.5, generator=torch.Generator().manual_seed(0), num_inference_steps=4,
                 guidance_scale=3.0, output_type="np").images
    ours = _run(pipe, [g], num_inference_steps=4, grounding_steps_fraction=0.5)
    np.testing.assert_allclose(ours, ref, atol=1e-5)


def test_save_and_load_grounded_pipelines(tmp_path) -> None:
    from scenegraph_diff.pipelines import SceneGraphPipeline

    pipe = _pipe()
    g = _graph()
    ref = _run(pipe, [g])
    pipe.save_pretrained(tmp_path / "gligen")  # a GLIGEN-style folder: the whole gated UNet
    loaded = SceneGraphPipeline.from_pretrained(tmp_path / "gligen")
    loaded.set_progress_bar_config(disable=True)
    assert loaded.is_grounded
    np.testing.assert_allclose(_run(loaded, [g]), ref, atol=1e-5)
    # base folder + grounding/ (the layers alone): picked up by from_pretrained
    base = _pipe(grounded=False)
    grounded_unet = gated_unet(base.unet)
    _open_gates(grounded_unet)
    base.save_pretrained(tmp_path / "base")
    save_grounding(grounded_unet, tmp_path / "base" / "grounding")
    re = SceneGraphPipeline.from_pretrained(tmp_path / "base")
    re.set_progress_bar_config(disable=True)
    assert re.is_grounded
    base.register_modules(unet=grounded_unet)
    np.testing.assert_allclose(_run(re, [g]), _run(base, [g]), atol=1e-5)
