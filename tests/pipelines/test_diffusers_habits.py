"""A diffusers user's habits on our pipelines (issue 24): from_pipe, dtypes, LoRA, CPU offload, step callbacks.

Tiny random-weight components on the CPU; the CUDA-only checks are skipped without a GPU.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel
from diffusers.callbacks import MultiPipelineCallbacks, SDCFGCutoffCallback
from diffusers.schedulers import KarrasDiffusionSchedulers
from transformers import CLIPTextModel, CLIPTokenizer

from scenegraph_diff.conditioning import GraphConditioner
from scenegraph_diff.graph import SceneGraph
from scenegraph_diff.nn import SceneGraphEncoder
from scenegraph_diff.pipelines import GraphCutoffCallback, GraphPipelineMixin, SceneGraphPipeline
from scenegraph_diff.pipelines.testing import tiny_sd_components

CAT_ON_DOG = SceneGraph.from_dict({
    "text": "a cat on a dog",
    "objects": [{"name": "cat", "span": [2, 5]}, {"name": "dog", "span": [11, 14]}],
    "relations": [{"subject": 0, "predicate": "on", "object": 1, "span": [6, 8]}],
})
PROMPT = "a cat on a dog"
KW = dict(num_inference_steps=3, output_type="np")
SEQ = "text_encoder->graph_encoder->graph_conditioner->image_encoder->unet->vae"


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _quiet(p):
    p.set_progress_bar_config(disable=True)
    return p


def _open_gates(p, value: float = 5.0):
    with torch.no_grad():
        p.graph_conditioner.gate_eot.fill_(value)
        p.graph_conditioner.gate_token.fill_(value)
    return p


def _sd(**kw) -> StableDiffusionPipeline:
    return _quiet(StableDiffusionPipeline(**tiny_sd_components(seed=0, **kw), requires_safety_checker=False))


def _ours(**kw) -> SceneGraphPipeline:
    return _quiet(SceneGraphPipeline(**tiny_sd_components(seed=0), **kw))


def _run(p, **kw) -> np.ndarray:
    if isinstance(p, SceneGraphPipeline):
        kw.setdefault("scene_graph", CAT_ON_DOG)
    return p(PROMPT, generator=_gen(), **{**KW, **kw}).images


@pytest.fixture
def diffusers_log():
    """Records of the ``diffusers`` loggers (they do not propagate to pytest's caplog)."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler, root = Keep(level=logging.WARNING), logging.getLogger("diffusers")
    root.addHandler(handler)
    yield records
    root.removeHandler(handler)


# ------------------------------------------------------------------------------------------- 1. from_pipe
def test_from_pipe_sd_to_ours_is_bit_identical_with_fresh_zero_gated_modules():
    sd = _sd()
    ours = _quiet(SceneGraphPipeline.from_pipe(sd))
    assert type(ours) is SceneGraphPipeline
    assert all(getattr(ours, k) is getattr(sd, k) for k in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"))
    assert isinstance(ours.graph_encoder, SceneGraphEncoder) and ours.graph_conditioner.is_identity
    assert np.array_equal(_run(sd), _run(ours))


def test_from_pipe_sd_to_ours_takes_graph_modules_passed_in():
    sd, trained = _sd(), _open_gates(_ours())
    ours = _quiet(SceneGraphPipeline.from_pipe(sd, graph_encoder=trained.graph_encoder,
                                               graph_conditioner=trained.graph_conditioner))
    assert ours.graph_encoder is trained.graph_encoder and ours.graph_conditioner is trained.graph_conditioner
    assert np.array_equal(_run(ours), _run(trained))  # same weights everywhere (both from seed 0)
    assert not np.array_equal(_run(ours), _run(sd))


def test_from_pipe_ours_to_sd_drops_graph_modules():
    ours = _open_gates(_ours())
    sd = _quiet(StableDiffusionPipeline.from_pipe(ours))
    assert type(sd) is StableDiffusionPipeline and sd.unet is ours.unet
    assert not hasattr(sd, "graph_encoder") and not set(sd.components) & {"graph_encoder", "graph_conditioner"}
    assert np.array_equal(_run(sd), _run(_sd()))


def test_from_pipe_ours_to_ours_shares_modules_and_refiner():
    class Refiner:
        def refine(self, graphs, **kw):
            return graphs

    ours = _open_gates(_ours(graph_refiner=Refiner()))
    ptrs = [p.data_ptr() for p in ours.graph_encoder.parameters()]
    again = _quiet(SceneGraphPipeline.from_pipe(ours))
    assert again.graph_encoder is ours.graph_encoder and again.graph_conditioner is ours.graph_conditioner
    assert [p.data_ptr() for p in again.graph_encoder.parameters()] == ptrs  # same storage, nothing copied
    assert again.graph_refiner is ours.graph_refiner
    assert np.array_equal(_run(again), _run(ours))


def test_from_pipe_keeps_half_precision_and_storage(diffusers_log):
    sd = _sd()
    for name in ("unet", "vae", "text_encoder"):
        torch.nn.Module.to(getattr(sd, name), torch.bfloat16)
    ptr = sd.unet.conv_in.weight.data_ptr()
    ours = SceneGraphPipeline.from_pipe(sd)  # diffusers 0.42 alone would cast everything to float32 (#12754)
    assert sd.unet.dtype == torch.bfloat16 and sd.unet.conv_in.weight.data_ptr() == ptr
    assert not [r for r in diffusers_log if "Casting directly" in r.getMessage()]  # nothing was cast
    assert ours.graph_encoder.dtype == ours.graph_conditioner.dtype == torch.bfloat16  # fresh ones follow the UNet
    cast = SceneGraphPipeline.from_pipe(sd, dtype=torch.float32)  # an explicit dtype is honoured
    assert cast.unet.dtype == cast.graph_encoder.dtype == torch.float32


def test_type_hints_resolve_so_from_pipe_matches_components():
    types = SceneGraphPipeline._get_signature_types()
    assert types["unet"] == (UNet2DConditionModel,)
    assert SceneGraphEncoder in types["graph_encoder"] and GraphConditioner in types["graph_conditioner"]


# ------------------------------------------------------------------------------------------- 2. dtypes
@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("saved")
    _open_gates(_ours(), 2.0).save_pretrained(root / "ours")
    _sd().save_pretrained(root / "sd")
    return root


@pytest.mark.parametrize("dtype,keyword", [(torch.float16, "dtype"), (torch.bfloat16, "torch_dtype")])
def test_from_pretrained_in_half_precision(folders, dtype, keyword, diffusers_log):
    for folder in ("ours", "sd"):  # graph modules restored from their subfolders / fresh ones
        pipe = _quiet(SceneGraphPipeline.from_pretrained(folders / folder, **{keyword: dtype}))
        assert {m.dtype for m in (pipe.unet, pipe.text_encoder, pipe.graph_encoder, pipe.graph_conditioner)} == {dtype}
        assert pipe.graph_conditioner.is_identity == (folder == "sd")
        images = _run(pipe, num_inference_steps=2)
        assert images.shape == (1, 64, 64, 3) and np.isfinite(images).all()
    assert not [r.getMessage() for r in diffusers_log if "Casting directly" in r.getMessage()]


# ------------------------------------------------------------------------------------------- 3. LoRA
def _lora_folder(tmp_path, text_encoder: bool):
    """A LoRA for the tiny UNet (and text encoder) in diffusers' format, with non-zero up-projections."""
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    src = tiny_sd_components(seed=0)
    layers = {}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        src["unet"].add_adapter(LoraConfig(r=4, lora_alpha=4, init_lora_weights=False,
                                           target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
        layers["unet_lora_layers"] = get_peft_model_state_dict(src["unet"])
        if text_encoder:  # in peft's key format, by hand
            te = {}
            for name, mod in src["text_encoder"].named_modules():
                if name.endswith(("q_proj", "k_proj", "v_proj", "out_proj")):
                    te[f"{name}.lora_A.weight"] = torch.randn(4, mod.in_features) * 0.3
                    te[f"{name}.lora_B.weight"] = torch.randn(mod.out_features, 4) * 0.3
            layers["text_encoder_lora_layers"] = te
    SceneGraphPipeline.save_lora_weights(tmp_path, **layers)
    return tmp_path


def _check_lora(pipe, folder, components):
    base = _run(pipe)
    pipe.load_lora_weights(folder)
    assert set(pipe.get_list_adapters()) == set(components)
    lora, lora_no_graph = _run(pipe), _run(pipe, graph_scale=0.0)
    assert np.abs(lora - base).max() > 1e-3  # the LoRA acts
    assert np.abs(lora - lora_no_graph).max() > 1e-4  # and graph conditioning still does
    assert not any("lora" in n for m in (pipe.graph_encoder, pipe.graph_conditioner) for n, _ in m.named_parameters())
    pipe.fuse_lora(components=components)
    np.testing.assert_allclose(_run(pipe), lora, atol=1e-4)
    pipe.unfuse_lora(components=components)
    pipe.unload_lora_weights()
    np.testing.assert_allclose(_run(pipe), base, atol=1e-4)


def test_lora_mixins_are_the_parents():
    from diffusers.loaders import StableDiffusionLoraLoaderMixin

    assert issubclass(SceneGraphPipeline, StableDiffusionLoraLoaderMixin)
    assert SceneGraphPipeline._lora_loadable_modules == ["unet", "text_encoder"]
    for name in ("load_lora_weights", "fuse_lora", "unfuse_lora", "set_adapters", "unload_lora_weights"):
        assert getattr(SceneGraphPipeline, name) is getattr(StableDiffusionPipeline, name)


def test_unet_lora_with_graph_conditioning(tmp_path):
    pytest.importorskip("peft", reason="diffusers' LoRA loading needs peft")
    _check_lora(_open_gates(_ours()), _lora_folder(tmp_path, text_encoder=False), ["unet"])


def test_text_encoder_lora_with_graph_conditioning(tmp_path):
    pytest.importorskip("peft", minversion="0.22.0", reason="transformers 5's adapters need peft >= 0.22")
    _check_lora(_open_gates(_ours()), _lora_folder(tmp_path, text_encoder=True), ["unet", "text_encoder"])


# ------------------------------------------------------------------------------------------- 4. offloading
def test_offload_sequence_includes_graph_modules():
    assert SceneGraphPipeline.model_cpu_offload_seq == SEQ
    assert {"graph_encoder", "graph_conditioner"} <= set(SceneGraphPipeline._optional_components)


def test_model_cpu_offload_hooks_graph_modules_in_order():
    pytest.importorskip("accelerate")
    pipe = _open_gates(_ours())
    expected = _run(pipe)
    pipe.enable_model_cpu_offload(device="cpu")  # the CPU as "accelerator": hooks without device moves
    assert all(hasattr(getattr(pipe, n), "_hf_hook") for n in ("text_encoder", "graph_encoder", "graph_conditioner"))
    order: list[str] = []
    for name in ("text_encoder", "graph_encoder", "graph_conditioner", "unet"):
        getattr(pipe, name).register_forward_pre_hook(lambda m, a, n=name: order.append(n) if n not in order else None)
    assert np.array_equal(_run(pipe), expected)
    assert order == ["text_encoder", "graph_encoder", "graph_conditioner", "unet"]


def test_sequential_cpu_offload_takes_graph_modules_off_the_device():
    pytest.importorskip("accelerate")
    pipe = _ours()
    pipe.enable_sequential_cpu_offload(device="cpu")
    for name in ("graph_encoder", "graph_conditioner"):
        module = getattr(pipe, name)
        assert all(p.is_meta for p in module.parameters()) and hasattr(module, "_hf_hook")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(),
                    reason="offloading runs on an accelerator; accelerate 1.15's sequential offload fails on the CPU")
@pytest.mark.parametrize("mode", ["enable_model_cpu_offload", "enable_sequential_cpu_offload"])
def test_cpu_offload_on_cuda_matches_the_resident_pipeline(mode):
    pipe = _open_gates(_ours()).to("cuda")
    expected = pipe(PROMPT, scene_graph=CAT_ON_DOG, generator=torch.Generator("cuda").manual_seed(0), **KW).images
    pipe = _open_gates(_ours())
    getattr(pipe, mode)(device="cuda")
    got = pipe(PROMPT, scene_graph=CAT_ON_DOG, generator=torch.Generator("cuda").manual_seed(0), **KW).images
    assert pipe.graph_encoder.device.type in ("cpu", "meta")  # offloaded again after the call
    np.testing.assert_allclose(got, expected, atol=1e-5)


# ------------------------------------------------------------------------------------------- 5. callbacks
def test_callback_sees_the_graph_conditioned_embeds():
    pipe = _open_gates(_ours())
    seen = []

    def record(p, step, timestep, kw):
        seen.append(kw["prompt_embeds"].clone())
        return kw

    _run(pipe, callback_on_step_end=record, callback_on_step_end_tensor_inputs=["prompt_embeds"])
    text, negative = pipe.encode_prompt(PROMPT, "cpu", 1, True)
    conditioned = pipe.condition_prompt_embeds(text, [PROMPT], [CAT_ON_DOG], scale=0.6)
    assert len(seen) == 3 and torch.equal(seen[0], torch.cat([negative, conditioned]))
    assert not torch.equal(conditioned, text)


def test_callback_replacing_the_embeds_switches_graph_conditioning_off():
    """The example of ``text_only_prompt_embeds``' docstring, checked against ``graph_steps_fraction``."""
    def graph_off_after_half(pipe, step_index, timestep, callback_kwargs):
        if step_index + 1 == pipe.num_timesteps // 2:
            callback_kwargs["prompt_embeds"] = pipe.text_only_prompt_embeds(callback_kwargs["prompt_embeds"])
        return callback_kwargs

    pipe = _open_gates(_ours())
    kw = dict(num_inference_steps=4)
    by_hand = _run(pipe, callback_on_step_end=graph_off_after_half,
                   callback_on_step_end_tensor_inputs=["prompt_embeds"], **kw)
    assert np.array_equal(by_hand, _run(pipe, graph_steps_fraction=0.5, **kw))
    assert np.array_equal(by_hand, _run(pipe, callback_on_step_end=GraphCutoffCallback(cutoff_step_index=2), **kw))
    assert not np.array_equal(by_hand, _run(pipe, **kw))
    assert not np.array_equal(by_hand, _run(pipe, graph_scale=0.0, **kw))


def test_graph_cutoff_composes_with_diffusers_callbacks():
    pipe = _open_gates(_ours())
    both = MultiPipelineCallbacks([GraphCutoffCallback(cutoff_step_ratio=0.5),
                                   SDCFGCutoffCallback(cutoff_step_ratio=0.5)])
    images = _run(pipe, callback_on_step_end=both, num_inference_steps=4)
    assert images.shape == (1, 64, 64, 3) and np.isfinite(images).all()
    assert pipe.guidance_scale == 0.0  # the diffusers callback ran too


def test_text_only_prompt_embeds_and_cutoff_errors():
    pipe = _ours()
    with pytest.raises(RuntimeError, match="during a call only"):
        pipe.text_only_prompt_embeds(torch.zeros(2, 77, 32))
    with pytest.raises(ValueError, match="cutoff_step_ratio must be in \\(0, 1\\], got 0.0"):
        GraphCutoffCallback(cutoff_step_ratio=0.0)
    with pytest.raises(ValueError, match="cutoff_step_index must be an integer >= 1, got 0"):
        GraphCutoffCallback(cutoff_step_index=0)
    with pytest.raises(ValueError, match="pass one of"):
        GraphCutoffCallback(cutoff_step_ratio=0.5, cutoff_step_index=2)


# ------------------------------------------------------------------------------------------- later pipelines
class _LaterPipeline(GraphPipelineMixin, StableDiffusionPipeline):
    """What a grounded / sd-shapes pipeline would be: a diffusers parent, the mixin, register_graph_modules."""

    def __init__(self, vae: AutoencoderKL, text_encoder: CLIPTextModel, tokenizer: CLIPTokenizer,
                 unet: UNet2DConditionModel, scheduler: KarrasDiffusionSchedulers, safety_checker: None = None,
                 feature_extractor: None = None, image_encoder: None = None, requires_safety_checker: bool = False,
                 graph_encoder: SceneGraphEncoder | None = None, graph_conditioner: GraphConditioner | None = None):
        super().__init__(vae, text_encoder, tokenizer, unet, scheduler, safety_checker, feature_extractor,
                         image_encoder, requires_safety_checker)
        self.register_graph_modules(graph_encoder, graph_conditioner)


def test_a_later_pipeline_inherits_the_habits(tmp_path):
    assert _LaterPipeline.model_cpu_offload_seq == SEQ
    later = _LaterPipeline.from_pipe(_sd())
    assert later.graph_conditioner.is_identity
    ours = _open_gates(_ours())
    shared = _LaterPipeline.from_pipe(ours)
    assert shared.graph_encoder is ours.graph_encoder
    with pytest.raises(TypeError, match="leaves out \\['graph_encoder', 'graph_conditioner'\\]"):
        type("Bad", (GraphPipelineMixin, StableDiffusionPipeline), {"model_cpu_offload_seq": "text_encoder->unet"})
