"""The training loop: Adam + cross-entropy on in-memory batches, best-on-validation kept.

`train()` returns a `TrainResult`; it prints nothing. Per-epoch records go to the `on_epoch`
callback (the CLI prints them), to ``metrics.jsonl`` in the run directory, and optionally to
TensorBoard. After every epoch the complete training state is written atomically to
``last.pt``, so ``resume=True`` continues from the last finished epoch and ends bit-for-bit
where an uninterrupted run would (on CPU): every epoch's randomness (shuffle, augmentation,
dropout) is seeded from (seed, epoch, rank), so no generator state has to be carried over.
Under torchrun each rank trains on its own shard of the epoch; only rank 0 evaluates and writes.
"""

from __future__ import annotations

import contextlib
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
from torch.optim.swa_utils import AveragedModel

from digitrec.training import distributed
from digitrec.models.checkpoint import save_checkpoint, save_payload, weights_sha256
from digitrec.training.config import TrainConfig
from digitrec.training.data import Mnist, stratified_split
from digitrec.device import pick_device
from digitrec.errors import CheckpointError, ConfigError
from digitrec.training.metrics import Metrics, evaluate
from digitrec.models import create_model
from digitrec.training.pipeline import Augment, batches, epoch_order
from digitrec.models.inputs import Normalization

CHECKPOINT_NAME = "model.pt"  # the best-on-validation model, a digitrec checkpoint
STATE_NAME = "last.pt"  # full training state after the last finished epoch, for --resume
METRICS_NAME = "metrics.jsonl"
CURVES_NAME = "curves.png"
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


@dataclass
class TrainResult:
    checkpoint: Path
    best_epoch: int
    val: Metrics
    test: Metrics
    train_seconds: float  # sum of the training loops, excluding data loading and evaluation
    history: list[EpochRecord] = field(default_factory=list)
    calibration: dict[str, Any] | None = None
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


def _seed(*parts: int) -> int:
    """A reproducible 63-bit seed from (seed, epoch, rank, purpose)."""
    digest = hashlib.sha256(",".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


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


def resolve_amp(mode: str, device: torch.device) -> str:
    """The mixed-precision mode actually used: "auto" becomes bf16 only where bf16 is native.

    On a CPU without AVX512-BF16 or AMX, bf16 is emulated and slower than float32.
    """
    if mode != "auto":
        return mode
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "none"
    if device.type == "cpu":
        try:
            native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
        except AttributeError:  # private helpers; older or newer torch may lack them
            native = False
        return "bf16" if native else "none"
    return "none"


def _autocast(config: TrainConfig, device: torch.device):
    amp = resolve_amp(config.amp, device)
    if amp == "none":
        return contextlib.nullcontext()
    if amp == "fp16" and device.type != "cuda":
        raise ConfigError("amp = fp16 needs a CUDA device; use bf16 on the CPU")
    return torch.autocast(device.type, dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


def _ema_update(decay: float):
    """EMA with warm-up: decay min(decay, (1+n)/(10+n)) after n updates (as timm's ModelEmaV2 and
    TensorFlow do), so short runs are not dominated by the random initial weights."""

    @torch.no_grad()
    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], num_averaged: torch.Tensor) -> None:
        n = float(num_averaged)
        weight = 1 - min(decay, (1 + n) / (10 + n))
        for avg, cur in zip(averaged, current):
            avg.lerp_(cur, weight) if avg.is_floating_point() else avg.copy_(cur)

    return update


@dataclass
class _State:
    """What `last.pt` carries besides the module/optimizer states."""

    epoch: int = 0
    history: list[EpochRecord] = field(default_factory=list)
    best_state: dict[str, torch.Tensor] | None = None
    best_val: Metrics | None = None
    best_epoch: int = 0


def _save_state(path: Path, config: TrainConfig, model: nn.Module, optimizer, scheduler, ema, state: _State) -> None:
    save_payload({
        "format": STATE_FORMAT,
        "config": config.to_dict(),
        "epoch": state.epoch,
        "history": [asdict(r) for r in state.history],
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "ema": ema.state_dict() if ema is not None else None,
        "best_state": state.best_state,
        "best_val": state.best_val.to_dict() if state.best_val else None,
        "best_epoch": state.best_epoch,
    }, path)


def read_resume_config(run_dir: str | os.PathLike) -> TrainConfig:
    """The config a run was started with, from its `last.pt` (to resume it as it was)."""
    return TrainConfig.from_dict(_load_state(Path(run_dir) / STATE_NAME)["config"])


def _load_state(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise CheckpointError(f"{path.parent}: nothing to resume (no {STATE_NAME}; the first epoch never finished?)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any unreadable file is a user-facing error here
        raise CheckpointError(f"{path}: unreadable training state ({type(exc).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != STATE_FORMAT:
        raise CheckpointError(f"{path}: not a digitrec training state")
    return payload


def _restore(path: Path, config: TrainConfig, model, optimizer, scheduler, ema) -> _State:
    payload = _load_state(path)
    if payload["config"] != config.to_dict():
        raise ConfigError(f"{path}: the run was started with a different config; resume it without changing flags")
    model.load_state_dict(payload["model"])
    optimizer.load_state_dict(payload["optimizer"])
    if scheduler is not None:
        scheduler.load_state_dict(payload["scheduler"])
    if ema is not None:
        ema.load_state_dict(payload["ema"])
    best_val = Metrics(**payload["best_val"]) if payload["best_val"] else None
    return _State(payload["epoch"], [EpochRecord(**r) for r in payload["history"]],
                  payload["best_state"], best_val, payload["best_epoch"])


def _train_epoch(net, optimizer, scheduler, ema, stream, config: TrainConfig, autocast) -> tuple[float, int, int]:
    loss_sum, correct, seen = 0.0, 0, 0
    for x, y in stream:
        if config.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast:
            logits = net(x)  # (B, 1, 28, 28) -> (B, 10)
            loss = F.cross_entropy(logits.float(), y, label_smoothing=config.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        if ema is not None:
            ema.update_parameters(net.module if hasattr(net, "module") else net)
        loss_sum += loss.item() * len(y)
        correct += (logits.argmax(1) == y).sum().item()
        seen += len(y)
    return loss_sum, correct, seen


def train(
    config: TrainConfig,
    data: Mnist,
    out_dir: str | os.PathLike,
    on_epoch: Callable[[EpochRecord], None] | None = None,
    progress: bool = False,
    resume: bool = False,
) -> TrainResult:
    device = pick_device(config.device)
    world = distributed.init(device)
    if world.distributed and device.type == "cuda":
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
    out = prepare_out_dir(out_dir)
    norm = Normalization()

    train_idx, val_idx = stratified_split(data.train_labels, config.n_val, config.split_seed)
    if config.limit_train is not None:
        train_idx = _slice_stratified(train_idx, data.train_labels, config.limit_train, config.split_seed)
    val_idx = val_idx[: config.limit_eval] if config.limit_eval else val_idx
    test_n = config.limit_eval or len(data.test_labels)
    train_x, train_y = data.train_images[train_idx], data.train_labels[train_idx]
    val_x, val_y = data.train_images[val_idx], data.train_labels[val_idx]

    torch.manual_seed(config.seed)  # same initial weights on every rank
    model = create_model(config.model, **config.model_kwargs).to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, betas=config.betas, weight_decay=config.weight_decay)
    per_rank_batch = max(1, config.batch_size // world.size)  # the global batch stays config.batch_size
    steps_per_epoch = -(-(len(train_idx) // world.size) // per_rank_batch)
    scheduler = _scheduler(config, optimizer, config.epochs * steps_per_epoch)
    ema = AveragedModel(model, multi_avg_fn=_ema_update(config.ema), use_buffers=True) if config.ema else None
    augment = (Augment(config.aug_degrees, config.aug_scale, config.aug_translate, config.aug_elastic)
               if config.augment else None)
    state = _restore(out / STATE_NAME, config, model, optimizer, scheduler, ema) if resume else _State()
    if world.is_main:
        for stale in out.glob(".*.tmp"):  # left by a process killed while writing
            stale.unlink(missing_ok=True)

    net: nn.Module = model
    if world.distributed:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if config.compile:
        net = torch.compile(net)
    autocast = _autocast(config, device)
    tensorboard = None
    if config.tensorboard and world.is_main:
        from digitrec.training.tensorboard import TensorBoardLogger

        tensorboard = TensorBoardLogger(out / "tensorboard")
        for record in state.history:
            tensorboard.log_epoch(asdict(record))
    if world.is_main:
        (out / METRICS_NAME).write_text("".join(json.dumps(asdict(r)) + "\n" for r in state.history))

    for epoch in range(state.epoch + 1, config.epochs + 1):
        model.train()
        torch.manual_seed(_seed(config.seed, epoch, world.rank, 1))  # dropout
        order = epoch_order(len(train_idx), torch.Generator().manual_seed(_seed(config.seed, epoch, 0)),
                            world.rank, world.size)
        stream = batches(train_x, train_y, per_rank_batch, norm, order=order, augment=augment, device=device,
                         generator=torch.Generator().manual_seed(_seed(config.seed, epoch, world.rank, 2)))
        if progress and world.is_main:
            from tqdm import tqdm

            stream = tqdm(stream, total=steps_per_epoch, desc=f"epoch {epoch}/{config.epochs}", leave=False, unit="batch")
        start = time.perf_counter()
        loss_sum, correct, seen = _train_epoch(net, optimizer, scheduler, ema, stream, config, autocast)
        seconds = time.perf_counter() - start
        loss_sum, correct, seen = distributed.all_reduce_sum([loss_sum, correct, seen], world)
        state.epoch = epoch
        if world.is_main:
            scored = ema.module if ema is not None else model
            val = evaluate(scored, val_x, val_y, norm, device)
            record = EpochRecord(epoch, loss_sum / seen, correct / seen, val.loss, val.accuracy, seconds,
                                 optimizer.param_groups[0]["lr"])
            state.history.append(record)
            if state.best_val is None or (val.accuracy, -val.loss) > (state.best_val.accuracy, -state.best_val.loss):
                state.best_state = copy.deepcopy(scored.state_dict())
                state.best_val, state.best_epoch = val, epoch
            # state first: a metrics line always has a last.pt that covers it
            _save_state(out / STATE_NAME, config, model, optimizer, scheduler, ema, state)
            with (out / METRICS_NAME).open("a") as handle:
                handle.write(json.dumps(asdict(record)) + "\n")
            if tensorboard is not None:
                tensorboard.log_epoch(asdict(record))
            if on_epoch is not None:
                on_epoch(record)
        distributed.barrier(world)

    # every rank's final parameters: identical across ranks when data parallelism is right
    final_params = weights_sha256({k: v for k, v in model.named_parameters()})
    result = _finish(config, data, out, state, test_n, train_idx, val_idx, norm, device) if world.is_main else None
    if tensorboard is not None:
        tensorboard.close()
    distributed.barrier(world)
    distributed.shutdown(world)
    if result is None:  # other ranks: rank 0 owns metrics and files
        nan = Metrics(float("nan"), float("nan"), 0)
        result = TrainResult(out / CHECKPOINT_NAME, 0, nan, nan, 0.0, [])
    result.final_params_sha256 = final_params
    result.rank, result.world_size = world.rank, world.size
    return result


def _finish(config: TrainConfig, data: Mnist, out: Path, state: _State, test_n: int, train_idx: torch.Tensor,
            val_idx: torch.Tensor, norm: Normalization, device: torch.device) -> TrainResult:
    """Reload the best-on-validation weights, report test metrics, write the checkpoint."""
    model = create_model(config.model, **config.model_kwargs)
    model.load_state_dict(state.best_state)
    model.to(device)
    test = evaluate(model, data.test_images[:test_n], data.test_labels[:test_n], norm, device)
    train_seconds = sum(r.seconds for r in state.history)
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
            "best_epoch": state.best_epoch,
            "val": state.best_val.to_dict(),
            "test": test.to_dict(),
            "train_seconds": train_seconds,
            "history": [asdict(r) for r in state.history],
        },
        "data": {"checksums_md5": data.checksums},
        "device": str(device),
        "amp": resolve_amp(config.amp, device),
    }
    path = save_checkpoint(out / CHECKPOINT_NAME, model.cpu(), config.model, config.model_kwargs, norm, meta)
    calibration = None
    if config.calibrate:
        from digitrec.evaluation.calibration import calibrate_checkpoint

        calibration = calibrate_checkpoint(path, data, "cpu")
    from digitrec.evaluation.plots import plot_curves

    plot_curves([asdict(r) for r in state.history], out / CURVES_NAME)
    return TrainResult(path, state.best_epoch, state.best_val, test, train_seconds, state.history, calibration)
