"""The segment verifier: is a candidate cut out of a number exactly one written digit?

A score linear in the candidate's named features (`digitrec.reading.features.FEATURES`): its
log-odds is `bias + sum(weights[name] * feature[name])`. A number whose best reading scores less
than `review_margin` above the next best, or with a digit read below `review_confidence`, is
flagged `needs_review`, and so is one the number model (`digitrec.reading.confidence`) gives a
probability of being right below `review_probability` (the operating point, chosen by
`digitrec.making.review_fit`). The numbers live in
`weights/verifier.json`, written by `digitrec build-weights` (fitted on numbers made of
validation digits only), and are loaded into this dataclass and passed to the reader: never
module globals edited at run time.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from digitrec.atomic import atomic_write_text
from digitrec.errors import CheckpointError
from digitrec.reading.confidence import NumberModel
from digitrec.weights import VERIFIER_PATH


@dataclass(frozen=True)
class Verifier:
    bias: float
    weights: Mapping[str, float]  # feature name -> weight
    review_margin: float  # log-probability units
    fit: Mapping[str, Any] = field(default_factory=dict)  # how it was fitted, for the record
    # A digit read below this probability flags its number (never less than the reading model's
    # reject threshold; None: that threshold alone). Chosen with the margin on validation numbers.
    review_confidence: float | None = None
    # The number model (`digitrec.reading.confidence`): a reading it gives a probability of being
    # right below `review_probability` is flagged. None: not used.
    number_model: NumberModel | None = None
    review_probability: float = 0.0

    def __post_init__(self) -> None:
        values = [self.bias, self.review_margin, *self.weights.values()]
        if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
            raise ValueError("verifier numbers must be finite")
        if self.review_margin < 0:
            raise ValueError("review_margin must be >= 0")
        if self.review_confidence is not None and not 0.0 <= self.review_confidence <= 1.0:
            raise ValueError("review_confidence must be a probability (0-1)")
        if not 0.0 <= self.review_probability <= 1.0:
            raise ValueError("review_probability must be a probability (0-1)")

    def weight_vector(self, names: tuple[str, ...]) -> list[float]:
        """The weights in the order of `names`; every feature must have a weight."""
        missing = [n for n in names if n not in self.weights]
        if missing:
            raise ValueError(f"the verifier has no weight for {', '.join(missing)}")
        return [float(self.weights[n]) for n in names]

    def to_dict(self) -> dict[str, Any]:
        return {
            "bias": self.bias,
            "weights": dict(self.weights),
            "review_margin": self.review_margin,
            "review_confidence": self.review_confidence,
            "number_model": self.number_model.to_dict() if self.number_model is not None else None,
            "review_probability": self.review_probability,
            "fit": dict(self.fit),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Verifier:
        return cls(
            bias=float(data["bias"]),
            weights={str(k): float(v) for k, v in data["weights"].items()},
            review_margin=float(data["review_margin"]),
            fit=dict(data.get("fit", {})),
            review_confidence=None if data.get("review_confidence") is None else float(data["review_confidence"]),
            number_model=NumberModel.from_dict(data["number_model"]) if data.get("number_model") else None,
            review_probability=float(data.get("review_probability", 0.0)),
        )

    def save(self, path: str | os.PathLike = VERIFIER_PATH) -> Path:
        about = (
            "bias + sum(weights[name] * feature[name]) is the log-odds that a candidate is exactly one "
            "digit; a reading is flagged needs_review when another number scores within review_margin of it "
            "or a digit is read below review_confidence, or number_model gives it a probability of being right "
            "below review_probability (see fit.review for how they were chosen)"
        )
        return atomic_write_text(path, json.dumps({"about": about, **self.to_dict()}, indent=1) + "\n")


def load_verifier(path: str | os.PathLike = VERIFIER_PATH) -> Verifier:
    """The verifier stored at `path` (default: the shipped one); a bad file is one clear error."""
    try:
        return Verifier.from_dict(json.loads(Path(path).read_text()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"{path}: not a usable verifier file ({exc})") from None
