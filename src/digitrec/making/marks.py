"""The mark classifier: is the 28x28 image the digit model is about to read a digit at all?

A small `fast_bn_cnn` (a quarter of the default model's multiply-accumulates) with one class per
kind of mark (`digitrec.reading.marks.MARK_CLASSES`): digits, and blobs, scribbles, crossed-out
digits, lines, letters and printed words, specks of noise. Every example goes through the
product's own preprocessing (`prepare_digit`), so the classifier learns from the very images it
will judge:

- digits: TRAINING-split MNIST digits as they are, and as many again re-rendered under the
  robustness conditions (`digitrec.reading.conditions`: markers, pencil, blur, low resolution,
  JPEG, uneven light) and preprocessed, a share of them closed up by a marker until their loops
  fill in (`render_closed_up`: a felt-tip 8 is still an 8, not a blob);
- negatives: `digitrec.making.negatives` pictures (crossed-out digits from the training split),
  preprocessed.

The training loop adds the pen and scanner augmentations. The epoch with the lowest loss on the
same made from VALIDATION-split digits is kept, and the "digit" threshold is chosen there: the
lowest that still lets `digit_recall` of the validation digits through.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from digitrec.atomic import atomic_write
from digitrec.making.marks_recipe import MarksRecipe
from digitrec.making.negatives import NEGATIVE_KINDS, render_negative
from digitrec.making.runs import RunOptions, inherited_split, provenance, run_task
from digitrec.models.checkpoint import load_checkpoint, save_payload
from digitrec.reading import preprocess as pp
from digitrec.reading.conditions import all_conditions, render_closed_up, render_condition
from digitrec.reading.marks import MARK_CLASSES
from digitrec.training.config import TrainConfig
from digitrec.training.data import Mnist, checkpoint_split
from digitrec.training.metrics import predict_logits
from digitrec.training.task import Labelled, Task

# The pen and scanner augmentations its training adds (TrainConfig fields): the made examples
# already cover the conditions, these vary them further.
AUGMENT: dict[str, Any] = {
    "aug_degrees": 10.0,
    "aug_stroke": 3.0,
    "aug_blur": 1.0,
    "aug_lowres": 9,
    "aug_ink": 0.4,
    "aug_grain": 0.03,
    "aug_ink_p": 0.2,
}
EXAMPLES_NAME = "examples.pt"  # the made examples, in the run directory
KIND_CLASS = {"word": "letter"}  # a negative kind -> its class, when not its own name


def as_uint8(digit28: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(digit28 * 255), 0, 255).astype(np.uint8)


def preprocessed(image: Any) -> np.ndarray | None:
    """A rendered picture through `prepare_digit` -> uint8 28x28 as the classifier will see it (a
    marker's strokes not thinned), or None when it finds no mark."""
    marks28 = pp.prepare_digit(image).marks28
    return None if marks28 is None else as_uint8(marks28)


def made_examples(
    images: np.ndarray,
    digit_labels: np.ndarray,
    n_digits: int,
    n_negatives: int,
    closed_share: float,
    rng: np.random.Generator,
) -> tuple[list[np.ndarray], list[int]]:
    """Digits rendered under random conditions (`closed_share` of them, 0s aside, closed up by a
    marker) and negatives of every kind, preprocessed."""
    out: list[np.ndarray] = []
    labels: list[int] = []
    conditions = all_conditions()
    for i in rng.choice(len(images), size=n_digits, replace=n_digits > len(images)):
        # A closed-up 0 is a filled blob, which is what the negatives' blobs are: no 0 is closed.
        if digit_labels[i] != 0 and rng.random() < closed_share:
            picture = render_closed_up(images[i], rng)
        else:
            picture = render_condition(images[i], conditions[int(rng.integers(len(conditions)))], rng)
        digit28 = preprocessed(picture)
        if digit28 is not None:
            out.append(digit28)
            labels.append(0)
    for kind in NEGATIVE_KINDS:
        if kind == "blank":  # no ink: preprocessing already says so
            continue
        label = MARK_CLASSES.index(KIND_CLASS.get(kind, kind))
        for _ in range(n_negatives):
            digit28 = preprocessed(render_negative(kind, rng, images[int(rng.integers(len(images)))]))
            if digit28 is not None:
                out.append(digit28)
                labels.append(label)
    return out, labels


def stacked(images: list[np.ndarray], labels: list[int]) -> Labelled:
    return Labelled(images=torch.from_numpy(np.stack(images)), labels=torch.tensor(labels, dtype=torch.int64))


def marks_task(data: Mnist, recipe: MarksRecipe) -> Task:
    """The training and validation examples, from the shipped model's split."""
    base = load_checkpoint(None)
    train_idx, val_idx = checkpoint_split(base.meta, data.train_labels)
    train_images, train_labels = (a.numpy()[train_idx.numpy()] for a in (data.train_images, data.train_labels))
    val_images, val_labels = (a.numpy()[val_idx.numpy()] for a in (data.train_images, data.train_labels))
    rng = np.random.default_rng(recipe.seed)
    plain = rng.choice(len(train_images), size=min(recipe.plain_digits, len(train_images)), replace=False)
    made, made_labels = made_examples(
        train_images, train_labels, recipe.rendered_digits, recipe.negatives, recipe.closed_share, rng
    )
    val, val_made_labels = made_examples(
        val_images, val_labels, recipe.val_digits, recipe.val_negatives, recipe.closed_share, rng
    )
    return Task(
        train=stacked(list(train_images[plain]) + made, [0] * len(plain) + made_labels),
        val=stacked(val, val_made_labels),
        meta={"split": inherited_split(base), "class_labels": list(MARK_CLASSES)},
    )


def marks_config(recipe: MarksRecipe, device: str = "auto") -> TrainConfig:
    return TrainConfig(
        model="fast_bn_cnn",
        model_kwargs={"c1": 16, "c2": 32, "c3": 64, "dropout": 0.1, "classes": len(MARK_CLASSES)},
        epochs=recipe.epochs,
        batch_size=recipe.batch_size,
        lr=recipe.lr,
        weight_decay=0.01,
        label_smoothing=0.0,
        **AUGMENT,
        select="loss",
        calibrate=False,
        seed=recipe.seed,
        device=device,
    )


def digit_threshold(p_digit: np.ndarray, is_digit: np.ndarray, recall: float) -> float:
    """The highest threshold on p(digit) that still accepts `recall` of the digits."""
    return float(np.quantile(p_digit[is_digit], 1 - recall))


def cached_task(data: Mnist, recipe: MarksRecipe, run_dir: Path) -> Task:
    """`marks_task`, kept in the run directory: making the examples is most of the work, so a
    rerun with other training settings (epochs, lr) on the same examples reuses them."""
    making = {k: v for k, v in asdict(recipe).items() if k not in ("epochs", "lr", "batch_size", "digit_recall")}
    path = run_dir / EXAMPLES_NAME
    if path.is_file():
        stored = torch.load(path, weights_only=True)
        if stored["making"] == making:
            return Task(
                train=Labelled(stored["train_images"], stored["train_labels"]),
                val=Labelled(stored["val_images"], stored["val_labels"]),
                meta=stored["meta"],
            )
    task = marks_task(data, recipe)
    run_dir.mkdir(parents=True, exist_ok=True)
    parts: dict[str, Any] = {"train_images": task.train.images, "train_labels": task.train.labels}
    parts |= {"val_images": task.val.images, "val_labels": task.val.labels, "meta": dict(task.meta)}
    atomic_write(path, lambda handle: torch.save({"making": making, **parts}, handle))
    return task


def train_marks(data: Mnist, recipe: MarksRecipe, out: str | Path, options: RunOptions) -> dict[str, Any]:
    """Make the examples (or reuse the run directory's), train, choose the threshold on
    validation and write the classifier to `out`. Returns its validation figures."""
    task = cached_task(data, recipe, options.run_dir)
    trained = run_task(marks_config(recipe, options.device), data, task, options)
    payload, model = trained.payload, trained.checkpoint
    logits = predict_logits(model.model, task.val.images, model.normalization)
    probs = torch.softmax(logits.float(), 1).numpy()
    labels = task.val.labels.numpy()
    threshold = digit_threshold(probs[:, 0], labels == 0, recipe.digit_recall)
    accepted = probs[:, 0] >= threshold
    per_class = {c: float((~accepted[labels == i]).mean()) for i, c in enumerate(MARK_CLASSES) if i}
    figures = {
        "val_loss": trained.result.val.loss,
        "val_digits_accepted": float(accepted[labels == 0].mean()),
        "val_negatives_rejected": float((~accepted[labels != 0]).mean()),
        "val_rejected_by_class": per_class,
    }
    payload["metrics"].update(figures)
    payload["marks"] = {
        **provenance(load_checkpoint(None), recipe),
        "digit_threshold": threshold,
        "classes": list(MARK_CLASSES),
        "train_examples": len(task.train),
        "val_examples": len(task.val),
    }
    save_payload(payload, out)
    return {"digit_threshold": threshold, **figures}
