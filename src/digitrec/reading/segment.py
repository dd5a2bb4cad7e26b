"""Read a whole number written on a line: segment it into digits and recognise each.

1. The ink is found exactly as for one digit (`digitrec.reading.ink.extract_ink`) and split into
   connected pieces (specks and ruled lines dropped; `digitrec.reading.pieces`).
2. Pieces that belong to one digit are merged (`digitrec.reading.atoms`): a fragment (much shorter
   than the line, e.g. a 5's cap or a broken stroke) joins the full-height piece it overlaps
   horizontally. Two digits on one line never sit one above the other, so horizontal overlap is
   strong evidence.
3. Touching or slightly overlapping digits form one wide piece: candidate cuts are seams, the
   top-to-bottom paths through the piece that cross the least ink (seam carving within a band,
   so a cut can lean with slanted writing; `digitrec.reading.seams`); none of them has to be used.
4. The resulting atoms, left to right, are grouped into digits by recognition: every run of 1 to
   `MAX_RUN` neighbouring atoms is a candidate digit (`digitrec.reading.candidates.cut_line`),
   preprocessed like any digit and classified in one batch. Each candidate scores the
   log-probability of its class plus a verifier's score that it is exactly one digit, linear in
   its named features (`digitrec.reading.features`: width and height against the line and against
   the line's typical digit width, gaps to its neighbours, cuts it starts or ends at, pieces it
   joins, how confidently its two sides read as digits when cut, and what a small CNN trained on
   such cut-outs says: is this exactly one digit (the one-digit checker, `digitrec.making.checker`)).
   The verifier's weights (`digitrec.reading.verifier.Verifier`, shipped in weights/verifier.json)
   were fitted on whole numbers made of validation digits (`digitrec.making.verifier_fit`). Dynamic programming picks the grouping with the best total. The
   digits are classified by the reading model (`Recognizer.reader`), larger than the one `predict`
   uses. Merging the halves of a "0" wins because half a "0" is too narrow and leans on a cut;
   cutting two touching digits wins because a double-width "digit" is implausible, however
   confident the classifier is about it (it reads a "41" as a "4" and a "77" as a "7" with near
   certainty, so its confidence counts for little). A short but wide atom may be a digit on its
   own: MNIST has "0"s twice as wide as tall, which come out half as tall as their neighbours.
5. `needs_review` is raised, always with a reason saying why (`review_reason`), when a digit is
   read below the verifier's `review_confidence` (never less than the reject threshold) or when a
   segmentation giving a different number scores within the verifier's `review_margin` of the
   best. Both bounds are chosen on validation numbers (`digitrec.making.review_fit`).

Nothing here knows the `Recognizer` class: what reading a line needs of one is the `LineRecognizer`
protocol below, so `digitrec.reading.recognize` can import this module and not the other way round.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from digitrec.reading.atoms import Atom
from digitrec.reading.candidates import MAX_DIGITS, MAX_RUN, READ_MAX_SIDE, LineAnalysis, cut_line
from digitrec.reading.confidence import number_features
from digitrec.reading.decode import ImageInput
from digitrec.reading.features import FEATURES, candidate_features
from digitrec.reading.marks import MarkOpinions
from digitrec.reading.results import Reading, scale_box
from digitrec.reading.verifier import Verifier

# The segmenter's public names, some defined in the modules it is built from (callers keep using
# `segment.cut_line`, `segment.Atom` ... wherever the code lives).
__all__ = [
    "FEATURES",
    "READ_MAX_SIDE",
    "Atom",
    "DigitModel",
    "LineAnalysis",
    "LineRecognizer",
    "Path",
    "analyse_line",
    "best_paths",
    "candidate_features",
    "candidate_probabilities",
    "candidate_scores",
    "cut_line",
    "decode_line",
    "decode_paths",
    "feature_log_odds",
    "k_best",
    "one_digit_log_odds",
    "read_number",
    "span_check",
    "reading_features",
    "review_bound",
    "review_reason",
    "runner_up",
    "span_log_odds",
]

SKIP_PENALTY = math.log(0.05)  # leaving out a small stray mark costs this (log-probability)
K_BEST = 6  # segmentations kept per DP state (to find the best alternative number)
CHECKER_CLIP = 12.0  # log-odds beyond this say nothing more (and keep one odd crop from dominating)


class DigitModel(Protocol):
    """A model of 28x28 digits, as reading a line uses one (the reading model, the checker)."""

    @property
    def reject_threshold(self) -> float: ...

    def logits(self, digits28: Sequence[np.ndarray]) -> np.ndarray: ...

    def probabilities(self, digits28: Sequence[np.ndarray]) -> np.ndarray: ...


class LineRecognizer(Protocol):
    """What reading a line needs of a recognizer (`digitrec.reading.recognize.Recognizer` is one)."""

    @property
    def reader(self) -> DigitModel: ...  # classifies the candidate digits

    @property
    def checker(self) -> DigitModel | None: ...  # the one-digit checker, when installed

    @property
    def verifier(self) -> Verifier: ...  # scores candidates and sets the review margin

    @property
    def pen_model(self) -> DigitModel | None: ...  # averaged in on a marker's candidates (`candidate_probabilities`)


def analyse_line(recognizer: LineRecognizer, image: ImageInput, keep_digits: bool = False) -> LineAnalysis:
    """`cut_line`, then classify every candidate digit in one batch (with the recognizer's reading
    model) and check it is one digit (the one-digit checker). `keep_digits` keeps each
    candidate's 28x28 image."""
    line = cut_line(image)
    if line.reason:
        return line
    images = line.digits28 or []
    line.probs = candidate_probabilities(recognizer, images, line.thinned) if images else np.zeros((0, 10))
    line.one_digit = one_digit_log_odds(recognizer, images)
    if not keep_digits:
        line.digits28 = None
    return line


def candidate_probabilities(
    recognizer: LineRecognizer, images: list[np.ndarray], thinned: np.ndarray | None
) -> np.ndarray:
    """(len(images), 10): the reading model's probabilities of candidate digits. On a candidate
    whose strokes were a marker's (`thinned`) the recognizer's `pen_model`, trained with the pen
    augmentations, is averaged in: a second opinion where digits are hardest. Chosen when the
    reading model knew only MNIST's pen: on 600 numbers of validation digits written 2 px wider
    (benchmarks/reading.py --pen-widen 2) that read 93.5% exactly instead of 92.8%, with 0.83% wrong
    and unflagged instead of 1.50%; 4 px wider, 79.0% instead of 72.8%; 600 numbers in MNIST's pen
    read the same. The reading model has since learnt marker numbers' cut-outs (`making.reader`)."""
    probs = recognizer.reader.probabilities(images)
    pen = recognizer.pen_model
    rows = np.flatnonzero(thinned) if thinned is not None and pen is not None else np.zeros(0, np.intp)
    if pen is not None and rows.size:
        probs[rows] = (probs[rows] + pen.probabilities([images[k] for k in rows])) / 2
    return probs


def one_digit_log_odds(recognizer: LineRecognizer, images: list[np.ndarray]) -> np.ndarray | None:
    """(len(images),) the one-digit checker's log-odds that each candidate is exactly one digit,
    None when no checker is installed."""
    checker = recognizer.checker
    if checker is None or not images:
        return None
    logits = checker.logits(images)  # (B, 2): [not one digit, one digit]
    return np.clip(logits[:, 1] - logits[:, 0], -CHECKER_CLIP, CHECKER_CLIP)


@dataclass(frozen=True)
class Path:
    score: float
    digits: tuple[tuple[int, int, int], ...]  # (first atom, last atom, digit) per digit

    @property
    def text(self) -> str:
        return "".join(str(d) for _, _, d in self.digits)


def best_paths(n: int, candidates: dict[tuple[int, int], np.ndarray], skippable: list[bool]) -> list[Path]:
    """K-best segmentations of atoms 0..n-1 into digits. candidates maps (i, j) (atoms i..j) to
    class scores (10,) (log-probability plus width prior); a digit scores its class's score.
    Returns paths, best first (at most one per distinct number)."""
    seen, unique = set(), []
    for path in k_best(n, candidates, skippable):
        if path.text not in seen:
            seen.add(path.text)
            unique.append(path)
    return unique


def k_best(n: int, candidates: dict[tuple[int, int], np.ndarray], skippable: list[bool]) -> list[Path]:
    """The `K_BEST` best segmentations of atoms 0..n-1 (`best_paths`), best first, several of
    them perhaps the same number. Keeping the K best at every atom finds the K best overall: a
    path's beginning that K others beat would leave K better paths with its end."""
    states: list[list[Path]] = [[] for _ in range(n + 1)]
    states[0] = [Path(score=0.0, digits=())]
    for end in range(1, n + 1):
        options: list[Path] = []
        for start in range(max(0, end - MAX_RUN), end):
            logp = candidates.get((start, end - 1))
            if logp is None:
                continue
            # the best class and the runner-up (which makes alternatives too), with their scores
            top = [(int(digit), float(logp[digit])) for digit in np.argsort(-logp)[:2]]
            for path in states[start]:
                for digit, score in top:
                    options.append(Path(score=path.score + score, digits=path.digits + ((start, end - 1, digit),)))
        if skippable[end - 1]:
            options += [Path(score=p.score + SKIP_PENALTY, digits=p.digits) for p in states[end - 1]]
        options.sort(key=lambda p: -p.score)
        states[end] = options[:K_BEST]
    return states[n]


def candidate_scores(
    line: LineAnalysis, verifier: Verifier, log_odds: np.ndarray | None = None
) -> dict[tuple[int, int], np.ndarray]:
    """(i, j) -> (10,) score per class: the class's log-probability plus the verifier's log-odds
    that atoms i..j are exactly one digit (linear in `candidate_features`; `log_odds`: its
    `span_log_odds`, when known)."""
    if not line.spans:
        return {}
    log_odds = span_log_odds(line, verifier) if log_odds is None else log_odds
    return {span: np.log(np.maximum(row, 1e-12)) + lo for span, row, lo in zip(line.spans, line.probs, log_odds)}


def span_log_odds(line: LineAnalysis, verifier: Verifier) -> np.ndarray:
    """(len(line.spans),) the verifier's log-odds that each candidate is exactly one digit."""
    if not line.spans:
        return np.zeros(0)
    return feature_log_odds(candidate_features(line), verifier)


def feature_log_odds(features: np.ndarray, verifier: Verifier) -> np.ndarray:
    """(B, len(FEATURES)) candidate features -> (B,) the verifier's log-odds. Each row is summed
    on its own (not a matrix product, whose rounding depends on the rows beside it), so a
    candidate scores the same to the last bit among all of a line's candidates or among a few
    (`digitrec.reading.search`)."""
    return (features * np.array(verifier.weight_vector(FEATURES))).sum(axis=1) + verifier.bias


def format_below(value: float, bound: float) -> tuple[str, str]:
    """`value` and `bound` written with just enough decimals (3 or more) to tell them apart."""
    for places in range(3, 9):
        a, b = f"{value:.{places}f}", f"{bound:.{places}f}"
        if a != b:
            return a, b
    return a, b


def review_reason(
    digits: Sequence[int],
    confidences: Sequence[float],
    runner_up: tuple[str, float] | None,
    confidence_bound: float,
    margin_bound: float,
    right: float | None = None,
    right_bound: float = 0.0,
) -> str | None:
    """Why a reading needs a person's look, or None when it does not. A digit read below
    `confidence_bound` names the least sure one (and how many others are); another number
    (`runner_up`: its text and how far its score is below the best's) closer than `margin_bound`
    names that number; the number model's probability that the reading is right (`right`) below
    `right_bound` gives it, with the next best reading. Reasons are joined with "; "."""
    reasons = []
    if right is not None and right < right_bound:
        value, bound = format_below(right, right_bound)
        other = f" (next best {runner_up[0] or 'nothing'})" if runner_up is not None else ""
        reasons.append(f"the number is right with probability {value} only, below {bound}{other}")
    low = [k for k, c in enumerate(confidences) if c < confidence_bound]
    if low:
        k = min(low, key=lambda k: confidences[k])
        value, bound = format_below(confidences[k], confidence_bound)
        others = f" (and {len(low) - 1} more)" if len(low) > 1 else ""
        reasons.append(f"digit {digits[k]} (position {k + 1}) read at {value}, below {bound}{others}")
    if runner_up is not None and runner_up[1] < margin_bound:
        reasons.append(
            f"could also be read as {runner_up[0] or 'nothing'} (margin {runner_up[1]:.2f} < {margin_bound:.2f})"
        )
    return "; ".join(reasons) or None


def review_bound(reject_threshold: float, verifier: Verifier) -> float:
    """A digit below this flags its number: the verifier's review confidence, and never less than
    the reject threshold (a digit `predict` would reject is never returned as clean)."""
    return max(reject_threshold, verifier.review_confidence or 0.0)


def decode_paths(line: LineAnalysis, verifier: Verifier, log_odds: np.ndarray | None = None) -> list[Path]:
    """The K-best segmentations of an analysed (not rejected) line, best first (`log_odds`: its
    `span_log_odds`, when known)."""
    return best_paths(len(line.atoms), candidate_scores(line, verifier, log_odds), [a.small for a in line.atoms])


def reading_features(
    line: LineAnalysis,
    paths: Sequence[Path],
    verifier: Verifier,
    log_odds: np.ndarray | None = None,
    mark_digit: Sequence[float] = (),
) -> dict[str, float]:
    """`digitrec.reading.confidence.number_features` of the best of `paths` (not empty; `log_odds`:
    the line's `span_log_odds`, when known; `mark_digit`: the mark classifier's p(digit) of each
    digit read, empty without one)."""
    rows = [line.spans.index((i, j)) for i, j, _ in paths[0].digits]
    log_odds = span_log_odds(line, verifier) if log_odds is None else log_odds
    return number_features(
        paths[0].text,
        [float(line.probs[k, d]) for k, (_, _, d) in zip(rows, paths[0].digits)],
        [(p.text, paths[0].score - p.score) for p in paths[1:]],
        [float(log_odds[k]) for k in rows],
        [float(line.one_digit[k]) for k in rows] if line.one_digit is not None else [],
        mark_digit,
    )


def runner_up(paths: Sequence[Path]) -> tuple[str, float] | None:
    """The second-best number and how far its score is below the best's (None when there is none)."""
    return (paths[1].text, paths[0].score - paths[1].score) if len(paths) > 1 else None


def decode_line(
    line: LineAnalysis,
    reject_threshold: float,
    verifier: Verifier,
    name: str | None = None,
    not_digit: Callable[[list[tuple[int, int]]], MarkOpinions] | None = None,
) -> Reading:
    """The best segmentation of an analysed line as a Reading; `needs_review` always with its reason.
    `not_digit`: the mark classifier's opinions of the digits read (their spans of atoms): a digit
    it says is no digit at all flags the reading, and how sure it is that each is a digit weighs
    in the number model."""
    if line.reason:
        return Reading(file=name, text="", rejected=True, reason=line.reason)
    log_odds = span_log_odds(line, verifier)  # computed once: the paths and the number model both need it
    paths = decode_paths(line, verifier, log_odds)
    if not paths or not paths[0].digits:
        return Reading(file=name, text="", rejected=True, reason="no digit found")
    best = paths[0]
    index = {span: k for k, span in enumerate(line.spans)}
    digits: list[dict[str, Any]] = [
        {
            "digit": d,
            "confidence": float(line.probs[index[(i, j)], d]),
            "box": list(scale_box(line.boxes[index[(i, j)]], line.ink.scale, line.ink.input_size)),
        }
        for i, j, d in best.digits
    ]
    uncertain = sum(d["confidence"] < reject_threshold for d in digits)
    if len(digits) > MAX_DIGITS:
        return Reading(
            file=name, text="", digits=digits, needs_review=True, rejected=True, reason=f"more than {MAX_DIGITS} digits"
        )
    if uncertain * 2 > len(digits):
        return Reading(file=name, text="", digits=digits, needs_review=True, rejected=True, reason="low confidence")
    opinions = not_digit([(i, j) for i, j, _ in best.digits]) if not_digit is not None else MarkOpinions([])
    model = verifier.number_model
    reason = review_reason(
        [d["digit"] for d in digits],
        [d["confidence"] for d in digits],
        runner_up(paths),
        review_bound(reject_threshold, verifier),
        verifier.review_margin,
        model.probability(reading_features(line, paths, verifier, log_odds, opinions.digit))
        if model is not None
        else None,
        verifier.review_probability,
    )
    marks = [f"digit {n + 1}: {why}" for n, why in enumerate(opinions.reasons) if why]
    reason = "; ".join(marks + ([reason] if reason else [])) or None
    return Reading(file=name, text=best.text, digits=digits, needs_review=reason is not None, reason=reason)


def span_check(
    line: LineAnalysis, not_digit: Callable[[list[np.ndarray]], MarkOpinions]
) -> Callable[[list[tuple[int, int]]], MarkOpinions]:
    """`decode_line`'s `not_digit` (per span of atoms read as a digit) from the mark classifier's
    opinions of 28x28 images, on the candidates' images kept in `line.digits28`."""
    index = {span: k for k, span in enumerate(line.spans)}
    images = line.digits28 or []

    def check(spans: list[tuple[int, int]]) -> MarkOpinions:
        return not_digit([images[index[span]] for span in spans])

    return check


def read_number(
    recognizer: LineRecognizer,
    image: ImageInput,
    name: str | None = None,
    not_digit: Callable[[list[np.ndarray]], MarkOpinions] | None = None,
) -> Reading:
    """The full search: every candidate classified (`digitrec.reading.search.read_line` reads the
    same, classifying fewer). `not_digit`: as `read_line`'s, the mark classifier's opinions of the
    28x28 images of the digits read."""
    line = analyse_line(recognizer, image, keep_digits=not_digit is not None)
    check = span_check(line, not_digit) if not_digit is not None and not line.reason else None
    return decode_line(line, recognizer.reader.reject_threshold, recognizer.verifier, name=name, not_digit=check)
