"""Fit the segment verifier of `digitrec.segment` on numbers made of VALIDATION digits.

Reading a number chooses, among ways of grouping ink atoms into digits, the one whose digits are
most probable. The classifier alone is a poor judge of whether a candidate is one digit at all
(two touching digits often look like a confident "0" or "7", a "41" like a "4"), so each candidate
also gets a verifier's score, linear in its geometry and recognition features (segment.FEATURES):
is this candidate exactly one written digit?

The script renders numbers from the checkpoint's validation split (never the test set) and finds
their true segmentation: each atom belongs to the true digit whose box covers most of its box
(atoms covered by none are stray marks), and the true digits are the runs of atoms with one owner.
(Matching candidate boxes to true boxes by IoU mislabels the narrow "1" cut off a "41": a few
pixels of cut move its box a lot.) Then:

1. a logistic regression (scikit-learn) on candidates labelled "is a true digit" gives the start;
2. a structured averaged perceptron refines the weights on whole numbers: each fitting number is
   read with the current weights, and when the reading is wrong the weights move towards the true
   segmentation's features and away from the wrong one's (what the reader actually decides);
3. the weights (logistic with the best bias shift, or a perceptron epoch) that read held-out
   validation numbers best are kept, unless the current constants read them at least as well;
4. the review margin is the smallest that leaves at most 0.5% of the validation numbers read
   wrong without needs_review. The constants are printed, to paste into segment.py.

    python benchmarks/fit_segmenter.py   # the shipped fit: 800 + 300 numbers, ~5 min on a quiet 2-core CPU
    python benchmarks/fit_segmenter.py --cache /tmp/lines.pkl   # reuse analysed lines (features may change)
"""

from __future__ import annotations

import argparse
import os
import pickle
import sys
import time

import numpy as np
from sklearn.linear_model import LogisticRegression

from digitrec.reading import segment as sg
from digitrec.reading import synth
from digitrec.training.data import load_mnist, stratified_split
from digitrec.reading.recognize import Recognizer

UNFLAGGED_TARGET = 0.005  # at most this share of validation numbers may be read wrong without needs_review
OWN_FRACTION = 0.3  # a small atom with less than this share of its box inside any true digit is a stray mark


def make_lines(recognizer, images, labels, n, seed, touch_probability):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        idx = rng.choice(len(images), size=int(rng.integers(3, 9)), replace=False)
        number = synth.render_number(list(images[idx]), list(labels[idx]), rng, touch_probability=touch_probability)
        line = sg.analyse_line(recognizer, synth.encode(number.image))
        out.append((line, number))
    return out


def intersection(a, b) -> float:
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def true_spans(line: sg.LineAnalysis, number: synth.SynthNumber) -> list[tuple[int, int]] | None:
    """The candidate spans (atoms i..j) that are the true digits, left to right, or None when the
    atoms cannot be grouped into the true digits (a cut is missing, or the line was rejected)."""
    if line.reason or not line.atoms:
        return None
    s = line.ink.scale
    owners = []
    for atom in line.atoms:
        box = [v * s for v in atom.box]
        cover = [intersection(box, true) for true in number.boxes]
        best = int(np.argmax(cover))
        area = max(1.0, (box[2] - box[0]) * (box[3] - box[1]))
        owners.append(None if atom.small and cover[best] < OWN_FRACTION * area else best)
    spans, k = [], 0
    while k < len(owners):
        if owners[k] is None:
            k += 1
            continue
        j = k
        while j + 1 < len(owners) and owners[j + 1] == owners[k]:
            j += 1
        spans.append((k, j, owners[k]))
        k = j + 1
    if [o for _, _, o in spans] != list(range(len(number.boxes))):
        return None  # a digit owns no atom, or its atoms are not neighbours
    known = set(line.spans)
    if any((i, j) not in known for i, j, _ in spans):
        return None
    return [(i, j) for i, j, _ in spans]


class Prepared:
    """One fitting number: features of every candidate, and its true segmentation."""

    def __init__(self, line, number):
        self.line, self.number = line, number
        self.x = sg.candidate_features(line) if line.spans else np.zeros((0, len(sg.FEATURES)))
        self.logp = np.log(np.maximum(line.probs, 1e-12))
        self.truth = true_spans(line, number)
        self.index = {span: k for k, span in enumerate(line.spans)}

    def decode(self, weights: np.ndarray, bias: float) -> sg.Path | None:
        if not self.line.spans:
            return None
        lo = self.x @ weights + bias
        scores = {span: row + v for span, row, v in zip(self.line.spans, self.logp, lo)}
        paths = sg.best_paths(len(self.line.atoms), scores, [a.small for a in self.line.atoms])
        return paths[0] if paths else None

    def phi(self, spans) -> np.ndarray:
        """Summed features of a segmentation, plus the digit count (the bias's feature)."""
        rows = [self.index[span] for span in spans]
        return np.r_[self.x[rows].sum(axis=0), len(rows)]


def exact_rate(prepared: list[Prepared], weights: np.ndarray, bias: float) -> float:
    hits = []
    for p in prepared:
        path = p.decode(weights, bias)
        hits.append(path is not None and path.text == p.number.text)
    return float(np.mean(hits))


def perceptron(fit: list[Prepared], hold: list[Prepared], w0: np.ndarray, b0: float, sigma: np.ndarray,
               epochs: int, rate: float, seed: int):
    """Averaged structured perceptron in standardised feature units, starting at (w0, b0). Returns
    (held-out exact, raw weights, raw bias) of the best epoch."""
    rng = np.random.default_rng(seed)
    scale = np.r_[sigma, 1.0]  # a step of `rate` moves every standardised weight alike
    theta = np.r_[w0 * sigma, b0]
    total, count = theta.copy(), 1
    usable = [p for p in fit if p.truth is not None]
    best = None
    for epoch in range(epochs):
        mistakes = 0
        for k in rng.permutation(len(usable)):
            p = usable[k]
            w, b = theta[:-1] / sigma, theta[-1]
            path = p.decode(w, b)
            truth_text = p.number.text
            if path is not None and path.text == truth_text:
                total += theta
                count += 1
                continue
            mistakes += 1
            predicted = [(i, j) for i, j, _ in path.digits] if path is not None else []
            theta = theta + rate * (p.phi(p.truth) - (p.phi(predicted) if predicted else 0)) * (1 / scale)
            total += theta
            count += 1
        avg = total / count
        w, b = avg[:-1] / sigma, avg[-1]
        rate_hold = exact_rate(hold, w, b)
        print(f"perceptron epoch {epoch + 1}: {mistakes} mistakes on {len(usable)} numbers, held-out exact {rate_hold:.3f}",
              file=sys.stderr)
        if best is None or rate_hold > best[0]:
            best = (rate_hold, w.copy(), float(b))
    return best


def choose_review_margin(hold_lines, threshold: float) -> float:
    """The smallest REVIEW_MARGIN (log score units) that leaves at most UNFLAGGED_TARGET of the
    given validation numbers read wrong without needs_review: a reading is flagged when another
    number scores within the margin of the best (or a digit is below the reject threshold)."""
    chosen = None
    for ratio in (2, 3, 5, 10, 20, 50, 100, 200, 500, 1000):
        sg.REVIEW_MARGIN = float(np.log(ratio))
        readings = [sg.decode_line(line, threshold) for line, _ in hold_lines]
        exact = np.array([r.text == n.text and not r.rejected for r, (_, n) in zip(readings, hold_lines)])
        flagged = np.array([r.needs_review or r.rejected for r in readings])
        unflagged = float((~exact & ~flagged).mean())
        print(f"review margin log({ratio}): exact {exact.mean():.3f}, needs review {flagged.mean():.3f}, "
              f"wrong and not flagged {unflagged:.3f}", file=sys.stderr)
        if chosen is None and unflagged <= UNFLAGGED_TARGET:
            chosen = ratio
    return float(chosen or 1000)


def load_lines(args, recognizer, images, labels):
    if args.cache and os.path.exists(args.cache):
        with open(args.cache, "rb") as f:
            return pickle.load(f)
    fit_lines = make_lines(recognizer, images, labels, args.numbers, args.seed, args.touch_probability)
    hold_lines = make_lines(recognizer, images, labels, args.holdout, args.seed + 1, args.touch_probability)
    if args.cache:
        with open(args.cache, "wb") as f:
            pickle.dump((fit_lines, hold_lines), f)
    return fit_lines, hold_lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--numbers", type=int, default=800, help="numbers to fit on")
    parser.add_argument("--holdout", type=int, default=300, help="numbers to choose among fits on")
    parser.add_argument("--seed", type=int, default=100)
    parser.add_argument("--touch-probability", type=float, default=0.2)
    parser.add_argument("--epochs", type=int, default=8, help="perceptron passes over the fitting numbers")
    parser.add_argument("--rate", type=float, default=0.05, help="perceptron step, standardised units")
    parser.add_argument("--cache", help="pickle of analysed lines: written if missing, else read")
    parser.add_argument("--model", help="checkpoint (default: the shipped model)")
    parser.add_argument("--reader", help="reading model (default: the shipped one with the shipped model)")
    args = parser.parse_args(argv)
    recognizer = Recognizer.load(args.model, reader=args.reader)
    data = load_mnist()
    meta = recognizer.checkpoint.meta.get("split", {"n_val": 5000, "seed": 0})
    _, val = stratified_split(data.train_labels, meta["n_val"], meta["seed"])
    images, labels = data.train_images.numpy()[val.numpy()], data.train_labels.numpy()[val.numpy()]
    start = time.time()
    fit_lines, hold_lines = load_lines(args, recognizer, images, labels)
    fit = [Prepared(line, number) for line, number in fit_lines]
    hold = [Prepared(line, number) for line, number in hold_lines]
    x = np.concatenate([p.x for p in fit])
    y = np.concatenate([np.isin(np.arange(len(p.line.spans)), [p.index[s] for s in p.truth or []])
                        for p in fit]) if fit else np.zeros(0, bool)
    keep = np.concatenate([np.full(len(p.line.spans), p.truth is not None) for p in fit])
    x, y = x[keep], y[keep]
    reachable = np.mean([p.truth is not None for p in hold])
    print(f"{len(y)} candidates ({y.mean():.1%} true digits) from {sum(p.truth is not None for p in fit)} of "
          f"{len(fit)} numbers whose true segmentation is among the candidates ({time.time() - start:.0f} s); "
          f"held-out reachable {reachable:.3f}", file=sys.stderr)
    current = np.array([sg.VERIFIER_WEIGHTS.get(name, 0.0) for name in sg.FEATURES])
    before = exact_rate(hold, current, sg.VERIFIER_BIAS)
    mu, sigma = x.mean(0), x.std(0) + 1e-9
    model = LogisticRegression(C=1.0, max_iter=5000).fit((x - mu) / sigma, y)
    weights = model.coef_[0] / sigma
    bias = float(model.intercept_[0] - (model.coef_[0] * mu / sigma).sum())
    print(f"logistic fit accuracy on candidates {model.score((x - mu) / sigma, y):.3f}", file=sys.stderr)
    best = None
    for shift in np.arange(-3.0, 3.01, 0.5):  # the bias acts as a per-digit reward: choose it by reading
        rate = exact_rate(hold, weights, bias + shift)
        print(f"logistic, bias shift {shift:+.1f}: held-out exact {rate:.3f}", file=sys.stderr)
        if best is None or rate > best[0]:
            best = (rate, weights, bias + shift, "logistic")
    refined = perceptron(fit, hold, best[1], best[2], sigma, args.epochs, args.rate, args.seed)
    if refined[0] > best[0]:
        best = (*refined, "perceptron")
    print(f"held-out exact: current constants {before:.3f}, refitted ({best[3]}) {best[0]:.3f}", file=sys.stderr)
    if before >= best[0]:  # a refit must read the held-out numbers better, or the constants stay
        best = (before, current, sg.VERIFIER_BIAS, "current")
    sg.VERIFIER_WEIGHTS, sg.VERIFIER_BIAS = dict(zip(sg.FEATURES, best[1].tolist())), best[2]
    # on every number (fitting and held-out): 200 held-out numbers alone are too few for a 0.5% rate
    ratio = choose_review_margin(fit_lines + hold_lines, recognizer.reader.reject_threshold)
    print(f"REVIEW_MARGIN = math.log({ratio:g})")
    print(f"VERIFIER_BIAS = {best[2]:.4f}")
    print("VERIFIER_WEIGHTS = {")
    for name, w in zip(sg.FEATURES, best[1]):
        print(f"    {name!r}: {w:.4f},")
    print("}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
