"""The default model fine-tuned on digits written with other pens and seen by other scanners.

The `any_pen` recipe's augmentations change a 28x28 digit: they widen its strokes, blur it, grey
its ink. What the model is handed in `predict` is different: a page written with a marker, then
found, cropped, thinned to MNIST's stroke width when its strokes are a marker's, and fitted to the
20-pixel box by the product's own preprocessing (`prepare_digit`). A thinned marker digit is a thin
digit whose loops have closed and whose strokes have merged, which no augmentation of a thin
digit makes. So the default model is fine-tuned on what preprocessing makes of written pages:

- every plain training-split digit, each epoch, as it was trained (with the `any_pen`
  augmentations);
- `mix_per_epoch` drawn afresh each epoch from `rendered_digits` training-split digits written and
  scanned under a robustness condition (`digitrec.reading.conditions`), `marker_share` of them with
  a marker of any width in a range wider than the benchmark's, and preprocessed as `predict` does;
- the epoch kept is the best on validation-split digits rendered under every condition (the
  benchmark's conditions, `val_per_condition` each), among those whose plain validation accuracy
  stays within `guard_tolerance` of the starting model's; then the temperature and the reject
  threshold are fitted again on the plain validation split, as `digitrec train` does.

Rendering and preprocessing is most of the making; it runs in `jobs` processes, in chunks with
seeds of their own, so the examples do not depend on how many processes made them, and is cached
in the run directory.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from digitrec.atomic import atomic_write
from digitrec.evaluation.calibration import CALIBRATION_METHOD, calibration_record
from digitrec.making.marks import as_uint8
from digitrec.making.pens_recipe import PensRecipe
from digitrec.making.runs import RunOptions, fine_tune_config, guarded_figures, inherited_split, provenance, run_task
from digitrec.models.checkpoint import Checkpoint, load_checkpoint, save_payload
from digitrec.reading import preprocess as pp
from digitrec.reading.conditions import Condition, all_conditions, render_condition
from digitrec.training.data import Mnist, checkpoint_split
from digitrec.training.metrics import predict_logits
from digitrec.training.recipes import recipe as named_recipe
from digitrec.training.task import Labelled, Task

CHUNK = 500  # digits per chunk of making, each with its own seed
EXAMPLES_NAME = "examples.pt"  # the made examples, in the run directory
Split = tuple[torch.Tensor, torch.Tensor]  # (training, validation) indices into MNIST's training set
TRAINING_RECIPE = "any_pen"  # the augmentations and loss the shipped default model was trained with


def rendered(digit: np.ndarray, condition: Condition, rng: np.random.Generator, **kwargs: Any) -> np.ndarray | None:
    """A digit written and scanned under `condition`, as `prepare_digit` hands it to the digit
    models (uint8 28x28, a marker's strokes thinned), or None when no ink is found."""
    digit28 = pp.prepare_digit(render_condition(digit, condition, rng, **kwargs)).digit28
    return None if digit28 is None else as_uint8(digit28)


def _stacked(out: list[np.ndarray], kept: list[int]) -> tuple[np.ndarray, np.ndarray]:
    return np.stack(out) if out else np.zeros((0, 28, 28), np.uint8), np.asarray(kept, np.int64)


def _training_chunk(
    images: np.ndarray, labels: np.ndarray, seed: int, marker_share: float, marker_px: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """Each digit under a random condition (`marker_share` of them a marker of any width in
    `marker_px`) -> (uint8 (n, 28, 28), labels (n,)), the digits preprocessing found."""
    rng = np.random.default_rng(seed)
    conditions = all_conditions()
    out, kept = [], []
    for digit, label in zip(images, labels, strict=True):
        if rng.random() < marker_share:
            digit28 = rendered(digit, Condition("marker"), rng, marker_px=marker_px)
        else:
            digit28 = rendered(digit, conditions[int(rng.integers(len(conditions)))], rng)
        if digit28 is not None:
            out.append(digit28)
            kept.append(label)
    return _stacked(out, kept)


def _validation_chunk(images: np.ndarray, labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Every digit under every condition of the benchmark."""
    rng = np.random.default_rng(seed)
    out, kept = [], []
    for condition in all_conditions():
        for digit, label in zip(images, labels, strict=True):
            digit28 = rendered(digit, condition, rng)
            if digit28 is not None:
                out.append(digit28)
                kept.append(label)
    return _stacked(out, kept)


def made_in_chunks(work: Any, chunks: list[tuple[Any, ...]], jobs: int) -> Labelled:
    """`work(*chunk)` for every chunk, in `jobs` processes, stacked in chunk order."""
    if jobs > 1:
        context = multiprocessing.get_context("spawn")  # the parent holds torch threads: no fork
        with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
            parts = list(pool.map(work, *zip(*chunks, strict=True)))
    else:
        parts = [work(*chunk) for chunk in chunks]
    return Labelled(
        images=torch.from_numpy(np.concatenate([p[0] for p in parts])),
        labels=torch.from_numpy(np.concatenate([p[1] for p in parts])),
    )


def made_examples(data: Mnist, split: Split, recipe: PensRecipe, jobs: int) -> dict[str, Labelled]:
    """{"mix": rendered training-split digits, "val": rendered validation-split digits}, from the
    base model's split (train and validation indices)."""
    train_idx, val_idx = split
    images, labels = data.train_images.numpy(), data.train_labels.numpy()
    rng = np.random.default_rng(recipe.seed)
    picks = train_idx.numpy()[rng.choice(len(train_idx), size=recipe.rendered_digits, replace=True)]
    marker_px = (recipe.marker_low, recipe.marker_high)
    mix = [
        (
            images[picks[i : i + CHUNK]],
            labels[picks[i : i + CHUNK]],
            recipe.seed + 1 + i // CHUNK,
            recipe.marker_share,
            marker_px,
        )
        for i in range(0, len(picks), CHUNK)
    ]
    val_picks = val_idx.numpy()[
        rng.choice(len(val_idx), size=min(recipe.val_per_condition, len(val_idx)), replace=False)
    ]
    step = max(1, CHUNK // len(all_conditions()))
    val = [
        (images[val_picks[i : i + step]], labels[val_picks[i : i + step]], recipe.seed - 1 - i // step)
        for i in range(0, len(val_picks), step)
    ]
    return {"mix": made_in_chunks(_training_chunk, mix, jobs), "val": made_in_chunks(_validation_chunk, val, jobs)}


def cached_examples(
    data: Mnist, base: Checkpoint, split: Split, recipe: PensRecipe, run_dir: Path, jobs: int
) -> dict[str, Labelled]:
    """`made_examples`, kept in the run directory: a rerun with other training settings (epochs,
    lr, mix_per_epoch) on the same examples reuses them."""
    making = {
        k: v
        for k, v in asdict(recipe).items()
        if k not in ("epochs", "lr", "batch_size", "mix_per_epoch", "guard_tolerance")
    }
    making["base_weights_sha256"] = base.meta.get("weights_sha256")
    path = run_dir / EXAMPLES_NAME
    if path.is_file():
        stored = torch.load(path, weights_only=True)
        if stored["making"] == making:
            return {name: Labelled(stored[f"{name}_images"], stored[f"{name}_labels"]) for name in ("mix", "val")}
    made = made_examples(data, split, recipe, jobs)
    run_dir.mkdir(parents=True, exist_ok=True)
    parts = {f"{name}_{part}": getattr(made[name], part) for name in made for part in ("images", "labels")}
    atomic_write(path, lambda handle: torch.save({"making": making, **parts}, handle))
    return made


def pens_task(data: Mnist, base: Checkpoint, split: Split, recipe: PensRecipe, made: dict[str, Labelled]) -> Task:
    train_idx, val_idx = split
    if recipe.plain_digits:
        train_idx = train_idx[torch.randperm(len(train_idx), generator=torch.Generator().manual_seed(recipe.seed))]
        train_idx = train_idx[: recipe.plain_digits]
    return Task(
        train=Labelled(images=data.train_images[train_idx], labels=data.train_labels[train_idx]),
        mix=made["mix"],
        mix_per_epoch=min(recipe.mix_per_epoch, len(made["mix"])),
        val=made["val"],
        guard=Labelled(images=data.train_images[val_idx], labels=data.train_labels[val_idx]),
        guard_tolerance=recipe.guard_tolerance,
        test=Labelled(images=data.test_images, labels=data.test_labels),
        meta={"split": inherited_split(base)},
    )


def fine_tune_default(
    data: Mnist, recipe: PensRecipe, out: str | Path, options: RunOptions, base_path: str | None = None, jobs: int = 1
) -> dict[str, Any]:
    """Make the examples (or reuse the run directory's), fine-tune `base_path` (None: the shipped
    default model) on them, calibrate it on the plain validation split and write it to `out`.
    Returns its figures."""
    base = load_checkpoint(base_path)
    split = checkpoint_split(base.meta, data.train_labels)  # the base's train and validation indices
    made = cached_examples(data, base, split, recipe, options.run_dir, jobs)
    task = pens_task(data, base, split, recipe, made)
    settings = {
        k: v
        for k, v in named_recipe(TRAINING_RECIPE).items()
        if k not in ("model", "model_kwargs", "epochs", "lr", "batch_size", "schedule", "ema", "calibrate", "seed")
    }
    trained = run_task(fine_tune_config(base, recipe, options.device, **settings), data, task, options)
    payload = trained.payload
    figures = guarded_figures(trained, "rendered")  # "val" in the metrics: the rendered digits
    payload["metrics"].update(figures)
    payload["pens"] = {
        **provenance(base, recipe),
        "made_by": "digitrec build-default",
        "base_command": base.meta.get("command"),  # the base's own story, since "command" is now this one
        "mix_examples": len(made["mix"]),
        "val_examples": len(made["val"]),
    }
    # calibrated as `digitrec train` calibrates (`calibrate_checkpoint`), before the one write of `out`
    model, val_idx = trained.checkpoint, split[1]  # on the plain validation split
    logits = predict_logits(model.model, data.train_images[val_idx], model.normalization)
    payload["calibration"] = calibration_record(logits, data.train_labels[val_idx], CALIBRATION_METHOD)
    save_payload(payload, out)
    return {
        **figures,
        "test_accuracy": trained.result.test.accuracy,
        "best_epoch": trained.result.best_epoch,
        "calibration": payload["calibration"],
    }
