"""The whole graph-adapter path on tiny random SD components, as a user with SD 1.5 would run it:
two rectification steps, save_pretrained, from_pretrained, generate (issue: the real-checkpoint path stays working)."""

import hashlib

import numpy as np
import torch

from scenegraph_diff.conditioning.rectification import RectificationConfig, RectificationRunConfig, run_rectification
from scenegraph_diff.pipelines import SceneGraphPipeline


def _hash(module: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for k, v in sorted(module.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def test_rectify_save_load_generate(tmp_path):
    cfg = RectificationRunConfig(data="shapes", model="tiny", output_dir=str(tmp_path / "run"), max_steps=2,
                                 checkpoint_every=None, device="cpu", progress=False, save_pipeline=True,
                                 objective=RectificationConfig(batch_size=2))
    result = run_rectification(cfg)
    pipe = SceneGraphPipeline.from_pretrained(result["pipeline"])
    assert not pipe.graph_conditioner.is_identity
    kw = dict(num_inference_steps=2, guidance_scale=3.0, output_type="np")
    a = pipe("a red circle left of a blue square", generator=torch.Generator().manual_seed(0), **kw).images
    b = pipe("a red circle left of a blue square", generator=torch.Generator().manual_seed(0), **kw).images
    off = pipe("a red circle left of a blue square", generator=torch.Generator().manual_seed(0), graph_scale=0.0,
               **kw).images
    assert a.shape == (1, 64, 64, 3) and np.array_equal(a, b)
    assert not np.array_equal(a, off)  # the trained graph modules change the image


def test_rectification_leaves_the_sd_weights_frozen(tmp_path):
    from scenegraph_diff.conditioning.rectification import train_rectification
    from scenegraph_diff.pipelines.testing import tiny_sd_components
    from scenegraph_diff.shapes.swap_pairs import SwapPairStream
    from scenegraph_diff.training import TrainConfig

    pipe = SceneGraphPipeline(**tiny_sd_components())
    before = {name: _hash(getattr(pipe, name)) for name in ("unet", "vae", "text_encoder")}
    graph_before = _hash(pipe.graph_conditioner)
    train_rectification(pipe, SwapPairStream(pipe, 2, size=64), RectificationConfig(),
                        TrainConfig(max_steps=2, lr=1e-2, progress=False))
    assert {name: _hash(getattr(pipe, name)) for name in ("unet", "vae", "text_encoder")} == before
    assert _hash(pipe.graph_conditioner) != graph_before
