"""Link prediction: leak-free splits, encoders, decoders, OGB metrics and an experiment runner.

Entry points::

    from scenegraph_diff.linkpred import LinkPredConfig, run_sweep
    summary = run_sweep(LinkPredConfig.from_dict(yaml.safe_load(open("benchmarks/linkpred/cora.yaml"))), "runs/cora")

or ``scenegraph-diff linkpred benchmarks/linkpred/cora.yaml``. Submodules: :mod:`.splits`,
:mod:`.encoders`, :mod:`.hetero`, :mod:`.decoders`, :mod:`.model`, :mod:`.denoise`, :mod:`.metrics`, :mod:`.vrd`,
:mod:`.analysis` (where Hits@K misses are),
:mod:`.runner`.
"""

from __future__ import annotations

from .config import LinkPredConfig, ModelConfig
from .decoders import CNDecoder, DistMultDecoder, DotDecoder, MLPDecoder, common_neighbors
from .metrics import auc, average_precision, evaluate_scores, hits_at_k, mrr
from .runner import aggregate, run_sweep
from .splits import LinkSplit, hetero_link_split, random_link_split, sample_negatives

__all__ = [
    "LinkPredConfig", "ModelConfig", "run_sweep", "aggregate",
    "LinkSplit", "random_link_split", "hetero_link_split", "sample_negatives",
    "DotDecoder", "DistMultDecoder", "MLPDecoder", "CNDecoder", "common_neighbors",
    "auc", "average_precision", "mrr", "hits_at_k", "evaluate_scores",
]
