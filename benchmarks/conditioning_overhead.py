"""Graph-conditioning cost per image as a fraction of one UNet step of the real SD 1.5 UNet architecture.

The UNet is ``UNet2DConditionModel`` built from the SD 1.5 configuration written out below (859.5 M
parameters, random weights — nothing is downloaded), fp32, one 4x64x64 latent (a 512x512 image),
77 tokens of width 768, batch 1 (no classifier-free guidance: a conservative denominator, since a
guided step runs batch 2). The conditioning path per image is everything :class:`SceneGraphPipeline`
adds: label embedding from a 49408 x 768 token-embedding table (SD 1.5's text encoder size, random),
``collate``, token alignment with a CLIP BPE tokenizer, the :class:`SceneGraphEncoder` (HGCN and
R-HGNN, SD-1.5 sizes) and the :class:`GraphConditioner`. Graphs: random scene graphs with 3-10 objects.
Both sides are timed in the same run on the same threads; the table reports medians and the ratio.

    OMP_NUM_THREADS=1 python benchmarks/conditioning_overhead.py --threads 1
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from _common import write_results  # benchmarks/ is on sys.path when a script runs

sys.path.insert(0, str(Path(__file__).resolve().parent))

# Stable Diffusion 1.5 UNet configuration (the published unet/config.json of SD 1.5, written by hand).
SD15_UNET_CONFIG = {
    "sample_size": 64,
    "in_channels": 4,
    "out_channels": 4,
    "center_input_sample": False,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "mid_block_type": "UNetMidBlock2DCrossAttn",
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "only_cross_attention": False,
    "block_out_channels": [320, 640, 1280, 1280],
    "layers_per_block": 2,
    "downsample_padding": 1,
    "mid_block_scale_factor": 1,
    "act_fn": "silu",
    "norm_num_groups": 32,
    "norm_eps": 1e-5,
    "cross_attention_dim": 768,
    "attention_head_dim": 8,
    "use_linear_projection": False,
}
SD15_UNET_PARAMS = 859_520_964
SD15_VOCAB, SD15_WIDTH, SD15_TOKENS = 49408, 768, 77


def median_times(fn, repeats: int, warmup: int = 1) -> tuple[list[float], list[float]]:
    """Wall-clock and process CPU times of ``repeats`` calls (CPU time is robust to a loaded box)."""
    for _ in range(warmup):
        fn()
    wall, cpu = [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return wall, cpu


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--unet-repeats", type=int, default=3)
    p.add_argument("--graphs", type=int, default=32, help="random graphs (3-10 objects) conditioned one at a time")
    p.add_argument("--hidden", type=int, default=128, help="encoder width (SceneGraphPipeline's default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tiny-unet", action="store_true", help="smoke test: a tiny UNet instead of SD 1.5's")
    p.add_argument("--out", default="benchmarks/results/conditioning_overhead")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    from diffusers import UNet2DConditionModel
    from hetero_layers import random_graphs

    from scenegraph_diff.conditioning import GraphConditioner, align_batch
    from scenegraph_diff.graph.hetero import collate
    from scenegraph_diff.nn import SceneGraphEncoder
    from scenegraph_diff.pipelines.testing import tiny_clip_tokenizer
    from scenegraph_diff.text.transformer import TransformerTokenEmbedder

    torch.manual_seed(args.seed)
    config = dict(SD15_UNET_CONFIG)
    if args.tiny_unet:
        config.update(block_out_channels=[32, 32, 64, 64], norm_num_groups=8, layers_per_block=1)
    t0 = time.perf_counter()
    unet = UNet2DConditionModel(**config).eval()
    build_s = time.perf_counter() - t0
    n_params = sum(p.numel() for p in unet.parameters())
    if not args.tiny_unet and n_params != SD15_UNET_PARAMS:
        raise SystemExit(f"UNet has {n_params} parameters, expected SD 1.5's {SD15_UNET_PARAMS}")
    g = torch.Generator().manual_seed(args.seed)
    latent = torch.randn(1, 4, 64, 64, generator=g)
    text = torch.randn(1, SD15_TOKENS, SD15_WIDTH, generator=g)
    t_step = torch.tensor([500])

    def unet_step() -> None:
        with torch.no_grad():
            unet(latent, t_step, encoder_hidden_states=text)

    unet_times, unet_cpu_times = median_times(unet_step, args.unet_repeats)
    unet_s, unet_cpu_s = statistics.median(unet_times), statistics.median(unet_cpu_times)

    tokenizer = tiny_clip_tokenizer(model_max_length=SD15_TOKENS)
    table = torch.nn.Embedding(SD15_VOCAB, SD15_WIDTH)
    graphs = random_graphs(args.graphs, args.seed)
    prompts = [", ".join(f"{o.name}" for o in gr.objects) for gr in graphs]
    graphs = [type(gr)(gr.objects, gr.relations, pr) for gr, pr in zip(graphs, prompts)]
    rows = []
    for conv in ("hgcn", "rhgnn"):
        encoder = SceneGraphEncoder(in_channels=SD15_WIDTH, hidden_channels=args.hidden, out_channels=SD15_WIDTH,
                                    conv=conv).eval()
        conditioner = GraphConditioner(graph_dim=SD15_WIDTH, embed_dim=SD15_WIDTH).eval()
        with torch.no_grad():  # trained-like gates, so the offsets are really computed and added
            conditioner.gate_eot.fill_(1.0)
            conditioner.gate_token.fill_(1.0)
        for cache in ("warm", "cold"):
            embedder = TransformerTokenEmbedder(tokenizer, table)

            def condition(graph, prompt, embedder=embedder, cache=cache, encoder=encoder,
                          conditioner=conditioner) -> None:
                emb = embedder if cache == "warm" else TransformerTokenEmbedder(tokenizer, table)
                with torch.no_grad():
                    batch = collate([graph], emb)
                    out = encoder(batch)
                    al = align_batch([graph], tokenizer, [prompt], max_length=SD15_TOKENS)
                    conditioner(text, out, al, scale=0.6)

            for gr, pr in zip(graphs, prompts):  # warm-up (and fill the warm cache)
                condition(gr, pr)
            per_image, per_image_cpu = [], []
            for gr, pr in zip(graphs, prompts):
                t, c = time.perf_counter(), time.process_time()
                condition(gr, pr)
                per_image.append(time.perf_counter() - t)
                per_image_cpu.append(time.process_time() - c)
            med, med_cpu = statistics.median(per_image), statistics.median(per_image_cpu)
            rows.append({"encoder": conv, "label_cache": cache, "median_ms": 1000 * med,
                         "max_ms": 1000 * max(per_image), "fraction_of_unet_step": med / unet_s,
                         "median_cpu_ms": 1000 * med_cpu, "cpu_fraction_of_unet_step": med_cpu / unet_cpu_s,
                         "encoder_params": sum(p.numel() for p in encoder.parameters()),
                         "conditioner_params": sum(p.numel() for p in conditioner.parameters())})

    result = {
        "benchmark": "conditioning_overhead", "unet": "tiny" if args.tiny_unet else "SD 1.5 architecture, random weights",
        "unet_params": n_params, "unet_build_s": build_s, "unet_step_s": unet_s, "unet_step_times_s": unet_times,
        "unet_step_cpu_s": unet_cpu_s, "unet_step_cpu_times_s": unet_cpu_times,
        "threads": args.threads, "graphs": args.graphs, "torch": torch.__version__, "python": platform.python_version(),
        "load_avg": os.getloadavg() if hasattr(os, "getloadavg") else None, "rows": rows,
    }
    lines = [
        f"One UNet step ({'tiny UNet' if args.tiny_unet else 'SD 1.5 UNet architecture'}, {n_params / 1e6:.1f} M params, "
        f"fp32, 1x4x64x64, CPU, {args.threads} thread(s)): median {unet_s:.2f} s wall, {unet_cpu_s:.2f} s CPU, "
        f"of {args.unet_repeats}.",
        f"Conditioning per image: median over {args.graphs} random scene graphs (3-10 objects).",
        "",
        "| encoder | label cache | median ms / image (wall) | max ms | fraction of a UNet step (wall) "
        "| median ms / image (CPU) | fraction (CPU) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['encoder']} | {r['label_cache']} | {r['median_ms']:.2f} | {r['max_ms']:.2f} | "
                     f"{100 * r['fraction_of_unet_step']:.3f} % | {r['median_cpu_ms']:.2f} | "
                     f"{100 * r['cpu_fraction_of_unet_step']:.3f} % |")
    md = "\n".join(lines)
    print(md)
    write_results(args.out, result, md, indent=2)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
