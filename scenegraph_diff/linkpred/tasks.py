"""The three link-prediction tasks the runner knows. Each builds its model for one (row, seed) and
supplies training batches, a loss and an evaluation; :func:`scenegraph_diff.linkpred.runner.fit` does
the rest (one training loop for all of them).

A task exposes::

    task.model                       # nn.Module (wrapped in DDP by the runner when distributed)
    task.param_groups(model)         # optimizer parameter groups
    task.batches(generator)          # the epoch's batches (any objects)
    task.loss(model, batch, generator) -> Tensor
    task.evaluate(model, stage)      # stage "val" or "test" -> {metric: float}

``build`` draws parameter initialisations from the global RNG; :func:`~.runner.run_seed` calls it
inside ``torch.random.fork_rng`` seeded with the run's seed, so runs are reproducible and the
caller's RNG state is untouched.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import LinkPredConfig, ModelConfig
from .data import augment_features
from .decoders import CNDecoder, DistMultDecoder, DotDecoder, MLPDecoder, NCNDecoder
from .encoders import GCNEncoder, PureGCNEncoder, SAGEEncoder
from .metrics import evaluate_scores
from .model import FeatureCosine, LinkEnsemble, LinkModel
from .splits import LinkSplit, random_link_split, sample_negatives, to_undirected

__all__ = ["PlanetoidTask", "HeteroLinkTask", "VRDTask", "TASK_CLASSES", "bce_loss", "make_decoder"]

logger = logging.getLogger(__name__)

HOMO_ENCODERS = {"gcn": GCNEncoder, "sage": SAGEEncoder, "puregcn": PureGCNEncoder}


def bce_loss(pos: Tensor, neg: Tensor) -> Tensor:
    """``-mean log σ(pos) - mean log σ(-neg)``."""
    return -F.logsigmoid(pos).mean() - F.logsigmoid(-neg).mean()


def make_decoder(m: ModelConfig, num_relations: int = 1) -> nn.Module:
    makers = {
        "dot": lambda: DotDecoder(),
        "distmult": lambda: DistMultDecoder(m.hidden, num_relations),
        "mlp": lambda: MLPDecoder(m.hidden, 3, m.decoder_dropout, norm=m.norm),
        "cn": lambda: CNDecoder(m.hidden, m.decoder_dropout, beta=m.cn_beta, norm=True),
        "ncn": lambda: NCNDecoder(m.hidden, m.decoder_dropout, beta=m.cn_beta, norm=m.norm, xlin=m.decoder_xlin,
                                  tailact=m.decoder_tailact, twolayerlin=m.decoder_twolayer, completion=m.completion,
                                  alpha=m.cn_alpha, pt=m.cn_pt, scale=m.cn_scale, offset=m.cn_offset,
                                  train_resdeg=m.cn_train_resdeg, test_resdeg=m.cn_test_resdeg,
                                  completion_mode=m.completion_mode),
    }
    if m.decoder not in makers:
        raise ValueError(f"models[{m.name}].decoder: unknown decoder {m.decoder!r}; expected one of {sorted(makers)}")
    return makers[m.decoder]()


def _split_batches(n: int, batch_size: int, generator: torch.Generator) -> list[Tensor]:
    perm = torch.randperm(n, generator=generator)
    return list(perm.split(batch_size if batch_size > 0 else n))


def _shard(t: Tensor, rank: int, world: int, dim: int = -1) -> Tensor:
    """This rank's contiguous share of ``t`` along ``dim``."""
    return t.tensor_split(world, dim=dim)[rank] if world > 1 else t


# ----------------------------------------------------------------------------------------- planetoid
@dataclass
class PlanetoidTask:
    """Homogeneous link prediction on Cora / CiteSeer with the NCN split protocol."""

    cfg: LinkPredConfig
    m: ModelConfig
    split: LinkSplit
    x: Tensor
    model: nn.Module
    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @classmethod
    def build(cls, cfg: LinkPredConfig, m: ModelConfig, data: Any, seed: int, rank: int = 0, world: int = 1,
              device: torch.device | str = "cpu") -> "PlanetoidTask":
        g = torch.Generator().manual_seed(seed)
        split = random_link_split(data.edge_index, data.num_nodes, cfg.val_ratio, cfg.test_ratio, generator=g,
                                  val_negatives=cfg.val_negatives)
        if m.encoder not in HOMO_ENCODERS:
            raise ValueError(f"models[{m.name}].encoder: {m.encoder!r} is not a homogeneous encoder {sorted(HOMO_ENCODERS)}")
        x = augment_features(data.x, m.input_svd)
        num_features = x.size(1)

        def member() -> LinkModel:
            if m.encoder == "puregcn":
                enc: nn.Module = PureGCNEncoder(num_features, m.hidden, num_layers=m.num_layers, dropout=m.dropout,
                                                input_dropout=m.input_dropout, tail_dropout=m.tail_dropout, jk=m.jk,
                                                jk_input=m.jk_input)
            else:
                enc = HOMO_ENCODERS[m.encoder](
                    num_features, m.hidden, num_layers=m.num_layers, dropout=m.dropout,
                    input_dropout=m.input_dropout, input_linear=m.input_linear, jk=m.jk, norm=m.norm,
                )
            feat = (None if m.feature_cosine == "none"
                    else FeatureCosine(m.feature_cosine, m.feature_cosine_weight, m.feature_cosine_learn))
            return LinkModel(enc, make_decoder(m), feat)

        model: nn.Module = member() if m.ensemble == 1 else LinkEnsemble([member() for _ in range(m.ensemble)])
        device = torch.device(device)
        x = x if x.is_sparse else x.to_sparse()
        return cls(cfg, m, split, x.coalesce().to(device), model.to(device), rank, world, device)

    def __post_init__(self) -> None:
        self._exclude = self.split.train_exclude_keys()
        self._train_mp = self.split.message_passing_edges("train")

    def param_groups(self, model: nn.Module) -> list[dict]:
        core = model.module if hasattr(model, "module") else model
        return [
            {"params": core.encoder_parameters(), "lr": self.m.lr},
            {"params": core.decoder_parameters(), "lr": self.m.decoder_lr or self.m.lr},
        ]

    @property
    def independent_members(self) -> bool:
        """Whether each ensemble member draws its own batches, negatives and edge dropout."""
        return self.m.ensemble > 1 and self.m.ensemble_data == "independent"

    def batches(self, generator: torch.Generator) -> Iterable[Tensor]:
        """Index batches into ``split.train_pos``: ``[B_i]`` each, or ``[K, B_i]`` (member k's own
        i-th batch) for an ensemble with independent data."""
        n = self.split.train_pos.size(1)
        if not self.independent_members:
            return _split_batches(n, self.m.batch_size, generator)
        per = [_split_batches(n, self.m.batch_size, generator) for _ in range(self.m.ensemble)]
        return [torch.stack(b) for b in zip(*per)]  # one permutation per member: equal batch sizes

    def _step_inputs(self, batch: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor | None, int]:
        """Message-passing graph, scored pairs (positives then negatives), decoder graph (``None`` =
        the message-passing graph) and the number of positives for one ``[B]`` index batch."""
        tp = self.split.train_pos
        if self.m.mask_targets:
            keep = torch.ones(tp.size(1), dtype=torch.bool)
            keep[batch] = False
            mp = to_undirected(tp[:, keep])  # the batch's own targets are not visible to the model
        else:
            mp = self._train_mp
        pos = _shard(tp[:, batch], self.rank, self.world)
        neg = sample_negatives(pos.size(1) * self.m.num_negatives, self.split.num_nodes, self._exclude, generator)
        dec_mp = None
        if self.m.decoder_edge_dropout > 0:
            und = mp[:, mp[0] < mp[1]]  # each undirected edge once
            keep = torch.rand(und.size(1), generator=generator) >= self.m.decoder_edge_dropout
            dec_mp = to_undirected(und[:, keep]).to(self.device)
        # Sampling ran on the CPU (same draws on every device); the model sees device tensors.
        return mp.to(self.device), torch.cat([pos, neg], 1).to(self.device), dec_mp, pos.size(1)

    def loss(self, model: nn.Module, batch: Tensor, generator: torch.Generator) -> Tensor:
        if batch.dim() == 2:  # independent ensemble members: member k trains on its own batch[k]
            steps = [self._step_inputs(b, generator) for b in batch]
            mp, pairs, dec_mp, n_pos = map(list, zip(*steps))
            p = n_pos[0]  # equal for every member (equal batch sizes)
        else:
            mp, pairs, dec_mp, p = self._step_inputs(batch, generator)
        logits = model(self.x, mp, pairs, dec_mp)  # [B] or [K, B] (ensemble)
        if logits.dim() == 2:  # each ensemble member its own loss (summed: each gets a single model's gradient)
            return sum(bce_loss(lg[:p], lg[p:]) for lg in logits)
        return bce_loss(logits[:p], logits[p:])

    @torch.no_grad()
    def evaluate(self, model: nn.Module, stage: str) -> dict[str, float]:
        core = model.module if hasattr(model, "module") else model
        s = self.split
        dev = self.device
        mp = s.message_passing_edges(stage, with_val=self.cfg.test_with_val_edges).to(dev)
        pos, neg = (s.val_pos, s.val_neg) if stage == "val" else (s.test_pos, s.test_neg)
        pos, neg = pos.to(dev), neg.to(dev)
        out = evaluate_scores(*core.score(self.x, mp, pos, neg), self.cfg.hits_k)
        if stage == "test" and not self.cfg.test_with_val_edges:
            # The same model tested on the OGB-collab convention (validation edges joined to the test
            # graph), reported under "valmp/<metric>"; the protocol's number stays "<metric>".
            mp = s.message_passing_edges(stage, with_val=True).to(dev)
            extra = evaluate_scores(*core.score(self.x, mp, pos, neg), self.cfg.hits_k)
            out.update({f"valmp/{k}": v for k, v in extra.items()})
        return out



# -------------------------------------------------------------------------------------------- hetero
def _bipartite_negatives(num: int, n_src: int, n_dst: int, exclude: Tensor, generator: torch.Generator) -> Tensor:
    """``[2, num]`` random (src, dst) pairs whose key ``src * n_dst + dst`` is not in sorted ``exclude``."""
    out, have = [], 0
    while have < num:
        m = int((num - have) * 1.1) + 16
        s = torch.randint(0, n_src, (m,), generator=generator)
        d = torch.randint(0, n_dst, (m,), generator=generator)
        ok = ~torch.isin(s * n_dst + d, exclude)
        pairs = torch.stack([s[ok], d[ok]])[:, : num - have]
        out.append(pairs)
        have += pairs.size(1)
    return torch.cat(out, 1)


class HeteroLinkModel(nn.Module):
    """Heterogeneous encoder + one decoder shared by the target edge types (relation id = index)."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module, denoiser: nn.Module | None = None) -> None:
        super().__init__()
        self.encoder, self.decoder, self.denoiser = encoder, decoder, denoiser

    def embed(self, x_dict: dict, edge_index_dict: dict) -> dict:
        return self.encoder(x_dict, edge_index_dict)

    def score(self, h: dict, edge_type: tuple, rel: int, pairs: Tensor) -> Tensor:
        src, _, dst = edge_type
        n_src = h[src].size(0)
        hh = torch.cat([h[src], h[dst]], 0)  # [N_src + N_dst, D]
        p = torch.stack([pairs[0], pairs[1] + n_src])
        return self.decoder(hh, p, None, torch.full((p.size(1),), rel, dtype=torch.long, device=p.device))

    def forward(self, x_dict: dict, edge_index_dict: dict, targets: list[tuple[tuple, int, Tensor]]) -> tuple[list[Tensor], Tensor]:
        """Scores of each ``(edge_type, rel, pairs)`` target and the auxiliary loss (0 without denoiser)."""
        h = self.embed(x_dict, edge_index_dict)
        aux = h[next(iter(h))].new_zeros(())
        if self.denoiser is not None:
            h, aux = self.denoiser(h, edge_index_dict)
        return [self.score(h, et, r, p) for et, r, p in targets], aux


@dataclass
class HeteroLinkTask:
    """Typed link prediction on IMDB: movie–director and movie–actor, with reverse types split together."""

    cfg: LinkPredConfig
    m: ModelConfig
    splits: tuple
    x_dict: dict
    model: nn.Module
    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    TARGETS = (("movie", "to", "director"), ("movie", "to", "actor"))
    REVERSE = (("director", "to", "movie"), ("actor", "to", "movie"))
    SHORT = {("movie", "to", "director"): "md", ("movie", "to", "actor"): "ma"}

    @classmethod
    def build(cls, cfg: LinkPredConfig, m: ModelConfig, data: Any, seed: int, rank: int = 0, world: int = 1,
              device: torch.device | str = "cpu") -> "HeteroLinkTask":
        from .denoise import RelationViewDenoiser
        from .hetero import HeteroEncoder
        from .splits import hetero_link_split

        splits = hetero_link_split(data, cls.TARGETS, cls.REVERSE, cfg.val_ratio, cfg.test_ratio, seed=seed,
                                   disjoint_train_ratio=cfg.disjoint_train_ratio)
        in_ch = {t: data[t].x.size(1) for t in data.node_types}
        enc = HeteroEncoder(m.encoder, data.metadata(), in_ch, m.hidden, m.num_layers, m.heads, m.dropout)
        den = RelationViewDenoiser(m.hidden, ("movie", "to", "actor"), "movie", weight=m.denoise_weight) if m.denoise else None
        device = torch.device(device)
        model = HeteroLinkModel(enc, make_decoder(m, num_relations=len(cls.TARGETS)), den).to(device)
        x_dict = {t: data[t].x.to_sparse().coalesce().to(device) for t in data.node_types}
        return cls(cfg, m, tuple(sp.to(device) for sp in splits), x_dict, model, rank, world, device)

    def __post_init__(self) -> None:
        train = self.splits[0]
        self._exclude = {}  # on the CPU, where negatives are drawn
        for et in self.TARGETS:
            n_dst = train[et[2]].num_nodes
            ei = train[et].edge_index.cpu()
            self._exclude[et] = torch.sort(ei[0] * n_dst + ei[1]).values

    def param_groups(self, model: nn.Module) -> list[dict]:
        return [{"params": list(model.parameters()), "lr": self.m.lr}]

    def batches(self, generator: torch.Generator) -> Iterable[dict]:
        train = self.splits[0]
        per_type = {et: _split_batches(train[et].edge_label_index.size(1), self.m.batch_size, generator) for et in self.TARGETS}
        n = max(len(v) for v in per_type.values())
        return [{et: v[i] for et, v in per_type.items() if i < len(v)} for i in range(n)]

    def loss(self, model: nn.Module, batch: dict, generator: torch.Generator) -> Tensor:
        train = self.splits[0]
        targets, npos = [], []
        for r, et in enumerate(self.TARGETS):
            if et not in batch:
                continue
            pos = _shard(train[et].edge_label_index[:, batch[et].to(self.device)], self.rank, self.world)
            neg = _bipartite_negatives(pos.size(1) * self.m.num_negatives, train[et[0]].num_nodes, train[et[2]].num_nodes,
                                       self._exclude[et], generator).to(self.device)
            targets.append((et, r, torch.cat([pos, neg], 1)))
            npos.append(pos.size(1))
        scores, aux = model(self.x_dict, train.edge_index_dict, targets)
        loss = sum(bce_loss(s[:k], s[k:]) for s, k in zip(scores, npos)) / len(scores)
        return loss + aux

    @torch.no_grad()
    def evaluate(self, model: nn.Module, stage: str) -> dict[str, float]:
        core = model.module if hasattr(model, "module") else model
        data = self.splits[1] if stage == "val" else self.splits[2]
        targets = [(et, r, data[et].edge_label_index) for r, et in enumerate(self.TARGETS)]
        scores, _ = core(self.x_dict, data.edge_index_dict, targets)
        out: dict[str, float] = {}
        per: list[dict[str, float]] = []
        for (et, _, _), s in zip(targets, scores):
            y = data[et].edge_label.bool()
            metr = evaluate_scores(s[y], s[~y], self.cfg.hits_k)
            per.append(metr)
            out.update({f"{self.SHORT[et]}/{k}": v for k, v in metr.items()})
        for k in per[0]:  # macro average over the target types
            out[k] = sum(p[k] for p in per) / len(per)
        return out


# ----------------------------------------------------------------------------------------------- vrd
@dataclass
class VRDTask:
    """Predicate prediction on VRD (see :mod:`.vrd`); ``encoder: frequency`` is the untrained baseline."""

    cfg: LinkPredConfig
    m: ModelConfig
    train_chunks: list
    val_batch: Any
    test_batch: Any
    model: nn.Module
    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @classmethod
    def build(cls, cfg: LinkPredConfig, m: ModelConfig, data: Any, seed: int, rank: int = 0, world: int = 1,
              device: torch.device | str = "cpu") -> "VRDTask":
        from .vrd import FrequencyBaseline, FrequencyModel, VRDEnsemble, VRDPredicateModel, collate_vrd

        g = torch.Generator().manual_seed(seed)
        train = data["train"]
        perm = torch.randperm(len(train), generator=g).tolist()
        n_val = int(cfg.val_ratio * len(train))
        val = [train[i] for i in perm[:n_val]]
        trn = [train[i] for i in perm[n_val:]]
        freq = FrequencyBaseline(trn)
        if m.encoder == "frequency":
            model: nn.Module = FrequencyModel(freq)
        elif m.encoder == "context":
            members = [VRDPredicateModel(m.hidden, m.num_layers, m.heads, m.dropout, log_prior=torch.log(freq.probs))
                       for _ in range(m.ensemble)]
            model = members[0] if m.ensemble == 1 else VRDEnsemble(members)
        else:
            raise ValueError(f"models[{m.name}].encoder: VRD supports 'context' or 'frequency', got {m.encoder!r}")
        device = torch.device(device)
        bs = m.batch_size or len(trn)
        chunks = [collate_vrd(trn[i : i + bs]).to(device) for i in range(0, len(trn), bs)]
        return cls(cfg, m, chunks, collate_vrd(val).to(device), collate_vrd(data["test"]).to(device), model.to(device),
                   rank, world, device)

    def param_groups(self, model: nn.Module) -> list[dict]:
        return [{"params": list(model.parameters()), "lr": self.m.lr}]

    def batches(self, generator: torch.Generator) -> Iterable[Any]:
        order = torch.randperm(len(self.train_chunks), generator=generator).tolist()
        return [self.train_chunks[i] for i in order]

    def loss(self, model: nn.Module, batch: Any, generator: torch.Generator) -> Tensor:
        if self.m.flip_augment and bool(torch.rand((), generator=generator) < 0.5):
            from .vrd import flip_batch

            batch = flip_batch(batch)
        logits = model(batch)  # [P, 70] or [E, P, 70]
        lab = _shard(batch.labels, self.rank, self.world, dim=0)
        ls = self.m.label_smoothing
        if logits.dim() == 2:
            return F.cross_entropy(logits[lab[:, 0]], lab[:, 1], label_smoothing=ls)
        return sum(F.cross_entropy(lg[lab[:, 0]], lab[:, 1], label_smoothing=ls) for lg in logits)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, stage: str) -> dict[str, float]:
        from .vrd import ensemble_log_probs, recall_at_n

        core = model.module if hasattr(model, "module") else model
        b = self.val_batch if stage == "val" else self.test_batch
        logp = ensemble_log_probs(core(b))
        if self.m.flip_augment:  # test-time augmentation: average with the mirrored image's prediction
            from .vrd import FLIP_PREDICATES, flip_batch

            logp = 0.5 * (logp + ensemble_log_probs(core(flip_batch(b)))[:, FLIP_PREDICATES.to(logp.device)])
        out = {"r@50": recall_at_n(logp, b, 50, 1)[0], "r@100": recall_at_n(logp, b, 100, 1)[0],
               "r@50_k70": recall_at_n(logp, b, 50, 70)[0], "r@100_k70": recall_at_n(logp, b, 100, 70)[0]}
        return out


TASK_CLASSES: dict[str, Any] = {"planetoid": PlanetoidTask, "imdb": HeteroLinkTask, "vrd": VRDTask}
