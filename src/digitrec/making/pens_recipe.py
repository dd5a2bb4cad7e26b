"""The recipe of the default model's fine-tuning on digits written with other pens and seen by other
scanners (`digitrec build-default`), apart from the training code so that the command line can
list its fields without importing torch (`digitrec.making.pens` trains it)."""

from __future__ import annotations

from dataclasses import dataclass

from digitrec.errors import ConfigError


@dataclass(frozen=True)
class PensRecipe:
    """How the shipped default model was fine-tuned (the defaults), or a smaller run of it."""

    plain_digits: int = 0  # plain training-split digits learnt from every epoch (0: all of them)
    rendered_digits: int = 40000  # training-split digits written and scanned under a condition, preprocessed
    # ... of which this share written with a marker of any width in [marker_low, marker_high] pixels
    # wider than MNIST's pen (at its 20-pixel digit height), the rest under one of the conditions
    marker_share: float = 0.25
    marker_low: float = 1.0
    marker_high: float = 7.0
    mix_per_epoch: int = 40000  # of them drawn afresh each epoch, beside every plain training digit
    val_per_condition: int = 200  # validation-split digits rendered per condition (choosing only)
    guard_tolerance: float = 0.001  # plain validation accuracy may fall at most this far (5 of 5,000)
    epochs: int = 10
    lr: float = 2e-3
    batch_size: int = 128
    seed: int = 5000

    def __post_init__(self) -> None:
        if self.rendered_digits < 1 or self.mix_per_epoch < 1 or self.val_per_condition < 1 or self.plain_digits < 0:
            raise ConfigError("rendered-digits, mix-per-epoch and val-per-condition must be >= 1, plain-digits >= 0")
        if not 0 <= self.marker_share <= 1 or not 0 <= self.marker_low <= self.marker_high:
            raise ConfigError("marker-share must be in [0, 1] and 0 <= marker-low <= marker-high")
