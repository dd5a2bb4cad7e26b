"""How likely a number's reading is to be right: one probability from what reading it found out.

The best segmentation's digits each have a probability, but a number read wrong is most often
one whose digits are each read confidently: two touching digits read as one (a "14" as a "4"),
or one digit cut in two. What tells those apart is the rest of the evidence: how far the next
best reading scores below (`gap`), how many readings score close (`log_posterior`), how sure
the segment verifier and the one-digit checker are that each digit read is exactly one digit,
and how much the mark classifier doubts that each is a digit at all (a digit cut in two, or two
half-digits read as one, often looks like no digit to it: on 1,600 fresh validation numbers this
took the review rate at 0.5% silent errors from 13.3% to 10.9%).
`number_features` names them; `NumberModel` weighs them into the log-odds that the reading is
right (a logistic regression fitted on numbers of validation digits by
`digitrec.making.review_fit`, stored in weights/verifier.json as `number_model`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

NUMBER_FEATURES = (
    "gap",  # score of the best reading above the next best (log units), capped
    "log_posterior",  # log of the best reading's share of the readings found (softmax of their scores)
    "min_digit_logit",  # log-odds of the least sure digit
    "digit_deficit",  # sum over the digits of -log(probability)
    "min_segment_log_odds",  # the verifier's least sure "exactly one digit" among the digits read
    "min_checker_log_odds",  # the one-digit checker's least sure (0 when no checker)
    "digits",  # how many digits were read
    "other_length",  # 1 when the next best reading has another number of digits (a segmentation doubt)
    "min_mark_log_odds",  # the mark classifier's least sure "a digit" among the digits read, capped
)
GAP_CAP = 15.0  # log units: beyond this the next reading is as good as absent
LOGIT_CLIP = 12.0
# The mark classifier's say counts only as doubt: a piece cut off a digit often looks like a "1"
# to it as surely as a whole digit does, so being sure that a digit is a digit earns nothing.
MARK_SURE_CAP = 2.0  # log-odds (p(digit) 0.88): above it, every digit is alike


def _logit(p: float) -> float:
    p = min(max(p, 1e-9), 1 - 1e-9)
    return max(-LOGIT_CLIP, min(LOGIT_CLIP, math.log(p / (1 - p))))


def number_features(
    text: str,
    confidences: Sequence[float],
    alternatives: Sequence[tuple[str, float]],
    segment_log_odds: Sequence[float],
    checker_log_odds: Sequence[float],
    mark_digit: Sequence[float] = (),
) -> dict[str, float]:
    """The named features of one reading. `alternatives` are the other numbers found, each with
    its score gap below the best (best first); `mark_digit`: the mark classifier's p(digit) per
    digit (empty without a classifier)."""
    gaps = [g for _, g in alternatives]
    return {
        "gap": min(gaps[0], GAP_CAP) if gaps else GAP_CAP,
        "log_posterior": -math.log1p(sum(math.exp(-min(g, 50.0)) for g in gaps)),
        "min_digit_logit": min((_logit(c) for c in confidences), default=LOGIT_CLIP),
        "digit_deficit": min(10.0, sum(-math.log(max(c, 1e-9)) for c in confidences)),
        "min_segment_log_odds": max(-20.0, min(20.0, min(segment_log_odds, default=20.0))),
        "min_checker_log_odds": min(checker_log_odds, default=0.0),
        "digits": float(len(confidences)),
        "other_length": float(bool(alternatives) and len(alternatives[0][0]) != len(text)),
        "min_mark_log_odds": min([MARK_SURE_CAP, *(_logit(p) for p in mark_digit)]),
    }


@dataclass(frozen=True)
class NumberModel:
    """Log-odds that a reading is right: `bias + sum(weights[name] * features[name])`. The weights
    name the features the model was fitted on: a model fitted before a feature was added reads as
    it did (a name not in NUMBER_FEATURES is refused)."""

    bias: float
    weights: Mapping[str, float]

    def __post_init__(self) -> None:
        unknown = [name for name in self.weights if name not in NUMBER_FEATURES]
        if unknown:
            raise ValueError(f"the number model weighs unknown features: {', '.join(unknown)}")
        if not all(math.isfinite(v) for v in (self.bias, *self.weights.values())):
            raise ValueError("number model numbers must be finite")

    def probability(self, features: Mapping[str, float]) -> float:
        z = self.bias + sum(w * features[name] for name, w in self.weights.items())
        return 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, z))))

    def to_dict(self) -> dict[str, object]:
        return {"bias": self.bias, "weights": dict(self.weights)}

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> NumberModel:
        weights = data["weights"]
        if not isinstance(weights, Mapping):
            raise ValueError("number_model.weights must be a mapping")
        return cls(bias=float(data["bias"]), weights={str(k): float(v) for k, v in weights.items()})  # type: ignore[arg-type]
