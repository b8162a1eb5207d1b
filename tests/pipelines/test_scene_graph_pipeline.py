from __future__ import annotations

import numpy as np
import pytest
import torch

from scenegraph_diff.graph import SceneGraph
from scenegraph_diff.pipelines import SceneGraphPipeline, describe_graph
from scenegraph_diff.pipelines.testing import tiny_sd_components

CAT_ON_DOG = SceneGraph.from_dict({
    "text": "a cat on a dog",
    "objects": [{"name": "cat", "span": [2, 5]}, {"name": "dog", "span": [11, 14]}],
    "relations": [{"subject": 0, "predicate": "on", "object": 1, "span": [6, 8]}],
})
DOG_ON_CAT = SceneGraph.from_dict({
    "text": "a cat on a dog",
    "objects": [{"name": "cat"}, {"name": "dog"}], "relations": [{"subject": 1, "predicate": "on", "object": 0}],
})
KW = dict(num_inference_steps=3, output_type="np")


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def components():
    return tiny_sd_components(seed=0)


@pytest.fixture
def pipe(components):
    p = SceneGraphPipeline(**components)
    p.set_progress_bar_config(disable=True)
    return p


def _open_gates(p: SceneGraphPipeline, value: float = 5.0) -> None:
    with torch.no_grad():
        p.graph_conditioner.gate_eot.fill_(value)
        p.graph_conditioner.gate_token.fill_(value)


@pytest.mark.parametrize("extra", [
    dict(negative_prompt="blurry", num_images_per_prompt=2),
    dict(guidance_scale=1.0),
    dict(guidance_scale=3.0, eta=0.5),
])
def test_untrained_is_bitwise_stable_diffusion(components, pipe, extra):
    from diffusers import StableDiffusionPipeline

    sd = StableDiffusionPipeline(**components, requires_safety_checker=False)
    sd.set_progress_bar_config(disable=True)
    a = sd("a cat on a dog", generator=_gen(), **KW, **extra).images
    b = pipe("a cat on a dog", scene_graph=CAT_ON_DOG, generator=_gen(), **KW, **extra).images
    assert a.shape == b.shape and np.array_equal(a, b)


def test_batch_of_prompts_and_graphs(components, pipe):
    from diffusers import StableDiffusionPipeline

    sd = StableDiffusionPipeline(**components, requires_safety_checker=False)
    sd.set_progress_bar_config(disable=True)
    prompts = ["a cat on a dog", "a dog on a cat"]
    a = sd(prompts, negative_prompt=["blurry", "ugly"], generator=_gen(), **KW).images
    b = pipe(prompts, scene_graph=[CAT_ON_DOG, DOG_ON_CAT], negative_prompt=["blurry", "ugly"], generator=_gen(), **KW).images
    assert np.array_equal(a, b)


def test_graph_changes_image_and_direction_matters(pipe):
    _open_gates(pipe)
    base = pipe("a cat on a dog", scene_graph=CAT_ON_DOG, graph_scale=0.0, generator=_gen(), **KW).images
    a = pipe("a cat on a dog", scene_graph=CAT_ON_DOG, generator=_gen(), **KW).images
    b = pipe("a cat on a dog", scene_graph=DOG_ON_CAT, generator=_gen(), **KW).images
    assert np.abs(a - base).max() > 1e-4
    assert np.abs(a - b).max() > 1e-5


def test_step_window_switches_embeddings(pipe):
    _open_gates(pipe)
    seen = []

    def record(p, step, t, kw):
        seen.append(kw["prompt_embeds"].clone())
        return {}

    pipe("a cat on a dog", scene_graph=CAT_ON_DOG, generator=_gen(), graph_steps_fraction=0.5,
         callback_on_step_end=record, callback_on_step_end_tensor_inputs=["prompt_embeds"],
         num_inference_steps=4, output_type="np")
    assert len(seen) == 4
    plain = pipe.encode_prompt("a cat on a dog", "cpu", 1, True)[0]
    # steps 0, 1 conditioned; steps 2, 3 plain text (the callback sees what the step used)
    assert not torch.equal(seen[0][1:], plain) and torch.equal(seen[0], seen[1])
    assert torch.equal(seen[2][1:], plain) and torch.equal(seen[3][1:], plain)


def test_prompt_from_graph_and_parser_is_used_lazily(pipe, monkeypatch):
    import scenegraph_diff.parsing as parsing

    calls = []

    def fake_parse_batch(texts, *a, **k):
        calls.append(list(texts))
        return [CAT_ON_DOG for _ in texts]

    monkeypatch.setattr(parsing, "parse_batch", fake_parse_batch)
    a = pipe("a cat on a dog", generator=_gen(), **KW).images
    assert calls == [["a cat on a dog"]]
    b = pipe(scene_graph=CAT_ON_DOG, generator=_gen(), **KW).images  # prompt = graph.text
    assert np.array_equal(a, b)
    assert describe_graph(SceneGraph.from_dict({"objects": [{"name": "cat", "attributes": ["black"]}, {"name": "mat"},
                                                            {"name": "ball"}],
                                                "relations": [{"subject": 0, "predicate": "on", "object": 1}]})) \
        == "a black cat on a mat, a ball"


def test_prompt_embeds_path(pipe):
    _open_gates(pipe)
    pe, _ = pipe.encode_prompt("a cat on a dog", "cpu", 1, False)
    a = pipe(prompt_embeds=pe, scene_graph=CAT_ON_DOG, generator=_gen(), **KW).images
    b = pipe("a cat on a dog", scene_graph=CAT_ON_DOG, generator=_gen(), **KW).images
    assert np.array_equal(a, b)


def test_save_load_round_trip(pipe, tmp_path):
    _open_gates(pipe, 2.0)
    a = pipe("a cat on a dog", scene_graph=CAT_ON_DOG, generator=_gen(), **KW).images
    pipe.save_pretrained(tmp_path)
    assert (tmp_path / "graph_encoder" / "diffusion_pytorch_model.safetensors").exists()
    assert (tmp_path / "graph_conditioner" / "diffusion_pytorch_model.safetensors").exists()
    loaded = SceneGraphPipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    b = loaded("a cat on a dog", scene_graph=CAT_ON_DOG, generator=_gen(), **KW).images
    assert np.array_equal(a, b)


def test_from_plain_sd_folder_with_graph_modules(components, pipe, tmp_path):
    from diffusers import StableDiffusionPipeline

    _open_gates(pipe, 2.0)
    StableDiffusionPipeline(**components, requires_safety_checker=False).save_pretrained(tmp_path)
    loaded = SceneGraphPipeline.from_pretrained(tmp_path, graph_encoder=pipe.graph_encoder,
                                                graph_conditioner=pipe.graph_conditioner)
    loaded.set_progress_bar_config(disable=True)
    a = pipe("a cat on a dog", scene_graph=CAT_ON_DOG, generator=_gen(), **KW).images
    b = loaded("a cat on a dog", scene_graph=CAT_ON_DOG, generator=_gen(), **KW).images
    assert np.array_equal(a, b)
    plain = SceneGraphPipeline.from_pretrained(tmp_path)  # default, zero-gated graph modules
    assert plain.graph_conditioner.is_identity


def test_errors(components, pipe):
    from scenegraph_diff.nn import SceneGraphEncoder

    with pytest.raises(ValueError, match="in_channels is 8"):
        SceneGraphPipeline(**components, graph_encoder=SceneGraphEncoder(in_channels=8, out_channels=32))
    with pytest.raises(ValueError, match="1 prompts but 2 scene graphs"):
        pipe("a cat", scene_graph=[CAT_ON_DOG, DOG_ON_CAT], **KW)
    with pytest.raises(ValueError, match="pass a prompt, a scene_graph"):
        pipe(**KW)
    with pytest.raises(ValueError, match="graph_steps_fraction"):
        pipe("a cat", scene_graph=CAT_ON_DOG, graph_steps_fraction=1.5, **KW)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")
def test_cuda_bitwise_stable_diffusion(components):
    from diffusers import StableDiffusionPipeline

    comps = tiny_sd_components(seed=0)
    sd = StableDiffusionPipeline(**comps, requires_safety_checker=False).to("cuda")
    sg = SceneGraphPipeline(**comps).to("cuda")
    for p in (sd, sg):
        p.set_progress_bar_config(disable=True)
    a = sd("a cat on a dog", generator=torch.Generator("cuda").manual_seed(0), **KW).images
    b = sg("a cat on a dog", scene_graph=CAT_ON_DOG, generator=torch.Generator("cuda").manual_seed(0), **KW).images
    assert np.array_equal(a, b)
