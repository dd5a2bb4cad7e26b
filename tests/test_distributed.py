"""Data-parallel training with torchrun/DDP on CPU (gloo): shards, identical ranks, one checkpoint."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import torch

from digitrec.training.pipeline import epoch_order


def test_epoch_shards_are_disjoint_covering_and_change_each_epoch():
    n, world = 1003, 3
    shards = [epoch_order(n, torch.Generator().manual_seed(42), rank, world) for rank in range(world)]
    together = torch.cat(shards)
    assert len(set(together.tolist())) == len(together) == n - n % world  # disjoint, all but n % world
    assert len({len(s) for s in shards}) == 1  # same number of steps on every rank
    next_epoch = epoch_order(n, torch.Generator().manual_seed(43), 0, world)
    assert not torch.equal(shards[0], next_epoch)
    assert torch.equal(shards[1], epoch_order(n, torch.Generator().manual_seed(42), 1, world))  # reproducible


def _run(tmp_path, name: str, *extra: str) -> dict:
    (tmp_path / "c.toml").write_text("limit_eval = 1000\ncalibrate = false\n")
    command = [
        sys.executable,
        "-m",
        "digitrec",
        "train",
        "--model",
        "fast_ref_cnn",
        "--epochs",
        "2",
        "--limit-train",
        "4000",
        "--batch-size",
        "64",
        "--device",
        "cpu",
        "--config",
        str(tmp_path / "c.toml"),
        "--out",
        str(tmp_path / name),
        "--json",
        *extra,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    summary["rank_lines"] = re.findall(r"rank (\d)/2: final parameters sha256 (\w+)", result.stderr)
    summary["stderr"] = result.stderr[-3000:]
    return summary


def test_two_processes_train_like_one(tmp_path):
    single = _run(tmp_path, "single")
    ddp = _run(tmp_path, "ddp", "--nproc", "2")
    # one checkpoint, written by rank 0 only
    assert sorted(p.name for p in (tmp_path / "ddp").glob("*.pt")) == ["last.pt", "model.pt"]
    # same recipe, same global batch: comparable accuracy
    assert ddp["test_accuracy"] > 0.9 and abs(ddp["test_accuracy"] - single["test_accuracy"]) < 0.03
    # every rank ends with the same parameters
    ranks = dict(ddp["rank_lines"])
    assert sorted(ranks) == ["0", "1"], ddp["stderr"]
    assert len(set(ranks.values())) == 1
