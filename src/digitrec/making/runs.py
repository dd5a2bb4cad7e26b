"""What the making steps share: cut-outs as training examples, the split a new model inherits
from its base, and a training run of the project's one loop whose checkpoint is then completed."""

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
    """How a making step's training run runs (not what it learns)."""

    device: str = "auto"
    resume: bool = False  # continue the run directory's last.pt
    progress: bool = False  # a progress bar per epoch
    on_epoch: Callable[[EpochRecord], None] | None = None


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


def run_task(config: TrainConfig, data: Mnist, task: Task, run_dir: str | Path, options: RunOptions) -> Trained:
    result = train(
        config, data, run_dir, on_epoch=options.on_epoch, progress=options.progress, resume=options.resume, task=task
    )
    return Trained(
        result=result, payload=read_payload(result.checkpoint), checkpoint=load_checkpoint(result.checkpoint)
    )
