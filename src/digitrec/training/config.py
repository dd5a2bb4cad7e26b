"""Training configuration: one dataclass that validates itself, loadable from TOML."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import tomllib

from digitrec.errors import ConfigError

SCHEDULES = ("none", "onecycle", "cosine")
SELECTIONS = ("accuracy", "loss")
AMP_MODES = ("auto", "none", "bf16", "fp16")


@dataclass
class TrainConfig:
    model: str = "fast_bn_cnn"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    epochs: int = 10
    batch_size: int = 128
    lr: float = 3e-3  # Adam learning rate (the peak for OneCycle)
    betas: tuple[float, float] = (0.9, 0.999)  # Adam moment decay rates
    weight_decay: float = 0.0  # decoupled (AdamW) weight decay, per step, relative
    schedule: str = "onecycle"  # learning-rate schedule: none | onecycle | cosine
    warmup: float = 0.3  # OneCycle: fraction of the steps spent raising the learning rate to its peak
    label_smoothing: float = 0.1  # cross-entropy target smoothing, 0-1 (calibration undoes its under-confidence)
    augment: bool = True  # batched random affine on the training batches
    aug_degrees: float = 10.0  # max rotation, degrees
    aug_scale: float = 0.1  # max relative zoom in/out
    aug_translate: float = 2.0  # max shift, pixels
    aug_elastic: float = 0.0  # elastic distortion amplitude, pixels (0 = off)
    # Pen and scanner augmentations (digitrec.training.augment), independent of `augment`; 0 = off.
    aug_stroke: float = 0.0  # widest stroke gain, pixels at 28x28 (grey dilation), 0-4; thinning up to 1 px
    aug_blur: float = 0.0  # largest Gaussian blur sigma, pixels at 28x28
    aug_lowres: int = 0  # smallest side (pixels, 7-14) a digit is shrunk to and enlarged back from
    aug_ink: float = 0.0  # lightest peak ink, 0-1 (0.3: a light pencil), with a random contrast curve
    aug_grain: float = 0.0  # largest paper-grain noise std, 0-1 scale
    aug_ink_p: float = 0.5  # chance that each pen/scanner augmentation above touches a given image
    ema: float | None = None  # weight EMA decay per step (e.g. 0.999); evaluation uses the averaged weights
    # mixed precision: auto (bf16 where the hardware computes it natively, else none) | none |
    # bf16 (CPU/CUDA autocast) | fp16 (CUDA only)
    amp: str = "auto"
    channels_last: bool = True  # NHWC memory format: oneDNN's CPU convolutions run 1.4-1.8x faster
    compile: bool = False  # torch.compile the model (costs compile time up front)
    tensorboard: bool = False  # write TensorBoard scalars to the run directory
    calibrate: bool = True  # fit the softmax temperature on validation after training (`digitrec train` does)
    # checkpoint whose weights the model starts from (every tensor whose name and shape match; a new
    # last layer for fewer classes stays freshly initialised); the starting weights are scored as
    # epoch 0 and kept when no epoch beats them
    init_from: str | None = None
    select: str = "accuracy"  # keep the epoch with the best validation accuracy | the lowest validation loss
    balance_classes: bool = False  # weight the loss so every class counts alike (rare classes, e.g. "one digit")
    seed: int = 0  # training seed (init, shuffling, augmentation, dropout)
    split_seed: int = 0  # seed of the train/validation split, kept fixed across training seeds
    n_val: int = 5000  # validation images held out of the official training set
    limit_train: int | None = None  # train on a stratified slice of this many images (tests, smoke runs)
    limit_eval: int | None = None  # evaluate val/test on their first N images (tests, smoke runs)
    device: str = "auto"

    def __post_init__(self) -> None:
        self.betas = cast(tuple[float, float], tuple(float(b) for b in self.betas))  # TOML gives a list
        from digitrec.models import list_models  # the registry imports torch; a config is read without it

        if self.model not in list_models():
            raise ConfigError(f"unknown model {self.model!r}; known models: {', '.join(list_models())}")
        checks = [
            (isinstance(self.epochs, int) and self.epochs >= 1, f"epochs must be an integer >= 1, got {self.epochs!r}"),
            (
                isinstance(self.batch_size, int) and self.batch_size >= 1,
                f"batch size must be an integer >= 1, got {self.batch_size!r}",
            ),
            (isinstance(self.lr, (int, float)) and self.lr > 0, f"learning rate must be > 0, got {self.lr!r}"),
            (
                len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas),
                f"betas must be two numbers in [0, 1), got {self.betas!r}",
            ),
            (self.weight_decay >= 0, f"weight decay must be >= 0, got {self.weight_decay!r}"),
            (self.schedule in SCHEDULES, f"unknown schedule {self.schedule!r}; choose one of {', '.join(SCHEDULES)}"),
            (0 < self.warmup < 1, f"warmup must be in (0, 1), got {self.warmup!r}"),
            (self.select in SELECTIONS, f"unknown selection {self.select!r}; choose one of {', '.join(SELECTIONS)}"),
            (0 <= self.label_smoothing < 1, f"label smoothing must be in [0, 1), got {self.label_smoothing!r}"),
            (
                isinstance(self.n_val, int) and 1 <= self.n_val < 60000,
                f"n_val must be between 1 and 59999, got {self.n_val!r}",
            ),
            (
                self.limit_train is None or self.limit_train >= 10,
                f"limit_train must be >= 10, got {self.limit_train!r}",
            ),
            (self.limit_eval is None or self.limit_eval >= 1, f"limit_eval must be >= 1, got {self.limit_eval!r}"),
            (isinstance(self.model_kwargs, dict), "model_kwargs must be a table"),
            (self.aug_elastic >= 0, f"aug_elastic must be >= 0, got {self.aug_elastic!r}"),
            (0 <= self.aug_stroke <= 6, f"aug_stroke must be in [0, 6] pixels, got {self.aug_stroke!r}"),
            (0 <= self.aug_blur <= 3, f"aug_blur must be in [0, 3] pixels, got {self.aug_blur!r}"),
            (
                self.aug_lowres == 0 or (isinstance(self.aug_lowres, int) and 4 <= self.aug_lowres <= 14),
                f"aug_lowres must be 0 (off) or an integer in [4, 14], got {self.aug_lowres!r}",
            ),
            (0 <= self.aug_ink < 1, f"aug_ink must be in [0, 1), got {self.aug_ink!r}"),
            (0 <= self.aug_grain <= 0.5, f"aug_grain must be in [0, 0.5], got {self.aug_grain!r}"),
            (0 <= self.aug_ink_p <= 1, f"aug_ink_p must be in [0, 1], got {self.aug_ink_p!r}"),
            (self.ema is None or 0 < self.ema < 1, f"ema decay must be in (0, 1), got {self.ema!r}"),
            (self.amp in AMP_MODES, f"unknown amp mode {self.amp!r}; choose one of {', '.join(AMP_MODES)}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown config key(s): {', '.join(unknown)}; known keys: {', '.join(sorted(known))}")
        return cls(**values)


def read_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML config file; keys are TrainConfig fields (a [train] table is also accepted)."""
    try:
        with open(path, "rb") as handle:
            values = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not a valid TOML file ({exc})") from None
    if set(values) == {"train"} and isinstance(values["train"], dict):
        values = values["train"]
    return values
