"""What reading hands back: a digit per image (`Prediction`), a number per line (`Reading`), an image
ready for the model (`Prepared`), and boxes scaled back to the input's pixels (`scale_box`).

These sit below both `digitrec.reading.recognize` and `digitrec.reading.segment`, so neither has to
import the other for its result types.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np


@dataclass
class Answer:
    """What reading answers for one image: its JSON object (the API's body, the CLI's `--json`
    line) is its fields, in the order the subclass declares them. (`file`, `rejected` and `reason`,
    which both have, stay in each subclass: fields declared here would come first.)"""

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Prediction(Answer):
    """One digit per image. `digit` is None when rejected; `top_k` lists {digit, probability}."""

    file: str | None
    digit: int | None
    confidence: float
    top_k: list[dict] = field(default_factory=list)
    rejected: bool = False
    reason: str | None = None


@dataclass
class Reading(Answer):
    """A number on a line. `digits` lists {digit, confidence, box: [x0, y0, x1, y1]} (input
    image pixels, upright after EXIF rotation, x1/y1 exclusive), left to right."""

    file: str | None
    text: str
    digits: list[dict] = field(default_factory=list)
    needs_review: bool = False
    rejected: bool = False
    reason: str | None = None


@dataclass
class Prepared:
    """One image after preprocessing: the 28x28 digit, or the reason it was rejected."""

    name: str | None
    digit28: np.ndarray | None  # (28, 28) float 0-1, MNIST polarity
    reason: str | None = None
    box: tuple[int, int, int, int] | None = None  # input pixels
    written28: np.ndarray | None = (
        None  # before a marker was thinned, for the mark classifier (preprocess.digit_images)
    )


def scale_box(box: tuple[int, int, int, int], scale: float, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """A working-resolution box -> input image pixels, clipped to the image."""
    w, h = size
    x0, y0, x1, y1 = box
    return (
        max(0, int(np.floor(x0 * scale))),
        max(0, int(np.floor(y0 * scale))),
        min(w, int(np.ceil(x1 * scale))),
        min(h, int(np.ceil(y1 * scale))),
    )
