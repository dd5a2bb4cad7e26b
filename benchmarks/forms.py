"""Forms benchmark: removing printed lines (comb boxes, ruled lines) from under handwriting.

Fields are rendered from real MNIST digits by `digitrec.reading.forms.synth`, rebuilt from a seed on
every run:

- comb: 3-8 digits in a row of printed boxes (some boxes empty, a third of the digits over their
  box's edge, boxes sharing sides or separate), lines 1-3 px, grey 0-120 or coloured;
- ruled: a number of 3-8 digits on a printed line (through or touching the feet 60% of the time;
  solid, dashed or dotted; skewed up to 3 degrees);
- blank comb, blank ruled: the print alone; nothing may be left that could be read.

Measured per set: the share of printed-line pixels removed and of handwriting pixels kept (both
among the pixels that are ink in the image; "crossing" = handwriting pixels lying on a line),
pieces of print left over that a reader could take for a digit (per field), boxes found correctly
(the right count, each box's interior overlapping the true one, in order) and empty boxes reported
empty, and milliseconds per field. With --read, whole fields are read with
`digitrec.reading.forms.field.read_field` (a comb box by box, a ruled line after the print is
removed), next to reading the same image with `Recognizer.read` (what `digitrec read` does today)
and next to the ceiling: the same handwriting without print (a ruled line's handwriting rendered
without the line, read whole; a comb's digits as plain 28x28 MNIST images): "read right" (the
right digits, flagged or not: issue 15's "exact", as in `benchmarks/reading.py`), and the three
rates that add up to 100%: "right and not flagged" (the stricter figure), "flagged" (rejected or
needs review) and "wrong and not flagged"; and milliseconds per field. A blank field is read
right when no digit is read at all.

    python benchmarks/forms.py --split val --read              # tuning: validation digits
    python benchmarks/forms.py --fields 100 --seeds 0,1 --read  # reporting: MNIST test digits
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

import numpy as np
from scipy import ndimage

from digitrec.making.cutouts import split_digits
from digitrec.reading.forms import synth as fs
from digitrec.reading.forms.comb import split_comb
from digitrec.reading.forms.field import read_field
from digitrec.reading.forms.unrule import Cleaned, remove_rulings
from digitrec.training.data import load_mnist

EIGHT = np.ones((3, 3), bool)
LEFTOVER_PX = 12  # a left-over piece of print at least this big could be read as a mark


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown CPU"
    names = [line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")]
    return names[0] if names else "unknown CPU"


def digit_pool(split: str) -> tuple[np.ndarray, np.ndarray]:
    """MNIST test digits, or the training set's validation split (5000 digits, seed 0: the split
    the shipped models were trained without)."""
    data = load_mnist()
    if split == "test":
        return data.test_images.numpy(), data.test_labels.numpy()
    return split_digits("val")  # the shipped model's validation split, checksum-checked


def pixel_scores(field: fs.FormField, cleaned: Cleaned) -> dict[str, float]:
    ink = cleaned.rulings.ink
    line = field.line_mask & ~field.hand_mask & ink
    hand = field.hand_mask & ~field.line_mask & ink
    both = field.hand_mask & field.line_mask & ink
    labels, n = ndimage.label(cleaned.hand, EIGHT)
    on_print = np.bincount(labels[ndimage.binary_dilation(field.line_mask, EIGHT) & ~field.hand_mask], minlength=n + 1)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    leftovers = int(((on_print >= 0.8 * sizes) & (sizes >= LEFTOVER_PX))[1:].sum())
    return {
        "line_px": int(line.sum()),
        "line_removed": int((line & ~cleaned.hand).sum()),
        "hand_px": int(hand.sum()),
        "hand_kept": int((hand & cleaned.hand).sum()),
        "cross_px": int(both.sum()),
        "cross_kept": int((both & cleaned.hand).sum()),
        "leftovers": leftovers,
    }


def iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - ix * iy
    return ix * iy / union if union else 0.0


def make_field(
    kind: str, images: np.ndarray, labels: np.ndarray, rng: np.random.Generator
) -> tuple[fs.FormField, np.ndarray]:
    """A field of the set and the digits written in it."""
    if kind == "blank comb":
        return fs.blank_comb(rng, n_boxes=int(rng.integers(3, 11))), images[:0]
    if kind == "blank ruled":
        return fs.blank_ruled(rng), images[:0]
    idx = rng.choice(len(images), size=int(rng.integers(3, 9)), replace=False)
    render = fs.render_comb if kind == "comb" else fs.render_ruled
    return render(list(images[idx]), list(labels[idx]), rng), images[idx]


def outcome(prefix: str, truth: str, text: str, digits: int, flagged: bool) -> dict[str, int]:
    """One reading scored (1/0). "right": the right digits read, flagged or not (issue 15's and
    `benchmarks/reading.py`'s "exact"); then exactly one of "exact" (right and not flagged),
    "flagged" (rejected or needs review, and not right-and-clean) and "wrong" (wrong and not
    flagged). A blank field is read right when nothing is read (a rejection is then its clean
    answer)."""
    read_right = text == truth and not (digits and not truth)
    clean = read_right and not (flagged and truth)
    return {
        f"{prefix}right": int(read_right),
        f"{prefix}exact": int(clean),
        f"{prefix}flagged": int(not clean and flagged),
        f"{prefix}wrong": int(not clean and not flagged),
    }


def read_scores(recognizer, field: fs.FormField, digits: np.ndarray) -> dict[str, float]:
    """`read_field` on the field (""), `Recognizer.read` on the field as it is ("raw_": what
    `digitrec read` does today) and the ceiling ("bare_"): a ruled line's handwriting rendered
    without the print, read whole; a comb's digits as plain 28x28 MNIST images."""
    start = time.perf_counter()
    got = read_field(recognizer, field.image)
    middle = time.perf_counter()
    raw = recognizer.read(field.image)
    end = time.perf_counter()
    out: dict[str, float] = {"read_seconds": middle - start, "raw_seconds": end - middle}
    out.update(outcome("", field.text, got.text, len(got.digits), got.needs_review or got.rejected))
    out.update(outcome("raw_", field.text, raw.text, len(raw.digits), raw.needs_review or raw.rejected))
    if field.kind == "ruled" and field.text:
        bare = recognizer.read(field.unprinted)
        out.update(outcome("bare_", field.text, bare.text, len(bare.digits), bare.needs_review or bare.rejected))
    elif field.text:
        plain = recognizer.probabilities([d.astype(np.float32) / 255 for d in digits]).argmax(axis=1)
        text = "".join(str(int(v)) for v in plain)
        out.update(outcome("bare_", field.text, text, len(text), False))
    return out


def run_set(kind: str, images: np.ndarray, labels: np.ndarray, n: int, seed: int, recognizer) -> dict[str, float]:
    rng = np.random.default_rng([seed, sum(map(ord, kind))])  # each set its own fields, the same every run
    totals: dict[str, float] = {}
    for _ in range(n):
        field, digits = make_field(kind, images, labels, rng)
        start = time.perf_counter()
        if field.kind == "comb":
            comb = split_comb(field.image)
            cleaned = comb.cleaned if comb is not None else remove_rulings(field.image)
        else:
            comb, cleaned = None, remove_rulings(field.image)
        seconds = time.perf_counter() - start
        scores: dict[str, float] = {"fields": 1, "seconds": seconds, **pixel_scores(field, cleaned)}
        if field.kind == "comb":
            found = [] if comb is None else [b.interior for b in comb.boxes]
            right = len(found) == len(field.boxes) and all(iou(a, b) >= 0.5 for a, b in zip(found, field.boxes))
            scores["boxes_right"] = int(right)
            if right and comb is not None:
                scores["empty_right"] = sum((b.empty == (v is None)) for b, v in zip(comb.boxes, field.labels))
                scores["box_count"] = len(field.boxes)
        if recognizer is not None:
            scores.update(read_scores(recognizer, field, digits))
        for key, value in scores.items():
            totals[key] = totals.get(key, 0) + value
    return totals


def pct(num: float, den: float) -> str:
    return f"{100 * num / den:6.2f}" if den else "     -"


def table(results: dict[str, dict[str, float]]) -> str:
    """Removing the print: one row per set."""
    head = (
        f"{'set':12s} {'fields':>6s} {'line rm%':>8s} {'hand kept%':>10s} {'cross kept%':>11s} "
        f"{'leftovers/field':>15s} {'boxes ok%':>9s} {'empty ok%':>9s} {'ms/field':>8s}"
    )
    rows = [head]
    for kind, t in results.items():
        f = t["fields"]
        rows.append(
            f"{kind:12s} {int(f):6d} {pct(t['line_removed'], t['line_px']):>8s} {pct(t['hand_kept'], t['hand_px']):>10s} "
            f"{pct(t['cross_kept'], t['cross_px']):>11s} {t['leftovers'] / f:15.3f} "
            f"{pct(t.get('boxes_right', 0), f) if 'boxes_right' in t else '     -':>9s} "
            f"{pct(t.get('empty_right', 0), t.get('box_count', 0)):>9s} {1000 * t['seconds'] / f:8.1f}"
        )
    return "\n".join(rows)


RATES = ("right", "exact", "flagged", "wrong")
RATE_HEAD = "read right / right and not flagged / flagged / wrong and not flagged (%)"


def rates(t: dict[str, float], prefix: str) -> str:
    """The four rates of one reader on one set; the last three add up to 100%."""
    n = sum(t.get(f"{prefix}{k}", 0) for k in ("exact", "flagged", "wrong"))
    return " / ".join(pct(t.get(f"{prefix}{k}", 0), n).strip() for k in RATES)


def read_table(results: dict[str, dict[str, float]]) -> str:
    """Reading whole fields, one block per set: read_field next to `Recognizer.read` on the field
    as it is, and the ceiling (the handwriting without print). "read right" is issue 15's
    "exact" (right digits, flagged or not); "right and not flagged" is the stricter figure."""
    rows = [f"{'set':12s} {'reader':22s} {'fields':>6s} {'ms/field':>8s}  {RATE_HEAD}"]
    for kind, t in results.items():
        f = t["fields"]
        readers = [("read_field", "", t["read_seconds"]), ("Recognizer.read as is", "raw_", t["raw_seconds"])]
        readers += [("ceiling (no print)", "bare_", None)] if "bare_exact" in t else []
        for name, prefix, seconds in readers:
            ms = f"{1000 * seconds / f:8.1f}" if seconds is not None else f"{'-':>8s}"
            rows.append(f"{kind:12s} {name:22s} {int(f):6d} {ms}  {rates(t, prefix)}")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", choices=("test", "val"), default="test", help="digits to render (default test)")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds (default 0)")
    parser.add_argument("--fields", type=int, default=100, help="fields per set and seed (default 100)")
    parser.add_argument("--sets", default="comb,ruled,blank comb,blank ruled", help="comma-separated sets")
    parser.add_argument("--read", action="store_true", help="also read the fields with the shipped models")
    args = parser.parse_args(argv)
    images, labels = digit_pool(args.split)
    recognizer = None
    if args.read:
        from digitrec.reading.recognize import Recognizer

        recognizer = Recognizer.load()
    seeds = [int(s) for s in args.seeds.split(",")]
    results: dict[str, dict[str, float]] = {}
    for kind in args.sets.split(","):
        for seed in seeds:
            for key, value in run_set(kind, images, labels, args.fields, seed, recognizer).items():
                results.setdefault(kind, {})[key] = results.setdefault(kind, {}).get(key, 0) + value
    print(f"machine: {cpu_model()}; MNIST {args.split} digits, seeds {seeds}, {args.fields} fields per set and seed")
    print(table(results))
    if args.read:
        print(read_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
