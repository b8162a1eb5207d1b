from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from scenegraph_diff.conditioning.rectification import (
    RectificationConfig,
    RectificationDataset,
    RectificationRunConfig,
    Rectifier,
    evaluate_rectification,
    prepare_rectification,
    rectification_step,
    run_rectification,
    train_rectification,
)
from scenegraph_diff.training import TrainConfig, plot_history

RED, BLUE = (255, 0, 0), (0, 0, 255)


def _image(path: Path, left, right, res: int = 32) -> None:
    from PIL import Image

    a = np.zeros((res, res, 3), np.uint8)
    a[:, : res // 2], a[:, res // 2 :] = left, right
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a).save(path)


def make_pairs(root: Path) -> Path:
    """Synthetic RRNet-layout data: 'a cat on a dog' = red | blue, the swapped pair = blue | red."""
    folder = root / "on"
    folder.mkdir(parents=True)
    (folder / "index.json").write_text(json.dumps(
        {"A": "cat", "R": "on", "B": "dog", "ARB": "a cat on a dog", "BRA": "a dog on a cat"}))
    _image(folder / "a cat on a dog" / "0.png", RED, BLUE)
    _image(folder / "a dog on a cat" / "0.png", BLUE, RED)
    _image(folder / "cat" / "0.png", RED, RED)
    _image(folder / "dog" / "0.png", BLUE, BLUE)
    return root


def _pipe(model_max_length: int = 77):
    from scenegraph_diff.pipelines import SceneGraphPipeline
    from scenegraph_diff.pipelines.testing import tiny_sd_components

    pipe = SceneGraphPipeline(**tiny_sd_components(seed=0, model_max_length=model_max_length))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_dataset_reader(tmp_path):
    ds = RectificationDataset(make_pairs(tmp_path))
    assert len(ds) == 1
    ex = ds[0]
    assert ex.prompt == "a cat on a dog" and len(ex.positive) == 1 and len(ex.negative) == 1
    assert ex.positive[0].parent.name == "a cat on a dog" and ex.negative[0].parent.name == "a dog on a cat"
    assert set(ex.objects) == {"A", "B"} and len(ex.objects["A"]) == 1
    g = ex.graph
    assert [o.name for o in g.objects] == ["cat", "dog"] and g.objects[0].span == (2, 5) and g.objects[1].span == (11, 14)
    assert (g.relations[0].subject, g.relations[0].predicate, g.relations[0].object) == (0, "on", 1)


def test_dataset_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no <relation>/index.json"):
        RectificationDataset(tmp_path)
    (tmp_path / "on").mkdir()
    (tmp_path / "on" / "index.json").write_text(json.dumps({"A": "cat", "R": "on", "B": "dog", "ARB": "a cat on a dog"}))
    with pytest.raises(ValueError, match=r"missing or non-string keys \['BRA'\]"):
        RectificationDataset(tmp_path)
    (tmp_path / "on" / "index.json").write_text(json.dumps(
        {"A": "cat", "R": "on", "B": "dog", "ARB": "a cat on a dog", "BRA": "a dog on a cat"}))
    with pytest.raises(FileNotFoundError, match="no images for ARB"):
        RectificationDataset(tmp_path)
    with pytest.raises(ValueError, match="neg_bound"):
        RectificationConfig(neg_bound=-1)


def test_step_computes_the_bounded_rrnet_loss(tmp_path):
    pipe = _pipe()
    data = prepare_rectification(pipe, list(RectificationDataset(make_pairs(tmp_path))), 32)
    cfg = RectificationConfig(neg_bound=0.5)
    step = rectification_step(pipe.unet, pipe.scheduler, cfg)
    model = Rectifier(pipe.graph_encoder, pipe.graph_conditioner)
    g = torch.Generator().manual_seed(0)
    out = step(model, data.sample(2, g), g)
    expected = 10 * out["positive"] - 2 * out["negative"].clamp(max=0.5)
    torch.testing.assert_close(out["loss"], expected)
    # same noise and t for both pairs: with identical images both MSEs would be equal
    batch = data.sample(2, torch.Generator().manual_seed(1))
    batch["negative"] = batch["positive"].clone()
    same = step(model, batch, torch.Generator().manual_seed(2))
    torch.testing.assert_close(same["positive"], same["negative"])


def test_timesteps_favour_large_t():
    from scenegraph_diff.conditioning.rectification import _timestep_weights

    w = _timestep_weights(1000, 1.0)
    t = torch.multinomial(w, 4000, replacement=True, generator=torch.Generator().manual_seed(0)).float()
    assert 620 < t.mean() < 710  # E[t] = 2/3 * 1000 for p(t) ~ t
    assert torch.equal(_timestep_weights(10, 0.0), torch.ones(10, dtype=torch.float64))


def test_short_run_trains_saves_and_plots(tmp_path):
    """Always-on smoke run: 8 steps through the shared Trainer, checkpoints, CLI-level outputs, curve PNG."""
    cfg = RectificationRunConfig(
        data_root=str(make_pairs(tmp_path / "data")), output_dir=str(tmp_path / "run"), model="tiny", max_steps=8,
        lr=1e-2, checkpoint_every=4, device="cpu", progress=False,
        objective=RectificationConfig(resolution=32, batch_size=2, neg_bound=3.0))
    result = run_rectification(cfg)
    assert result["steps"] == 8
    assert Path(result["plot"]).stat().st_size > 0
    assert (tmp_path / "run" / "graph_conditioner" / "diffusion_pytorch_model.safetensors").exists()
    assert sorted(p.name for p in (tmp_path / "run").glob("checkpoint-*")) == ["checkpoint-00000004", "checkpoint-00000008"]
    from scenegraph_diff.conditioning import GraphConditioner

    cond = GraphConditioner.from_pretrained(tmp_path / "run" / "graph_conditioner")
    assert not cond.is_identity  # the gates moved


def _pretrain_unet(pipe, data, steps: int) -> None:
    """Make the random tiny UNet a text-conditioned denoiser of the two images (prompts with distinct words),
    so that, like a real SD, it reads its conditioning; then freeze it."""
    with torch.no_grad():
        pe = pipe.encode_prompt(["red box left", "blue box left"], "cpu", 1, False)[0]
    lat = torch.stack([data.positive[0][0], data.negative[0][0]])
    opt = torch.optim.AdamW(pipe.unet.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        t = torch.randint(0, 1000, (2,), generator=g)
        noise = torch.randn(lat.shape, generator=g)
        loss = F.mse_loss(pipe.unet(pipe.scheduler.add_noise(lat, noise, t), t, pe).sample, noise)
        opt.zero_grad()
        loss.backward()
        opt.step()
    pipe.unet.eval().requires_grad_(False)


@pytest.mark.slow
def test_200_step_rectification_lowers_positive_raises_swapped(tmp_path):
    """Acceptance: RRNet objective (10 / 2, negative term bounded), 200 AdamW steps, synthetic pairs."""
    pipe = _pipe(model_max_length=16)
    ds = RectificationDataset(make_pairs(tmp_path / "data"))
    data = prepare_rectification(pipe, list(ds), 32)
    _pretrain_unet(pipe, data, 150)
    before = evaluate_rectification(pipe, data, num_samples=64)
    cfg = RectificationConfig(resolution=32, batch_size=2, neg_bound=0.5, timestep_power=1.0)
    history = train_rectification(pipe, ds, cfg, TrainConfig(max_steps=200, lr=3e-3, grad_clip=1.0, progress=False))
    after = evaluate_rectification(pipe, data, num_samples=64)
    png = plot_history(history, tmp_path / "rectification_curve.png", keys=["positive", "negative"], log_y=False)
    print(f"before {before} after {after} curve {png}")
    assert png.stat().st_size > 0 and len(history) == 200
    assert after["positive"] < before["positive"]
    assert after["negative"] > before["negative"]


def test_cli_train_rectification(tmp_path, capsys):
    from scenegraph_diff.cli import main

    root = make_pairs(tmp_path / "data")
    rc = main(["train-rectification", "--data-root", str(root), "--output", str(tmp_path / "run"), "--steps", "2",
               "--resolution", "32", "--device", "cpu", "--batch-size", "2", "--lr", "1e-2"])
    assert rc == 0
    result = json.loads(capsys.readouterr().out)
    assert result["steps"] == 2 and Path(result["plot"]).exists()
    assert Path(result["graph_encoder"], "config.json").exists()
    rc = main(["train-rectification", "--data-root", str(tmp_path / "missing")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err == [f"scenegraph-diff train-rectification: error: rectification data root "
                               f"'{tmp_path / 'missing'}' is not a folder"]


def test_step_noises_with_the_training_schedule_whatever_the_sampler():
    from diffusers import DDPMScheduler, DPMSolverMultistepScheduler

    from scenegraph_diff.conditioning.rectification import RectificationConfig, rectification_step

    betas = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
    seen = {}

    class Probe(torch.nn.Module):
        dtype = torch.float32

        def forward(self, x, t, encoder_hidden_states):
            seen.setdefault("x", []).append(x)
            from types import SimpleNamespace

            return SimpleNamespace(sample=torch.zeros_like(x))

    class Model(torch.nn.Module):
        def forward(self, graphs, prompt_embeds, alignment, scale=1.0):
            return prompt_embeds

    class Align:
        def to(self, device):
            return self

    pos = torch.randn(2, 4, 4, 4, generator=torch.Generator().manual_seed(0))
    batch = {"positive": pos, "negative": pos.clone(), "graphs": None, "alignment": Align(),
             "prompt_embeds": torch.zeros(2, 3, 8)}
    for sched in (DDPMScheduler(**betas), DPMSolverMultistepScheduler(**betas)):
        rectification_step(Probe(), sched, RectificationConfig())(Model(), batch, torch.Generator().manual_seed(1))
    assert torch.equal(seen["x"][0], seen["x"][1])  # the sampler class does not change the noised input
