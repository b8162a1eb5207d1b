"""The bundled shapes model (scenegraph_diff/assets/shapes): small, safetensors only, and right by the checker."""

from __future__ import annotations

import pytest
import torch

from scenegraph_diff.shapes import check, sample_scene, score
from scenegraph_diff.shapes.pipeline import ShapesPipeline, bundled_model_path


@pytest.fixture(scope="module")
def pipe() -> ShapesPipeline:
    return ShapesPipeline.from_bundled()


def test_bundled_files_are_small_safetensors() -> None:
    files = [p for p in bundled_model_path().rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) <= 20 * 2**20
    weights = [p for p in files if p.suffix in (".safetensors", ".bin", ".pt", ".pth", ".ckpt")]
    assert weights and all(p.suffix == ".safetensors" for p in weights)


def _graphs(n: int, seed: int) -> list:
    g = torch.Generator().manual_seed(seed)
    strata = [(2, 1), (3, 2), (3, 3), (1, 0)]
    return [sample_scene(g, 32, *strata[i % len(strata)]) for i in range(n)]


def test_bundled_model_draws_what_the_graph_says(pipe: ShapesPipeline) -> None:
    graphs = _graphs(16, seed=31337)
    twins = [g.swapped() for g in graphs if g.relations]
    out = pipe(graphs + twins, generator=torch.Generator().manual_seed(0))
    verdicts = [check(im, g) for im, g in zip(out.images, out.graphs)]
    s = score(verdicts)
    assert s.object_accuracy >= 0.95 and s.relation_accuracy >= 0.95
    assert score(verdicts[len(graphs):]).relation_accuracy >= 0.9  # direction follows the swapped graphs


@pytest.mark.slow
def test_bundled_model_meets_the_targets(pipe: ShapesPipeline) -> None:
    graphs = _graphs(300, seed=4242)
    twins = [g.swapped() for g in graphs if g.relations]
    out = pipe(graphs, generator=torch.Generator().manual_seed(1))
    s = score(check(im, g) for im, g in zip(out.images, graphs))
    sw = pipe(twins, generator=torch.Generator().manual_seed(2))
    s_sw = score(check(im, g) for im, g in zip(sw.images, twins))
    assert s.object_accuracy >= 0.95 and s.relation_accuracy >= 0.95 and s_sw.relation_accuracy >= 0.95
