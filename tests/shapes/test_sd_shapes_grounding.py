"""train-grounding (scenegraph_diff.shapes.sd_shapes_grounding) on a tiny sd-shapes: only the GLIGEN layers move."""

import hashlib
import json

import numpy as np
import pytest
import torch

from scenegraph_diff.conditioning.grounding import gated_unet, grounding_state_dict, is_grounding_key
from scenegraph_diff.shapes.sd_shapes import export_pipeline
from scenegraph_diff.shapes.sd_shapes_grounding import GroundingConfig, export_grounding, train_grounding


def _hash(tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name in sorted(tensors):
        h.update(name.encode())
        h.update(tensors[name].detach().float().contiguous().numpy().tobytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def base_folder(tiny_sd_shapes_run, tmp_path_factory):
    cfg, _ = tiny_sd_shapes_run
    return export_pipeline(cfg.output_dir, tmp_path_factory.mktemp("sdg") / "sd-tiny")


def _config(base, out, **kw):
    return GroundingConfig(**{**dict(model=str(base), output_dir=str(out), steps=2, minutes=None, batch_size=2,
                                     checkpoint_every=1, warmup_steps=0, grounding_dropout=0.0,
                                     device="cpu"), **kw})


def test_gligen_training_moves_only_the_grounding_layers(base_folder, tmp_path):
    from diffusers import UNet2DConditionModel
    from safetensors.torch import load_file

    unet = UNet2DConditionModel.from_pretrained(base_folder / "unet").float()
    base_hash = _hash(unet.state_dict())
    fresh = grounding_state_dict(gated_unet(UNet2DConditionModel.from_pretrained(base_folder / "unet").float(),
                                            gate_init=1.0))
    dest = train_grounding(_config(base_folder, tmp_path / "run", method="gligen"))
    assert dest.name == "grounding" and (dest / "config.json").is_file()
    from scenegraph_diff.training import latest_checkpoint

    state = load_file(str(latest_checkpoint(tmp_path / "run" / "checkpoints") / "model.safetensors"))
    trained = {k.removeprefix("unet."): v for k, v in state.items()}
    base_part = {k: v for k, v in trained.items() if not is_grounding_key(k)}
    assert set(base_part) == set(unet.state_dict())
    assert _hash(base_part) == base_hash  # the frozen UNet, weight for weight
    assert _hash(UNet2DConditionModel.from_pretrained(base_folder / "unet").float().state_dict()) == base_hash
    moved = [k for k, v in fresh.items() if not torch.equal(v, trained[k])]
    assert moved, "no grounding layer was trained"
    info = json.loads((dest / "config.json").read_text())
    assert info["steps"] == 2 and info["base"] == str(base_folder)


def test_adapter_training_leaves_the_unet_as_it_was(base_folder, tmp_path):
    from diffusers import UNet2DConditionModel
    from safetensors.torch import load_file

    from scenegraph_diff.training import latest_checkpoint

    unet = UNet2DConditionModel.from_pretrained(base_folder / "unet").float()
    dest = train_grounding(_config(base_folder, tmp_path / "run"))  # the default method: the layout adapter
    assert dest.name == "layout_adapter" and (dest / "layout_adapter.json").is_file()
    state = load_file(str(latest_checkpoint(tmp_path / "run" / "checkpoints") / "model.safetensors"))
    base_part = {k.removeprefix("unet."): v for k, v in state.items() if k.startswith("unet.")}
    assert set(base_part) == set(unet.state_dict()) and _hash(base_part) == _hash(unet.state_dict())
    conv_in = state["adapter.adapter.conv_in.weight"]
    assert conv_in.abs().sum() > 0  # zero-initialised, trained
    assert set(state) - {f"unet.{k}" for k in base_part} == {k for k in state if k.startswith("adapter.")}


@pytest.mark.parametrize("method", ["adapter", "gligen"])
def test_exported_grounding_draws_boxes_through_the_pipeline(base_folder, tmp_path, method):
    import shutil

    from scenegraph_diff.graph import SceneGraph, SceneObject
    from scenegraph_diff.pipelines import SceneGraphPipeline

    dest = train_grounding(_config(base_folder, tmp_path / "run", steps=1, method=method))
    folder = tmp_path / "pipe"
    shutil.copytree(base_folder, folder)
    export_grounding(dest, folder)
    pipe = SceneGraphPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    assert pipe.is_grounded
    left = SceneGraph((SceneObject("circle", ("red",), box=(0.05, 0.3, 0.4, 0.65)),), text="a red circle")
    right = SceneGraph((SceneObject("circle", ("red",), box=(0.6, 0.3, 0.95, 0.65)),), text="a red circle")
    kw = dict(num_inference_steps=2, guidance_scale=3.0, output_type="np", graph_scale=0.0)
    a = pipe(scene_graph=[left], generator=torch.Generator().manual_seed(0), **kw).images
    b = pipe(scene_graph=[right], generator=torch.Generator().manual_seed(0), **kw).images
    off = pipe(scene_graph=[left], generator=torch.Generator().manual_seed(0), grounding=False, **kw).images
    assert a.shape == (1, 32, 32, 3) and np.isfinite(a).all()
    assert not np.array_equal(a, b) and not np.array_equal(a, off)


def test_non_shapes_folder_is_refused(base_folder, tmp_path):
    import shutil

    folder = tmp_path / "other"
    shutil.copytree(base_folder, folder)
    (folder / "scenegraph_diff.json").unlink()
    with pytest.raises(ValueError, match="shapes world"):
        train_grounding(_config(folder, tmp_path / "run"))
