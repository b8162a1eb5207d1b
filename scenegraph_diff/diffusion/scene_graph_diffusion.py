"""Typed scene-graph diffusion: object classes as node types, predicates as edge channels.

State: node classes ``c [B, N]`` (``C`` classes) and directed edge states ``e [B, N, N]`` with
``0 = no edge`` and ``1..P`` the predicates; objects may carry boxes (conditioning only, never noised).
The forward process is **absorbing-state** discrete diffusion (D3PM-absorbing / MaskGIT): at time
``t ∈ (0, 1]`` every entry is independently replaced by a ``MASK`` token with probability ``t``. The
network predicts the clean category of every masked entry; the reverse process unmasks a scheduled
number of entries per step. This one model gives three uses:

* **unconditional sampling** — everything masked at ``t = 1`` (``num_objects`` drawn from the data);
* **completion** — known objects and relations are never masked (they are *fixed* entries); only the
  missing relations are sampled, optionally restricted to predicate channels (``require_edge``) when
  the pairs are known to be related (VRD predicate prediction);
* **refinement (SDEdit)** — re-mask a fraction ``strength`` of a parsed graph's entries and denoise.

Network: :class:`SceneGraphDenoiser`, a graph transformer over the complete directed object graph
whose attention is biased by edge features (edge state + box geometry); edges are updated from
their endpoints every layer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import Tensor, nn

from ..devices import multinomial, rand
from ..weights import AlignedLoadingMixin
from .ppgn import timestep_embedding

__all__ = ["SceneGraphDenoiser", "TypedGraphBatch", "TypedDiffusion", "pair_geometry", "GEOM_DIM"]

GEOM_DIM = 12


def pair_geometry(boxes: Tensor, has_box: Tensor) -> Tensor:
    """Directed pair geometry ``[B, N, N, 12]`` from boxes ``[B, N, 4]`` (x0, y0, x1, y1; any unit).

    Offsets of centres in subject-size units, log size ratios, IoU, intersection over each area,
    containment flags and a validity flag; zero where either box is missing.
    """
    x0, y0, x1, y1 = boxes.unbind(-1)
    w, h = (x1 - x0).clamp(min=1e-6), (y1 - y0).clamp(min=1e-6)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    dx = (cx[:, None, :] - cx[:, :, None]) / w[:, :, None]  # object j relative to subject i
    dy = (cy[:, None, :] - cy[:, :, None]) / h[:, :, None]
    lw = torch.log(w[:, None, :] / w[:, :, None])
    lh = torch.log(h[:, None, :] / h[:, :, None])
    iw = (torch.minimum(x1[:, :, None], x1[:, None, :]) - torch.maximum(x0[:, :, None], x0[:, None, :])).clamp(min=0)
    ih = (torch.minimum(y1[:, :, None], y1[:, None, :]) - torch.maximum(y0[:, :, None], y0[:, None, :])).clamp(min=0)
    inter = iw * ih
    a = w * h
    union = a[:, :, None] + a[:, None, :] - inter
    ios, ioo = inter / a[:, :, None], inter / a[:, None, :]
    feats = torch.stack([dx, dy, lw, lh, inter / union, ios, ioo, (ios > 0.99).float(), (ioo > 0.99).float(),
                         torch.sign(dx), torch.sign(dy)], -1).clamp(-10, 10)
    valid = (has_box[:, :, None] & has_box[:, None, :]).to(feats.dtype)[..., None]
    return torch.cat([feats * valid, valid], -1)


@dataclass
class TypedGraphBatch:
    """Padded typed graphs.

    Attributes:
        classes: ``[B, N]`` long object class ids.
        edges: ``[B, N, N]`` long edge states (0 = none, ``1..P``); ignored where ``edge_target`` is given.
        node_mask: ``[B, N]`` bool.
        boxes: ``[B, N, 4]`` float; has_box ``[B, N]`` bool.
        edge_target: optional ``[B, N, N, P + 1]`` soft targets (several predicates for one pair).
    """

    classes: Tensor
    edges: Tensor
    node_mask: Tensor
    boxes: Tensor
    has_box: Tensor
    edge_target: Tensor | None = None

    def to(self, device: Any) -> "TypedGraphBatch":
        return TypedGraphBatch(*(v.to(device) if isinstance(v, Tensor) else v for v in
                                 (self.classes, self.edges, self.node_mask, self.boxes, self.has_box, self.edge_target)))


class _Layer(nn.Module):
    def __init__(self, d: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(d, 3 * d)
        self.e_bias = nn.Linear(d, heads)
        self.e_val = nn.Linear(d, d)
        self.o = nn.Linear(d, d)
        self.n1, self.n2, self.n3 = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.ff = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))
        self.edge_mlp = nn.Sequential(nn.Linear(3 * d, d), nn.GELU(), nn.Linear(d, d))
        self.drop = nn.Dropout(dropout)

    def forward(self, h: Tensor, e: Tensor, node_mask: Tensor) -> tuple[Tensor, Tensor]:
        B, N, D = h.shape
        H = self.heads
        q, k, v = self.qkv(self.n1(h)).reshape(B, N, 3, H, D // H).unbind(2)  # [B, N, H, d]
        att = torch.einsum("bihd,bjhd->bhij", q, k) / math.sqrt(D // H) + self.e_bias(e).permute(0, 3, 1, 2)
        att = att.masked_fill(~node_mask[:, None, None, :], -1e9).softmax(-1)  # [B, H, N, N]
        msg = torch.einsum("bhij,bjhd->bihd", att, v).reshape(B, N, D)
        msg = msg + torch.einsum("bhij,bijd->bid", att, self.e_val(e)) / H
        h = h + self.drop(self.o(msg))
        h = h + self.drop(self.ff(self.n2(h)))
        hn = self.n3(h)
        e = e + self.drop(self.edge_mlp(torch.cat([e, hn[:, :, None].expand(B, N, N, D), hn[:, None].expand(B, N, N, D)], -1)))
        m = node_mask.to(h.dtype)
        return h * m[..., None], e * (m[:, :, None] * m[:, None, :])[..., None]


class SceneGraphDenoiser(AlignedLoadingMixin, ModelMixin, ConfigMixin):
    """Predicts clean node classes and edge states from a partially masked typed graph.

    Args:
        num_classes: object classes ``C`` (a ``MASK`` id ``C`` is added).
        num_predicates: predicates ``P`` (edge states ``0..P``; ``MASK`` = ``P + 1``).
        hidden: width ``d`` (default 128); num_layers (default 3); heads (default 4); dropout (default 0.1).

    Shapes:
        classes ``[B, N]``, edges ``[B, N, N]``, node_mask ``[B, N]``, boxes ``[B, N, 4]``, has_box ``[B, N]``,
        t ``[B]`` → node logits ``[B, N, C]``, edge logits ``[B, N, N, P + 1]``.
    """

    @register_to_config
    def __init__(self, num_classes: int, num_predicates: int, hidden: int = 128, num_layers: int = 3, heads: int = 4,
                 dropout: float = 0.1) -> None:
        super().__init__()
        if hidden % heads:
            raise ValueError(f"hidden={hidden} must be divisible by heads={heads}")
        self.node_emb = nn.Embedding(num_classes + 1, hidden)
        self.edge_emb = nn.Embedding(num_predicates + 2, hidden)
        self.box = nn.Sequential(nn.Linear(5, hidden), nn.GELU(), nn.Linear(hidden, hidden))
        self.geom = nn.Sequential(nn.Linear(GEOM_DIM, hidden), nn.GELU(), nn.Linear(hidden, hidden))
        self.time = nn.Sequential(nn.Linear(64, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.layers = nn.ModuleList([_Layer(hidden, heads, dropout) for _ in range(num_layers)])
        self.node_out = nn.Linear(hidden, num_classes)
        self.edge_out = nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, num_predicates + 1))

    @property
    def node_mask_id(self) -> int:
        return self.config.num_classes

    @property
    def edge_mask_id(self) -> int:
        return self.config.num_predicates + 1

    def forward(self, classes: Tensor, edges: Tensor, node_mask: Tensor, boxes: Tensor, has_box: Tensor,
                t: Tensor) -> tuple[Tensor, Tensor]:
        B, N = classes.shape
        ext = (boxes * has_box[..., None]).amax(dim=(1, 2)).clamp(min=1e-6)  # image extent estimate
        nb = torch.cat([boxes / ext[:, None, None], has_box[..., None].float()], -1) * has_box[..., None]
        h = self.node_emb(classes) + self.box(nb) + self.time(timestep_embedding(t, 64))[:, None]
        e = self.edge_emb(edges) + self.geom(pair_geometry(boxes, has_box))
        m = node_mask.to(h.dtype)
        h, e = h * m[..., None], e * (m[:, :, None] * m[:, None, :])[..., None]
        for layer in self.layers:
            h, e = layer(h, e, node_mask)
        return self.node_out(h), self.edge_out(e)


def _pair_valid(node_mask: Tensor) -> Tensor:
    N = node_mask.shape[1]
    eye = torch.eye(N, dtype=torch.bool, device=node_mask.device)
    return node_mask[:, :, None] & node_mask[:, None, :] & ~eye


class TypedDiffusion:
    """Absorbing-state diffusion over a :class:`SceneGraphDenoiser` (loss, sampling, completion, refinement).

    Args:
        model: the denoiser.
        banned_classes: object class ids never sampled (e.g. ``(0,)``: the vocabulary's ``<unk>``).
        banned_edge_states: edge states never sampled (e.g. ``(1,)``: predicate ``<unk>``; 0 = no edge).
    """

    def __init__(self, model: SceneGraphDenoiser, banned_classes: Sequence[int] = (),
                 banned_edge_states: Sequence[int] = ()) -> None:
        self.model = model
        self.banned_classes = tuple(banned_classes)
        self.banned_edge_states = tuple(banned_edge_states)

    # ---------------------------------------------------------------- training
    def loss(self, batch: TypedGraphBatch, generator: torch.Generator | None = None, node_weight: float = 0.2,
             mask_nodes: bool = True) -> dict[str, Tensor]:
        """Cross-entropy on masked entries; ``t ~ U(0, 1]`` per graph; each entry masked with prob ``t``."""
        m = self.model
        B, N = batch.classes.shape
        dev = batch.classes.device  # draws happen on the generator's device, then move here
        t = rand((B,), generator, dev).clamp(min=1e-3)
        pv = _pair_valid(batch.node_mask)
        em = (rand((B, N, N), generator, dev) < t[:, None, None]) & pv
        nm = (rand((B, N), generator, dev) < t[:, None]) & batch.node_mask if mask_nodes else \
            torch.zeros_like(batch.node_mask)
        target = batch.edge_target if batch.edge_target is not None else \
            F.one_hot(batch.edges, m.config.num_predicates + 1).float()
        edges_in = torch.where(em, torch.full_like(batch.edges, m.edge_mask_id), target.argmax(-1))
        cls_in = torch.where(nm, torch.full_like(batch.classes, m.node_mask_id), batch.classes)
        node_logits, edge_logits = m(cls_in, edges_in, batch.node_mask, batch.boxes, batch.has_box, t)
        edge_loss = -(target[em] * F.log_softmax(edge_logits[em], -1)).sum(-1).mean() if em.any() else edge_logits.sum() * 0
        node_loss = F.cross_entropy(node_logits[nm], batch.classes[nm]) if nm.any() else node_logits.sum() * 0
        return {"loss": edge_loss + node_weight * node_loss, "edge_loss": edge_loss, "node_loss": node_loss}

    # ---------------------------------------------------------------- sampling
    @torch.no_grad()
    def sample(self, batch: TypedGraphBatch, known_nodes: Tensor, known_edges: Tensor, num_steps: int = 10,
               temperature: float = 1.0, require_edge: Tensor | None = None, generator: torch.Generator | None = None,
               edge_log_prior: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor, int]:
        """Unmask every unknown entry over ``num_steps`` network evaluations.

        Args:
            batch: current values (``classes``, ``edges``) for the known entries, boxes, mask.
            known_nodes: ``[B, N]`` bool, entries kept fixed; known_edges ``[B, N, N]`` bool likewise.
            temperature: 0 = greedy (most confident first, argmax); > 0 samples categories.
            require_edge: ``[B, N, N]`` bool pairs that must get a predicate (``no edge`` excluded).
            edge_log_prior: optional ``[B, N, N, P + 1]`` log-probabilities added to the edge logits at every
                step (a product of experts with an external prior, e.g. class-pair predicate frequencies).

        Returns:
            ``(classes, edges, edge_scores, nfe)``; ``edge_scores`` is the probability of each sampled edge
            state when it was unmasked (1 for known entries).
        """
        m = self.model.eval()
        B, N = batch.classes.shape
        pv = _pair_valid(batch.node_mask)
        cls = torch.where(known_nodes, batch.classes, torch.full_like(batch.classes, m.node_mask_id))
        edg = torch.where(known_edges | ~pv, batch.edges, torch.full_like(batch.edges, m.edge_mask_id))
        dev = batch.classes.device
        scores = torch.ones(B, N, N, device=dev)
        unk_n = batch.node_mask & ~known_nodes
        unk_e = pv & ~known_edges
        total = unk_n.sum(1) + unk_e.sum((1, 2))  # [B]
        for s in range(num_steps):
            t = torch.full((B,), 1.0 - s / num_steps, device=dev)
            nl, el = m(cls, edg, batch.node_mask, batch.boxes, batch.has_box, t)
            if self.banned_classes:
                nl = nl.index_fill(-1, torch.tensor(self.banned_classes, device=dev), -1e9)
            if self.banned_edge_states:
                el = el.index_fill(-1, torch.tensor(self.banned_edge_states, device=dev), -1e9)
            if edge_log_prior is not None:
                el = el + edge_log_prior
            if require_edge is not None:
                el = el.clone()
                el[..., 0] = torch.where(require_edge, torch.full_like(el[..., 0], -1e9), el[..., 0])
            # how many entries should remain masked after this step (cosine schedule)
            remain = (total.float() * math.cos(math.pi / 2 * (s + 1) / num_steps)).floor().long()
            n_prob, e_prob = F.softmax(nl, -1), F.softmax(el, -1)
            n_pick, n_conf = self._choose(n_prob, temperature, generator)
            e_pick, e_conf = self._choose(e_prob, temperature, generator)
            still_n = cls == m.node_mask_id
            still_e = edg == m.edge_mask_id
            conf = torch.cat([torch.where(still_n & batch.node_mask, n_conf, torch.full_like(n_conf, -1.0)),
                              torch.where(still_e & pv, e_conf, torch.full_like(e_conf, -1.0)).reshape(B, -1)], 1)
            if temperature > 0:  # Gumbel-perturbed confidences (MaskGIT) so sampling is not purely greedy
                g = -torch.log(-torch.log(rand(conf.shape, generator, dev).clamp(1e-9, 1 - 1e-9)))
                conf = torch.where(conf >= 0, conf.clamp(min=1e-9).log() + temperature * g, conf.new_tensor(-1e9))
            n_masked = (still_n & batch.node_mask).sum(1) + (still_e & pv).sum((1, 2))
            k = (n_masked - remain).clamp(min=0)
            if s == num_steps - 1:
                k = n_masked
            order = conf.argsort(dim=1, descending=True)
            rank = torch.empty_like(order)
            rank.scatter_(1, order, torch.arange(order.shape[1], device=dev).expand_as(order))
            take = rank < k[:, None]
            take_n, take_e = take[:, :N], take[:, N:].reshape(B, N, N)
            take_n &= still_n & batch.node_mask
            take_e &= still_e & pv
            cls = torch.where(take_n, n_pick, cls)
            edg = torch.where(take_e, e_pick, edg)
            scores = torch.where(take_e, e_conf, scores)
        return cls, edg, scores, num_steps

    @staticmethod
    def _choose(prob: Tensor, temperature: float, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        if temperature <= 0:
            conf, pick = prob.max(-1)
            return pick, conf
        p = prob.clamp(min=1e-12) ** (1.0 / temperature)
        p = p / p.sum(-1, keepdim=True)
        flat = p.reshape(-1, p.shape[-1])
        pick = multinomial(flat, 1, generator=generator).reshape(p.shape[:-1])
        return pick, prob.gather(-1, pick[..., None]).squeeze(-1)

    def refine(self, batch: TypedGraphBatch, strength: float = 0.3, num_steps: int = 5, temperature: float = 0.0,
               generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """SDEdit-style refinement: re-mask a random fraction ``strength`` of node and edge entries, then denoise."""
        if not 0.0 <= strength <= 1.0:
            raise ValueError(f"strength must be in [0, 1], got {strength}")
        B, N = batch.classes.shape
        dev = batch.classes.device
        known_n = rand((B, N), generator, dev) >= strength
        known_e = rand((B, N, N), generator, dev) >= strength
        cls, edg, _, _ = self.sample(batch, known_n, known_e, num_steps, temperature, generator=generator)
        return cls, edg
