"""Layout training (scenegraph_diff.layout.train) on the shared Trainer: shapes pool, prepared VRD folder, resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from scenegraph_diff.layout import DiffusionLayoutModel, RegressionLayoutModel, load_layout_model
from scenegraph_diff.layout.data import prepared_layout_graphs, shapes_layout_graphs
from scenegraph_diff.layout.train import TrainLayoutConfig, train_layout

VRD_FIX = Path(__file__).resolve().parents[1] / "fixtures" / "datasets" / "vrd"
TINY = dict(dim=16, num_layers=1, heads=2, attn_layers=1, batch_size=8, pool_size=64, max_minutes=None,
            checkpoint_every=2, progress=False, eval_graphs=0, num_inference_steps=2)


def _config(tmp_path: Path, **kw) -> TrainLayoutConfig:
    return TrainLayoutConfig(output_dir=str(tmp_path / kw.pop("name", "run")), **{**TINY, **kw})


@pytest.mark.parametrize("model,cls", [("regression", RegressionLayoutModel), ("diffusion", DiffusionLayoutModel)])
def test_trains_on_the_shapes_world_and_saves_a_loadable_model(tmp_path, model, cls):
    path = train_layout(_config(tmp_path, model=model, encoder="hgcn", max_steps=3, eval_graphs=7))
    info = json.loads((tmp_path / "run" / "train_info.json").read_text())
    assert info["steps"] == 3 and info["vocabulary"]["objects"] == 3 and info["held_out"]["graphs"] == 7
    m = load_layout_model(str(path))
    assert type(m) is cls and m.config.encoder == "hgcn" and sorted(m.config.objects) == ["circle", "square", "triangle"]


def test_resume_continues_bit_exactly(tmp_path):
    import shutil

    straight = train_layout(_config(tmp_path, name="a", max_steps=4))
    # a run "killed" after its step-2 checkpoint: the same folder without the later checkpoint and model
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    shutil.rmtree(tmp_path / "b" / "checkpoints" / "checkpoint-00000004")
    shutil.rmtree(tmp_path / "b" / "model")
    resumed = train_layout(_config(tmp_path, name="b", max_steps=4), resume=True)
    a, b = load_layout_model(str(straight)), load_layout_model(str(resumed))
    for (k, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), k


def test_trains_on_a_prepared_vrd_folder(tmp_path):
    from scenegraph_diff.data.vrd import VRDConfig, prepare_vrd

    prepare_vrd(VRDConfig(data_root=str(VRD_FIX), output_dir=str(tmp_path / "vrd"), progress=False))
    graphs = prepared_layout_graphs(tmp_path / "vrd", "train")
    assert graphs and all(o.box is not None for g in graphs for o in g.objects)
    path = train_layout(_config(tmp_path, data=str(tmp_path / "vrd"), max_steps=2))
    m = load_layout_model(str(path))
    assert set(m.config.objects) == {o.name for g in graphs for o in g.objects}
    (s,), = m.sample([graphs[0]], resample=True)
    assert len(s.objects) == len(graphs[0].objects) and all(o.box for o in s.objects)


def test_data_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither 'shapes' nor a prepared folder"):
        train_layout(_config(tmp_path, data=str(tmp_path / "missing")))
    (tmp_path / "plain").mkdir()
    with pytest.raises(FileNotFoundError, match="no manifest.json"):
        train_layout(_config(tmp_path, data=str(tmp_path / "plain")))


def test_shapes_pool_keeps_room_to_spare():
    from scenegraph_diff.shapes.world import Box

    plain, roomy = shapes_layout_graphs(300, 1), shapes_layout_graphs(300, 1, gap=3, slack=1.5)

    def min_gap(graphs):
        gaps = []
        for g in graphs:
            b = [Box.from_fractions(o.box, 32) for o in g.objects]
            for i in range(len(b)):
                for j in range(i + 1, len(b)):
                    gaps.append(max(b[j].x0 - b[i].x0 - b[i].side, b[i].x0 - b[j].x0 - b[j].side,
                                    b[j].y0 - b[i].y0 - b[i].side, b[i].y0 - b[j].y0 - b[j].side))
        return min(gaps)

    assert min_gap(plain) < 3 <= min_gap(roomy)
    assert shapes_layout_graphs(5, 1) == plain[:5]  # seeded


@pytest.mark.parametrize("kw,match", [({"model": "gan"}, "model must be one of .*got 'gan'"),
                                      ({"encoder": "gat"}, "encoder must be 'hgcn' or 'rhgnn', got 'gat'"),
                                      ({"batch_size": 0}, "batch_size must be an integer >= 1, got 0"),
                                      ({"complete_prob": 1.5}, r"complete_prob must be in \[0, 1\], got 1.5"),
                                      ({"max_minutes": 0.0}, "max_minutes must be > 0 or None, got 0.0")])
def test_bad_configs(tmp_path, kw, match):
    with pytest.raises(ValueError, match=match):
        _config(tmp_path, **kw)
