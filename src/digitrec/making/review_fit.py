"""Choose when a number is flagged `needs_review`: the error-reject curve on VALIDATION numbers.

A flag costs a person's time, and a flag on a number read right is time wasted; a wrong number
not flagged is the worst outcome a reader has. Two bounds decide the flag
(`digitrec.reading.segment.review_reason`): the review margin (another number scoring within it
of the best) and the review confidence (a digit read below it). Each pair of bounds is an
operating point with a review rate (numbers flagged or rejected) and a silent-error rate
(numbers read wrong and neither); together they trace the error-reject curve.

Numbers are written from validation digits exactly as the reading benchmark writes test ones
(3-8 digits, a photo, scan or chalk style each, some neighbours touching:
`photographed_numbers`), read once with the models being shipped, and reduced to what deciding a
flag needs (`NumberEvidence`). Every operating point of a grid is then scored on them, and the
one flagging fewest numbers with at most `UNFLAGGED_TARGET` read wrong silently is chosen
(`choose_point`). `digitrec build-weights` writes it into verifier.json with the curve's summary
(`fit.review`); `digitrec build-weights --only review` redoes it alone when the models change.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from sklearn.linear_model import LogisticRegression

from digitrec.atomic import atomic_write_text
from digitrec.errors import ConfigError
from digitrec.reading import synth
from digitrec.reading.confidence import NUMBER_FEATURES, NumberModel, number_features
from digitrec.reading.marks import MarkOpinions
from digitrec.reading.segment import (
    LineAnalysis,
    LineRecognizer,
    analyse_line,
    decode_line,
    decode_paths,
    review_bound,
    review_reason,
    runner_up,
    span_check,
    span_log_odds,
)
from digitrec.reading.verifier import Verifier

UNFLAGGED_TARGET = 0.005  # at most this share of the numbers read wrong without needs_review
# The grid of operating points: margins in log score units (log 2 ~ 0.7, log 200 ~ 5.3), and digit
# confidences (0: the reject threshold alone).
MARGINS = tuple(float(m) for m in np.round(np.arange(0.0, 8.01, 0.25), 2))
CONFIDENCES = (0.0, 0.5, 0.8, 0.9, 0.95, 0.97, 0.98, 0.99, 0.995, 0.998, 0.999)
# With the number model: its bound (the probability that the reading is right), with a few margins
# and confidences beside it.
MODEL_GRID = (
    (0.0, 0.5, 1.0, 2.0),
    (0.0, 0.9, 0.95, 0.99),
    (0.5, 0.7, 0.8, 0.85, *(round(0.9 + 0.005 * k, 3) for k in range(19)), 0.997),  # 0.9-0.99 by 0.005
)
Log = Callable[[str], None]


class ReviewModels(LineRecognizer, Protocol):
    """What reading the validation numbers needs: the line's models and the mark classifier's say."""

    def expected_digit_opinions(self, digits28: Sequence[np.ndarray]) -> MarkOpinions: ...


@dataclass(frozen=True)
class ReviewRecipe:
    """How the shipped operating point was chosen (the defaults)."""

    numbers: int = 1600  # validation numbers read
    seed: int = 20_000  # of the first chunk of numbers (the reading benchmark's are 10_000 + its seed)
    chunk: int = 800  # numbers per chunk, the k-th written from seed + k (each cached on its own)
    touch_probability: float = 0.2  # as the reading benchmark's
    target: float = UNFLAGGED_TARGET


@dataclass(frozen=True)
class NumberEvidence:
    """One number as read, reduced to what deciding its flag needs."""

    truth: str
    text: str  # the best reading ("" when rejected)
    rejected: bool
    digits: tuple[int, ...]
    confidences: tuple[float, ...]
    runner_up: tuple[str, float] | None  # the second-best number and its score gap
    gaps: tuple[float, ...] = ()  # every other number's score gap below the best
    segment_log_odds: tuple[float, ...] = ()  # the verifier's, per digit read
    checker_log_odds: tuple[float, ...] = ()  # the one-digit checker's, per digit read
    mark_digit: tuple[float, ...] = ()  # the mark classifier's p(digit), per digit read

    @property
    def right(self) -> bool:
        return not self.rejected and self.text == self.truth

    def features(self) -> dict[str, float]:
        """The number model's features, as `segment.reading_features` computes them when reading."""
        texts = [self.runner_up[0] if self.runner_up else ""] + [""] * max(0, len(self.gaps) - 1)
        return number_features(
            self.text,
            self.confidences,
            list(zip(texts, self.gaps)),
            self.segment_log_odds,
            self.checker_log_odds,
            self.mark_digit,
        )

    def flagged(
        self, confidence_bound: float, margin_bound: float, right: float | None = None, bound: float = 0.0
    ) -> bool:
        """Rejected, or flagged at this operating point (the reader's own rule)."""
        reason = review_reason(
            self.digits, self.confidences, self.runner_up, confidence_bound, margin_bound, right, bound
        )
        return self.rejected or reason is not None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NumberEvidence:
        second = data["runner_up"]
        return cls(
            truth=data["truth"],
            text=data["text"],
            rejected=bool(data["rejected"]),
            digits=tuple(int(d) for d in data["digits"]),
            confidences=tuple(float(c) for c in data["confidences"]),
            runner_up=None if second is None else (str(second[0]), float(second[1])),
            gaps=tuple(float(g) for g in data.get("gaps", ())),
            segment_log_odds=tuple(float(g) for g in data.get("segment_log_odds", ())),
            checker_log_odds=tuple(float(g) for g in data.get("checker_log_odds", ())),
            mark_digit=tuple(float(p) for p in data.get("mark_digit", ())),
        )


def number_evidence(
    line: LineAnalysis,
    truth: str,
    reject_threshold: float,
    verifier: Verifier,
    not_digit: Callable[[list[tuple[int, int]]], MarkOpinions] | None = None,
) -> NumberEvidence:
    """What deciding the flag of an analysed line needs (the verifier's own bounds are not used);
    `not_digit`: the mark classifier's opinions of the digits read (`segment.span_check`)."""
    reading = decode_line(line, reject_threshold, verifier)
    paths = decode_paths(line, verifier) if not reading.rejected else []
    opinions = not_digit([(i, j) for i, j, _ in paths[0].digits]) if paths and not_digit is not None else None
    rows = [line.spans.index((i, j)) for i, j, _ in paths[0].digits] if paths else []
    log_odds = span_log_odds(line, verifier)
    return NumberEvidence(
        truth=truth,
        text=reading.text,
        rejected=reading.rejected,
        digits=tuple(int(d["digit"]) for d in reading.digits),
        confidences=tuple(float(d["confidence"]) for d in reading.digits),
        runner_up=runner_up(paths),
        gaps=tuple(paths[0].score - p.score for p in paths[1:]),
        segment_log_odds=tuple(float(log_odds[k]) for k in rows),
        checker_log_odds=tuple(float(line.one_digit[k]) for k in rows) if line.one_digit is not None else (),
        mark_digit=opinions.digit if opinions is not None else (),
    )


def photographed_numbers(
    images: np.ndarray, labels: np.ndarray, n: int, seed: int, touch_probability: float
) -> Iterator[tuple[synth.SynthNumber, np.ndarray]]:
    """`n` numbers of 3-8 of these digits, each in a random style (photo, scan, chalk) with a
    `touch_probability` share of neighbouring pairs touching -> (the number, its digits' indices).
    The reading benchmark writes its numbers with this, so the operating point is chosen on
    numbers like the ones it is judged on."""
    rng = np.random.default_rng(seed)
    for _ in range(n):
        idx = rng.choice(len(images), size=int(rng.integers(3, 9)), replace=False)
        style = synth.random_style(rng)
        yield (
            synth.render_number(list(images[idx]), list(labels[idx]), rng, style, touch_probability=touch_probability),
            idx,
        )


def gather_evidence(
    models: ReviewModels,
    reject_threshold: float,
    images: np.ndarray,
    labels: np.ndarray,
    n: int,
    seed: int,
    touch_probability: float,
    log: Log = lambda _: None,
) -> list[NumberEvidence]:
    """Write `n` numbers of these (validation) digits from `seed` and read each once (the digits
    read shown to the mark classifier, as `Recognizer.read` does)."""
    out, start = [], time.time()
    for k, (number, _) in enumerate(photographed_numbers(images, labels, n, seed, touch_probability)):
        line = analyse_line(models, synth.encode(number.image, "PNG"), keep_digits=True)
        check = span_check(line, models.expected_digit_opinions)
        out.append(number_evidence(line, number.text, reject_threshold, models.verifier, check))
        if (k + 1) % 250 == 0:
            log(f"review: read {k + 1} of {n} validation numbers from seed {seed} ({time.time() - start:.0f} s)")
    return out


def chunks(recipe: ReviewRecipe) -> list[tuple[int, int]]:
    """(numbers, seed) of each chunk of the recipe's numbers."""
    sizes = [recipe.chunk] * (recipe.numbers // recipe.chunk) + [recipe.numbers % recipe.chunk]
    return [(size, recipe.seed + k) for k, size in enumerate(sizes) if size]


def cached_evidence(path: Path, make: Callable[[], list[NumberEvidence]]) -> list[NumberEvidence]:
    """Evidence read from `path` when it is there, else made and written there (atomically)."""
    if path.is_file():
        return [NumberEvidence.from_dict(row) for row in json.loads(path.read_text())]
    evidence = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps([asdict(e) for e in evidence]))
    return evidence


@dataclass(frozen=True)
class OperatingPoint:
    margin: float  # review margin, log score units
    confidence: float  # review confidence (the reject threshold applies below it anyway)
    probability: float  # review probability: the number model's bound (0: the model is not used)
    review_rate: float  # numbers flagged or rejected
    silent_rate: float  # numbers read wrong and neither flagged nor rejected
    exact: float  # numbers read right (the same at every point)


def score_point(
    evidence: Sequence[NumberEvidence],
    reject_threshold: float,
    margin: float,
    confidence: float,
    probability: float = 0.0,
    right: Sequence[float] | None = None,
) -> OperatingPoint:
    """Review and silent-error rates of one operating point, by the reader's own rule; `right`
    is the number model's probability per number (needed when `probability` > 0)."""
    trial = Verifier(bias=0.0, weights={}, review_margin=margin, review_confidence=confidence)
    bound = review_bound(reject_threshold, trial)
    p: Sequence[float | None] = right if right is not None and probability > 0 else [None] * len(evidence)
    flagged = np.array([e.flagged(bound, margin, q, probability) for e, q in zip(evidence, p)])
    ok = np.array([e.right for e in evidence])
    return OperatingPoint(
        margin=margin,
        confidence=confidence,
        probability=probability if right is not None else 0.0,
        review_rate=float(flagged.mean()),
        silent_rate=float((~flagged & ~ok).mean()),
        exact=float(ok.mean()),
    )


def error_reject_curve(
    evidence: Sequence[NumberEvidence],
    reject_threshold: float,
    margins: Sequence[float] = MARGINS,
    confidences: Sequence[float] = CONFIDENCES,
    right: Sequence[float] | None = None,
) -> list[OperatingPoint]:
    """Every operating point of the grid, scored: margins x confidences without the number model,
    and, given its probabilities `right`, the smaller grid with it (MODEL_GRID)."""
    if not evidence:
        raise ValueError("no numbers to draw the error-reject curve on")
    points = [score_point(evidence, reject_threshold, m, c) for c in confidences for m in margins]
    if right is not None:
        margins_m, confidences_m, probabilities = MODEL_GRID
        points += [
            score_point(evidence, reject_threshold, m, c, q, right)
            for q in probabilities
            for c in confidences_m
            for m in margins_m
        ]
    return points


def pareto(points: Sequence[OperatingPoint]) -> list[OperatingPoint]:
    """The points no other beats on both rates, by review rate: the error-reject curve proper."""
    front: list[OperatingPoint] = []
    for p in sorted(points, key=order):
        if not front or p.silent_rate < front[-1].silent_rate:
            front.append(p)
    return front


def order(p: OperatingPoint) -> tuple[float, ...]:
    """Fewer flags first, then fewer silent errors, then the simpler rule (smaller bounds)."""
    return (p.review_rate, p.silent_rate, p.probability, p.margin, p.confidence)


def choose_point(points: Sequence[OperatingPoint], target: float) -> tuple[OperatingPoint, bool]:
    """The point flagging fewest numbers with a silent-error rate at most `target` (ties: fewer
    silent errors, then the smaller bounds) -> (it, True); when none meets the target, the point
    with the fewest silent errors (then fewest flags) -> (it, False)."""
    meeting = [p for p in points if p.silent_rate <= target]
    if meeting:
        return min(meeting, key=order), True
    return min(points, key=lambda p: (p.silent_rate, *order(p))), False


def fit_number_model(evidence: Sequence[NumberEvidence], folds: int = 2) -> tuple[NumberModel, list[float]]:
    """A logistic regression of "read right" on the number features of the numbers not rejected
    -> (the model fitted on all of them, each number's probability from the model fitted on the
    other folds: what the operating point is chosen with, so it is not chosen on the numbers the
    model has seen; 0 for a rejected number)."""
    usable = [k for k, e in enumerate(evidence) if not e.rejected]
    x = np.array([[evidence[k].features()[n] for n in NUMBER_FEATURES] for k in usable])
    y = np.array([evidence[k].right for k in usable])
    if len(usable) < 2 * folds or y.all() or not y.any():
        raise ConfigError("the number model needs numbers read right and wrong: choose on more numbers")

    def fit(rows: np.ndarray) -> NumberModel:
        mu, sigma = x[rows].mean(0), x[rows].std(0) + 1e-9
        model = LogisticRegression(C=1.0, max_iter=5000).fit((x[rows] - mu) / sigma, y[rows])
        weights = model.coef_[0] / sigma
        bias = float(model.intercept_[0] - (weights * mu).sum())
        return NumberModel(
            bias=round(bias, 5), weights={n: round(float(w), 5) for n, w in zip(NUMBER_FEATURES, weights)}
        )

    right = [0.0] * len(evidence)
    fold = np.arange(len(usable)) % folds
    for f in range(folds):
        if y[fold != f].all() or not y[fold != f].any():
            raise ConfigError("a fold of numbers has no number read wrong: choose on more numbers")
        model = fit(np.flatnonzero(fold != f))
        for k in np.flatnonzero(fold == f):
            right[usable[k]] = model.probability(evidence[usable[k]].features())
    return fit(np.arange(len(usable))), right


def fit_review(
    verifier: Verifier,
    evidence: Sequence[NumberEvidence],
    reject_threshold: float,
    recipe: ReviewRecipe,
    log: Log = lambda _: None,
) -> Verifier:
    """`verifier` with the operating point chosen on `evidence` (and the number model, when the
    point chosen uses it), and the record of how (`fit.review`: the recipe, the chosen point's
    rates, the previous point's and the curve)."""
    model: NumberModel | None
    right: list[float] | None
    try:
        model, right = fit_number_model(evidence)
    except ConfigError as exc:  # e.g. a small set read all right: the margin and confidence alone
        model, right = None, None
        log(f"review: no number model ({exc})")
    points = error_reject_curve(evidence, reject_threshold, right=right)
    chosen, met = choose_point(points, recipe.target)
    before = score_point(evidence, reject_threshold, verifier.review_margin, verifier.review_confidence or 0.0)
    for p in pareto(points):
        log(f"review curve: {describe(p)}")
    log(f"review: chosen {describe(chosen)} (target silent <= {recipe.target:.1%}: {'met' if met else 'MISSED'})")
    log(f"review: previous point {describe(before)}")
    record = {
        "made_by": "digitrec build-weights (digitrec.making.review_fit)",
        "numbers": len(evidence),
        "split": "validation",
        "reject_threshold": reject_threshold,
        "number_model_rates": "out of fold (2 folds): the model that scored a number never saw it"
        if model is not None
        else "no number model: the numbers gave no reading right and one wrong in each fold",
        "target_met": met,
        "chosen": asdict(chosen),
        "previous": asdict(before),
        "curve": [asdict(p) for p in pareto(points)],
        "recipe": asdict(recipe),
    }
    uses_model = model is not None and chosen.probability > 0
    return replace(
        verifier,
        review_margin=chosen.margin,
        review_confidence=chosen.confidence,
        number_model=model if uses_model else None,
        review_probability=chosen.probability if uses_model else 0.0,
        fit={**verifier.fit, "review": record},
    )


def describe(p: OperatingPoint) -> str:
    return (
        f"margin {p.margin:.2f}, digit confidence {p.confidence:g}, number probability {p.probability:g}: "
        f"review {p.review_rate:.1%}, "
        f"wrong and not flagged {p.silent_rate:.2%} (exact {p.exact:.1%})"
    )
