"""Fit the segment verifier (`digitrec.reading.verifier.Verifier`) on numbers of VALIDATION digits.

Reading a number chooses, among ways of grouping ink atoms into digits, the one whose digits are
most probable. The classifier alone is a poor judge of whether a candidate is one digit at all
(two touching digits often look like a confident "0" or "7", a "41" like a "4"), so each
candidate also gets the verifier's score, linear in its named features (`segment.FEATURES`): is
this candidate exactly one written digit? Numbers are written from the validation split (never
the test set), read with the given reading model and checker, and their true segmentation found
by atom ownership (`digitrec.making.cutouts.true_spans`). Then:

1. a logistic regression (scikit-learn) on candidates labelled "is a true digit" gives the start;
2. a structured averaged perceptron refines the weights on whole numbers: each fitting number is
   read with the current weights, and when the reading is wrong the weights move towards the true
   segmentation's features and away from the wrong one's (what the reader actually decides);
3. the weights (logistic with the best bias shift, or a perceptron epoch) that read held-out
   validation numbers best are kept, unless the baseline verifier reads them at least as well;
4. the review margin is the smallest that leaves at most 0.5% of the numbers read wrong without
   needs_review: an interim one, until `digitrec.making.review_fit` (the next build step) chooses
   the operating point on photographed validation numbers read with the new weights.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression

from digitrec.errors import ConfigError
from digitrec.making.cutouts import true_spans, write_numbers
from digitrec.models.checkpoint import load_checkpoint
from digitrec.reading import synth
from digitrec.reading.marks import MarkOpinions
from digitrec.reading.recognize import Recognizer
from digitrec.reading.segment import FEATURES, LineAnalysis, analyse_line, best_paths, candidate_features, decode_line
from digitrec.reading.verifier import Verifier

UNFLAGGED_TARGET = 0.005  # at most this share of the numbers may be read wrong without needs_review
MARGIN_RATIOS = (2, 3, 5, 10, 20, 50, 100, 200, 500, 1000)  # review margins tried: log(ratio)
BIAS_SHIFTS = np.arange(-3.0, 3.01, 0.5)  # the bias acts as a per-digit reward: choose it by reading
Log = Callable[[str], None]


@dataclass(frozen=True)
class VerifierRecipe:
    """How the shipped verifier was fitted (the defaults), or a smaller run of it."""

    numbers: int = 800  # numbers to fit on
    holdout: int = 300  # numbers to choose among fits on
    seed: int = 100
    touch_probability: float = 0.2
    epochs: int = 8  # perceptron passes over the fitting numbers
    rate: float = 0.05  # perceptron step, standardised units


@dataclass(frozen=True)
class ReadingModels:
    """The models reading a line uses (a `segment.LineRecognizer`), from given files: the ones
    being made rather than the shipped ones."""

    reader: Recognizer
    checker: Recognizer | None
    verifier: Verifier
    pen_model: Recognizer | None = None  # averaged in on a marker's candidates, as the product's

    @classmethod
    def load(cls, reader: str | Path, checker: str | Path | None, verifier: Verifier) -> ReadingModels:
        def model(path: str | Path | None) -> Recognizer:
            return Recognizer(load_checkpoint(path), verifier=verifier)

        return cls(
            reader=model(reader),
            checker=model(checker) if checker is not None else None,
            verifier=verifier,
            pen_model=model(None),  # the shipped default model, which `Recognizer.load` reads with
        )

    def expected_digit_opinions(self, digits28: Sequence[np.ndarray]) -> MarkOpinions:
        """The shipped mark classifier's opinions of digits read (`Recognizer.expected_digit_opinions`:
        the reading model's recognizer carries the shipped classifier, as the product's does)."""
        return self.reader.expected_digit_opinions(digits28)


class Prepared:
    """One number, analysed: features of every candidate, and its true segmentation."""

    def __init__(self, line: LineAnalysis, number: synth.SynthNumber) -> None:
        self.line, self.number = line, number
        self.x = candidate_features(line) if line.spans else np.zeros((0, len(FEATURES)))
        self.logp = np.log(np.maximum(line.probs, 1e-12))
        self.truth = true_spans(line, number)
        self.index = {span: k for k, span in enumerate(line.spans)}

    def decode(self, weights: np.ndarray, bias: float) -> tuple[str, list[tuple[int, int]]] | None:
        """The best reading under these weights: (the number, its digits' spans), or None."""
        if not self.line.spans:
            return None
        scores = {span: row + v for span, row, v in zip(self.line.spans, self.logp, self.x @ weights + bias)}
        paths = best_paths(len(self.line.atoms), scores, [a.small for a in self.line.atoms])
        return (paths[0].text, [(i, j) for i, j, _ in paths[0].digits]) if paths else None

    def exact(self, weights: np.ndarray, bias: float) -> bool:
        reading = self.decode(weights, bias)
        return reading is not None and reading[0] == self.number.text

    def phi(self, spans: list[tuple[int, int]]) -> np.ndarray:
        """Summed features of a segmentation, plus the digit count (the bias's feature)."""
        rows = [self.index[span] for span in spans]
        return np.r_[self.x[rows].sum(axis=0), len(rows)]


def exact_rate(prepared: list[Prepared], weights: np.ndarray, bias: float) -> float:
    return float(np.mean([p.exact(weights, bias) for p in prepared])) if prepared else 0.0


def analyse_numbers(
    models: ReadingModels, images: np.ndarray, labels: np.ndarray, n: int, seed: int, touch_probability: float
) -> list[Prepared]:
    return [
        Prepared(analyse_line(models, synth.encode(number.image)), number)
        for number, _ in write_numbers(images, labels, n, seed, touch_probability)
    ]


def logistic_start(fit: list[Prepared], hold: list[Prepared], log: Log) -> tuple[float, np.ndarray, float, np.ndarray]:
    """Logistic regression on the candidates of numbers whose true segmentation is among them,
    with the bias shift that reads the held-out numbers best -> (held-out exact, weights, bias,
    feature standard deviations)."""
    usable = [p for p in fit if p.truth is not None]
    if not usable:
        raise ConfigError("no fitting number could be cut into its true digits: fit on more numbers")
    x = np.concatenate([p.x for p in usable])
    y = np.concatenate([np.isin(np.arange(len(p.line.spans)), [p.index[s] for s in p.truth or []]) for p in usable])
    if y.all() or not y.any():
        raise ConfigError("the fitting numbers gave candidates of one kind only: fit on more numbers")
    mu, sigma = x.mean(0), x.std(0) + 1e-9
    model = LogisticRegression(C=1.0, max_iter=5000).fit((x - mu) / sigma, y)
    weights = model.coef_[0] / sigma
    bias = float(model.intercept_[0] - (model.coef_[0] * mu / sigma).sum())
    log(
        f"{len(y)} candidates ({y.mean():.1%} true digits) from {len(usable)} of {len(fit)} numbers; logistic fit "
        f"accuracy on candidates {model.score((x - mu) / sigma, y):.3f}"
    )
    rates = [exact_rate(hold, weights, bias + shift) for shift in BIAS_SHIFTS]
    best = int(np.argmax(rates))
    log(f"logistic, best bias shift {BIAS_SHIFTS[best]:+.1f}: held-out exact {rates[best]:.3f}")
    return rates[best], weights, bias + float(BIAS_SHIFTS[best]), sigma


def perceptron(
    fit: list[Prepared],
    hold: list[Prepared],
    w0: np.ndarray,
    b0: float,
    sigma: np.ndarray,
    recipe: VerifierRecipe,
    log: Log,
) -> tuple[float, np.ndarray, float]:
    """Averaged structured perceptron in standardised feature units, starting at (w0, b0) ->
    (held-out exact, weights, bias) of the best epoch."""
    rng = np.random.default_rng(recipe.seed)
    scale = np.r_[sigma, 1.0]  # a step of `rate` moves every standardised weight alike
    theta = np.r_[w0 * sigma, b0]
    total, count = theta.copy(), 1
    usable = [p for p in fit if p.truth is not None]
    best = (-1.0, w0, b0)
    for epoch in range(recipe.epochs):
        mistakes = 0
        for k in rng.permutation(len(usable)):
            p = usable[k]
            w, b = theta[:-1] / sigma, theta[-1]
            reading = p.decode(w, b)
            if reading is None or reading[0] != p.number.text:
                mistakes += 1
                wrong = p.phi(reading[1]) if reading and reading[1] else 0
                theta = theta + recipe.rate * (p.phi(p.truth or []) - wrong) * (1 / scale)
            total += theta
            count += 1
        avg = total / count
        w, b = avg[:-1] / sigma, float(avg[-1])
        rate = exact_rate(hold, w, b)
        log(f"perceptron epoch {epoch + 1}: {mistakes} mistakes on {len(usable)} numbers, held-out exact {rate:.3f}")
        if rate > best[0]:
            best = (rate, w.copy(), b)
    return best


def choose_review_margin(prepared: list[Prepared], threshold: float, verifier: Verifier, log: Log) -> float:
    """The smallest review margin (log score units) that leaves at most UNFLAGGED_TARGET of the
    numbers read wrong without needs_review: a reading is flagged when another number scores
    within the margin of the best (or a digit is below the reject threshold)."""
    for ratio in MARGIN_RATIOS:
        trial = replace(verifier, review_margin=math.log(ratio))
        readings = [decode_line(p.line, threshold, trial) for p in prepared]
        exact = np.array([r.text == p.number.text and not r.rejected for r, p in zip(readings, prepared)])
        flagged = np.array([r.needs_review or r.rejected for r in readings])
        unflagged = float((~exact & ~flagged).mean())
        log(
            f"review margin log({ratio}): exact {exact.mean():.3f}, needs review {flagged.mean():.3f}, "
            f"wrong and not flagged {unflagged:.3f}"
        )
        if unflagged <= UNFLAGGED_TARGET:
            return math.log(ratio)
    return math.log(MARGIN_RATIOS[-1])


def fit_verifier(
    models: ReadingModels,
    images: np.ndarray,
    labels: np.ndarray,
    recipe: VerifierRecipe,
    baseline: Verifier | None = None,
    log: Log = lambda _: None,
) -> Verifier:
    """Fit on numbers of these (validation) digits read with `models`; `baseline` (e.g. the
    shipped verifier) is kept, with a new review margin, unless a fit reads held-out numbers better."""
    start = time.time()
    fit = analyse_numbers(models, images, labels, recipe.numbers, recipe.seed, recipe.touch_probability)
    hold = analyse_numbers(models, images, labels, recipe.holdout, recipe.seed + 1, recipe.touch_probability)
    log(
        f"analysed {len(fit)} + {len(hold)} numbers ({time.time() - start:.0f} s); held-out reachable "
        f"{np.mean([p.truth is not None for p in hold]):.3f}"
    )
    rate, weights, bias, sigma = logistic_start(fit, hold, log)
    best: tuple[float, np.ndarray, float, str] = (rate, weights, bias, "logistic")
    refined = perceptron(fit, hold, weights, bias, sigma, recipe, log)
    if refined[0] > best[0]:
        best = (*refined, "perceptron")
    record: dict[str, Any] = {"held_out_exact_fitted": best[0]}
    if baseline is not None:  # a refit must read the held-out numbers better, or the baseline stays
        before = exact_rate(hold, np.array(baseline.weight_vector(FEATURES)), baseline.bias)
        log(f"held-out exact: baseline {before:.3f}, refitted ({best[3]}) {best[0]:.3f}")
        record["held_out_exact_baseline"] = before
        if before >= best[0]:
            best = (before, np.array(baseline.weight_vector(FEATURES)), baseline.bias, "baseline")
    chosen = Verifier(
        bias=round(float(best[2]), 4),
        weights={n: round(float(w), 4) for n, w in zip(FEATURES, best[1])},
        review_margin=0.0,
    )
    # on every number (fitting and held-out): a few hundred held-out numbers alone are too few for a 0.5% rate
    margin = choose_review_margin(fit + hold, models.reader.reject_threshold, chosen, log)
    fitted = {
        "numbers_fit": recipe.numbers,
        "numbers_held_out": recipe.holdout,
        "held_out_exact": best[0],
        "weights_from": best[3],
        **record,
        "unflagged_wrong_target": UNFLAGGED_TARGET,
        "made_by": "digitrec build-weights",
        "recipe": asdict(recipe),
    }
    return replace(chosen, review_margin=margin, fit=fitted)
