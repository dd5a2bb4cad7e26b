"""The segmenter's one-digit checker: is a candidate cut out of a number exactly one digit?

Reading a number tries many ways of grouping its ink into digits. The digit classifier alone is a
poor judge of a grouping: two touching digits squeezed into a 28x28 box often look like a
confident "0" or "8", and half of a "4" like a "1". The checker is a CNN with two classes (the
base model's architecture, its layers but the last started from the base's weights) that sees
the same 28x28 candidate images and answers "one digit or not"; its log-odds is one of the
segment verifier's features. It is trained with the project's training loop on every candidate
the segmenter cuts out of numbers written from TRAINING-split digits (1 when it is one of the true
digits), the two classes weighted equally (most candidates are not digits), keeping the epoch
with the lowest loss on candidates of VALIDATION-split numbers. Some of the numbers are written
with a marker (`pen_numbers`, as the reading model's): a marker's candidates are thinned, and
their pieces and merged pairs look unlike those of MNIST's pen.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from digitrec.making.runs import RunOptions, StepData, fine_tune_config, inherited_split, labelled, provenance, run_task
from digitrec.models.checkpoint import Checkpoint, load_checkpoint, save_payload
from digitrec.training.config import TrainConfig
from digitrec.training.metrics import predict_logits
from digitrec.training.task import Labelled, Task

CLASSES = ["not one digit", "one digit"]


@dataclass(frozen=True)
class CheckerRecipe:
    """How the shipped checker was made (the defaults), or a smaller run of it."""

    numbers: int = 4000  # numbers of training-split digits cut up
    val_numbers: int = 400  # numbers of validation-split digits cut up (choosing only)
    touch_probability: float = 0.3
    pen_numbers: int = 2000  # training-split numbers written with a marker and cut up as well (0: none)
    pen_val_numbers: int = 200  # ... validation-split ones (choosing only)
    pen_widen: float = 4.0  # each marker number's pen is up to this many pixels wider at 28x28
    epochs: int = 4
    lr: float = 2e-3  # AdamW peak (OneCycle), AdamW's default weight decay
    batch_size: int = 256
    seed: int = 2000


def checker_config(base: Checkpoint, recipe: CheckerRecipe, device: str = "auto") -> TrainConfig:
    return fine_tune_config(
        base,
        recipe,
        device,
        model_kwargs={**base.arch_kwargs, "classes": 2},
        weight_decay=0.01,
        label_smoothing=0.0,
        augment=False,
        select="loss",
        balance_classes=True,
    )


def recalls(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Each class's recall and their mean (balanced accuracy): chance is 0.5 however rare digits are."""
    predicted = logits.argmax(1)
    recall = [float((predicted[labels == c] == c).float().mean()) for c in (0, 1)]
    return {"val_balanced_accuracy": sum(recall) / 2, "val_recall_not_digit": recall[0], "val_recall_digit": recall[1]}


def train_checker(inputs: StepData, recipe: CheckerRecipe, out: str | Path, options: RunOptions) -> dict[str, Any]:
    """Train the checker from `inputs.base`'s layers (default: the shipped model) on the
    candidates in `inputs` (`options.resume` continues the run) and write it to `out`. Returns what
    it records in `meta["metrics"]`."""
    base = load_checkpoint(inputs.base)
    task = Task(
        train=labelled(inputs.train),
        val=labelled(inputs.val),
        meta={"split": inherited_split(base), "class_labels": CLASSES},
    )
    trained = run_task(checker_config(base, recipe, options.device), inputs.data, task, options)
    payload, model = trained.payload, trained.checkpoint
    logits = predict_logits(model.model, task.val.images, model.normalization)
    payload["metrics"].update({"val_loss": trained.result.val.loss, **recalls(logits, task.val.labels)})
    payload["checker"] = {**provenance(base, recipe), **_counts("train", task.train), **_counts("val", task.val)}
    save_payload(payload, out)
    return {k: v for k, v in payload["metrics"].items() if k != "history"}


def _counts(name: str, part: Labelled) -> dict[str, int]:
    return {f"{name}_candidates": len(part), f"{name}_digits": int(part.labels.sum())}
