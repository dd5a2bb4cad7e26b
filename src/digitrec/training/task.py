"""What a training run learns from and is chosen on: MNIST's own split, or tensors it is given.

`digitrec train` learns from the MNIST training split and keeps the epoch best on the validation
split (`mnist_task`). Making the reading files fine-tunes on other images with the same loop: the
reading model on digits cut out of numbers mixed with clean digits, the one-digit checker on
candidates labelled "one digit or not" (`digitrec.making`). A `Task` says which.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from digitrec.errors import ConfigError
from digitrec.training.config import TrainConfig
from digitrec.training.data import Mnist, split_indices, split_record


@dataclass(frozen=True)
class Labelled:
    """Images uint8 (N, 28, 28), light ink on dark as MNIST, and their labels int64 (N,)."""

    images: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.shape[1:] != (28, 28):
            raise ConfigError(f"images must be uint8 (N, 28, 28), got {self.images.dtype} {tuple(self.images.shape)}")
        if self.labels.shape != (len(self.images),):
            raise ConfigError(f"need one label per image, got {tuple(self.labels.shape)} for {len(self.images)} images")

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class Task:
    """Every `train` example in every epoch, plus `mix_per_epoch` of `mix` drawn afresh each epoch;
    the epoch kept is the best on `val` among those whose accuracy on `guard` stays within
    `guard_tolerance` of the starting weights' (when fine-tuning from `TrainConfig.init_from`).
    `test` is only reported. `meta` goes into the checkpoint (its `split` above all)."""

    train: Labelled
    val: Labelled
    mix: Labelled | None = None
    mix_per_epoch: int = 0
    guard: Labelled | None = None
    guard_tolerance: float = 0.0
    test: Labelled | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not len(self.train) or not len(self.val):
            raise ConfigError("training and validation examples must not be empty")
        if self.mix_per_epoch and (self.mix is None or not 0 < self.mix_per_epoch <= len(self.mix)):
            raise ConfigError(
                f"cannot draw {self.mix_per_epoch} mixed-in examples per epoch from "
                f"{0 if self.mix is None else len(self.mix)}"
            )

    @property
    def examples_per_epoch(self) -> int:
        return len(self.train) + self.mix_per_epoch

    def pool(self) -> Labelled:
        """`train` followed by `mix`: `epoch_examples` indexes into this."""
        if self.mix is None:
            return self.train
        return Labelled(
            images=torch.cat([self.train.images, self.mix.images]),
            labels=torch.cat([self.train.labels, self.mix.labels]),
        )

    def epoch_examples(self, generator: torch.Generator) -> torch.Tensor:
        """Indices into `pool()` of one epoch's examples (unordered): all of `train`, and a fresh
        draw from `mix`."""
        fixed = torch.arange(len(self.train))
        if not self.mix_per_epoch or self.mix is None:
            return fixed
        drawn = torch.randperm(len(self.mix), generator=generator)[: self.mix_per_epoch] + len(self.train)
        return torch.cat([fixed, drawn])

    def digest(self) -> str:
        """Checksum of every tensor and number here: a run resumes only on the data it started with."""
        digest = hashlib.sha256(f"{self.mix_per_epoch},{self.guard_tolerance}".encode())
        for part in (self.train, self.val, self.mix, self.guard, self.test):
            for tensor in (part.images, part.labels) if part is not None else ():
                digest.update(tensor.contiguous().numpy().tobytes())
            digest.update(b"|")
        return digest.hexdigest()


def mnist_task(config: TrainConfig, data: Mnist) -> Task:
    """MNIST's training split (a stratified slice with `limit_train`), validation split (its
    first `limit_eval` images) and test set (its first `limit_eval`), as `digitrec train` uses."""
    train, val = split_indices(
        data.train_labels, config.n_val, config.split_seed, config.limit_train, config.limit_eval
    )
    test_n = config.limit_eval or len(data.test_labels)
    return Task(
        train=Labelled(images=data.train_images[train], labels=data.train_labels[train]),
        val=Labelled(images=data.train_images[val], labels=data.train_labels[val]),
        test=Labelled(images=data.test_images[:test_n], labels=data.test_labels[:test_n]),
        meta={"split": split_record(train, val, config.split_seed, config.n_val, config.limit_train)},
    )
