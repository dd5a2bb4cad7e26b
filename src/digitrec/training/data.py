"""MNIST as torch tensors for training, and the train/validation split a checkpoint records.

Finding, verifying and parsing the files is `digitrec.training.mnist_files` (numpy, no torch);
`load_mnist` wraps its arrays as tensors. The split is drawn with torch's seeded generator, so
rebuilding a checkpoint's validation split (`checkpoint_split`) needs torch.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from digitrec.errors import CheckpointError, DataError
from digitrec.training.mnist_files import FILES, REPO_DATA_DIR, MnistArrays, locate, parse_idx, read_mnist

__all__ = ["FILES", "REPO_DATA_DIR", "Mnist", "load_mnist", "locate", "parse_idx"]  # the file API, re-exported


@dataclass(frozen=True)
class Mnist:
    """The data set as tensors: uint8 images (N, 28, 28) and int64 labels (N,), sharing the
    memory of the numpy arrays they were read as (`files`)."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    files: MnistArrays  # what `read_mnist` read: the arrays, their checksums and where they were

    @property
    def checksums(self) -> dict[str, str]:
        """File name -> MD5 of uncompressed content."""
        return self.files.checksums

    @property
    def source(self) -> str:
        """Where the files were found (for the checkpoint and the logs)."""
        return self.files.source


def load_mnist(
    data_dir: str | os.PathLike | None = None,
    allow_download: bool = True,
    mirrors: Iterable[str] | None = None,
) -> Mnist:
    """Locate, verify and parse MNIST into memory (`mnist_files.read_mnist`), as tensors."""
    arrays = read_mnist(data_dir, allow_download, mirrors)
    names = ("train_images", "train_labels", "test_images", "test_labels")
    return Mnist(**{name: torch.from_numpy(getattr(arrays, name)) for name in names}, files=arrays)


def stratified_split(labels: torch.Tensor, n_val: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Split indices into (train, val) with each class represented in proportion.

    Each class gives round(n_val * class_share) validation items (largest remainders fix the
    total), drawn with a seeded permutation, so the same seed always gives the same split.
    """
    n = labels.numel()
    if not 0 < n_val < n:
        raise DataError(f"validation size must be between 1 and {n - 1}, got {n_val}")
    generator = torch.Generator().manual_seed(seed)
    classes, counts = torch.unique(labels, return_counts=True)
    exact = counts.double() * n_val / n
    quota = exact.floor().long()
    short = n_val - int(quota.sum())
    quota[torch.argsort(exact - quota, descending=True)[:short]] += 1
    val_parts, train_parts = [], []
    for cls, k in zip(classes.tolist(), quota.tolist()):
        idx = torch.nonzero(labels == cls).flatten()
        idx = idx[torch.randperm(idx.numel(), generator=generator)]
        val_parts.append(idx[:k])
        train_parts.append(idx[k:])
    return torch.cat(train_parts).sort().values, torch.cat(val_parts).sort().values


def slice_stratified(indices: torch.Tensor, labels: torch.Tensor, limit: int, seed: int) -> torch.Tensor:
    """A class-balanced subset of `indices` of size `limit` (for quick runs on a slice)."""
    if limit >= indices.numel():
        return indices
    keep, _ = stratified_split(labels[indices], indices.numel() - limit, seed)
    return indices[keep]


def split_indices(
    labels: torch.Tensor, n_val: int, seed: int, limit_train: int | None = None, limit_eval: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, val) indices as `digitrec train` uses them: the stratified split, then a stratified
    slice of `limit_train` training images and the first `limit_eval` validation images."""
    train, val = stratified_split(labels, n_val, seed)
    if limit_train is not None:
        train = slice_stratified(train, labels, limit_train, seed)
    return train, (val[:limit_eval] if limit_eval else val)


def indices_sha256(indices: torch.Tensor) -> str:
    """The checksum a checkpoint records of its validation indices (`meta["split"]`)."""
    return hashlib.sha256(indices.numpy().tobytes()).hexdigest()


def split_record(
    train: torch.Tensor, val: torch.Tensor, seed: int, n_val_drawn: int, limit_train: int | None
) -> dict[str, Any]:
    """`meta["split"]` of a checkpoint trained on these indices: enough to rebuild them
    (`checkpoint_split`) and a checksum to prove it."""
    return {
        "seed": seed,
        "n_train": int(len(train)),
        "n_val": int(len(val)),
        "val_indices_sha256": indices_sha256(val),
        "stratified": True,
        "n_val_drawn": n_val_drawn,
        "limit_train": limit_train,
    }


def split_parameters(meta: Mapping[str, Any]) -> dict[str, Any]:
    """The recorded split of a checkpoint, completed: what its own `split` does not say (older
    checkpoints) comes from its training config. A checkpoint trained from another one's split
    copies this, so the record stands on its own."""
    split = meta.get("split")
    if not isinstance(split, Mapping) or not {"n_val", "seed"} <= set(split):
        raise CheckpointError("checkpoint records no validation split (meta['split'] with n_val and seed)")
    if not split.get("val_indices_sha256"):
        raise CheckpointError(
            "checkpoint records no checksum of its validation split (val_indices_sha256); "
            "cannot check which images it was trained on"
        )
    config = meta.get("config")
    config = config if isinstance(config, Mapping) else {}
    n_val = int(split["n_val"])
    return {
        **split,
        "n_val": n_val,
        "seed": int(split["seed"]),
        # a run with limit_eval kept the first n_val of a larger split
        "n_val_drawn": int(split.get("n_val_drawn") or config.get("n_val") or n_val),
        "limit_train": split["limit_train"] if "limit_train" in split else config.get("limit_train"),
    }


def checkpoint_split(meta: Mapping[str, Any], train_labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The (train, val) indices into the official training set that a checkpoint was trained and
    chosen on, rebuilt from its recorded split and checked against the recorded checksum of the
    validation indices, so a temperature, a threshold or another model's training data is never
    taken from images the model was trained on. Raises CheckpointError when they differ."""
    split = split_parameters(meta)
    try:
        train, val = split_indices(
            train_labels, split["n_val_drawn"], split["seed"], split["limit_train"], split["n_val"]
        )
    except DataError as exc:
        raise CheckpointError(f"cannot rebuild the checkpoint's validation split: {exc}") from None
    n_train = split.get("n_train")
    if indices_sha256(val) != split["val_indices_sha256"] or (n_train is not None and int(n_train) != len(train)):
        raise CheckpointError(
            "cannot reproduce the checkpoint's validation split (index checksum differs); "
            "was it trained on different data?"
        )
    return train, val
