"""Reading a line without classifying every candidate digit: a bounded search (issue 18).

The full search (`digitrec.reading.segment.read_number`) makes every candidate digit of a line
(every run of atoms that may be one digit, about 100 for a number of 6 digits) into its 28x28
image and runs the reading model and the one-digit checker on all of them, although decoding keeps
only the `K_BEST` best segmentations and most candidates cannot be part of any of them.

Whatever the models say, a candidate's score (the log-probability of its class plus the
verifier's log-odds, linear in its features) is bounded from above (`score_bounds`): the
model-free features (width, gaps, cuts, pieces joined ...) are known before any model runs, and
the others lie in known ranges (the top class's log-probability in [log 0.1, 0], its margin over
the runner-up in [0, -log 1e-12], the checker's clipped log-odds, the split confidence in [0, 5]).

The search makes candidates into images, checks them and classifies them in rounds, the most
promising first: a candidate is made only when its bound from its geometry alone (the checker
unknown) leaves it a chance, and classified only when its bound with the checker known does.
After each round, the best segmentation through each candidate not yet classified is bounded
(the best way to its first atom, plus its bound, plus the best way on from its last atom, with
bounds standing in for the candidates not classified), and compared with the K-th best segmentation of the classified
candidates alone. A candidate whose bound falls below it cannot be in the K best segmentations,
nor change them; when none is left above it, the K best are those of the full search, so the
reading is the full search's: the same text, digits, confidences, flags and reasons, to the last
bit. The classified set always holds the parts a candidate's split confidence reads (its two
sides at a cut), so every classified candidate scores exactly as in the full search.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from digitrec.reading.candidates import LineAnalysis, candidate_images, line_candidates
from digitrec.reading.decode import ImageInput
from digitrec.reading.features import (
    FEATURES,
    candidate_features,
    geometry_features,
    line_scale,
    width_z_excess,
)
from digitrec.reading.marks import MarkOpinions
from digitrec.reading.results import Reading
from digitrec.reading.segment import (
    CHECKER_CLIP,
    K_BEST,
    SKIP_PENALTY,
    LineRecognizer,
    candidate_probabilities,
    decode_line,
    feature_log_odds,
    k_best,
    one_digit_log_odds,
    span_check,
)
from digitrec.reading.verifier import Verifier

P1_MIN = math.log(0.1)  # the top class of ten has at least this log-probability
MARGIN_MAX = -math.log(1e-12)  # log p1 - log p2, the probabilities floored at 1e-12 as the features do
SPLIT_MAX = 5.0  # the split confidence lies in [0, 5]
SLACK = 1e-6  # bounds are compared with this much room: float rounding never prunes a tie
FIRST_WINDOW = 6.0  # log units: each round classifies the candidates whose best segmentation's bound
# is this close to the highest (the window doubles every round), the most promising first


def score_bounds(line: LineAnalysis, verifier: Verifier, checker: bool) -> np.ndarray:
    """(len(line.spans),) an upper bound of each candidate's best class score, whatever the
    reading model says of it and, unless `line.one_digit` holds its log-odds, the checker
    (`checker`: installed)."""
    w = dict(zip(FEATURES, verifier.weight_vector(FEATURES)))
    models = (
        max((1.0 + w["log_p1"]) * P1_MIN, 0.0)  # the class's own log-probability is log p1 too
        + max(w["log_margin"] * MARGIN_MAX, 0.0)
        + max(w["split_conf"] * SPLIT_MAX, 0.0)
        + (abs(w["checker"]) * CHECKER_CLIP if checker and line.one_digit is None else 0.0)
    )
    if line.geometry is None:
        scale = line_scale(line)
        line.geometry = [geometry_features(line, k, scale) for k in range(len(line.spans))]
    out = np.empty(len(line.spans))
    for k, known in enumerate(line.geometry):
        widths = float(np.max(w["width_z_excess"] * width_z_excess(known["log_width"])))  # any class it may read as
        out[k] = verifier.bias + sum(w[name] * value for name, value in known.items()) + widths + models
    if line.one_digit is not None:
        out += w["checker"] * line.one_digit
    return out


def split_parts(line: LineAnalysis) -> list[list[int]]:
    """Per candidate, the candidates its split confidence reads: both sides of each cut inside it
    (`digitrec.reading.features.split_confidence`), when both are candidates."""
    index = {span: k for k, span in enumerate(line.spans)}
    parts: list[list[int]] = []
    for i, j in line.spans:
        found = []
        for k in range(i, j):
            left, right = index.get((i, k)), index.get((k + 1, j))
            if line.atoms[k + 1].piece == line.atoms[k].piece and left is not None and right is not None:
                found += [left, right]
        parts.append(found)
    return parts


def best_through(line: LineAnalysis, best: np.ndarray) -> np.ndarray:
    """(len(line.spans),) the best segmentation score through each candidate, the candidates
    scoring `best` (their best class's score, or its bound)."""
    n, skippable = len(line.atoms), [a.small for a in line.atoms]
    ending: list[list[int]] = [[] for _ in range(n)]
    for k, (_, j) in enumerate(line.spans):
        ending[j].append(k)
    to = np.full(n + 1, -np.inf)  # best way to atom e (atoms 0..e-1 read)
    to[0] = 0.0
    for e in range(1, n + 1):
        ways = [to[line.spans[k][0]] + best[k] for k in ending[e - 1]]
        if skippable[e - 1]:
            ways.append(to[e - 1] + SKIP_PENALTY)
        to[e] = max(ways, default=-np.inf)
    on = np.full(n + 1, -np.inf)  # best way on from atom s (atoms s..n-1 read)
    on[n] = 0.0
    starting: list[list[int]] = [[] for _ in range(n)]
    for k, (i, _) in enumerate(line.spans):
        starting[i].append(k)
    for s in range(n - 1, -1, -1):
        ways = [best[k] + on[line.spans[k][1] + 1] for k in starting[s]]
        if skippable[s]:
            ways.append(on[s + 1] + SKIP_PENALTY)
        on[s] = max(ways, default=-np.inf)
    starts, ends = (np.array([span[m] for span in line.spans], dtype=np.intp) for m in (0, 1))
    return to[starts] + best + on[ends + 1]


def restricted(line: LineAnalysis, keep: list[int], probs: np.ndarray, one_digit: np.ndarray | None) -> LineAnalysis:
    """The line with the candidates `keep` only (indices into `line.spans`, ascending), classified."""
    return LineAnalysis(
        ink=line.ink,
        height=line.height,
        atoms=line.atoms,
        spans=[line.spans[k] for k in keep],
        boxes=[line.boxes[k] for k in keep],
        probs=probs[keep],
        one_digit=one_digit[keep] if one_digit is not None else None,
        geometry=[line.geometry[k] for k in keep] if line.geometry is not None else None,
    )


def search_line(recognizer: LineRecognizer, line: LineAnalysis) -> LineAnalysis:
    """The candidates of a (not rejected) line from `line_candidates` that may be part of the
    `K_BEST` best segmentations, classified (the line restricted to them; see the module's doc)."""
    verifier, count = recognizer.verifier, len(line.spans)
    # Candidates are made into images and checked only when their bound, from their geometry
    # alone, leaves them a chance: making a candidate's image costs about what reading it does.
    # The checker's log-odds, once known, tighten a candidate's bound most.
    best = score_bounds(line, verifier, recognizer.checker is not None)  # exact once classified
    checker_weight = dict(zip(FEATURES, verifier.weight_vector(FEATURES)))["checker"]
    images: list[np.ndarray | None] = [None] * count
    line.digits28 = images  # type: ignore[assignment]  # a check of the digits read looks at theirs again (`span_check`)
    line.thinned = np.zeros(count, bool)
    one_digit = np.zeros(count) if recognizer.checker is not None else None
    made = np.zeros(count, bool)

    def make(which: np.ndarray) -> None:
        """Images and checker log-odds for the candidates `which` not made yet; their bounds tightened."""
        new = [int(k) for k in which if not made[k]]
        if not new:
            return
        made_images, thinned = candidate_images(line, new)
        for k, image in zip(new, made_images):
            images[k] = image
        line.thinned[new] = thinned  # type: ignore[index]
        made[new] = True
        log_odds = one_digit_log_odds(recognizer, [images[k] for k in new])  # type: ignore[misc]
        if one_digit is not None and log_odds is not None:
            one_digit[new] = log_odds
            best[new] += checker_weight * log_odds - abs(checker_weight) * CHECKER_CLIP

    parts = split_parts(line)
    classified = np.zeros(count, bool)
    probs, log_odds = np.zeros((count, 10)), np.zeros(count)
    kth, window = -np.inf, FIRST_WINDOW  # the K-th best segmentation's score among the classified
    sub = restricted(line, [], probs, one_digit)
    while True:
        through = best_through(line, best)
        open_ = ~classified & (through >= kth - SLACK)
        if not open_.any():
            return sub
        open_ &= through >= through[open_].max() - window  # the most promising first
        if not made[open_].all():  # made and checked first: their bounds may drop out of reach
            make(np.flatnonzero(open_))
            continue
        window *= 2
        todo, stack = set(), [int(k) for k in np.flatnonzero(open_)]
        while stack:  # with the parts their split confidence reads
            k = stack.pop()
            if not classified[k] and k not in todo:
                todo.add(k)
                stack += parts[k]
        new = sorted(todo)
        make(np.array(new))
        probs[new] = candidate_probabilities(recognizer, [images[k] for k in new], line.thinned[new])  # type: ignore[misc]
        classified[new] = True
        keep = [int(k) for k in np.flatnonzero(classified)]
        sub = restricted(line, keep, probs, one_digit)
        rows = [keep.index(k) for k in new]  # a classified candidate's features are final: its parts are in
        log_odds[new] = feature_log_odds(candidate_features(sub, rows), verifier)
        best[new] = (np.log(np.maximum(probs[new], 1e-12)) + log_odds[new][:, None]).max(axis=1)
        candidates = {line.spans[k]: np.log(np.maximum(probs[k], 1e-12)) + log_odds[k] for k in keep}
        paths = k_best(len(line.atoms), candidates, [a.small for a in line.atoms])
        kth = paths[-1].score if len(paths) >= K_BEST else -np.inf


def read_line(
    recognizer: LineRecognizer,
    image: ImageInput,
    name: str | None = None,
    not_digit: Callable[[list[np.ndarray]], MarkOpinions] | None = None,
) -> Reading:
    """A number read off a line, as `digitrec.reading.segment.read_number` reads it, classifying
    only the candidates that may matter (`search_line`). `not_digit`: the mark classifier's
    opinions of the 28x28 images of the digits read; a digit it refuses flags the reading, and
    its p(digit) is evidence for the number model."""
    line = line_candidates(image)
    if line.reason:
        return decode_line(line, recognizer.reader.reject_threshold, recognizer.verifier, name=name)
    found = search_line(recognizer, line)
    check = span_check(line, not_digit) if not_digit is not None else None
    return decode_line(found, recognizer.reader.reject_threshold, recognizer.verifier, name=name, not_digit=check)
