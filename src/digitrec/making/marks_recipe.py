"""The mark classifier's recipe (`digitrec build-marks`), apart from the training code so that the
command line can list its fields without importing torch (`digitrec.making.marks` trains it)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MarksRecipe:
    """How the shipped mark classifier was made (the defaults), or a smaller run of it."""

    plain_digits: int = 20000  # training-split digits as they are
    rendered_digits: int = 5000  # training-split digits rendered under the conditions
    # ... of which this share (0s aside) closed up by a marker, loops filled in (a felt-tip 8)
    closed_share: float = 0.1
    negatives: int = 1200  # pictures per kind of negative
    val_digits: int = 2000  # validation-split digits rendered (choosing only: 0.3% of them is 6 digits)
    val_negatives: int = 100  # per kind
    epochs: int = 12
    lr: float = 3e-3
    batch_size: int = 128
    seed: int = 3000
    digit_recall: float = 0.997  # the share of validation digits the threshold lets through
