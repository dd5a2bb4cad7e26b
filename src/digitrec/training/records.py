"""What a training run records: one line per epoch, its result, and the state `last.pt` carries.

After every epoch the complete training state is written atomically to ``last.pt``, so a run
resumes from its last finished epoch; it resumes only with the config and data it started with.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from digitrec.errors import CheckpointError, ConfigError
from digitrec.models.checkpoint import save_payload
from digitrec.training.config import TrainConfig
from digitrec.training.metrics import Metrics

STATE_NAME = "last.pt"  # full training state after the last finished epoch, for --resume
STATE_FORMAT = "digitrec-train-state"


@dataclass(frozen=True)
class EpochRecord:
    epoch: int
    train_loss: float
    train_accuracy: float
    val_loss: float
    val_accuracy: float
    seconds: float  # training loop of this epoch, without validation
    lr: float  # learning rate at the end of the epoch
    guard_accuracy: float | None = None  # accuracy on the task's guard set (fine-tuning), else None


@dataclass
class TrainResult:
    checkpoint: Path
    best_epoch: int  # 0: the starting weights (`init_from`) were kept
    val: Metrics
    test: Metrics  # nan, n = 0 when the task has no test set
    train_seconds: float  # sum of the training loops, excluding data loading and evaluation
    history: list[EpochRecord] = field(default_factory=list)
    calibration: dict[str, Any] | None = None  # set by whoever calibrates the checkpoint (`digitrec train`)
    final_params_sha256: str = ""  # parameters after the last step (not the best epoch), per rank
    rank: int = 0
    world_size: int = 1

    def summary(self) -> dict[str, Any]:
        summary = {
            "val_accuracy": self.val.accuracy,
            "val_loss": self.val.loss,
            "test_accuracy": self.test.accuracy,
            "test_loss": self.test.loss,
            "test_n": self.test.n,
            "best_epoch": self.best_epoch,
            "epochs": len(self.history),
            "train_seconds": round(self.train_seconds, 3),
            "checkpoint": str(self.checkpoint),
        }
        if self.calibration:
            summary["temperature"] = self.calibration.get("temperature")
        return summary


@dataclass
class RunState:
    """What `last.pt` carries besides the module/optimizer states."""

    epoch: int = 0
    history: list[EpochRecord] = field(default_factory=list)
    best_state: dict[str, torch.Tensor] | None = None
    best_val: Metrics | None = None
    best_epoch: int = 0
    start: dict[str, Any] | None = None  # the starting weights' scores (`init_from`): val, guard_accuracy


def save_state(path: Path, config: TrainConfig, task_digest: str, modules: dict[str, Any], state: RunState) -> None:
    """`modules`: model, optimizer, scheduler, ema (the last two may be None)."""
    save_payload(
        {
            "format": STATE_FORMAT,
            "config": config.to_dict(),
            "task_sha256": task_digest,
            "epoch": state.epoch,
            "history": [asdict(r) for r in state.history],
            **{name: module.state_dict() if module is not None else None for name, module in modules.items()},
            "best_state": state.best_state,
            "best_val": state.best_val.to_dict() if state.best_val else None,
            "best_epoch": state.best_epoch,
            "start": state.start,
        },
        path,
    )


def read_resume_config(run_dir: str | os.PathLike) -> TrainConfig:
    """The config a run was started with, from its `last.pt` (to resume it as it was)."""
    return TrainConfig.from_dict(load_state(Path(run_dir) / STATE_NAME)["config"])


def load_state(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise CheckpointError(f"{path.parent}: nothing to resume (no {STATE_NAME}; the first epoch never finished?)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any unreadable file is a user-facing error here
        raise CheckpointError(f"{path}: unreadable training state ({type(exc).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != STATE_FORMAT:
        raise CheckpointError(f"{path}: not a digitrec training state")
    return payload


def restore_state(path: Path, config: TrainConfig, task_digest: str, modules: dict[str, nn.Module | Any]) -> RunState:
    """Load `last.pt` into `modules` (as `save_state` names them) and return the run's state."""
    payload = load_state(path)
    if payload["config"] != config.to_dict():
        raise ConfigError(f"{path}: the run was started with a different config; resume it without changing flags")
    if payload.get("task_sha256") != task_digest:
        raise ConfigError(f"{path}: the run was started on different training data; resume it with the same data")
    for name, module in modules.items():
        if module is not None:
            module.load_state_dict(payload[name])
    best_val = Metrics(**payload["best_val"]) if payload["best_val"] else None
    return RunState(
        epoch=payload["epoch"],
        history=[EpochRecord(**r) for r in payload["history"]],
        best_state=payload["best_state"],
        best_val=best_val,
        best_epoch=payload["best_epoch"],
        start=payload.get("start"),
    )
