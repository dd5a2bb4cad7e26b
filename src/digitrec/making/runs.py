"""What the making steps share: cut-outs as training examples, the split a new model inherits
from its base, the training settings of a model started from a base, and a training run of the
project's one loop whose checkpoint is then completed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from digitrec.making.cutouts import Pair
from digitrec.models.checkpoint import Checkpoint, load_checkpoint, read_payload
from digitrec.training.config import TrainConfig
from digitrec.training.data import Mnist, split_parameters
from digitrec.training.loop import train
from digitrec.training.records import EpochRecord, TrainResult
from digitrec.training.task import Labelled, Task


@dataclass(frozen=True)
class RunOptions:
    """Where and how a making step's training run runs (not what it learns)."""

    run_dir: Path  # the run's model.pt, last.pt and metrics.jsonl
    device: str = "auto"
    resume: bool = False  # continue the run directory's last.pt
    progress: bool = False  # a progress bar per epoch
    on_epoch: Callable[[EpochRecord], None] | None = None


@dataclass(frozen=True)
class StepData:
    """What the reading model's and the checker's steps learn from (build.py hands both the same)."""

    base: str | Path | None  # the checkpoint whose layers the model starts from (None: the shipped model)
    data: Mnist
    train: Pair  # cut out of training-split numbers
    val: Pair  # cut out of validation-split numbers (choosing only)


@dataclass(frozen=True)
class Trained:
    result: TrainResult
    payload: dict[str, Any]  # the run's checkpoint file, to complete and save where the step writes
    checkpoint: Checkpoint  # the same, loaded


def labelled(pair: Pair) -> Labelled:
    return Labelled(images=torch.from_numpy(pair[0]), labels=torch.from_numpy(pair[1]))


def inherited_split(base: Checkpoint) -> dict[str, Any]:
    """The base checkpoint's split record, completed so it stands on its own in the new file."""
    return {**base.meta["split"], **split_parameters(base.meta)}


def provenance(base: Checkpoint, recipe: Any) -> dict[str, Any]:
    """What a made file records about where it came from (`recipe` is a dataclass)."""
    return {
        "made_by": "digitrec build-weights",
        "base_model": Path(str(base.path)).name,
        "base_weights_sha256": base.meta.get("weights_sha256"),
        "recipe": asdict(recipe),
    }


def fine_tune_config(base: Checkpoint, recipe: Any, device: str, **settings: Any) -> TrainConfig:
    """A run of `base`'s architecture started from its weights, with the recipe's epochs, batch
    size, peak learning rate and seed (`recipe` is a step's recipe dataclass), a OneCycle schedule,
    no EMA and no calibration in the loop (a step calibrates what it writes, or not, itself);
    `settings` are the rest of the step's `TrainConfig` fields."""
    return TrainConfig(
        model=base.arch,
        init_from=str(base.path),
        epochs=recipe.epochs,
        batch_size=recipe.batch_size,
        lr=recipe.lr,
        schedule="onecycle",
        ema=None,
        calibrate=False,
        seed=recipe.seed,
        device=device,
        **settings,
    )


def train_run(config: TrainConfig, data: Mnist, options: RunOptions, task: Task | None = None) -> TrainResult:
    """The project's training loop, run as `options` say, on `task` (None: MNIST's split)."""
    return train(
        config,
        data,
        options.run_dir,
        on_epoch=options.on_epoch,
        progress=options.progress,
        resume=options.resume,
        task=task,
    )


def run_task(config: TrainConfig, data: Mnist, task: Task, options: RunOptions) -> Trained:
    result = train_run(config, data, options, task)
    return Trained(
        result=result, payload=read_payload(result.checkpoint), checkpoint=load_checkpoint(result.checkpoint)
    )


def guarded_figures(trained: Trained, name: str) -> dict[str, Any]:
    """What a run fine-tuned under a guard (`Task.guard`: clean validation digits) records beside
    its metrics: its own validation accuracy, called `name`, and the guard's, at the epoch kept and
    with the starting weights."""
    result, start = trained.result, trained.payload["metrics"]["start"]
    kept = result.history[result.best_epoch - 1].guard_accuracy if result.best_epoch else start["guard_accuracy"]
    return {
        f"val_{name}_accuracy": result.val.accuracy,
        f"val_{name}_accuracy_start": start["val"]["accuracy"],
        "val_accuracy": kept,  # clean validation digits
        "val_accuracy_start": start["guard_accuracy"],
    }
