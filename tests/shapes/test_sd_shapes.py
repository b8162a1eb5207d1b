"""sd-shapes training (scenegraph_diff.shapes.sd_shapes) on a tiny configuration."""

import json

import numpy as np
import pytest
import torch

from scenegraph_diff.shapes.sd_shapes import (
    SDShapesConfig,
    _SceneStream,
    latent_scaling_factor,
    make_vae,
    render_batch,
    train_sd_shapes,
)
from scenegraph_diff.shapes.world import sample_scene


def tiny_config(tmp_path, **kw):
    root = tmp_path / "data"
    (root / "factual").mkdir(parents=True, exist_ok=True)
    (root / "factual" / "train.csv").write_text(
        'image_id,region_id,caption,scene_graph\n1,2,a zebra beside a fence,"( zebra , beside , fence )"\n'
        '3,4,a zebra beside a fence,"( zebra , beside , fence )"\n')
    base = dict(output_dir=str(tmp_path / "run"), data_root=str(root), vocab_size=700, tokenizer_captions=200,
                max_length=40, text_hidden=32, text_layers=1, text_heads=2, vae_channels=(16, 16, 16),
                unet_channels=(32, 32), vae_steps=2, vae_batch_size=4, unet_steps=2, batch_size=4,
                checkpoint_every=1, unet_minutes=None, warmup_steps=1, device="cpu")
    base.update(kw)
    return SDShapesConfig(**base)


@pytest.fixture(scope="module")
def trained(tiny_sd_shapes_run):
    return tiny_sd_shapes_run


def test_plain_diffusers_loads_and_generates(trained):
    from diffusers import StableDiffusionPipeline

    cfg, path = trained
    pipe = StableDiffusionPipeline.from_pretrained(path)  # no scenegraph_diff code on the call path
    assert type(pipe) is StableDiffusionPipeline and pipe.vae_scale_factor == 4
    out = pipe(["a red circle left of a blue square", "a cyan square"], num_inference_steps=2, guidance_scale=3.0,
               generator=torch.Generator().manual_seed(0), output_type="np").images
    assert out.shape == (2, 32, 32, 3) and np.isfinite(out).all()
    again = pipe(["a red circle left of a blue square", "a cyan square"], num_inference_steps=2, guidance_scale=3.0,
                 generator=torch.Generator().manual_seed(0), output_type="np").images
    assert np.array_equal(out, again)


def test_tokenizer_covers_factual_and_shapes_words(trained):
    from transformers import CLIPTokenizer

    cfg, path = trained
    tok = CLIPTokenizer.from_pretrained(path / "tokenizer")
    assert tok.model_max_length == cfg.max_length
    for word in ("zebra", "fence", "circle", "triangle", "purple"):
        assert len(tok(word).input_ids) == 3, word  # BOS, the word, EOS


def test_train_info_and_every_checkpoint_kept(trained):
    cfg, path = trained
    info = json.loads((path.parent / "train_info.json").read_text())
    assert info["vae"]["steps"] == 2 and info["unet_runs"][-1]["steps_end"] == 2
    assert info["vae"]["scaling_factor"] > 0
    ckpts = sorted(p.name for p in (path.parent / "unet" / "checkpoints").iterdir())
    assert ckpts == ["checkpoint-00000001", "checkpoint-00000002"]


def test_resume_continues_and_keeps_the_vae(trained, tmp_path):
    cfg, path = trained
    import shutil

    run = tmp_path / "run"
    shutil.copytree(path.parent, run)
    vae_before = (run / "vae" / "final" / "diffusion_pytorch_model.safetensors").read_bytes()
    more = SDShapesConfig(**{**cfg.__dict__, "output_dir": str(run), "unet_steps": 3})
    train_sd_shapes(more, resume=True)
    info = json.loads((run / "train_info.json").read_text())
    assert [r["steps_end"] for r in info["unet_runs"]] == [2, 3]
    assert (run / "vae" / "final" / "diffusion_pytorch_model.safetensors").read_bytes() == vae_before


def test_caption_dropout_gives_empty_captions(tmp_path):
    from scenegraph_diff.text.bpe import clip_tokenizer, train_clip_bpe

    cfg = tiny_config(tmp_path, caption_dropout=0.5, batch_size=64)
    tok = clip_tokenizer(*train_clip_bpe(["a red circle"] * 3, vocab_size=600), model_max_length=cfg.max_length)
    batch = next(iter(_SceneStream(cfg, 64, rank=0, salt=2, tokenizer=tok)))
    empty = (batch["input_ids"][:, 1] == tok.eos_token_id).sum().item()  # BOS then EOS = ""
    assert 16 < empty < 48
    assert batch["images"].shape == (64, 3, 32, 32)


def test_streams_are_seeded_per_rank(tmp_path):
    cfg = tiny_config(tmp_path)
    a = next(iter(_SceneStream(cfg, 4, rank=0, salt=1)))["images"]
    b = next(iter(_SceneStream(cfg, 4, rank=0, salt=1)))["images"]
    c = next(iter(_SceneStream(cfg, 4, rank=1, salt=1)))["images"]
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_render_batch_range_and_palette():
    g = torch.Generator().manual_seed(0)
    x = render_batch([sample_scene(g) for _ in range(3)], 32)
    assert x.shape == (3, 3, 32, 32) and x.min() == -1.0 and x.max() <= 1.0


def test_latent_scaling_factor_is_inverse_std(tmp_path):
    cfg = tiny_config(tmp_path)
    torch.manual_seed(0)
    vae = make_vae(cfg).eval()
    f = latent_scaling_factor(vae, cfg, num_images=256)
    assert 0.1 < f < 100


@pytest.mark.parametrize("field,value", [("size", 48), ("vae_channels", (16, 16)), ("caption_dropout", 1.0),
                                         ("text_hidden", 31), ("device", "gpu"), ("unet_minutes", 0)])
def test_bad_config_names_the_field(tmp_path, field, value):
    with pytest.raises(ValueError, match=field):
        tiny_config(tmp_path, **{field: value})


def test_bad_stage_names_the_value(tmp_path):
    with pytest.raises(ValueError, match="stages"):
        train_sd_shapes(tiny_config(tmp_path), stages=("vea",))


def test_decoder_stage_changes_only_the_decoder(trained, tmp_path):
    import shutil

    from diffusers import AutoencoderKL

    cfg, path = trained
    run = tmp_path / "run"
    shutil.copytree(path.parent, run)
    before = AutoencoderKL.from_pretrained(run / "vae" / "final").state_dict()
    train_sd_shapes(SDShapesConfig(**{**cfg.__dict__, "output_dir": str(run), "decoder_steps": 2}), stages=("decoder",))
    after = AutoencoderKL.from_pretrained(run / "vae" / "final").state_dict()
    enc = [k for k in before if k.startswith(("encoder.", "quant_conv."))]
    dec = [k for k in before if k.startswith("decoder.")]
    assert enc and all(torch.equal(before[k], after[k]) for k in enc)
    assert any(not torch.equal(before[k], after[k]) for k in dec)
    info = json.loads((run / "train_info.json").read_text())
    assert info["decoder"]["steps"] == 2 and "vae" in info and "unet_runs" in info


def test_palette_cross_entropy_rewards_palette_pixels():
    from scenegraph_diff.shapes.sd_shapes import palette_cross_entropy

    g = torch.Generator().manual_seed(0)
    x = render_batch([sample_scene(g) for _ in range(2)], 32)
    exact = palette_cross_entropy(x, x)
    blurred = palette_cross_entropy(torch.nn.functional.avg_pool2d(x, 3, 1, 1), x)
    assert exact < 1e-3 < blurred


def test_cli_trains_and_exports(tmp_path, capsys):
    from scenegraph_diff.cli import main

    root = tiny_config(tmp_path).data_root
    rc = main(["train-sd-shapes", "--output", str(tmp_path / "run"), "--data-root", root, "--vae-steps", "1",
               "--decoder-steps", "1", "--unet-steps", "1", "--unet-minutes", "0", "--batch-size", "2",
               "--unet-channels", "32,32", "--text-layers", "1", "--export", str(tmp_path / "bundle"),
               "--device", "cpu"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(out["export"])
    assert pipe.unet.dtype == torch.float32 and pipe.text_encoder.dtype == torch.float32  # fp16 on disk, fp32 loaded
    assert (tmp_path / "bundle" / "train_info.json").is_file()


def test_cli_bad_stage_is_one_line(tmp_path, capsys):
    from scenegraph_diff.cli import main

    assert main(["train-sd-shapes", "--output", str(tmp_path), "--stages", "vae,foo", "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "stages" in err[0]
