import json

import torch

from scenegraph_diff.cli import main
from scenegraph_diff.diffusion.edge_diffusion import EdgeDiffusionGenerator
from scenegraph_diff.diffusion.ppgn import EdgeDenoiser
from scenegraph_diff.diffusion.sde import VPSDE


def test_sample_graphs_writes_edge_list_jsonl(tmp_path, capsys):
    torch.manual_seed(0)
    EdgeDiffusionGenerator(EdgeDenoiser(channels=8, num_layers=1), VPSDE(), [3, 4]).save_pretrained(tmp_path / "gen")
    out = tmp_path / "g.jsonl"
    rc = main(["sample-graphs", "--model", str(tmp_path / "gen"), "--num", "5", "--out", str(out), "--steps", "3"])
    assert rc == 0
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(lines) == 5 and all(set(g) == {"num_nodes", "edges"} and g["num_nodes"] in (3, 4) for g in lines)
    assert json.loads(capsys.readouterr().out)["nfe_per_graph"] == 3


def test_sample_graphs_bad_input_one_line_error(tmp_path, capsys):
    assert main(["sample-graphs", "--model", str(tmp_path), "--num", "2", "--out", str(tmp_path / "x.jsonl")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "generator.json" in err[0]
    assert main(["train-graph-diffusion", "--dataset", "nope", "--out", str(tmp_path / "m")]) == 2
    assert "--dataset must be one of" in capsys.readouterr().err


def test_train_graph_diffusion_with_structure_features(tmp_path, capsys):
    root = tmp_path / "data"
    (root / "graphs").mkdir(parents=True)
    graphs = [{"num_nodes": 4, "edges": [[0, 1], [1, 2], [2, 3]], "split": "train"},
              {"num_nodes": 3, "edges": [[0, 1], [1, 2], [0, 2]], "split": "train"},
              {"num_nodes": 3, "edges": [[0, 1]], "split": "test"}]
    (root / "graphs" / "ego_small.jsonl").write_text("".join(json.dumps(g) + "\n" for g in graphs))
    out = tmp_path / "m"
    rc = main(["train-graph-diffusion", "--dataset", "ego_small", "--data-root", str(root), "--out", str(out),
               "--steps", "2", "--batch-size", "2", "--channels", "8", "--layers", "1", "--structure-features"])
    assert rc == 0
    gen = EdgeDiffusionGenerator.from_pretrained(out)
    assert gen.structure_features and gen.model.config.channels == 8 and gen.model.config.num_layers == 1
    capsys.readouterr()
    assert main(["train-graph-diffusion", "--dataset", "ego_small", "--data-root", str(root), "--out", str(out),
                 "--family", "gdss", "--structure-features"]) == 2
    assert "options of --family edge, not gdss" in capsys.readouterr().err
