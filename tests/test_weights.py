"""Loaded weights in owned, aligned memory (``scenegraph_diff.weights``) and every loader that uses it."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import torch

from scenegraph_diff.conditioning import GraphConditioner, align_batch
from scenegraph_diff.graph import SceneGraph
from scenegraph_diff.nn import SceneGraphEncoder
from scenegraph_diff.pipelines.testing import tiny_clip_tokenizer
from scenegraph_diff.text import HashingEmbedder
from scenegraph_diff.weights import (
    ALIGNMENT,
    aligned_array,
    aligned_empty_like,
    align_weights_,
    is_aligned,
    owns_memory,
)

G1 = SceneGraph.from_dict({"text": "a cat on a dog", "objects": [{"name": "cat"}, {"name": "dog"}],
                           "relations": [{"subject": 0, "predicate": "on", "object": 1}]})
G2 = SceneGraph.from_dict({"text": "a red ball", "objects": [{"name": "ball", "attributes": ["red"]}]})


def _tensors(module: torch.nn.Module) -> list[torch.Tensor]:
    return [*module.parameters(), *module.buffers()]


def _all_owned_and_aligned(module: torch.nn.Module) -> bool:
    return all(owns_memory(t) and is_aligned(t) for t in _tensors(module))


def _misaligned_copy(t: torch.Tensor, offset_bytes: int = 4) -> torch.Tensor:
    """``t``'s values in a torch-owned buffer whose first element sits ``offset_bytes`` past a 64-byte boundary."""
    buf = torch.empty(t.numel() + 2 * ALIGNMENT // t.element_size(), dtype=t.dtype)
    start = (-buf.data_ptr() % ALIGNMENT + offset_bytes) // t.element_size()
    out = buf[start : start + t.numel()].view(t.shape)
    out.copy_(t)
    return out


def _write_misaligned_safetensors(state: dict[str, torch.Tensor], path) -> None:
    """A valid safetensors file whose every tensor starts 4 bytes past a 16-byte boundary of the file (so at
    ``% 64 != 0`` in memory, whether the file is memory-mapped or read into a 16-byte aligned buffer). The
    format wants the data contiguous, so small ``_pad.<i>`` byte tensors fill the gaps."""
    header: dict = {"__metadata__": {"format": "pt"}}
    blobs, pos = [], 0
    for i, (name, t) in enumerate(state.items()):
        pad = (4 - pos) % 16 or 16
        header[f"_pad.{i}"] = {"dtype": "U8", "shape": [pad], "data_offsets": [pos, pos + pad]}
        blobs.append(b"\0" * pad)
        pos += pad
        raw = t.detach().contiguous().numpy().tobytes()
        header[name] = {"dtype": {torch.float32: "F32"}[t.dtype], "shape": list(t.shape),
                        "data_offsets": [pos, pos + len(raw)]}
        blobs.append(raw)
        pos += len(raw)
    text = json.dumps(header).encode()
    text += b" " * (-(8 + len(text)) % 16)  # the data section starts on a 16-byte boundary of the file
    path.write_bytes(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def _encoder_and_conditioner():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        enc = SceneGraphEncoder(in_channels=16, hidden_channels=32, out_channels=24).eval()
        cond = GraphConditioner(graph_dim=24, embed_dim=20, append_graph_tokens=True)
    with torch.no_grad():
        for g in (cond.gate_eot, cond.gate_token, cond.gate_append):
            g.fill_(0.7)
    return enc, cond


def _forward(enc: SceneGraphEncoder, cond: GraphConditioner) -> torch.Tensor:
    emb, tok = HashingEmbedder(16), tiny_clip_tokenizer()
    pe = torch.randn(2, 12, 20, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return cond(pe, enc.encode_graphs([G1, G2], emb), align_batch([G1, G2], tok, max_length=12))


# ---------------------------------------------------------------------------------------------- the utility
def test_aligned_empty_like_keeps_layout_and_aligns():
    t = torch.randn(2, 3, 5, 7).to(memory_format=torch.channels_last)
    out = aligned_empty_like(t)
    assert is_aligned(out) and owns_memory(out)
    assert out.shape == t.shape and out.stride() == t.stride() and out.dtype == t.dtype
    # The fallback for allocators that return misaligned blocks: PyTorch's gives 64, so ask for 4096.
    big = aligned_empty_like(t, alignment=4096)
    assert big.data_ptr() % 4096 == 0 and big.stride() == t.stride()
    big.copy_(t)
    assert torch.equal(big, t)
    with pytest.raises(ValueError, match="power of two.*got 48"):
        aligned_empty_like(t, alignment=48)
    with pytest.raises(ValueError, match="alignment 4 is smaller than the 8-byte elements"):
        aligned_empty_like(torch.zeros(3, dtype=torch.float64), alignment=4)


def test_owns_memory_tells_mapped_from_allocated(tmp_path):
    from safetensors.torch import load_file, save_file

    save_file({"w": torch.randn(5, 3)}, str(tmp_path / "w.safetensors"))
    assert not owns_memory(load_file(str(tmp_path / "w.safetensors"))["w"])
    assert not owns_memory(torch.from_numpy(np.zeros(3)))
    assert owns_memory(torch.zeros(3)) and owns_memory(torch.randn(4).clone())


def test_misaligned_views_are_realigned_and_forward_is_bit_identical():
    enc, cond = _encoder_and_conditioner()
    expected = _forward(enc, cond)
    ref = {k: v.clone() for k, v in cond.state_dict().items()}
    for p in cond.parameters():
        p.data = _misaligned_copy(p.data)
    assert all(p.data_ptr() % ALIGNMENT == 4 for p in cond.parameters())  # deliberately off the boundary
    params = list(cond.parameters())
    assert align_weights_(cond) is cond
    assert [id(p) for p in cond.parameters()] == [id(p) for p in params]  # same Parameter objects
    assert _all_owned_and_aligned(cond)
    assert all(torch.equal(cond.state_dict()[k], v) for k, v in ref.items())
    assert torch.equal(_forward(enc, cond), expected)
    before = [p.data_ptr() for p in cond.parameters()]
    align_weights_(cond)  # nothing left to move
    assert [p.data_ptr() for p in cond.parameters()] == before


def test_tied_and_aliased_weights_stay_tied():
    lin = torch.nn.Linear(4, 4)
    net = torch.nn.Sequential(lin, torch.nn.ReLU(), lin)  # one parameter registered twice
    lin.weight.data = _misaligned_copy(lin.weight.data)
    net.register_buffer("alias", lin.weight.data)  # a buffer aliasing the weight exactly
    align_weights_(net)
    assert net[0].weight is net[2].weight and is_aligned(net[0].weight)
    assert net.alias.data_ptr() == net[0].weight.data_ptr()


def test_meta_tensors_are_skipped_and_bad_targets_named():
    with torch.device("meta"):
        lin = torch.nn.Linear(3, 3)
    align_weights_(lin)
    assert lin.weight.is_meta
    with pytest.raises(TypeError, match="got str"):
        align_weights_("unet")


def test_aligned_array():
    a = np.arange(10, dtype=np.float16).reshape(2, 5)
    b = aligned_array(a, np.float32)
    assert b.ctypes.data % ALIGNMENT == 0 and b.dtype == np.float32 and b.flags.c_contiguous
    assert np.array_equal(a.astype(np.float32), b)
    assert aligned_array(np.float32(3.0)).shape == ()


# ---------------------------------------------------------------------------------------------- the loaders
def test_model_from_a_misaligned_file_loads_aligned_and_bit_identical(tmp_path):
    from diffusers import ModelMixin
    from safetensors.torch import load_file

    enc, cond = _encoder_and_conditioner()
    expected = _forward(enc, cond)
    cond.save_pretrained(tmp_path)
    file = tmp_path / "diffusion_pytorch_model.safetensors"
    _write_misaligned_safetensors(dict(cond.state_dict()), file)
    raw = {k: v for k, v in load_file(str(file)).items() if not k.startswith("_pad.")}
    assert raw.keys() == cond.state_dict().keys()
    assert all(t.data_ptr() % ALIGNMENT != 0 for t in raw.values())  # the file puts them off the boundary
    plain = ModelMixin.from_pretrained.__func__(GraphConditioner, tmp_path)  # diffusers' loader alone
    assert not any(is_aligned(p) for p in plain.parameters())
    loaded = GraphConditioner.from_pretrained(tmp_path)
    assert _all_owned_and_aligned(loaded)
    assert torch.equal(_forward(enc, loaded), expected)


def test_encoder_round_trip_is_aligned_and_bit_identical(tmp_path):
    enc, cond = _encoder_and_conditioner()
    enc.save_pretrained(tmp_path)
    loaded = SceneGraphEncoder.from_pretrained(tmp_path)
    assert _all_owned_and_aligned(loaded)
    assert torch.equal(_forward(loaded, cond), _forward(enc, cond))


def test_pipeline_components_load_aligned(tmp_path):
    from scenegraph_diff.pipelines import SceneGraphPipeline
    from scenegraph_diff.pipelines.testing import tiny_sd_components

    SceneGraphPipeline(**tiny_sd_components()).save_pretrained(tmp_path)
    pipe = SceneGraphPipeline.from_pretrained(tmp_path)
    modules = {k: v for k, v in pipe.components.items() if isinstance(v, torch.nn.Module)}
    assert set(modules) == {"unet", "vae", "text_encoder", "graph_encoder", "graph_conditioner"}
    assert all(_all_owned_and_aligned(m) for m in modules.values())


def test_refiner_loads_aligned(tmp_path):
    from scenegraph_diff.diffusion import SceneGraphDenoiser, SceneGraphRefiner
    from scenegraph_diff.graph import Vocabulary

    vocab = Vocabulary.from_graphs([G1, G2])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = SceneGraphDenoiser(vocab.num_objects, vocab.num_predicates, hidden=16, num_layers=1, heads=2)
    SceneGraphRefiner(model, vocab, [2]).save_pretrained(tmp_path)
    loaded = SceneGraphRefiner.from_pretrained(tmp_path)
    assert _all_owned_and_aligned(loaded.model)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.model.state_dict().values()))


def test_shapes_pipeline_loads_aligned(tmp_path):
    from scenegraph_diff.shapes.conditioning import ShapesConditioner
    from scenegraph_diff.shapes.pipeline import ShapesPipeline, make_scheduler, make_unet

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        pipe = ShapesPipeline(unet=make_unet(32, 16, (8, 16, 16)).eval(), scheduler=make_scheduler(),
                              conditioner=ShapesConditioner(encoder="hgcn", dim=16, embed_dim=16, layout_hidden=16))
    pipe.save_pretrained(tmp_path)
    loaded = ShapesPipeline.from_pretrained(tmp_path)
    assert _all_owned_and_aligned(loaded.unet) and _all_owned_and_aligned(loaded.conditioner)
    assert _all_owned_and_aligned(ShapesConditioner.from_pretrained(tmp_path / "conditioner"))


def test_parser_weights_load_aligned():
    from scenegraph_diff.parsing.learned import LearnedParser

    state = LearnedParser.from_pretrained().model.state
    assert state and all(v.ctypes.data % ALIGNMENT == 0 and v.dtype == np.float32 for v in state.values())


@pytest.mark.parametrize("name", ["edge", "gdss", "pard"])
def test_graph_generators_load_aligned(tmp_path, name):
    from scenegraph_diff.diffusion.gdss import GDSSScoreModel
    from scenegraph_diff.diffusion.pard import PARDModel
    from scenegraph_diff.diffusion.ppgn import EdgeDenoiser

    klass, kwargs = {"edge": (EdgeDenoiser, dict(channels=8, num_layers=2)),
                     "gdss": (GDSSScoreModel, dict(num_features=4, hidden=8)),
                     "pard": (PARDModel, dict(channels=8, num_layers=2, max_block=4, max_nodes=6))}[name]
    torch.manual_seed(0)
    model = klass(**kwargs)
    model.save_pretrained(tmp_path)
    loaded = klass.from_pretrained(tmp_path)
    assert _all_owned_and_aligned(loaded)
    for (k, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), k
