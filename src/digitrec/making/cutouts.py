"""Numbers written from MNIST training-split or validation-split digits, cut up by the segmenter.

Training data for the reading model (every true digit cut out of a number, labelled with its
digit) and for the one-digit checker (every candidate the segmenter considers, labelled 1 when it
is one of the true digits). The cuts are the segmenter's own (`segment.cut_line`, which needs no
model), and the true segmentation comes from which written digit owns each atom of ink
(`true_spans`). The digits come from a checkpoint's recorded split, checksum-checked: never the
test set, and validation digits only for choosing.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from digitrec.atomic import atomic_write
from digitrec.models.checkpoint import load_checkpoint
from digitrec.reading import synth
from digitrec.reading.conditions import widen_pen
from digitrec.reading.segment import LineAnalysis, cut_line
from digitrec.training.data import checkpoint_split, load_mnist, split_parameters

OWN_FRACTION = 0.3  # a small atom with less than this share of its box inside any true digit is a stray mark
CHUNK = 100  # numbers per worker task: the data depends on the seed, not on how many workers cut it

Pair = tuple[np.ndarray, np.ndarray]  # (images uint8 (N, 28, 28), labels int64 (N,))


@dataclass(frozen=True)
class Job:
    """One chunk of numbers to write and cut up (in a worker process)."""

    split: str  # "train" | "val"
    numbers: int
    seed: int
    touch_probability: float
    checkpoint: str | None = None  # whose recorded split the digits come from (None: the shipped model)
    data_dir: str | None = None  # where MNIST is (None: where `load_mnist` looks by default)
    pen_widen: float = 0.0  # each number written with a pen up to this many pixels wider (0: MNIST's pen)


@lru_cache(maxsize=4)  # once per process: every chunk a worker cuts draws from the same digits
def split_digits(split: str, checkpoint: str | None = None, data_dir: str | None = None) -> Pair:
    """(images uint8 (N, 28, 28), labels (N,)) of the training or validation split recorded in
    the checkpoint (default: the shipped model's; the reading model and the checker share it)."""
    data = load_mnist(data_dir)
    train, val = checkpoint_split(load_checkpoint(checkpoint).meta, data.train_labels)
    idx = (train if split == "train" else val).numpy()
    return data.train_images.numpy()[idx], data.train_labels.numpy()[idx]


def split_tag(checkpoint: str | None) -> str:
    """A short name of the checkpoint's split, for cache file names."""
    return split_parameters(load_checkpoint(checkpoint).meta)["val_indices_sha256"][:12]


def _intersection(a, b) -> float:
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def true_spans(line: LineAnalysis, number: synth.SynthNumber) -> list[tuple[int, int]] | None:
    """The candidate spans (atoms i..j) that are the true digits, left to right, or None when the
    atoms cannot be grouped into the true digits (a cut is missing, or the line was rejected).

    Each atom belongs to the written digit whose box covers most of its box (a small atom covered
    by none is a stray mark); the true digits are the runs of atoms with one owner. (Matching
    candidate boxes to true boxes by IoU mislabels the narrow "1" cut off a "41": a few pixels of
    cut move its box a lot.)"""
    if line.reason or not line.atoms:
        return None
    s = line.ink.scale
    owners = []
    for atom in line.atoms:
        box = [v * s for v in atom.box]
        cover = [_intersection(box, true) for true in number.boxes]
        best = int(np.argmax(cover))
        area = max(1.0, (box[2] - box[0]) * (box[3] - box[1]))
        owners.append(None if atom.small and cover[best] < OWN_FRACTION * area else best)
    spans, k = [], 0
    while k < len(owners):
        if owners[k] is None:
            k += 1
            continue
        j = k
        while j + 1 < len(owners) and owners[j + 1] == owners[k]:
            j += 1
        spans.append((k, j, owners[k]))
        k = j + 1
    if [o for _, _, o in spans] != list(range(len(number.boxes))):
        return None  # a digit owns no atom, or its atoms are not neighbours
    known = set(line.spans)
    if any((i, j) not in known for i, j, _ in spans):
        return None
    return [(i, j) for i, j, _ in spans]


def write_numbers(
    images: np.ndarray,
    labels: np.ndarray,
    n: int,
    seed: int,
    touch_probability: float,
    pen_widen: float = 0.0,
) -> Iterator[tuple[synth.SynthNumber, np.ndarray]]:
    """`n` numbers of 3-8 of these digits (a `touch_probability` share of neighbouring pairs
    touching), each with its digits' labels. With `pen_widen`, each number is written with a pen
    widened by a width drawn from 0-`pen_widen` pixels at 28x28 (a felt-tip marker from about 2;
    below about 1.7 the pen stays MNIST's, see `widen_pen`)."""
    rng = np.random.default_rng(seed)
    for _ in range(n):
        idx = rng.choice(len(images), size=int(rng.integers(3, 9)), replace=False)
        digits = images[idx]
        if pen_widen > 0:  # drawn only then: MNIST-pen numbers stay the ones earlier builds cut
            digits = widen_pen(digits, float(rng.uniform(0, pen_widen)))
        yield (
            synth.render_number(list(digits), list(labels[idx]), rng, touch_probability=touch_probability),
            labels[idx],
        )


def cut_numbers(
    images: np.ndarray,
    labels: np.ndarray,
    n: int,
    seed: int,
    touch_probability: float,
    pen_widen: float = 0.0,
) -> Iterator[tuple[LineAnalysis, list[tuple[int, int]], np.ndarray]]:
    """Write `n` numbers and cut each up -> (line with every candidate's 28x28 image in
    `digits28`, the true digits' spans, their labels), skipping numbers whose true segmentation
    is not among the candidates."""
    for number, digits in write_numbers(images, labels, n, seed, touch_probability, pen_widen):
        line = cut_line(synth.encode(number.image))
        truth = true_spans(line, number)
        if truth is not None:
            yield line, truth, digits


def as_uint8(digit: np.ndarray) -> np.ndarray:
    return np.round(255 * np.clip(digit, 0, 1)).astype(np.uint8)


def _stack(crops: list[np.ndarray], labels: list[int]) -> Pair:
    return np.stack(crops).reshape(-1, 28, 28), np.asarray(labels, np.int64)


def _cut(job: Job) -> Iterator[tuple[LineAnalysis, list[tuple[int, int]], np.ndarray]]:
    digits = split_digits(job.split, job.checkpoint, job.data_dir)
    return cut_numbers(*digits, job.numbers, job.seed, job.touch_probability, job.pen_widen)


def cut_true_digits(job: Job) -> Pair:
    """One chunk of numbers -> (the true digits' cut-outs, their digits): the reading model's data."""
    crops, ys = [], []
    for line, truth, digits in _cut(job):
        where = {span: k for k, span in enumerate(line.spans)}
        crops += [as_uint8(line.digits28[where[span]]) for span in truth]  # type: ignore[index]
        ys += [int(d) for d in digits]
    return _stack(crops, ys)


def cut_candidates(job: Job) -> Pair:
    """One chunk of numbers -> (every candidate digit, 1 when it is one of the true digits else
    0): the one-digit checker's data."""
    crops, ys = [], []
    for line, truth, _ in _cut(job):
        true = set(truth)
        crops += [as_uint8(d) for d in line.digits28 or []]
        ys += [int(span in true) for span in line.spans]
    return _stack(crops, ys)


def in_workers(work: Callable[[Job], Pair], jobs: list[Job], processes: int) -> Pair:
    """Run `work` on each job in `processes` one-thread worker processes and concatenate the
    results in job order, so the data does not depend on the scheduling. Always in workers, even
    one: the image work leaves this process's thread pools slow to train with afterwards. Spawned,
    not forked: a fork copies this process's thread pools (ONNX Runtime's, torch's) mid-state, and
    a child could wait forever on a lock held by a thread it does not have."""
    with ProcessPoolExecutor(
        max_workers=processes,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=torch.set_num_threads,
        initargs=(1,),
    ) as pool:
        parts = list(pool.map(work, jobs))
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def cut_out(work: Callable[[Job], Pair], whole: Job, processes: int = 1) -> Pair:
    """`whole.numbers` numbers cut up by `work` (`cut_true_digits` or `cut_candidates`), in chunks
    of CHUNK numbers seeded from `whole.seed` and the chunk's position."""
    n = whole.numbers
    jobs = [
        replace(whole, numbers=min(CHUNK, n - k), seed=whole.seed * 100_003 + k // CHUNK) for k in range(0, n, CHUNK)
    ]
    return in_workers(work, jobs, processes)


def cached(path: str | os.PathLike, make: Callable[[], Pair]) -> Pair:
    """The data in the npz at `path` when it exists, else made and written there: cutting up
    takes minutes, and a rerun (or `--resume`) should not pay for it again."""
    path = Path(path)
    if path.is_file():
        with np.load(path) as saved:
            return saved["images"], saved["labels"]
    images, labels = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda handle: np.savez_compressed(handle, images=images, labels=labels))
    return images, labels
