"""Figures as PNG files: training curves, confusion matrix, misclassified gallery, reliability.

Uses matplotlib's object API (`Figure` rendered by Agg) rather than pyplot, so nothing depends
on a display or on pyplot's global state, and it is safe in servers and threads. Every PNG is
written at a fixed size (figsize x DPI, no tight bounding box), to a temporary file first and
then renamed, so a reader never sees half a picture.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from digitrec.atomic import atomic_write
from digitrec.evaluation.reliability import Reliability

DPI = 100  # pixels per inch of every PNG written here
CURVES_FIGSIZE = (11.0, 4.0)  # inches
CONFUSION_FIGSIZE = (15.0, 6.8)
RELIABILITY_FIGSIZE = (6.5, 7.5)
GALLERY_CELL = (1.35, 1.65)  # inches per image cell (width, height: image plus a two-line caption)
GALLERY_HEADER = 0.45  # inches above the grid for the title (captions sit below it)
GALLERY_CAPTION = 0.45  # inches above each image for its two-line caption
GALLERY_COLUMNS = 10


def _save(fig: Figure, path: str | os.PathLike) -> Path:
    return atomic_write(path, lambda handle: fig.savefig(handle, format="png", dpi=DPI))


def plot_curves(history: list[dict], path: str | os.PathLike) -> Path:
    """Train and validation loss (left) and accuracy (right) per epoch.

    `history` items have keys epoch, train_loss, train_accuracy, val_loss, val_accuracy
    (dicts, or dataclasses such as ``train.EpochRecord``).
    """
    history = [dataclasses.asdict(r) if dataclasses.is_dataclass(r) else r for r in history]
    if not history:
        raise ValueError("no epochs to plot")
    epochs = [int(r["epoch"]) for r in history]
    fig = Figure(figsize=CURVES_FIGSIZE, dpi=DPI, layout="constrained")
    loss_ax, acc_ax = fig.subplots(1, 2)
    for split, style in (("train", "o-"), ("val", "s--")):
        loss_ax.plot(epochs, [r[f"{split}_loss"] for r in history], style, label=split)
        acc_ax.plot(epochs, [100 * r[f"{split}_accuracy"] for r in history], style, label=split)
    loss_ax.set(title="cross-entropy loss", xlabel="epoch", ylabel="loss (nats per image)")
    acc_ax.set(title="accuracy", xlabel="epoch", ylabel="accuracy (%)")
    for ax in (loss_ax, acc_ax):
        ax.set_xticks(epochs if len(epochs) <= 20 else ax.get_xticks())
        ax.grid(alpha=0.3)
        ax.legend()
    best = max(history, key=lambda r: (r["val_accuracy"], -r["val_loss"]))
    acc_ax.annotate(
        f"best val {100 * best['val_accuracy']:.2f}% (epoch {best['epoch']})",
        xy=(best["epoch"], 100 * best["val_accuracy"]),
        xytext=(0.35, 0.1),
        textcoords="axes fraction",
        arrowprops={"arrowstyle": "->", "alpha": 0.6},
    )
    return _save(fig, path)


def _matrix_panel(ax, values: np.ndarray, text: Sequence[Sequence[str]], title: str, labels: Sequence[str]) -> None:
    # Log colour scale: the diagonal holds ~1000 images per class, the errors a handful, and
    # on a linear scale every error cell would look empty.
    positive = values[values > 0]
    vmin = positive.min() if positive.size else 1
    vmax = max(values.max(), vmin * 10)
    image = ax.imshow(np.where(values > 0, values, np.nan), cmap="Blues", norm=LogNorm(vmin=vmin, vmax=vmax))
    threshold = math.sqrt(vmin * vmax)  # geometric middle of the colour scale
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            if text[i][j]:
                colour = "white" if values[i, j] > threshold else "black"
                ax.text(j, i, text[i][j], ha="center", va="center", fontsize=9, color=colour)
    ax.set_xticks(range(len(labels)), labels)
    ax.set_yticks(range(len(labels)), labels)
    ax.set(title=title, xlabel="predicted digit", ylabel="true digit")
    ax.figure.colorbar(image, ax=ax, shrink=0.8)


def plot_confusion_matrix(
    confusion: Sequence[Sequence[int]],
    path: str | os.PathLike,
    labels: Sequence[str] | None = None,
    title: str | None = None,
) -> Path:
    """Counts (left) and row-normalised percentages (right); rows are true, columns predicted."""
    counts = np.asarray(confusion, dtype=np.int64)
    k = counts.shape[0]
    labels = [str(i) for i in range(k)] if labels is None else list(labels)
    row_pct = 100 * counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    count_text = [[str(c) if c else "" for c in row] for row in counts]
    pct_text = [
        [(f"{p:.1f}" if p >= 0.05 else "<0.1") if c else "" for p, c in zip(prow, crow)]
        for prow, crow in zip(row_pct, counts)
    ]
    fig = Figure(figsize=CONFUSION_FIGSIZE, dpi=DPI, layout="constrained")
    left, right = fig.subplots(1, 2)
    _matrix_panel(left, counts.astype(float), count_text, "counts", labels)
    _matrix_panel(right, row_pct, pct_text, "% of each true digit (row-normalised)", labels)
    accuracy = np.trace(counts) / max(counts.sum(), 1)
    fig.suptitle(title or f"confusion matrix: {counts.sum()} images, accuracy {100 * accuracy:.2f}%")
    return _save(fig, path)


def gallery_shape(n_items: int, columns: int = GALLERY_COLUMNS) -> tuple[int, int]:
    """(rows, columns) of a gallery of `n_items` images (one empty cell when there are none)."""
    cols = max(1, min(columns, n_items))
    return max(1, math.ceil(n_items / cols)), cols


def gallery_figsize(n_items: int, columns: int = GALLERY_COLUMNS) -> tuple[float, float]:
    rows, cols = gallery_shape(n_items, columns)
    return cols * GALLERY_CELL[0], rows * GALLERY_CELL[1] + GALLERY_HEADER


def plot_misclassified(
    images: np.ndarray,
    true: Sequence[int],
    predicted: Sequence[int],
    confidence: Sequence[float],
    path: str | os.PathLike,
    columns: int = GALLERY_COLUMNS,
    title: str | None = None,
) -> Path:
    """A grid of uint8 (K, 28, 28) images captioned true / predicted / confidence, in the given order.

    Digits are drawn dark on light (the reverse of MNIST's stored polarity) because that is how
    people see handwriting.
    """
    images = np.asarray(images)
    n = len(images)
    if not (len(true) == len(predicted) == len(confidence) == n):
        raise ValueError("images, true, predicted and confidence must have the same length")
    rows, cols = gallery_shape(n, columns)
    fig = Figure(figsize=gallery_figsize(n, columns), dpi=DPI)
    height = fig.get_figheight()
    fig.suptitle(
        title or f"{n} misclassified images, most confident mistakes first", fontsize=11, y=1 - 0.12 / height, va="top"
    )
    # hspace is a fraction of the mean axes height; leave room for each caption above its image.
    cell_h = GALLERY_CELL[1]
    grid = fig.add_gridspec(
        rows,
        cols,
        top=1 - (GALLERY_HEADER + GALLERY_CAPTION) / height,
        bottom=0.01,
        left=0.01,
        right=0.99,
        wspace=0.1,
        hspace=GALLERY_CAPTION / (cell_h - GALLERY_CAPTION),
    )
    for i in range(rows * cols):
        ax = fig.add_subplot(grid[i // cols, i % cols])
        ax.set_axis_off()
        if i < n:
            ax.imshow(images[i], cmap="gray_r", vmin=0, vmax=255, interpolation="nearest")
            ax.set_title(f"true {true[i]}  pred {predicted[i]}\nconf {100 * confidence[i]:.1f}%", fontsize=8)
        elif n == 0:
            ax.text(0.5, 0.5, "no mistakes", ha="center", va="center")
    return _save(fig, path)


def plot_reliability(curves: Mapping[str, Reliability], path: str | os.PathLike, title: str | None = None) -> Path:
    """Reliability diagram: accuracy against confidence per bin for each named curve (top), and
    how many predictions fall in each bin (bottom, log scale)."""
    if not curves:
        raise ValueError("no reliability curves to plot")
    fig = Figure(figsize=RELIABILITY_FIGSIZE, dpi=DPI, layout="constrained")
    top, bottom = fig.subplots(2, 1, height_ratios=[3, 1.3])
    top.plot([0, 1], [0, 1], ":", color="grey", label="perfectly calibrated")
    first = next(iter(curves.values()))
    width = (first.edges[1] - first.edges[0]) / (len(curves) + 1)
    for k, (name, rel) in enumerate(curves.items()):
        conf = np.array(rel.confidence, dtype=float)
        acc = np.array(rel.accuracy, dtype=float)
        keep = ~np.isnan(conf)
        top.plot(conf[keep], acc[keep], "o-", label=f"{name} (ECE {100 * rel.ece:.2f}%)")
        lefts = np.array(rel.edges[:-1]) + (k + 0.5) * width
        bottom.bar(lefts, rel.count, width=width, align="edge", label=name)
    top.set(
        xlim=(0, 1),
        ylim=(0, 1.02),
        xlabel="confidence (mean top-class probability in bin)",
        ylabel="accuracy in bin",
        title=title or "reliability diagram",
    )
    top.grid(alpha=0.3)
    top.legend(loc="upper left")
    bottom.set(xlim=(0, 1), xlabel="confidence bin", ylabel="predictions")
    bottom.set_yscale("log")
    bottom.grid(alpha=0.3)
    return _save(fig, path)


def plot_compare(rows: Sequence, path: str | os.PathLike) -> Path:
    """`digitrec compare`: test error (mean ± std over seeds) against training seconds.

    Both axes are logarithmic: the models span three orders of magnitude in cost and error, and
    on a linear scale every CNN would sit in one corner. Down and to the left is better.
    """
    fig = Figure(figsize=(7.5, 5.0), dpi=DPI, layout="constrained")
    ax = fig.subplots()
    for r in rows:
        error = 100 * (1 - r.test_accuracy)
        ax.errorbar(
            r.train_seconds, error, xerr=r.train_seconds_std, yerr=100 * r.test_accuracy_std, fmt="o", capsize=3
        )
        ax.annotate(r.model, (r.train_seconds, error), textcoords="offset points", xytext=(6, 4), fontsize=9)
    ax.set(
        title="test error vs training time (mean ± std over seeds)",
        xlabel="training seconds",
        ylabel="test error (%)",
        xscale="log",
        yscale="log",
    )
    ax.grid(alpha=0.3, which="both")
    return _save(fig, path)
