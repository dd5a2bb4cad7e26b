"""Fit the segment verifier of `digitrec.segment` on numbers made of VALIDATION digits.

Reading a number chooses, among ways of grouping ink atoms into digits, the one whose digits are
most probable. The classifier alone is a poor judge of whether a candidate is one digit at all
(two touching digits often look like a confident "0" or "7"), so each candidate also gets the
log-odds of a logistic regression on its geometry and recognition features (segment.FEATURES):
is this candidate exactly one written digit? This script renders numbers from the checkpoint's
validation split (never the test set), labels every candidate by its overlap with the true digit
boxes, fits the regression (scikit-learn), picks the bias shift that reads held-out validation
numbers best, and prints the constants to paste into segment.py.

    python benchmarks/fit_segmenter.py --numbers 800 --holdout 300
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
from sklearn.linear_model import LogisticRegression

from digitrec import segment as sg
from digitrec import synth
from digitrec.data import load_mnist, stratified_split
from digitrec.recognize import Recognizer

MATCH_IOU = 0.6  # a candidate is "one true digit" when its box overlaps a true digit box this much


def iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def make_lines(recognizer, images, labels, n, seed, touch_probability):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        idx = rng.choice(len(images), size=int(rng.integers(3, 9)), replace=False)
        number = synth.render_number(list(images[idx]), list(labels[idx]), rng, touch_probability=touch_probability)
        line = sg.analyse_line(recognizer, synth.encode(number.image))
        out.append((line, number))
    return out


def dataset(lines):
    xs, ys = [], []
    for line, number in lines:
        if not line.spans:
            continue
        xs.append(sg.candidate_features(line))
        s = line.ink.scale
        ys += [max(iou([v * s for v in box], true) for true in number.boxes) >= MATCH_IOU for box in line.boxes]
    return np.concatenate(xs), np.array(ys)


def exact_rate(lines, threshold) -> float:
    return float(np.mean([sg.decode_line(line, threshold).text == number.text for line, number in lines]))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--numbers", type=int, default=800, help="numbers to fit on")
    parser.add_argument("--holdout", type=int, default=300, help="numbers to choose the bias shift on")
    parser.add_argument("--seed", type=int, default=100)
    parser.add_argument("--touch-probability", type=float, default=0.2)
    parser.add_argument("--model", help="checkpoint (default: the shipped model)")
    args = parser.parse_args(argv)
    recognizer = Recognizer.load(args.model)
    data = load_mnist()
    meta = recognizer.checkpoint.meta.get("split", {"n_val": 5000, "seed": 0})
    _, val = stratified_split(data.train_labels, meta["n_val"], meta["seed"])
    images, labels = data.train_images.numpy()[val.numpy()], data.train_labels.numpy()[val.numpy()]
    start = time.time()
    fit_lines = make_lines(recognizer, images, labels, args.numbers, args.seed, args.touch_probability)
    hold_lines = make_lines(recognizer, images, labels, args.holdout, args.seed + 1, args.touch_probability)
    x, y = dataset(fit_lines)
    print(f"{len(y)} candidates ({y.mean():.1%} true digits) from {args.numbers} numbers in {time.time() - start:.0f} s",
          file=sys.stderr)
    mu, sigma = x.mean(0), x.std(0) + 1e-9
    model = LogisticRegression(C=1.0, max_iter=2000).fit((x - mu) / sigma, y)
    weights = model.coef_[0] / sigma
    bias = float(model.intercept_[0] - (model.coef_[0] * mu / sigma).sum())
    print(f"fit accuracy on candidates {model.score((x - mu) / sigma, y):.3f}", file=sys.stderr)
    before = exact_rate(hold_lines, recognizer.reject_threshold)
    sg.VERIFIER_WEIGHTS = dict(zip(sg.FEATURES, weights.tolist()))
    best = None
    for shift in np.arange(-3.0, 3.01, 0.5):  # the bias acts as a per-digit reward: choose it by reading
        sg.VERIFIER_BIAS = bias + shift
        rate = exact_rate(hold_lines, recognizer.reject_threshold)
        print(f"bias shift {shift:+.1f}: held-out exact {rate:.3f}", file=sys.stderr)
        if best is None or rate > best[0]:
            best = (rate, shift)
    print(f"held-out exact: current constants {before:.3f}, refitted {best[0]:.3f}", file=sys.stderr)
    print(f"VERIFIER_BIAS = {bias + best[1]:.4f}")
    print("VERIFIER_WEIGHTS = {")
    for name, w in zip(sg.FEATURES, weights):
        print(f"    {name!r}: {w:.4f},")
    print("}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
