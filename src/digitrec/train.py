"""The training loop: Adam + cross-entropy on in-memory batches, best-on-validation kept.

`train()` returns a `TrainResult`; it prints nothing. Per-epoch records go to the `on_epoch`
callback (the CLI prints them) and to ``metrics.jsonl`` in the run directory.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from .checkpoint import save_checkpoint
from .config import TrainConfig
from .data import Mnist, stratified_split
from .device import pick_device
from .errors import ConfigError
from .evaluate import Metrics, evaluate
from .models import create_model
from .pipeline import AffineAugment, Normalization, batches

CHECKPOINT_NAME = "model.pt"
METRICS_NAME = "metrics.jsonl"


@dataclass(frozen=True)
class EpochRecord:
    epoch: int
    train_loss: float
    train_accuracy: float
    val_loss: float
    val_accuracy: float
    seconds: float  # training loop of this epoch, without validation
    lr: float  # learning rate at the end of the epoch


@dataclass
class TrainResult:
    checkpoint: Path
    best_epoch: int
    val: Metrics
    test: Metrics
    train_seconds: float  # sum of the training loops, excluding data loading and evaluation
    history: list[EpochRecord] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
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


def prepare_out_dir(out_dir: str | os.PathLike) -> Path:
    """Create the run directory and prove it is writable before any training time is spent."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"cannot write to output directory {out}: {exc.strerror or exc}") from None
    return out


def _slice_stratified(indices: torch.Tensor, labels: torch.Tensor, limit: int, seed: int) -> torch.Tensor:
    """A class-balanced subset of `indices` of size `limit` (for quick runs on a slice)."""
    if limit >= indices.numel():
        return indices
    keep, _ = stratified_split(labels[indices], indices.numel() - limit, seed)
    return indices[keep]


def _scheduler(config: TrainConfig, optimizer: torch.optim.Optimizer, steps: int):
    if config.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=steps)
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    return None


def train(
    config: TrainConfig,
    data: Mnist,
    out_dir: str | os.PathLike,
    on_epoch: Callable[[EpochRecord], None] | None = None,
    progress: bool = False,
) -> TrainResult:
    out = prepare_out_dir(out_dir)
    device = pick_device(config.device)
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    norm = Normalization()

    train_idx, val_idx = stratified_split(data.train_labels, config.n_val, config.split_seed)
    if config.limit_train is not None:
        train_idx = _slice_stratified(train_idx, data.train_labels, config.limit_train, config.split_seed)
    val_idx = val_idx[: config.limit_eval] if config.limit_eval else val_idx
    test_n = config.limit_eval or len(data.test_labels)
    train_x, train_y = data.train_images[train_idx], data.train_labels[train_idx]
    val_x, val_y = data.train_images[val_idx], data.train_labels[val_idx]

    model = create_model(config.model, **config.model_kwargs).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = -(-len(train_idx) // config.batch_size)
    scheduler = _scheduler(config, optimizer, config.epochs * steps_per_epoch)
    augment = AffineAugment(config.aug_degrees, config.aug_scale, config.aug_translate) if config.augment else None

    history: list[EpochRecord] = []
    best_state, best_val, best_epoch = None, None, 0
    metrics_path = out / METRICS_NAME
    metrics_path.write_text("")
    for epoch in range(1, config.epochs + 1):
        model.train()
        loss_sum, correct, seen = 0.0, 0, 0
        stream = batches(train_x, train_y, config.batch_size, norm, shuffle=True,
                         generator=generator, augment=augment, device=device)
        if progress:
            from tqdm import tqdm

            stream = tqdm(stream, total=steps_per_epoch, desc=f"epoch {epoch}/{config.epochs}", leave=False, unit="batch")
        start = time.perf_counter()
        for x, y in stream:
            logits = model(x)  # (B, 1, 28, 28) -> (B, 10)
            loss = F.cross_entropy(logits, y, label_smoothing=config.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            loss_sum += loss.item() * len(y)
            correct += (logits.argmax(1) == y).sum().item()
            seen += len(y)
        seconds = time.perf_counter() - start
        val = evaluate(model, val_x, val_y, norm, device)
        record = EpochRecord(epoch, loss_sum / seen, correct / seen, val.loss, val.accuracy, seconds,
                             optimizer.param_groups[0]["lr"])
        history.append(record)
        with metrics_path.open("a") as handle:
            handle.write(json.dumps(asdict(record)) + "\n")
        if best_val is None or (val.accuracy, -val.loss) > (best_val.accuracy, -best_val.loss):
            best_state, best_val, best_epoch = copy.deepcopy(model.state_dict()), val, epoch
        if on_epoch is not None:
            on_epoch(record)

    model.load_state_dict(best_state)
    test = evaluate(model, data.test_images[:test_n], data.test_labels[:test_n], norm, device)
    train_seconds = sum(r.seconds for r in history)
    meta = {
        "config": config.to_dict(),
        "split": {
            "seed": config.split_seed,
            "n_train": int(len(train_idx)),
            "n_val": int(len(val_idx)),
            "val_indices_sha256": hashlib.sha256(val_idx.numpy().tobytes()).hexdigest(),
            "stratified": True,
        },
        "metrics": {
            "best_epoch": best_epoch,
            "val": best_val.to_dict(),
            "test": test.to_dict(),
            "train_seconds": train_seconds,
            "history": [asdict(r) for r in history],
        },
        "data": {"checksums_md5": data.checksums},
        "device": str(device),
    }
    path = save_checkpoint(out / CHECKPOINT_NAME, model.cpu(), config.model, config.model_kwargs, norm, meta)
    return TrainResult(path, best_epoch, best_val, test, train_seconds, history)
