"""The training loop: AdamW + cross-entropy on in-memory batches, best-on-validation kept.

The one loop every model of the project is trained with: `digitrec train` on MNIST's split, and
`digitrec build-weights` fine-tuning the reading model and training the one-digit checker on
digits cut out of written numbers (a `Task`). `train()` returns a `TrainResult`; it prints,
calibrates and plots nothing (`digitrec train` does those with the result). Per-epoch records go
to the `on_epoch` callback (the CLI prints them), to ``metrics.jsonl`` in the run directory, and
optionally to TensorBoard. After every epoch the complete training state is written atomically
to ``last.pt``, so ``resume=True`` continues from the last finished epoch and ends bit-for-bit
where an uninterrupted run would (on CPU): every epoch's randomness (shuffle, the examples drawn,
augmentation, dropout) is seeded from (seed, epoch, rank), so no generator state has to be
carried over. Under torchrun each rank trains on its own shard of the epoch; only rank 0
evaluates and writes.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel

from digitrec.device import pick_device
from digitrec.errors import ConfigError
from digitrec.models import create_model
from digitrec.models.checkpoint import save_checkpoint, weights_sha256
from digitrec.models.inputs import Normalization
from digitrec.training import distributed
from digitrec.training.augment import InkAugment
from digitrec.training.config import TrainConfig
from digitrec.training.data import Mnist
from digitrec.training.metrics import Metrics, evaluate
from digitrec.training.optim import autocast, class_weights, ema_update, make_scheduler, resolve_amp, start_weights
from digitrec.training.pipeline import Augment, batches, epoch_order
from digitrec.training.records import STATE_NAME, EpochRecord, RunState, TrainResult, restore_state, save_state
from digitrec.training.task import Labelled, Task, mnist_task

CHECKPOINT_NAME = "model.pt"  # the best-on-validation model, a digitrec checkpoint
METRICS_NAME = "metrics.jsonl"
CURVES_NAME = "curves.png"  # drawn by `digitrec train` from the result's history
NAN = Metrics(loss=float("nan"), accuracy=float("nan"), n=0)


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


@dataclass
class _Run:
    """The moving parts of one training run (built by `_prepare`)."""

    config: TrainConfig
    task: Task
    pool: Labelled  # what the epochs draw their examples from (`Task.pool`)
    out: Path
    device: torch.device
    world: distributed.World
    norm: Normalization
    model: nn.Module
    net: nn.Module  # the model as trained: wrapped for data parallelism, compiled
    optimizer: torch.optim.Optimizer
    scheduler: Any
    ema: AveragedModel | None
    weight: torch.Tensor | None  # class weights of the loss
    per_rank_batch: int
    steps_per_epoch: int
    digest: str  # of the task: a run resumes only on the data it started with
    state: RunState = field(default_factory=RunState)
    tensorboard: Any = None

    @property
    def modules(self) -> dict[str, Any]:
        return {"model": self.model, "optimizer": self.optimizer, "scheduler": self.scheduler, "ema": self.ema}

    @property
    def scored(self) -> nn.Module:
        """The weights validated and saved: the averaged ones when EMA is on."""
        return self.ema.module if self.ema is not None else self.model

    def score(self, model: nn.Module) -> tuple[Metrics, float | None]:
        """Validation metrics (with the loss's class weights) and, when the task has one,
        accuracy on its guard set."""
        task, norm, device = self.task, self.norm, self.device
        val = evaluate(model, task.val.images, task.val.labels, norm, device, weight=self.weight)
        guard = None if task.guard is None else evaluate(model, task.guard.images, task.guard.labels, norm, device)
        return val, None if guard is None else guard.accuracy


def _prepare(config: TrainConfig, task: Task, out: Path, device: torch.device, world: distributed.World) -> _Run:
    """Build the model (from `init_from` when given), optimiser, schedule, EMA and loss weights."""
    torch.manual_seed(config.seed)  # same initial weights on every rank
    model = create_model(config.model, **config.model_kwargs)
    norm = start_weights(config, model)
    model = model.to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    weight = class_weights(config, task.train.labels, int(task.train.labels.max()) + 1)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, betas=config.betas, weight_decay=config.weight_decay
    )
    per_rank_batch = max(1, config.batch_size // world.size)  # the global batch stays config.batch_size
    steps_per_epoch = -(-(task.examples_per_epoch // world.size) // per_rank_batch)
    net: nn.Module = model
    if world.distributed:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if config.compile:
        net = torch.compile(net)  # type: ignore[assignment]
    return _Run(
        config=config,
        task=task,
        pool=task.pool(),
        out=out,
        device=device,
        world=world,
        norm=norm,
        model=model,
        net=net,
        optimizer=optimizer,
        scheduler=make_scheduler(config, optimizer, config.epochs * steps_per_epoch),
        ema=AveragedModel(model, multi_avg_fn=ema_update(config.ema), use_buffers=True) if config.ema else None,
        weight=weight.to(device) if weight is not None else None,
        per_rank_batch=per_rank_batch,
        steps_per_epoch=steps_per_epoch,
        digest=task.digest(),
    )


def ink_augment(config: TrainConfig) -> InkAugment:
    """The pen and scanner augmentations a config turns on (inactive when none is)."""
    return InkAugment(
        stroke=config.aug_stroke,
        blur=config.aug_blur,
        lowres=config.aug_lowres,
        ink=config.aug_ink,
        grain=config.aug_grain,
        p=config.aug_ink_p,
    )


def _stream(run: _Run, epoch: int, progress: bool) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
    """This rank's batches of one epoch: the epoch's examples (`Task.epoch_examples`), shuffled,
    sharded across ranks, augmented; every draw seeded from (seed, epoch, rank)."""
    config, world = run.config, run.world
    examples = run.task.epoch_examples(torch.Generator().manual_seed(_seed(config.seed, epoch, 0, 3)))
    shuffle = torch.Generator().manual_seed(_seed(config.seed, epoch, 0))
    order = examples[epoch_order(len(examples), shuffle, world.rank, world.size)]
    augment = (
        Augment(config.aug_degrees, config.aug_scale, config.aug_translate, config.aug_elastic)
        if config.augment
        else None
    )
    stream: Iterable[tuple[torch.Tensor, torch.Tensor]] = batches(
        run.pool.images,
        run.pool.labels,
        run.per_rank_batch,
        run.norm,
        order=order,
        augment=augment,
        ink=ink_augment(config),
        device=run.device,
        generator=torch.Generator().manual_seed(_seed(config.seed, epoch, world.rank, 2)),
    )
    if progress and world.is_main:
        from tqdm import tqdm

        stream = tqdm(
            stream, total=run.steps_per_epoch, desc=f"epoch {epoch}/{config.epochs}", leave=False, unit="batch"
        )
    return stream


def _train_epoch(run: _Run, stream: Iterable[tuple[torch.Tensor, torch.Tensor]], amp: Any) -> tuple[float, int, int]:
    config, net, optimizer = run.config, run.net, run.optimizer
    loss_sum, correct, seen = 0.0, 0, 0
    for x, y in stream:
        if config.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with amp:
            logits = net(x)  # (B, 1, 28, 28) -> (B, classes)
            loss = F.cross_entropy(logits.float(), y, weight=run.weight, label_smoothing=config.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if run.scheduler is not None:
            run.scheduler.step()
        if run.ema is not None:
            run.ema.update_parameters(run.model)
        loss_sum += loss.item() * len(y)
        correct += (logits.argmax(1) == y).sum().item()
        seen += len(y)
    return loss_sum, correct, seen


def _keeps(run: _Run, val: Metrics, guard: float | None) -> bool:
    """Whether this epoch replaces the best so far: better on validation (accuracy, or loss with
    `select = "loss"`), and within the guard's tolerance of the starting weights."""
    state = run.state
    if (
        guard is not None
        and state.start is not None
        and guard < state.start["guard_accuracy"] - run.task.guard_tolerance
    ):
        return False
    if state.best_val is None:
        return True
    if run.config.select == "loss":
        return (-val.loss, val.accuracy) > (-state.best_val.loss, state.best_val.accuracy)
    return (val.accuracy, -val.loss) > (state.best_val.accuracy, -state.best_val.loss)


def _start_logs(run: _Run, resume: bool) -> None:
    """Resume or start the run's records (rank 0): the starting weights' scores (fine-tuning:
    epoch 0, kept unless an epoch beats them), metrics.jsonl and TensorBoard."""
    state, out = run.state, run.out
    if resume:
        run.state = state = restore_state(out / STATE_NAME, run.config, run.digest, run.modules)
    if not run.world.is_main:
        return
    for stale in out.glob(".*.tmp"):  # left by a process killed while writing
        stale.unlink(missing_ok=True)
    if run.config.init_from is not None and state.start is None:
        val, guard = run.score(run.model)
        state.start = {"val": val.to_dict(), "guard_accuracy": guard}
        state.best_state, state.best_val, state.best_epoch = copy.deepcopy(run.model.state_dict()), val, 0
    if run.config.tensorboard:
        from digitrec.training.tensorboard import TensorBoardLogger

        run.tensorboard = TensorBoardLogger(out / "tensorboard")
        for record in state.history:
            run.tensorboard.log_epoch(asdict(record))
    (out / METRICS_NAME).write_text("".join(json.dumps(asdict(r)) + "\n" for r in state.history))


def _end_epoch(
    run: _Run, epoch: int, seconds: float, sums: list[float], on_epoch: Callable[[EpochRecord], None] | None
) -> None:
    """Score the epoch (rank 0) and keep it if it is the best, then write last.pt, then its
    metrics line (so a metrics line always has a last.pt that covers it), TensorBoard, and tell
    the caller. `sums`: training loss, right answers and examples over all ranks."""
    state = run.state
    val, guard = run.score(run.scored)
    loss_sum, right, seen = sums
    record = EpochRecord(
        epoch=epoch,
        train_loss=loss_sum / seen,
        train_accuracy=right / seen,
        val_loss=val.loss,
        val_accuracy=val.accuracy,
        seconds=seconds,
        lr=run.optimizer.param_groups[0]["lr"],
        guard_accuracy=guard,
    )
    state.history.append(record)
    if _keeps(run, val, guard):
        state.best_state = copy.deepcopy(run.scored.state_dict())
        state.best_val, state.best_epoch = val, epoch
    save_state(run.out / STATE_NAME, run.config, run.digest, run.modules, state)
    with (run.out / METRICS_NAME).open("a") as handle:
        handle.write(json.dumps(asdict(record)) + "\n")
    if run.tensorboard is not None:
        run.tensorboard.log_epoch(asdict(record))
    if on_epoch is not None:
        on_epoch(record)


def train(
    config: TrainConfig,
    data: Mnist,
    out_dir: str | os.PathLike,
    on_epoch: Callable[[EpochRecord], None] | None = None,
    progress: bool = False,
    resume: bool = False,
    task: Task | None = None,
) -> TrainResult:
    """Train `config.model` on `task` (default: MNIST's split as `config` says) and write the
    best epoch's weights to ``out_dir/model.pt``. `data` supplies the default task and the data
    checksums the checkpoint records."""
    device = pick_device(config.device)
    world = distributed.init(device)
    if world.distributed and device.type == "cuda":
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
    out = prepare_out_dir(out_dir)
    task = task or mnist_task(config, data)
    if task.guard is not None and config.init_from is None:
        raise ConfigError("a guard set needs starting weights (init_from) to compare with")
    run = _prepare(config, task, out, device, world)
    _start_logs(run, resume)
    amp = autocast(config, device)
    for epoch in range(run.state.epoch + 1, config.epochs + 1):
        run.model.train()
        torch.manual_seed(_seed(config.seed, epoch, world.rank, 1))  # dropout
        start = time.perf_counter()
        loss_sum, correct, seen = _train_epoch(run, _stream(run, epoch, progress), amp)
        seconds = time.perf_counter() - start
        sums = distributed.all_reduce_sum([loss_sum, float(correct), float(seen)], world)
        run.state.epoch = epoch
        if world.is_main:
            _end_epoch(run, epoch, seconds, sums, on_epoch)
        distributed.barrier(world)

    # every rank's final parameters: identical across ranks when data parallelism is right
    final_params = weights_sha256({k: v for k, v in run.model.named_parameters()})
    result = _finish(run, data) if world.is_main else None
    if run.tensorboard is not None:
        run.tensorboard.close()
    distributed.barrier(world)
    distributed.shutdown(world)
    if result is None:  # other ranks: rank 0 owns metrics and files
        result = TrainResult(checkpoint=out / CHECKPOINT_NAME, best_epoch=0, val=NAN, test=NAN, train_seconds=0.0)
    result.final_params_sha256 = final_params
    result.rank, result.world_size = world.rank, world.size
    return result


def _finish(run: _Run, data: Mnist) -> TrainResult:
    """Reload the best-on-validation weights, report test metrics, write the checkpoint."""
    config, state, task = run.config, run.state, run.task
    if state.best_state is None or state.best_val is None:
        raise ConfigError("no epoch was trained: nothing to save")
    model = create_model(config.model, **config.model_kwargs)
    model.load_state_dict(state.best_state)
    model.to(run.device)
    test = NAN
    if task.test is not None:
        test = evaluate(model, task.test.images, task.test.labels, run.norm, run.device, weight=run.weight)
    train_seconds = sum(r.seconds for r in state.history)
    metrics = {
        "best_epoch": state.best_epoch,
        "val": state.best_val.to_dict(),
        **({"test": test.to_dict()} if task.test is not None else {}),
        "train_seconds": train_seconds,
        "history": [asdict(r) for r in state.history],
        **({"start": state.start} if state.start is not None else {}),
    }
    meta = {
        "config": config.to_dict(),
        **task.meta,
        "metrics": metrics,
        "data": {"checksums_md5": data.checksums},
        "device": str(run.device),
        "amp": resolve_amp(config.amp, run.device),
    }
    path = save_checkpoint(run.out / CHECKPOINT_NAME, model.cpu(), config.model, config.model_kwargs, run.norm, meta)
    return TrainResult(
        checkpoint=path,
        best_epoch=state.best_epoch,
        val=state.best_val,
        test=test,
        train_seconds=train_seconds,
        history=state.history,
    )
