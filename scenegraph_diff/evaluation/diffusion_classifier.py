r"""Diffusion Classifier relation scores (Li et al., ICCV 2023): label-free relation checks from denoising error.

https://arxiv.org/abs/2303.16203 — a conditional diffusion model is a classifier: among conditions :math:`c_k`,
the image :math:`x` is best explained by the one with the smallest expected denoising error

.. math::
    e_k(x) = \mathbb{E}_{t, \epsilon} \lVert \epsilon - \epsilon_\theta(\sqrt{\bar\alpha_t} z + \sqrt{1 - \bar\alpha_t}
    \epsilon, t, c_k) \rVert^2, \qquad z = \mathrm{VAE}(x),

estimated with the *same* :math:`(t_j, \epsilon_j)` pairs for every candidate, so the noise of the estimate
largely cancels in the comparison. For a relation ``A r B`` of a graph, the candidates are the graph itself and
the graph with just that relation reversed (``B r A``; optionally also with the relation's predicate replaced by
others); the relation *holds* when the graph's error is the smallest, and its margin is

.. math::
    m = \frac{\min_{c \ne g} e_c - e_g}{e_g}

(positive: holds). The conditioning is the pipeline's (:func:`~.conditioning.graph_prompt_embeds`): text for a
plain Stable Diffusion pipeline, graph-conditioned for a :class:`~scenegraph_diff.pipelines.SceneGraphPipeline`
with a trained adapter and ``graph_scale > 0``, and *layout*-conditioned for a grounded graph pipeline (a layout
adapter or GLIGEN layers, and a ``layout_model``): every candidate graph gets its own boxes from the layout model
(the same layout noise for every candidate of an image, so that layouts differ only through the relation), and the
candidate is scored with the UNet grounded in them. A bag-of-words text encoder cannot tell ``A r B`` from
``B r A``; boxes can.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..graph.scene_graph import Relation, SceneGraph, SceneObject
from .conditioning import graph_prompt_embeds, graph_text

__all__ = ["RelationVerdict", "Grounding", "relation_candidates", "images_to_latents", "denoising_errors",
           "candidate_grounding", "relation_scores",
           "DEFAULT_NUM_SAMPLES"]

logger = logging.getLogger(__name__)

#: (t, noise) pairs per candidate by default
DEFAULT_NUM_SAMPLES = 16


@dataclass(frozen=True)
class RelationVerdict:
    """The Diffusion Classifier's verdict on one relation of a graph.

    Attributes:
        subject, predicate, object: the relation (indices into the graph's objects).
        holds: whether the graph explains the image better than every candidate of this relation.
        margin: :math:`(\\min_c e_c - e_g) / e_g`, positive when the relation holds.
    """

    subject: int
    predicate: str
    object: int
    holds: bool
    margin: float

    def as_dict(self) -> dict[str, Any]:
        """``{"subject", "predicate", "object", "holds", "margin"}`` (the ``score`` command's JSON)."""
        return {"subject": self.subject, "predicate": self.predicate, "object": self.object, "holds": self.holds,
                "margin": round(self.margin, 6)}


def relation_candidates(graph: SceneGraph, index: int, predicates: Sequence[str] = ()) -> list[SceneGraph]:
    """The competitors of ``graph.relations[index]``: the graph with that relation reversed, then (for each of
    ``predicates`` other than the relation's own) with its predicate replaced. The candidates carry no ``text`` or
    boxes (they are described in words) and never equal ``graph``'s relations."""
    if not 0 <= index < len(graph.relations):
        raise ValueError(f"relation index {index} out of range ({len(graph.relations)} relations)")
    rel = graph.relations[index]
    objects, relations = _bare(graph).objects, _bare(graph).relations
    variants = [Relation(rel.object, rel.predicate, rel.subject)]
    variants += [Relation(rel.subject, p, rel.object) for p in dict.fromkeys(predicates) if p != rel.predicate]
    out = []
    for v in variants:
        if (v.subject, v.predicate, v.object) == (rel.subject, rel.predicate, rel.object):
            continue
        out.append(SceneGraph(objects, relations[:index] + (v,) + relations[index + 1:]))
    return out


def _bare(graph: SceneGraph) -> SceneGraph:
    """``graph`` without text, boxes or spans."""
    return SceneGraph(tuple(SceneObject(o.name, o.attributes) for o in graph.objects),
                      tuple(Relation(r.subject, r.predicate, r.object) for r in graph.relations))


def _as_batch(images: Any) -> Tensor:
    """``images`` (a tensor ``[N, 3, H, W]`` in [0, 1], or a sequence of ``[H, W, 3]`` arrays / PIL images, uint8 or
    float in [0, 1]) -> float32 ``[N, 3, H, W]`` in [0, 1]."""
    if isinstance(images, Tensor):
        if images.ndim != 4 or images.size(1) != 3:
            raise ValueError(f"expected images [N, 3, H, W], got shape {tuple(images.shape)}")
        return images.float()
    out = []
    for i, im in enumerate(images):
        arr = np.asarray(im)
        if arr.ndim != 3 or arr.shape[-1] != 3:
            raise ValueError(f"image {i}: expected [H, W, 3], got shape {arr.shape}")
        t = torch.from_numpy(np.array(arr)).permute(2, 0, 1)  # a writable copy
        out.append(t.float() / 255.0 if arr.dtype == np.uint8 else t.float())
    if not out:
        raise ValueError("no images")
    sizes = {tuple(t.shape) for t in out}
    if len(sizes) > 1:  # resize each to the first one's size; the model size is applied next anyway
        h, w = out[0].shape[1:]
        out = [t if t.shape[1:] == (h, w) else F.interpolate(t[None], size=(h, w), mode="bilinear",
                                                             antialias=True, align_corners=False)[0] for t in out]
    return torch.stack(out)


@torch.no_grad()
def images_to_latents(pipe: Any, images: Any) -> Tensor:
    """Encode images with the pipeline's VAE (the latent distribution's mode, times ``scaling_factor``).

    Args:
        images: ``[N, 3, H, W]`` in [0, 1], or ``[H, W, 3]`` arrays (uint8, or float in [0, 1]); any size: resized
            (bilinear, antialiased) to the model's resolution (``unet.config.sample_size * vae_scale_factor``).

    Returns:
        ``[N, C, h, w]`` latents in the UNet's dtype, on the pipeline's execution device.
    """
    x = _as_batch(images)  # [N, 3, H, W]
    size = int(pipe.unet.config.sample_size) * int(pipe.vae_scale_factor)
    if tuple(x.shape[-2:]) != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    vae = pipe.vae
    x = (x * 2.0 - 1.0).to(device=pipe._execution_device, dtype=vae.dtype)
    z = vae.encode(x).latent_dist.mode() * vae.config.scaling_factor
    return z.to(pipe.unet.dtype)


def _timesteps_and_noise(pipe: Any, num_samples: int, latent_shape: Sequence[int],
                         generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
    """``num_samples`` stratified timesteps ``[T]`` (one per equal slice of ``[0, num_train_timesteps)``, at its
    centre) and noises ``[T, C, h, w]`` drawn on CPU from ``generator``."""
    n_train = int(pipe.scheduler.config.num_train_timesteps)
    t = ((torch.arange(num_samples, dtype=torch.float64) + 0.5) * n_train / num_samples).long().clamp(0, n_train - 1)
    noise = torch.randn((num_samples, *latent_shape), generator=generator, dtype=torch.float32)
    return t, noise


@dataclass
class Grounding:
    """Per-candidate box grounding of :func:`denoising_errors`, ``M`` layouts per candidate.

    Sample ``j`` of candidate ``k`` of image ``n`` is grounded in layout ``m = j mod M``: row ``k * M + m`` of
    ``residuals[n][b]`` (layout-adapter residuals of down block ``b``, ``[K_n * M, C_b, h_b, w_b]``, already scaled)
    and of ``gligen[n]`` (GLIGEN inputs ``{"boxes": [K_n * M, N, 4], "positive_embeddings": [K_n * M, N, D],
    "masks": [K_n * M, N]}``). Either may be ``None``.
    """

    num_layouts: int = 1
    residuals: Sequence[Sequence[Tensor]] | None = None
    gligen: Sequence[dict[str, Tensor]] | None = None


@torch.no_grad()
def denoising_errors(pipe: Any, latents: Tensor, embeds: Sequence[Tensor], timesteps: Tensor, noise: Tensor,
                     batch_size: int = 64, grounding: Grounding | None = None) -> list[Tensor]:
    r"""Denoising errors of each latent under each of its candidate conditionings, on shared ``(t, noise)`` pairs.

    Args:
        latents: ``[N, C, h, w]`` clean latents :math:`z_n`.
        embeds: ``N`` tensors ``[K_n, L_n, D]``: the candidate ``prompt_embeds`` of image ``n``.
        timesteps: ``[T]`` training timesteps.
        noise: ``[T, C, h, w]``, the :math:`\epsilon_j` paired with ``timesteps``.
        batch_size: UNet rows per forward pass.
        grounding: optional per-candidate boxes (layout-adapter residuals and/or GLIGEN inputs), see
            :class:`Grounding`.

    Returns:
        ``N`` tensors ``[K_n, T]`` (float32, CPU): :math:`\lVert \text{target} - \text{UNet}(x_t, t, c) \rVert^2 /
        \dim` with the target the noise (``epsilon`` models) or the velocity (``v_prediction``).
    """
    if len(embeds) != latents.size(0):
        raise ValueError(f"{len(embeds)} candidate sets for {latents.size(0)} latents")
    if timesteps.size(0) != noise.size(0):
        raise ValueError(f"{timesteps.size(0)} timesteps but {noise.size(0)} noises")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    unet, scheduler = pipe.unet, pipe.scheduler
    prediction = scheduler.config.prediction_type
    if prediction not in ("epsilon", "v_prediction"):
        raise ValueError(f"the Diffusion Classifier needs an epsilon or v_prediction model, not {prediction!r}")
    device, dtype = latents.device, unet.dtype
    num_layouts = grounding.num_layouts if grounding is not None else 1
    if num_layouts < 1:
        raise ValueError(f"num_layouts must be >= 1, got {num_layouts}")
    acp = scheduler.alphas_cumprod.to(device=device, dtype=torch.float32)[timesteps.to(device)]  # [T]
    a, s = acp.sqrt().view(-1, 1, 1, 1), (1.0 - acp).sqrt().view(-1, 1, 1, 1)
    eps = noise.to(device=device, dtype=torch.float32)
    num_t = timesteps.size(0)
    # Rows (image n, candidate k, sample j), grouped by embedding length (rows of one pass must share it).
    rows: dict[int, list[tuple[int, int, int]]] = {}
    for n, e in enumerate(embeds):
        for k in range(e.size(0)):
            rows.setdefault(e.size(1), []).extend((n, k, j) for j in range(num_t))
    errors = [torch.zeros(e.size(0), num_t) for e in embeds]
    z = latents.float()
    for group in rows.values():
        for start in range(0, len(group), batch_size):
            chunk = group[start:start + batch_size]
            n_idx = torch.tensor([r[0] for r in chunk], device=device)
            j_idx = torch.tensor([r[2] for r in chunk], device=device)
            z0, e, aa, ss = z[n_idx], eps[j_idx], a[j_idx], s[j_idx]  # [b, C, h, w], [b, 1, 1, 1]
            x_t = aa * z0 + ss * e
            target = e if prediction == "epsilon" else aa * e - ss * z0
            ehs = torch.stack([embeds[n][k] for n, k, _ in chunk]).to(device=device, dtype=dtype)  # [b, L, D]
            extra: dict[str, Any] = {}
            if grounding is not None:
                at = [k * num_layouts + j % num_layouts for _, k, j in chunk]
                if grounding.residuals is not None:
                    blocks = len(grounding.residuals[chunk[0][0]])
                    extra["down_intrablock_additional_residuals"] = [
                        torch.stack([grounding.residuals[n][b][a] for (n, _, _), a in zip(chunk, at)]).to(
                            device=device, dtype=dtype) for b in range(blocks)]
                if grounding.gligen is not None:
                    extra["cross_attention_kwargs"] = {"gligen": {
                        key: torch.stack([grounding.gligen[n][key][a] for (n, _, _), a in zip(chunk, at)]).to(
                            device=device, dtype=dtype) for key in ("boxes", "positive_embeddings", "masks")}}
            out = unet(x_t.to(dtype), timesteps.to(device)[j_idx], encoder_hidden_states=ehs, return_dict=False,
                       **extra)[0]
            err = (out.float() - target).pow(2).flatten(1).mean(1).cpu()  # [b]
            for (n, k, j), v in zip(chunk, err.tolist()):
                errors[n][k, j] = v
    return errors


@torch.no_grad()
def candidate_grounding(pipe: Any, candidates: Sequence[Sequence[SceneGraph]], num_layouts: int = 8,
                        grounding_scale: float = 1.0, layout_seed: int = 0) -> Grounding:
    """Boxes for every candidate graph of every image, from the pipeline's ``layout_model``, as UNet inputs.

    The first candidate of an image (its own graph) gets ``num_layouts`` layouts drawn with a generator seeded with
    ``layout_seed``. A candidate that reverses one relation ``A r B`` of it gets the *same* layouts with the boxes
    of ``A`` and ``B`` exchanged (paired layouts: the two candidates then differ only in which object stands where,
    not in how well a random layout happens to fit the image — measured on sd-shapes, this pairing is what makes the
    verdicts informative); any other candidate gets its own layouts from the same seed. Boxes already on a
    candidate are resampled (a candidate is judged by the layout its relations imply).

    Args:
        pipe: a grounded graph pipeline (``layout_model``, and a ``layout_adapter`` and/or GLIGEN layers).
        candidates: per image ``n``, its ``K_n`` candidate graphs, its own graph first.
        num_layouts: ``M`` layouts per candidate.
        grounding_scale: multiplies the layout adapter's residuals.
        layout_seed: seed of the layout noise.

    Returns:
        a :class:`Grounding` with rows ``k * M + m``.
    """
    from ..conditioning.grounding import is_grounded

    model = pipe.layout_model

    def sample(graphs: list[SceneGraph]) -> list[list[SceneGraph]]:  # one batched call, each from the same seed
        if not graphs:
            return []
        gens = [torch.Generator().manual_seed(layout_seed) for _ in graphs]
        return model.sample(graphs, num_samples=num_layouts, generator=gens, resample=True)

    owns = sample([cands[0] for cands in candidates])
    pairs = [[_reversed_pair(cands[0], c) for c in cands[1:]] for cands in candidates]
    others = iter(sample([c for cands, ps in zip(candidates, pairs) for c, p in zip(cands[1:], ps) if p is None]))
    laid: list[list[SceneGraph]] = []
    for cands, own, ps in zip(candidates, owns, pairs):
        rows = list(own)
        for c, pair in zip(cands[1:], ps):
            rows.extend([_exchange_boxes(g, c, *pair) for g in own] if pair is not None else next(others))
        laid.append(rows)
    residuals = None
    if getattr(pipe, "layout_adapter", None) is not None:
        residuals = [[grounding_scale * r for r in pipe.layout_residuals(rows)] for rows in laid]
    gligen = [pipe.grounding_kwargs(rows, 1, False) for rows in laid] if is_grounded(pipe.unet) else None
    return Grounding(num_layouts=num_layouts, residuals=residuals, gligen=gligen)


def _reversed_pair(graph: SceneGraph, candidate: SceneGraph) -> tuple[int, int] | None:
    """``(A, B)`` when ``candidate`` is ``graph`` with exactly one relation ``A r B`` turned into ``B r A`` (same
    objects), else ``None``."""
    if len(graph.objects) != len(candidate.objects) or len(graph.relations) != len(candidate.relations):
        return None
    diff = [(r, c) for r, c in zip(graph.relations, candidate.relations)
            if (r.subject, r.predicate, r.object) != (c.subject, c.predicate, c.object)]
    if len(diff) != 1:
        return None
    r, c = diff[0]
    return (r.subject, r.object) if (c.subject, c.predicate, c.object) == (r.object, r.predicate, r.subject) else None


def _exchange_boxes(laid_out: SceneGraph, candidate: SceneGraph, a: int, b: int) -> SceneGraph:
    """``candidate`` with the boxes of ``laid_out`` (one per object), those of objects ``a`` and ``b`` exchanged."""
    boxes = [o.box for o in laid_out.objects]
    boxes[a], boxes[b] = boxes[b], boxes[a]
    return dataclasses.replace(candidate, objects=tuple(dataclasses.replace(o, box=box)
                                                        for o, box in zip(candidate.objects, boxes)))


@torch.no_grad()
def relation_scores(pipe: Any, images: Any, graphs: Sequence[SceneGraph], num_samples: int = DEFAULT_NUM_SAMPLES,
                    generator: torch.Generator | None = None, graph_scale: float = 0.0,
                    predicates: Sequence[str] = (), describe: bool = True,
                    batch_size: int = 64, grounding: bool | None = None, grounding_scale: float = 1.0,
                    num_layouts: int = 8, layout_seed: int = 0) -> list[list[RelationVerdict]]:
    """Diffusion-Classifier verdicts on every relation of every graph, for its image.

    Args:
        pipe: a Stable Diffusion pipeline (``vae``, ``unet``, ``scheduler``, ``encode_prompt``), or a graph pipeline.
        images: ``N`` images (see :func:`images_to_latents`): ``[N, 3, H, W]`` in [0, 1] or ``[H, W, 3]`` arrays.
        graphs: ``N`` graphs, image ``i`` judged against graph ``i``.
        num_samples: ``T``, the shared (timestep, noise) pairs per candidate (stratified over the training range).
        generator: CPU generator of the noises (default: seeded with 0, so scores are reproducible).
        graph_scale: graph-conditioning strength for a pipeline with a trained adapter (0: text only).
        predicates: extra competitor predicates for every relation (e.g. all of the world's), besides the reversal.
        describe: describe the graph itself in words too (default), so that it and its candidates differ only in
            the relation; ``False`` uses its ``text`` when it has one. (Measured on an sd-shapes checkpoint: a
            caption against described candidates biases every verdict the same way, whatever the image.)
        batch_size: UNet rows per forward pass.
        grounding: score every candidate grounded in its own layout (:func:`candidate_grounding`). ``None``
            (default): when the pipeline is grounded (``is_grounded``) and has a ``layout_model``. ``True`` without
            both is an error.
        grounding_scale: strength of the layout adapter's residuals (the model's ``grounding_scale``).
        num_layouts: ``M`` layouts per candidate; sample ``j`` is grounded in layout ``j mod M`` (no extra cost).
        layout_seed: seed of the layout noise (the same for every candidate).

    Returns:
        per graph, one :class:`RelationVerdict` per relation, in order (empty for a graph without relations).
        Cost: ``T * (1 + R * (1 + len(predicates)))`` UNet rows for a graph of ``R`` relations.
    """
    graphs = list(graphs)
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples must be an integer >= 1, got {num_samples!r}")
    grounded = bool(getattr(pipe, "is_grounded", False)) and getattr(pipe, "layout_model", None) is not None
    if grounding and not grounded:
        raise ValueError("grounding=True needs a grounded graph pipeline (a layout adapter or GLIGEN layers) with a "
                         "layout_model")
    grounding = grounded if grounding is None else grounding
    if isinstance(num_layouts, bool) or not isinstance(num_layouts, int) or num_layouts < 1:
        raise ValueError(f"num_layouts must be an integer >= 1, got {num_layouts!r}")
    if not grounding_scale >= 0.0:
        raise ValueError(f"grounding_scale must be >= 0, got {grounding_scale!r}")
    batch = _as_batch(images)
    if batch.size(0) != len(graphs):
        raise ValueError(f"{batch.size(0)} images but {len(graphs)} graphs")
    todo = [i for i, g in enumerate(graphs) if g.relations]
    results: list[list[RelationVerdict]] = [[] for _ in graphs]
    if not todo:
        return results
    latents = images_to_latents(pipe, batch[todo])  # [N', C, h, w]
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    timesteps, noise = _timesteps_and_noise(pipe, num_samples, latents.shape[1:], generator)
    candidates, spans = [], []
    for i in todo:
        g = graphs[i]
        own = [_bare(g) if describe else g]
        span = []
        for k in range(len(g.relations)):
            c = relation_candidates(g, k, predicates)
            span.append((len(own), len(own) + len(c)))
            own.extend(c)
        candidates.append(own)
        spans.append(span)
    flat = [c for cs in candidates for c in cs]
    embeds_flat = graph_prompt_embeds(pipe, flat, graph_scale, texts=[graph_text(c) for c in flat])
    embeds, at = [], 0
    for cs in candidates:
        embeds.append(embeds_flat[at:at + len(cs)])
        at += len(cs)
    boxes = (candidate_grounding(pipe, candidates, num_layouts, grounding_scale, layout_seed) if grounding
             else None)
    errors = denoising_errors(pipe, latents, embeds, timesteps, noise, batch_size=batch_size, grounding=boxes)
    for i, err, span in zip(todo, errors, spans):
        mean = err.mean(1)  # [K]
        e_g = float(mean[0])
        for rel, (lo, hi) in zip(graphs[i].relations, span):
            e_c = float(mean[lo:hi].min())
            margin = (e_c - e_g) / max(e_g, 1e-12)
            results[i].append(RelationVerdict(rel.subject, rel.predicate, rel.object, margin > 0, margin))
    return results
