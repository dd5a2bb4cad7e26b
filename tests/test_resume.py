"""Resume after a crash: SIGKILL mid-epoch, resume, end exactly where an uninterrupted run ends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from digitrec.errors import CheckpointError
from digitrec.models.checkpoint import load_checkpoint
from digitrec.training.loop import METRICS_NAME
from digitrec.training.records import STATE_NAME, read_resume_config

ARGS = [
    "--model",
    "seed_cnn",
    "--epochs",
    "3",
    "--limit-train",
    "2000",
    "--batch-size",
    "32",
    "--seed",
    "5",
    "--device",
    "cpu",
]
CONFIG = "limit_eval = 500\ncalibrate = false\n"
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}  # the two runs share the cores without oversubscribing


def _train(out: Path, *extra: str) -> subprocess.Popen:
    out.parent.mkdir(parents=True, exist_ok=True)
    (out.parent / "c.toml").write_text(CONFIG)
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "digitrec",
            "train",
            *ARGS,
            "--config",
            str(out.parent / "c.toml"),
            "--out",
            str(out),
            "--json",
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _comparable(history: list[dict]) -> list[tuple]:
    return [(r["epoch"], r["train_loss"], r["train_accuracy"], r["val_loss"], r["val_accuracy"]) for r in history]


def test_sigkill_mid_epoch_then_resume_matches_uninterrupted_run(tmp_path):
    reference = _train(tmp_path / "ref" / "run")
    victim = _train(tmp_path / "victim" / "run")
    run = tmp_path / "victim" / "run"
    deadline = time.monotonic() + 300
    while len(_lines(run / METRICS_NAME)) < 1 and victim.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)  # into epoch 2
    assert victim.poll() is None, "training finished before it could be interrupted"
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()

    # what is on disk after the crash is complete: a loadable state, no checkpoint yet, no torn file
    state = torch.load(run / STATE_NAME, weights_only=True)
    assert state["epoch"] >= 1
    assert not (run / "model.pt").exists()

    resumed = subprocess.run(
        [sys.executable, "-m", "digitrec", "train", "--resume", str(run), "--json"],
        capture_output=True,
        text=True,
        timeout=600,
        env=ENV,
    )
    assert resumed.returncode == 0, resumed.stderr
    out, err = reference.communicate(timeout=600)
    assert reference.returncode == 0, err

    ref_summary, res_summary = json.loads(out), json.loads(resumed.stdout)
    for key in ("val_accuracy", "val_loss", "test_accuracy", "test_loss", "best_epoch"):
        assert res_summary[key] == ref_summary[key], key  # bit-for-bit on CPU
    assert _comparable(_lines(run / METRICS_NAME)) == _comparable(_lines(tmp_path / "ref" / "run" / METRICS_NAME))
    ref_ckpt = load_checkpoint(tmp_path / "ref" / "run" / "model.pt")
    res_ckpt = load_checkpoint(run / "model.pt")
    assert ref_ckpt.meta["weights_sha256"] == res_ckpt.meta["weights_sha256"]
    assert not list(run.glob(".*.tmp"))


def test_resume_without_state_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="nothing to resume"):
        read_resume_config(tmp_path)
