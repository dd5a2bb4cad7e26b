"""The reading model: a digit classifier fine-tuned on the digits the segmenter cuts out of numbers.

A digit cut out of a number is not a clean MNIST digit: a seam through two touching digits leaves
a sliver of the neighbour on one side and takes a bit of the stroke from the other, and the pen,
blur and compression of a photo change the strokes. A model trained on clean MNIST reads such
cut-outs of touching digits about 1.5 points worse than the same digits clean. So a copy of the
base model is fine-tuned, with the project's training loop, on every true digit cut out of
numbers written from TRAINING-split digits (half of the neighbouring pairs touching) mixed with as
many clean training-split digits drawn afresh each epoch (the base recipe's affine augmentation on
both).

A felt-tip marker's number is cut up differently, and its digits are thinned on the way
(`reading.preprocess`), which leaves filled corners and closed loops no MNIST pen makes. So the
digits of 6,000 more numbers, each written with a pen up to 4 pixels wider, are cut up and learnt
from too. (`pen_augment` would also put every example through the `any_pen` recipe's pen and
scanner augmentations, as the default model's training does. Tried with the marker numbers, it
read marker numbers as well or better but numbers in MNIST's pen 0.65 points less often exactly,
over 1,200 validation numbers, so it is off.)

The epoch kept is the one that reads digits cut out of VALIDATION-split numbers best (MNIST's pen
and marker numbers together), provided clean validation accuracy stays within 0.1 point of the
start (the start itself is kept when no epoch beats it); a temperature and the reject threshold
are then fitted on the same validation cut-outs. Plain MNIST test accuracy is reported, never
used to choose.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from digitrec.evaluation.calibration import calibration_record
from digitrec.making.runs import (
    RunOptions,
    StepData,
    fine_tune_config,
    guarded_figures,
    inherited_split,
    labelled,
    provenance,
    run_task,
)
from digitrec.models.checkpoint import Checkpoint, load_checkpoint, save_payload
from digitrec.training import recipes
from digitrec.training.config import TrainConfig
from digitrec.training.data import checkpoint_split
from digitrec.training.metrics import predict_logits
from digitrec.training.task import Labelled, Task

PEN_AUGMENTATIONS = ("aug_stroke", "aug_blur", "aug_lowres", "aug_ink", "aug_grain", "aug_ink_p")
CLEAN_TOLERANCE = 0.001  # clean validation accuracy may fall at most this much (0.1 point)


@dataclass(frozen=True)
class ReaderRecipe:
    """How the shipped reading model was made (the defaults), or a smaller run of it."""

    numbers: int = 12000  # numbers of training-split digits cut up
    val_numbers: int = 1000  # numbers of validation-split digits cut up (choosing only)
    touch_probability: float = 0.5  # touching neighbours in the training numbers
    val_touch_probability: float = 0.2  # ... in the validation numbers, as benchmarks/reading.py writes them
    epochs: int = 5
    lr: float = 3e-4  # AdamW peak, OneCycle with a 10% warm-up
    batch_size: int = 128
    seed: int = 1000
    pen_numbers: int = 6000  # training-split numbers written with a marker and cut up as well (0: none)
    pen_val_numbers: int = 1000  # ... validation-split ones (choosing only)
    pen_widen: float = 4.0  # each marker number's pen is up to this many pixels wider at 28x28
    pen_augment: bool = False  # the `any_pen` recipe's pen and scanner augmentations on every example
    limit_eval: int | None = None  # evaluate the first N clean validation and test digits (smoke runs)


def reader_config(base: Checkpoint, recipe: ReaderRecipe, device: str = "auto") -> TrainConfig:
    base_config = base.meta.get("config", {})
    pen = {name: value for name, value in recipes.recipe("any_pen").items() if name in PEN_AUGMENTATIONS}
    return fine_tune_config(
        base,
        recipe,
        device,
        model_kwargs=dict(base.arch_kwargs),
        weight_decay=0.0,
        warmup=0.1,
        label_smoothing=base_config.get("label_smoothing", 0.0),
        augment=True,
        aug_degrees=base_config.get("aug_degrees", 10.0),
        aug_scale=base_config.get("aug_scale", 0.1),
        aug_translate=base_config.get("aug_translate", 2.0),
        aug_elastic=base_config.get("aug_elastic", 0.0),
        **(pen if recipe.pen_augment else {}),
    )


def reader_task(base: Checkpoint, inputs: StepData, limit_eval: int | None) -> Task:
    data = inputs.data
    train_idx, val_idx = checkpoint_split(base.meta, data.train_labels)
    val_idx = val_idx[:limit_eval] if limit_eval else val_idx
    test_n = limit_eval or len(data.test_labels)
    clean = Labelled(images=data.train_images[train_idx], labels=data.train_labels[train_idx])
    return Task(
        train=labelled(inputs.train),
        val=labelled(inputs.val),
        mix=clean,
        mix_per_epoch=min(len(inputs.train[1]), len(clean)),  # as many clean digits as cut-outs
        guard=Labelled(images=data.train_images[val_idx], labels=data.train_labels[val_idx]),
        guard_tolerance=CLEAN_TOLERANCE,
        test=Labelled(images=data.test_images[:test_n], labels=data.test_labels[:test_n]),
        meta={"split": inherited_split(base)},
    )


def fine_tune_reader(inputs: StepData, recipe: ReaderRecipe, out: str | Path, options: RunOptions) -> dict[str, Any]:
    """Fine-tune `inputs.base` (default: the shipped model) on the cut-outs in `inputs` in
    `options.run_dir` (model.pt, last.pt, metrics.jsonl: `options.resume` continues it), calibrate
    it on the validation cut-outs and write the reading model to `out`. Returns what it records in
    `meta["metrics"]`."""
    base = load_checkpoint(inputs.base)
    task = reader_task(base, inputs, recipe.limit_eval)
    trained = run_task(reader_config(base, recipe, options.device), inputs.data, task, options)
    payload, model = trained.payload, trained.checkpoint
    logits = predict_logits(model.model, task.val.images, model.normalization)
    payload["calibration"] = calibration_record(
        logits, task.val.labels, "temperature scaling, NLL on the validation cut-outs"
    )
    payload["metrics"].update(
        {
            **guarded_figures(trained, "cutouts"),
            "base_test_accuracy": base.meta.get("metrics", {}).get("test", {}).get("accuracy"),
        }
    )
    payload["reader"] = {
        **provenance(base, recipe),
        "train_cutouts": len(task.train),
        "val_cutouts": len(task.val),
        "train_cutouts_sha256": hashlib.sha256(inputs.train[0].tobytes()).hexdigest(),
    }
    save_payload(payload, out)
    return {k: v for k, v in payload["metrics"].items() if k != "history"}
