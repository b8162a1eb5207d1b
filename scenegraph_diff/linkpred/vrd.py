"""VRD predicate prediction as typed link prediction (Lu et al. 2016, "predicate detection").

Each image is a small graph: one node per distinct annotated object (class id + box). For every
annotated (subject, object) pair the model predicts which of the 70 predicates links them (the
relation *type* of a directed link), using the other objects of the image as context.

Evaluation protocol (our exact definition, following Lu et al.'s predicate-detection setting with
ground-truth boxes and classes):

* Per test image, the candidate pairs are the distinct annotated (subject, object) node pairs.
* ``k = 1``: each pair contributes one triplet, its top predicate, scored by its probability.
  ``k = 70``: each pair contributes all 70 predicates, each scored by its probability.
* The image's candidate triplets are sorted by score and the top ``n = 50`` kept.
* A ground-truth relationship (subject node, predicate, object node) is recalled when the same
  triplet is among the kept ones. Duplicate ground-truth triplets (identical boxes, classes and
  predicate, 160 in the test set) are counted once: the GT of an image is a set of triplets.
* Recall@50 = (recalled GT triplets summed over images) / (GT triplets summed over images), in
  percent; images without relationships contribute nothing.

The **frequency baseline** scores predicate ``p`` for a pair of classes ``(c_s, c_o)`` by
``P(p | c_s, c_o)`` counted on the training set (a tiny add-``alpha`` smoothing towards ``P(p)`` breaks
ties for unseen class pairs).

The **model** (:class:`VRDPredicateModel`): object nodes get a class embedding and box features; one
or more rounds of attention message passing over the image's complete object graph (edge features =
pair geometry) give context; a pair MLP over ``[h_s, h_o, h_s ⊙ h_o, geometry(s, o)]`` yields 70
logits, to which the log frequency prior is added with a learned scale.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "VRDImage",
    "VRDBatch",
    "load_vrd",
    "collate_vrd",
    "pair_geometry",
    "FrequencyBaseline",
    "FrequencyModel",
    "VRDEnsemble",
    "ensemble_log_probs",
    "VRDPredicateModel",
    "recall_at_n",
    "flip_batch",
    "FLIP_PREDICATES",
]

logger = logging.getLogger(__name__)

NUM_CLASSES = 100
NUM_PREDICATES = 70
GEOM_DIM = 20


@dataclass(frozen=True)
class VRDImage:
    """One annotated image.

    Attributes:
        name: the image file name.
        classes: ``[n]`` object class ids.
        boxes: ``[n, 4]`` pixel boxes ``(x0, y0, x1, y1)``.
        triplets: ``[R, 3]`` distinct ground-truth ``(subject node, object node, predicate)``.
    """

    name: str
    classes: Tensor
    boxes: Tensor
    triplets: Tensor

    @property
    def pairs(self) -> Tensor:
        """Distinct annotated ``(subject, object)`` node pairs ``[P, 2]``, sorted."""
        if self.triplets.numel() == 0:
            return torch.empty(0, 2, dtype=torch.long)
        return torch.unique(self.triplets[:, :2], dim=0)


def _parse_split(path: Path) -> list[VRDImage]:
    """One split through the VRD reader of :mod:`scenegraph_diff.data.vrd`: per image (sorted by file
    name, images without relationships kept) its distinct objects and distinct triplets, a self
    relationship as the self pair ``(i, i, p)``."""
    from ..data.vrd import read_vrd_split

    images = []
    for a in read_vrd_split(path, NUM_CLASSES, NUM_PREDICATES):
        keys = a.distinct_objects()
        classes = torch.tensor([k[0] for k in keys], dtype=torch.long)  # [n]
        boxes = torch.tensor([k[1:] for k in keys], dtype=torch.float).reshape(-1, 4)  # [n, 4] pixels
        t = torch.tensor(sorted(a.triplets()), dtype=torch.long).reshape(-1, 3)  # [R, 3]
        images.append(VRDImage(a.name, classes, boxes, t))
    return images


def load_vrd(data_root: str | Path, split: str) -> list[VRDImage]:
    """Read ``<data_root>/vrd/annotations_{split}.json`` (``split`` in ``train``/``test``).

    Raises:
        ValueError: an unknown split, or a malformed image (a class id outside ``[0, 100)``, a predicate
            id outside ``[0, 70)``, an empty box: the message names the image, field and value).
        FileNotFoundError: the annotations file is missing.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    path = Path(data_root) / "vrd" / f"annotations_{split}.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found (pass --data-root)")
    return _parse_split(path)


def pair_geometry(bs: Tensor, bo: Tensor, extent: Tensor) -> Tensor:
    """Scale-free geometry of subject boxes ``bs [P, 4]`` w.r.t. object boxes ``bo [P, 4]``.

    ``extent [P, 2]`` is the image's (width, height) estimate (the max box corner). Returns
    ``[P, GEOM_DIM]``: relative offsets of centres and corners in subject units, log size ratios,
    IoU, intersection over each area, both boxes normalised by the extent, and the union box.
    """
    ws, hs = (bs[:, 2] - bs[:, 0]).clamp_min(1), (bs[:, 3] - bs[:, 1]).clamp_min(1)
    wo, ho = (bo[:, 2] - bo[:, 0]).clamp_min(1), (bo[:, 3] - bo[:, 1]).clamp_min(1)
    cxs, cys = (bs[:, 0] + bs[:, 2]) / 2, (bs[:, 1] + bs[:, 3]) / 2
    cxo, cyo = (bo[:, 0] + bo[:, 2]) / 2, (bo[:, 1] + bo[:, 3]) / 2
    iw = (torch.minimum(bs[:, 2], bo[:, 2]) - torch.maximum(bs[:, 0], bo[:, 0])).clamp_min(0)
    ih = (torch.minimum(bs[:, 3], bo[:, 3]) - torch.maximum(bs[:, 1], bo[:, 1])).clamp_min(0)
    inter = iw * ih
    a_s, a_o = ws * hs, wo * ho
    iou = inter / (a_s + a_o - inter)
    W, H = extent[:, 0], extent[:, 1]
    feats = [
        (cxo - cxs) / ws, (cyo - cys) / hs,
        (bo[:, 0] - bs[:, 0]) / ws, (bo[:, 1] - bs[:, 1]) / hs,
        (bo[:, 2] - bs[:, 2]) / ws, (bo[:, 3] - bs[:, 3]) / hs,
        torch.log(wo / ws), torch.log(ho / hs),
        iou, inter / a_s, inter / a_o,
        bs[:, 0] / W, bs[:, 1] / H, bs[:, 2] / W, bs[:, 3] / H,
        bo[:, 0] / W, bo[:, 1] / H, bo[:, 2] / W, bo[:, 3] / H,
        torch.log(a_s / a_o),
    ]
    out = torch.stack(feats, dim=-1)
    return out.clamp(-10, 10)


@dataclass(frozen=True)
class VRDBatch:
    """Many images as one disconnected graph.

    Attributes:
        classes: ``[N]``; boxes: ``[N, 4]``; extent: ``[N, 2]`` per-node image extent.
        node_image: ``[N]`` image index of each node.
        pairs: ``[P, 2]`` global node ids of the query pairs; pair_image: ``[P]``.
        labels: ``[T, 2]`` (pair index, predicate) of every ground-truth triplet.
        context: ``[2, C]`` directed edges of each image's complete object graph (no self-loops).
    """

    classes: Tensor
    boxes: Tensor
    extent: Tensor
    node_image: Tensor
    pairs: Tensor
    pair_image: Tensor
    labels: Tensor
    context: Tensor
    num_images: int

    def to(self, device: torch.device | str) -> "VRDBatch":
        """The batch with every tensor on ``device``."""
        return dataclasses.replace(self, **{f.name: getattr(self, f.name).to(device)
                                            for f in dataclasses.fields(self) if f.name != "num_images"})


def collate_vrd(images: Sequence[VRDImage]) -> VRDBatch:
    """Batch images (node ids are offset per image). Images without relationships are kept."""
    cls, box, ext, nimg, pairs, pimg, labels, ctx = [], [], [], [], [], [], [], []
    off = poff = 0
    for i, im in enumerate(images):
        n = im.classes.numel()
        cls.append(im.classes)
        box.append(im.boxes)
        e = im.boxes[:, 2:].max(0).values if n else torch.ones(2)
        ext.append(e.expand(n, 2))
        nimg.append(torch.full((n,), i, dtype=torch.long))
        pr = im.pairs
        pairs.append(pr + off)
        pimg.append(torch.full((pr.size(0),), i, dtype=torch.long))
        if im.triplets.numel():
            # pair index of each triplet: pairs are sorted, so search the key.
            keys = pr[:, 0] * n + pr[:, 1]
            pid = torch.searchsorted(keys, im.triplets[:, 0] * n + im.triplets[:, 1])
            labels.append(torch.stack([pid + poff, im.triplets[:, 2]], 1))
        ar = torch.arange(n)
        s, d = torch.meshgrid(ar, ar, indexing="ij")
        m = s != d
        ctx.append(torch.stack([s[m], d[m]]) + off)
        off += n
        poff += pr.size(0)
    cat = lambda xs, shape: torch.cat(xs) if xs else torch.empty(shape, dtype=torch.long)  # noqa: E731
    return VRDBatch(
        classes=cat(cls, (0,)),
        boxes=torch.cat(box) if box else torch.empty(0, 4),
        extent=torch.cat(ext) if ext else torch.empty(0, 2),
        node_image=cat(nimg, (0,)),
        pairs=cat(pairs, (0, 2)),
        pair_image=cat(pimg, (0,)),
        labels=cat(labels, (0, 2)),
        context=torch.cat(ctx, 1) if ctx else torch.empty(2, 0, dtype=torch.long),
        num_images=len(images),
    )


# Predicate ids swapped by a horizontal flip: "on the left of" (32) <-> "on the right of" (33).
FLIP_PREDICATES = torch.arange(NUM_PREDICATES)
FLIP_PREDICATES[[32, 33]] = torch.tensor([33, 32])


def flip_batch(b: VRDBatch) -> VRDBatch:
    """The batch mirrored left-right: ``x -> W - x`` (``W`` = the image extent), with the labels'
    left/right predicates swapped (:data:`FLIP_PREDICATES`). Classes, pairs and context are unchanged."""
    W = b.extent[:, :1]
    boxes = torch.cat([W - b.boxes[:, 2:3], b.boxes[:, 1:2], W - b.boxes[:, 0:1], b.boxes[:, 3:4]], 1)
    flip = FLIP_PREDICATES.to(b.labels.device)
    labels = torch.stack([b.labels[:, 0], flip[b.labels[:, 1]]], 1) if b.labels.numel() else b.labels
    return dataclasses.replace(b, boxes=boxes, labels=labels)


class FrequencyBaseline:
    """``P(predicate | subject class, object class)`` counted on training triplets.

    Args:
        images: training images.
        alpha: add-``alpha`` smoothing mass spread as ``alpha · P(p)`` (ties in unseen class pairs
            are then broken by the global predicate prior).
    """

    def __init__(self, images: Sequence[VRDImage], alpha: float = 1e-3) -> None:
        counts = torch.zeros(NUM_CLASSES, NUM_CLASSES, NUM_PREDICATES, dtype=torch.float64)
        for im in images:
            if im.triplets.numel():
                t = im.triplets
                counts.index_put_((im.classes[t[:, 0]], im.classes[t[:, 1]], t[:, 2]), torch.ones(t.size(0), dtype=torch.float64), accumulate=True)
        prior = counts.sum((0, 1))
        prior = prior / prior.sum()
        self.counts = counts
        self.probs = ((counts + alpha * prior) / (counts.sum(-1, keepdim=True) + alpha)).float()  # [C, C, R]

    def log_probs(self, cs: Tensor, co: Tensor) -> Tensor:
        """``[P]`` class ids -> ``[P, 70]`` log-probabilities."""
        return torch.log(self.probs[cs, co])

    def __call__(self, batch: VRDBatch) -> Tensor:
        return self.log_probs(batch.classes[batch.pairs[:, 0]], batch.classes[batch.pairs[:, 1]])


class VRDPredicateModel(nn.Module):
    """Context GNN + typed link decoder over object nodes (see the module docstring).

    Args:
        hidden: D.
        num_layers: context message-passing rounds (``TransformerConv`` with geometry edge features).
        dropout: dropout in the MLPs.
        log_prior: ``[C, C, 70]`` log frequency prior added to the logits (with a learned scale), or None.

    Shapes:
        batch (``VRDBatch``) -> logits ``[P, 70]``.
    """

    def __init__(self, hidden: int = 128, num_layers: int = 1, heads: int = 4, dropout: float = 0.1, log_prior: Tensor | None = None) -> None:
        super().__init__()
        from torch_geometric.nn import TransformerConv

        self.hidden = hidden
        self.cls = nn.Embedding(NUM_CLASSES, hidden)
        self.node_in = nn.Sequential(nn.Linear(hidden + 5, hidden), nn.ReLU(), nn.Linear(hidden, hidden))
        self.geom = nn.Sequential(nn.Linear(GEOM_DIM, hidden), nn.ReLU(), nn.Linear(hidden, hidden))
        self.convs = nn.ModuleList(
            TransformerConv(hidden, hidden // heads, heads=heads, edge_dim=hidden, dropout=dropout) for _ in range(num_layers)
        )
        self.norms = nn.ModuleList(nn.LayerNorm(hidden) for _ in range(num_layers))
        self.pair = nn.Sequential(
            nn.Linear(4 * hidden, 2 * hidden), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(2 * hidden, hidden), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(hidden, NUM_PREDICATES),
        )
        self.register_buffer("log_prior", log_prior if log_prior is not None else torch.zeros(0), persistent=False)
        self.prior_scale = nn.Parameter(torch.tensor(1.0))

    def node_features(self, b: VRDBatch) -> Tensor:
        W, H = b.extent[:, 0], b.extent[:, 1]
        bx = b.boxes
        area = ((bx[:, 2] - bx[:, 0]) * (bx[:, 3] - bx[:, 1])) / (W * H)
        g = torch.stack([bx[:, 0] / W, bx[:, 1] / H, bx[:, 2] / W, bx[:, 3] / H, torch.sqrt(area.clamp_min(0))], -1)
        return self.node_in(torch.cat([self.cls(b.classes), g], -1))  # [N, D]

    def forward(self, b: VRDBatch) -> Tensor:
        h = self.node_features(b)
        if len(self.convs):
            s, d = b.context
            eg = self.geom(pair_geometry(b.boxes[s], b.boxes[d], b.extent[s]))  # [C, D]
            for conv, norm in zip(self.convs, self.norms):
                h = norm(h + F.relu(conv(h, b.context, eg)))
        s, o = b.pairs[:, 0], b.pairs[:, 1]
        pg = self.geom(pair_geometry(b.boxes[s], b.boxes[o], b.extent[s]))  # [P, D]
        logits = self.pair(torch.cat([h[s], h[o], h[s] * h[o], pg], -1))  # [P, 70]
        if self.log_prior.numel():
            logits = logits + self.prior_scale * self.log_prior[b.classes[s], b.classes[o]]
        return logits


def recall_at_n(scores: Tensor, batch: VRDBatch, n: int = 50, k: int = 1) -> tuple[float, int, int]:
    """Predicate-detection Recall@n with ``k`` predicates per pair (see the module docstring).

    Args:
        scores: ``[P, 70]`` per-pair probabilities or log-probabilities (comparable across pairs:
            not raw logits).
        batch: the batch the scores were computed for.
        n: triplets kept per image.
        k: predicates per pair.

    Returns:
        ``(recall in percent, hits, ground-truth count)``.
    """
    if not 1 <= k <= NUM_PREDICATES:
        raise ValueError(f"k must be in [1, {NUM_PREDICATES}], got {k}")
    topv, topi = scores.topk(k, dim=1)  # [P, k]
    P = scores.size(0)
    cand_pair = torch.arange(P, device=scores.device).repeat_interleave(k)
    cand_pred = topi.reshape(-1)
    cand_score = topv.reshape(-1)
    cand_img = batch.pair_image[cand_pair]
    # Rank candidates within their image: sort by (image, -score) and keep the first n of each image.
    order = torch.argsort(cand_score, descending=True, stable=True)
    order = order[torch.argsort(cand_img[order], stable=True)]
    img_sorted = cand_img[order]
    counts = torch.bincount(img_sorted, minlength=batch.num_images)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(order.numel(), device=order.device) - starts[img_sorted]
    kept = order[rank < n]
    kept_keys = torch.sort(cand_pair[kept] * NUM_PREDICATES + cand_pred[kept]).values
    gt = batch.labels[:, 0] * NUM_PREDICATES + batch.labels[:, 1]
    hits = int(torch.isin(gt, kept_keys).sum())
    total = int(gt.numel())
    return (100.0 * hits / max(total, 1), hits, total)




class VRDEnsemble(nn.Module):
    """``E`` independently initialised :class:`VRDPredicateModel` s trained side by side.

    ``forward`` returns the members' logits ``[E, P, 70]``; each member gets its own cross-entropy,
    and predictions average the members' log-probabilities (:func:`ensemble_log_probs`).
    """

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        if not members:
            raise ValueError("VRDEnsemble needs at least one member")
        self.members = nn.ModuleList(members)

    def forward(self, b: VRDBatch) -> Tensor:
        return torch.stack([m(b) for m in self.members])


def ensemble_log_probs(out: Tensor) -> Tensor:
    """``[P, 70]`` logits or ``[E, P, 70]`` member logits -> ``[P, 70]`` (mean) log-probabilities."""
    logp = F.log_softmax(out, dim=-1)
    return logp.mean(0) if logp.dim() == 3 else logp


class FrequencyModel(nn.Module):
    """The frequency baseline as a module: ``batch -> log P(p | c_s, c_o)`` ``[P, 70]`` (no parameters)."""

    def __init__(self, baseline: FrequencyBaseline) -> None:
        super().__init__()
        self.baseline = baseline
        self.register_buffer("log_probs", torch.log(baseline.probs), persistent=False)  # [C, C, 70]; follows .to()

    def forward(self, b: VRDBatch) -> Tensor:
        return self.log_probs[b.classes[b.pairs[:, 0]], b.classes[b.pairs[:, 1]]]
