"""Does trained box grounding read the boxes? Denoising error with the right boxes vs with the boxes swapped.

For checkpoints of ``scenegraph-diff train-grounding`` runs (``--method gligen`` or ``adapter``) on the frozen
sd-shapes, on one fixed batch of rendered scenes (``--num-scenes``, a stream no training run draws) with fixed noise
and timesteps: the epsilon MSE of the base UNet (no grounding), of the grounded UNet with each object's own box, and
with the boxes rotated among the objects (object ``i`` gets object ``i - 1``'s box; single-object scenes get the
padding box). Grounding that uses positions has a lower error than the base with the right boxes and a higher one
with the wrong boxes; grounding that reads only the phrases gives the same error both ways. Split at t = 500 (the
high-noise half decides the layout).

    OMP_NUM_THREADS=1 python benchmarks/sd_shapes_grounding_probe.py runs/sd_shapes_grounding_gligen \\
        runs/sd_shapes_adapter --out benchmarks/results/sd_shapes
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_results  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", help="train-grounding run folders")
    ap.add_argument("--checkpoints", default="500,1000", help="steps to probe, comma-separated (default 500,1000)")
    ap.add_argument("--num-scenes", type=int, default=128)
    ap.add_argument("--out", default="runs/grounding_probe")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    from diffusers import DDPMScheduler

    from scenegraph_diff.conditioning.grounding import PhraseEncoder, gated_unet
    from scenegraph_diff.conditioning.layout_adapter import LayoutAdapterForTraining, make_layout_adapter
    from scenegraph_diff.shapes.sd_shapes import BETAS, SDShapesConfig, _SceneStream
    from scenegraph_diff.shapes.sd_shapes_grounding import GroundedUNetForTraining, _base_pipeline, shapes_phrases
    from scenegraph_diff.training import load_weights

    pipe, source = _base_pipeline("sd-shapes")
    info = json.loads((source / "train_info.json").read_text())
    known = set(SDShapesConfig.__dataclass_fields__)
    cfg = SDShapesConfig(**{**{k: v for k, v in info.get("config", {}).items() if k in known}, "seed": 123,
                            "device": "cpu", "caption_dropout": 0.0})
    phrases = shapes_phrases()
    table = PhraseEncoder(pipe.text_encoder, pipe.tokenizer)(phrases)
    stream = _SceneStream(cfg, args.num_scenes, 0, salt=99, tokenizer=pipe.tokenizer,
                          phrase_index={p: i for i, p in enumerate(phrases)}, grounding_dropout=0.0)
    batch = next(iter(stream))
    g = torch.Generator().manual_seed(0)
    alphas = DDPMScheduler(**BETAS).alphas_cumprod.float()
    rows = []
    with torch.no_grad():
        z = pipe.vae.encode(batch["images"]).latent_dist.sample(generator=g) * pipe.vae.config.scaling_factor
        states = pipe.text_encoder(batch["input_ids"])[0]
        noise = torch.randn(z.shape, generator=g)
        t = torch.randint(0, alphas.numel(), (z.size(0),), generator=g)
        a = alphas[t].view(-1, 1, 1, 1)
        noisy = a.sqrt() * z + (1 - a).sqrt() * noise
        masks = batch["masks"]
        positive = table[batch["phrase_ids"]] * masks.unsqueeze(-1)
        wrong = batch["boxes"][:, torch.arange(batch["boxes"].size(1)).roll(1)]

        def errors(pred: torch.Tensor) -> dict[str, float]:
            e = (pred - noise).square().mean(dim=(1, 2, 3))
            return {"all": e.mean().item(), "t>500": e[t > 500].mean().item(), "t<=500": e[t <= 500].mean().item()}

        base = errors(pipe.unet(noisy, t, states).sample)
        rows.append({"run": "base (no grounding)", "step": 0, "right": base, "wrong": base})
        for run in map(Path, args.runs):
            config = json.loads((run / "config.json").read_text())
            method = config.get("method", "gligen")
            if method == "adapter":
                model = LayoutAdapterForTraining(pipe.unet, make_layout_adapter(pipe.unet, table.size(-1),
                                                                                pipe.vae_scale_factor), 32)
            else:
                model = GroundedUNetForTraining(gated_unet(pipe.unet, gate_init=float(config.get("gate_init", 0.0))))
            for step in (int(s) for s in args.checkpoints.split(",")):
                ck = run / "checkpoints" / f"checkpoint-{step:08d}"
                if not ck.is_dir():
                    continue
                load_weights(model, ck, ema=True)
                rows.append({"run": f"{run.name} ({method})", "step": step,
                             "right": errors(model(noisy, t, states, batch["boxes"], positive, masks)),
                             "wrong": errors(model(noisy, t, states, wrong, positive, masks))})
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    head = ("| grounding | step | MSE, right boxes (all / t>500 / t<=500) | MSE, boxes swapped (all / t>500 / t<=500) |\n"
            "|---|---|---|---|\n")
    fmt = lambda e: f"{e['all']:.4f} / {e['t>500']:.4f} / {e['t<=500']:.4f}"  # noqa: E731
    body = "".join(f"| {r['run']} | {r['step']} | {fmt(r['right'])} | {fmt(r['wrong'])} |\n" for r in rows)
    meta = (f"\n{args.num_scenes} rendered scenes (1-3 objects), fixed noise and timesteps, EMA weights of each "
            f"checkpoint; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs.\n")
    write_results(Path(args.out) / "grounding_probe", {"rows": rows}, head + body + meta)
    print(head + body + meta)
    return 0


if __name__ == "__main__":
    sys.exit(main())
