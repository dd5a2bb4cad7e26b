"""Numbers written from MNIST training-split or validation-split digits, cut up by the segmenter.

Training data for the models `read` uses beside the digit classifier (the one-digit checker,
benchmarks/train_checker.py) and for the reading model (benchmarks/train_reader.py). The cuts are
the segmenter's own (`segment.cut_line`, which needs no model), and every candidate is labelled by
the true segmentation (atom ownership, `fit_segmenter.true_spans`). Never the test set.
"""

from __future__ import annotations

import os
import sys
from concurrent.futures import ProcessPoolExecutor
from typing import Callable, Iterator

import numpy as np
import torch

from digitrec.reading import segment as sg
from digitrec.reading import synth
from digitrec.models.checkpoint import load_checkpoint
from digitrec.training.data import load_mnist, stratified_split

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fit_segmenter import true_spans  # noqa: E402  (the ownership labelling, one place)


def split_digits(split: str, checkpoint: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N, 28, 28), labels (N,)) of the training or validation split recorded in the
    checkpoint (default: the shipped model's; reading model and checker share it)."""
    data = load_mnist()
    meta = load_checkpoint(checkpoint).meta["split"]
    train, val = stratified_split(data.train_labels, meta["n_val"], meta["seed"])
    idx = (train if split == "train" else val).numpy()
    return data.train_images.numpy()[idx], data.train_labels.numpy()[idx]


def cut_numbers(images: np.ndarray, labels: np.ndarray, n: int, seed: int, touch_probability: float,
                ) -> Iterator[tuple[sg.LineAnalysis, list[tuple[int, int]], np.ndarray]]:
    """Write `n` numbers of 3-8 of these digits and cut each up -> (line with every candidate's
    28x28 image in `digits28`, the true digits' spans, their labels), skipping numbers whose true
    segmentation is not among the candidates."""
    rng = np.random.default_rng(seed)
    for _ in range(n):
        idx = rng.choice(len(images), size=int(rng.integers(3, 9)), replace=False)
        number = synth.render_number(list(images[idx]), list(labels[idx]), rng, touch_probability=touch_probability)
        line = sg.cut_line(synth.encode(number.image))
        truth = true_spans(line, number)
        if truth is not None:
            yield line, truth, labels[idx]


Pair = tuple[np.ndarray, np.ndarray]  # (images uint8 (N, 28, 28), labels (N,))


def in_workers(work: Callable[[tuple], Pair], tasks: list[tuple], jobs: int) -> Pair:
    """Run `work` on each task (a chunk of numbers) in `jobs` one-thread worker processes and
    concatenate the results in task order (so the data does not depend on `jobs` scheduling)."""
    with ProcessPoolExecutor(max_workers=jobs, initializer=torch.set_num_threads, initargs=(1,)) as pool:
        parts = list(pool.map(work, tasks))
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def cached(path: str | None, make: Callable[[], tuple[Pair, Pair]]) -> tuple[Pair, Pair]:
    """(training, validation) data read from the npz at `path` when it exists; else made, and
    written there when a path is given (cutting up takes minutes, training is tried many times)."""
    if path and os.path.exists(path):
        saved = np.load(path)
        return (saved["train_x"], saved["train_y"]), (saved["val_x"], saved["val_y"])
    train, val = make()
    if path:
        np.savez_compressed(path, train_x=train[0], train_y=train[1], val_x=val[0], val_y=val[1])
    return train, val


def as_uint8(digit: np.ndarray) -> np.ndarray:
    return np.round(255 * np.clip(digit, 0, 1)).astype(np.uint8)
