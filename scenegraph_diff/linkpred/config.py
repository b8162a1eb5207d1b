"""Frozen configs of a link-prediction sweep (built by the CLI from a YAML file).

A sweep = one task (``planetoid``, ``imdb`` or ``vrd``) on one dataset, several model rows, several
seeds. Every row is trained and evaluated once per seed; the runner writes one JSON per (row, seed).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping


__all__ = ["ModelConfig", "LinkPredConfig", "TASKS", "ENSEMBLE_DATA"]


TASKS = ("planetoid", "imdb", "vrd")
ENSEMBLE_DATA = ("shared", "independent")  # ModelConfig.ensemble_data


def _from_mapping(cls, d: Mapping[str, Any], where: str):
    if not isinstance(d, Mapping):
        raise ValueError(f"{where}: expected a mapping, got {type(d).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(names)}")
    return cls(**d)


@dataclass(frozen=True)


class ModelConfig:
    """One row of the results table: an encoder, a decoder and how to train them.

    Args:
        name: the row label (also the output sub-folder).
        encoder: ``gcn``, ``sage``, ``puregcn`` (homogeneous); ``hgcn``, ``rhgnn``, ``rgcn``, ``hgt`` (IMDB);
            ``context`` (VRD context GNN), ``frequency`` (VRD frequency baseline, no training).
        decoder: ``dot``, ``distmult``, ``mlp``, ``cn`` (neural common neighbours) or ``ncn`` (NCN's
            predictor; NCNC with ``completion``).
        hidden: embedding width D.
        num_layers: message-passing layers.
        heads: attention heads (HGCN, R-HGNN, HGT, VRD context GNN).
        dropout / input_dropout / decoder_dropout: dropout between layers / on input features / in
            the decoder MLPs.
        input_linear, jk, norm: input projection, jumping-knowledge sum, LayerNorm (homogeneous).
        denoise: add the DiffGraph-style latent denoising loss on an auxiliary relation view (IMDB).
        denoise_weight: weight of that loss.
        lr, decoder_lr, weight_decay: Adam settings (``decoder_lr`` defaults to ``lr``).
        epochs: maximum epochs; patience: stop after this many evaluations without improvement of the
            validation selection metric (0 = never stop early); eval_every: epochs between evaluations.
        batch_size: positive target edges per step (0 = all at once).
        num_negatives: training negatives per positive.
        mask_targets: remove each batch's target edges from the message-passing graph (NCN).
        cn_beta: initial weight of the common-neighbour branch of the ``cn`` decoder.
        decoder_edge_dropout: during training, the fraction of (undirected) message-passing edges
            hidden from the decoder's common-neighbour lookup (NCN's predictor edge dropout).
        ensemble: VRD, planetoid: number of independently initialised members, trained side by side
            (on the same batches unless ``ensemble_data`` says otherwise), whose predictions are
            averaged (log-probabilities / logits).
        ensemble_data: planetoid ensembles: ``shared`` (every member sees the same batches, target
            masks, negatives and decoder edge dropout) or ``independent`` (each member draws its own
            batch order, negatives and edge dropout, as K separately seeded runs would; the members
            still take their steps together and are selected at one epoch on the ensemble's score).
        ema_decay: evaluate (and select, and test) an exponential moving average of the weights,
            updated after every optimizer step with this decay (0 = off).
        tail_dropout: ``puregcn``: dropout on the last propagation's output.
        jk_input: ``puregcn`` with ``jk``: include the un-propagated projection (step 0) in the sum.
        decoder_xlin, decoder_tailact, decoder_twolayer: ``ncn`` decoder: node MLP on the CN features,
            activation-terminated branch MLPs, two hidden layers in the output MLP (NCN's ``use_xlin``,
            ``tailact``, ``twolayerlin``).
        completion: ``ncn`` decoder: NCNC common-neighbour completion.
        cn_alpha, cn_pt, cn_scale, cn_offset: NCNC completion weight and probability recalibration.
        cn_train_resdeg, cn_test_resdeg: NCNC residual-neighbour caps per side (training / evaluation).
        completion_mode: NCNC missing-edge scores: ``detached`` (no gradient, same embeddings) or
            ``recursive`` (the authors' code: the predictor applied to its own ``z``, with gradient);
            see :class:`~scenegraph_diff.linkpred.decoders.NCNDecoder`.
        flip_augment: VRD: mirror each training batch left-right with probability 1/2 (swapping the
            left/right predicates) and average the predictions of the image and its mirror at evaluation.
        label_smoothing: VRD: cross-entropy label smoothing.
        feature_cosine: planetoid: add a learned-weight raw-feature cosine term to the logits
            (:class:`~scenegraph_diff.linkpred.model.FeatureCosine`): ``none`` (off), ``tfidf`` or ``raw``.
        feature_cosine_weight: its initial weight ``a``.
        feature_cosine_learn: learn ``a`` (else it stays fixed).
        input_svd: planetoid: append this many latent-semantic (TF-IDF SVD) columns to the node
            features (:func:`~scenegraph_diff.linkpred.data.augment_features`; 0 = off).
    """

    name: str
    encoder: str = "gcn"
    decoder: str = "dot"
    hidden: int = 256
    num_layers: int = 2
    heads: int = 2
    dropout: float = 0.0
    input_dropout: float = 0.0
    decoder_dropout: float = 0.0
    input_linear: bool = False
    jk: bool = False
    norm: bool = False
    denoise: bool = False
    denoise_weight: float = 0.1
    lr: float = 0.01
    decoder_lr: float | None = None
    weight_decay: float = 0.0
    epochs: int = 100
    patience: int = 0
    eval_every: int = 1
    batch_size: int = 0
    num_negatives: int = 1
    mask_targets: bool = False
    cn_beta: float = 1.0
    decoder_edge_dropout: float = 0.0
    ensemble: int = 1
    ensemble_data: str = "shared"
    ema_decay: float = 0.0
    tail_dropout: float = 0.0
    jk_input: bool = False
    decoder_xlin: bool = True
    decoder_tailact: bool = True
    decoder_twolayer: bool = False
    completion: bool = False
    cn_alpha: float = 1.0
    cn_pt: float = 0.5
    cn_scale: float = 5.0
    cn_offset: float = 3.0
    cn_train_resdeg: int = 8
    cn_test_resdeg: int = 128
    completion_mode: str = "detached"
    flip_augment: bool = False
    label_smoothing: float = 0.0
    feature_cosine: str = "none"
    feature_cosine_weight: float = 1.0
    feature_cosine_learn: bool = True
    input_svd: int = 0

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name:
            raise ValueError(f"model name must be a non-empty string without '/', got {self.name!r}")
        for k in ("hidden", "num_layers", "epochs", "eval_every", "num_negatives", "heads", "ensemble"):
            if getattr(self, k) < (0 if k in ("num_layers", "epochs") else 1):
                raise ValueError(f"models[{self.name}].{k} must be positive, got {getattr(self, k)}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"models[{self.name}].ema_decay must be in [0, 1), got {self.ema_decay}")
        from .decoders import COMPLETION_MODES

        if self.completion_mode not in COMPLETION_MODES:
            raise ValueError(f"models[{self.name}].completion_mode must be 'detached' or 'recursive', got {self.completion_mode!r}")
        if self.ensemble_data not in ENSEMBLE_DATA:
            raise ValueError(f"models[{self.name}].ensemble_data must be one of {ENSEMBLE_DATA}, got {self.ensemble_data!r}")
        from .model import FEATURE_WEIGHTINGS

        if self.feature_cosine != "none" and self.feature_cosine not in FEATURE_WEIGHTINGS:
            raise ValueError(f"models[{self.name}].feature_cosine must be 'none' or one of {FEATURE_WEIGHTINGS}, "
                             f"got {self.feature_cosine!r}")
        if self.input_svd < 0:
            raise ValueError(f"models[{self.name}].input_svd must be >= 0, got {self.input_svd}")
        if self.batch_size < 0 or self.patience < 0:
            raise ValueError(f"models[{self.name}]: batch_size and patience must be >= 0")


@dataclass(frozen=True)


class LinkPredConfig:
    """A sweep.

    Args:
        task: ``planetoid``, ``imdb`` or ``vrd``.
        dataset: ``Cora`` / ``CiteSeer`` (planetoid), ``IMDB``, ``VRD``.
        models: the rows.
        seeds: one run per seed and row.
        select_metric: validation metric for early stopping / model selection.
        val_ratio, test_ratio: edge split (planetoid, imdb); for VRD the fraction of training images
            held out for validation is ``val_ratio``.
        val_negatives: planetoid: negatives per validation positive (test keeps one per positive);
            the extra ones leave the rest of the split, and so the training, unchanged.
        test_with_val_edges: propagate over training + validation edges at test time (planetoid).
        disjoint_train_ratio: imdb: fraction of training edges used only as supervision targets and
            kept out of the training message-passing graph (PyG ``RandomLinkSplit``).
        hits_k: the K of the reported Hits@K.
        threads: torch intra-op threads.
        device: ``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (CUDA when available). Under ``torchrun``
            ``cuda`` means ``cuda:LOCAL_RANK``. Like ``threads`` it is not part of a row's identity:
            a sweep resumed on another device reuses the finished seeds. Splits and negatives are
            drawn on the CPU, so they are the same on every device.
        report: the metric columns of ``results.md`` (all when empty; ``summary.json`` has all).
    """

    task: str
    dataset: str
    models: tuple[ModelConfig, ...]
    seeds: tuple[int, ...] = tuple(range(10))
    select_metric: str = "hits@100"
    val_ratio: float = 0.1
    test_ratio: float = 0.2
    val_negatives: int = 1
    test_with_val_edges: bool = False
    disjoint_train_ratio: float = 0.0
    hits_k: tuple[int, ...] = (20, 50, 100)
    threads: int = 1
    device: str = "cpu"
    report: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
        if not self.models:
            raise ValueError("models: at least one model row is needed")
        names = [m.name for m in self.models]
        if len(set(names)) != len(names):
            raise ValueError(f"model names must be unique, got {names}")
        if not self.seeds:
            raise ValueError("seeds: at least one seed is needed")
        if self.val_negatives < 1:
            raise ValueError(f"val_negatives must be >= 1, got {self.val_negatives}")
        if self.val_negatives != 1 and self.task != "planetoid":
            raise ValueError(f"val_negatives={self.val_negatives} is for planetoid; task {self.task!r} keeps one per positive")
        if self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")
        for m in self.models:
            if m.input_svd and self.task != "planetoid":
                raise ValueError(f"models[{m.name}].input_svd={m.input_svd} is for planetoid")
            if m.feature_cosine != "none" and self.task != "planetoid":
                raise ValueError(f"models[{m.name}].feature_cosine={m.feature_cosine!r} is for planetoid")
            if m.ensemble_data != "shared" and self.task != "planetoid":
                raise ValueError(f"models[{m.name}].ensemble_data={m.ensemble_data!r} is for planetoid; "
                                 f"task {self.task!r} ensembles share their batches")
        from ..devices import check_device

        check_device(self.device)  # the form only: a CUDA device on a machine without one fails when run

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "LinkPredConfig":
        """Build from plain data (a parsed YAML file); unknown keys are errors."""
        d = dict(d)
        models = d.pop("models", None)
        if not isinstance(models, list):
            raise ValueError(f"models: expected a list of model mappings, got {type(models).__name__}")
        d["models"] = tuple(_from_mapping(ModelConfig, m, f"models[{i}]") for i, m in enumerate(models))
        for k in ("seeds", "hits_k", "report"):
            if k in d:
                d[k] = tuple(d[k]) if k == "report" else tuple(int(s) for s in d[k])
        return _from_mapping(cls, d, "config")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
