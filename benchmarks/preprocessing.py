"""Preprocessing benchmark (issue 18): what `predict` costs next to merely decoding the file, and
what `read` costs per number.

Three JPEGs (quality 90) of one MNIST *test* digit photographed on paper (digitrec.reading.synth:
uneven light, paper texture, noise, defocus): a 342x350 crop with the digit 60% of its height, a
1024x768 photo (40%) and a 12 MP 4032x3024 one (30%). Per image, interleaved call by call in every
round: the yardstick of the issue, `Image.open(f).convert("L").resize((28, 28))`; `Recognizer.predict`
(the fast path: the digit found in a small copy, its crop refined, a large JPEG decoded small); and
the reference path (`Recognizer.prepare(f, fast=False)`, the whole frame at working resolution,
then the model). Then `read` on numbers made as benchmarks/reading.py makes them (3-8 MNIST test
digits on a line, one pair in five touching), interleaved number by number with the full search it
reads as (`segment.read_number`: both models on every candidate digit, what `read` was before the
bounded search of `digitrec.reading.search`), with the part of that its two models take, `read`
with its order statistics read off sorted copies (what it did before `ndexact.Ranked`), and
`read` on the torch backend. The models run on ONNX Runtime, the default backend.

One torch thread. Figures are medians over the calls of all rounds, of wall-clock time (what a user
waits) and of the thread's CPU time (what the code costs: on a shared CPU, other processes inflate
the first, hardly the second). Targets: predict <= 3x the plain decode on the 342 px JPEG, <= 2x on
the 1024 px one, <= 0.5x on the 12 MP one; read <= 40 ms per number of 6-8 digits.

    python benchmarks/preprocessing.py                          # about two minutes
    python benchmarks/preprocessing.py --rounds 3 --numbers 10  # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from common import machine
from PIL import Image

from digitrec.reading import ndexact, synth
from digitrec.reading.candidates import cut_line
from digitrec.reading.recognize import Recognizer
from digitrec.reading.segment import one_digit_log_odds, read_number
from digitrec.training.data import load_mnist

# (name, canvas (width, height), digit height / frame height, calls per round, target: predict / plain)
IMAGES = (
    ("342x350", (342, 350), 0.6, 20, 3.0),
    ("1024x768", (1024, 768), 0.4, 10, 2.0),
    ("4032x3024", (4032, 3024), 0.3, 2, 0.5),
)
READ_TARGET_MS = 40.0
# what is timed per number, in this order
READ_KINDS = ("read", "read, 6-8 digits", "read, sorting", "full search", "models", "read, torch", "full search, torch")


def timed(into: dict[str, list[float]], call: Callable[..., object], *args: object) -> None:
    """Run `call(*args)` once, adding its wall-clock and CPU milliseconds to `into`."""
    wall, cpu = time.perf_counter(), time.thread_time()
    call(*args)
    into["cpu"].append(1000 * (time.thread_time() - cpu))
    into["wall"].append(1000 * (time.perf_counter() - wall))


def photos(folder: Path, digit: np.ndarray, seed: int) -> dict[str, Path]:
    paths = {}
    for name, canvas, fraction, _, _ in IMAGES:
        rng = np.random.default_rng(seed)
        style = replace(synth.random_style(rng, "photo"), jpeg_quality=None)  # one JPEG compression: ours
        image = synth.render_digit(digit, rng, style, canvas=canvas, height_fraction=(fraction, fraction))
        paths[name] = folder / f"digit_{name}.jpg"
        image.save(paths[name], "JPEG", quality=90)
    return paths


def numbers(images: np.ndarray, labels: np.ndarray, count: int, seed: int) -> list[tuple[bytes, int]]:
    """Numbers as benchmarks/reading.py draws them (3-8 digits, its style mix): (PNG bytes, digits)."""
    rng = np.random.default_rng(10_000 + seed)
    out = []
    for _ in range(count):
        idx = rng.choice(len(images), size=int(rng.integers(3, 9)), replace=False)
        style = synth.random_style(rng)
        number = synth.render_number(list(images[idx]), list(labels[idx]), rng, style, touch_probability=0.2)
        out.append((synth.encode(number.image, "PNG"), len(idx)))
    return out


def plain(path: Path) -> None:
    Image.open(path).convert("L").resize((28, 28))


def predict_by_reference(recognizer: Recognizer, path: Path) -> None:
    """predict by the reference path: the whole frame at working resolution."""
    recognizer.classify([recognizer.prepare(path, fast=False)])


def read_sorting(recognizer: Recognizer, line: bytes) -> None:
    """`read` with every order statistic read off a sorted copy, as before `ndexact.Ranked`."""
    select_min, ndexact.SELECT_MIN = ndexact.SELECT_MIN, sys.maxsize
    try:
        recognizer.read(line)
    finally:
        ndexact.SELECT_MIN = select_min


def run_models(recognizer: Recognizer, candidates: list[np.ndarray]) -> None:
    """What reading a line asks of its two models: every candidate digit classified and checked."""
    recognizer.reader.probabilities(candidates)
    one_digit_log_odds(recognizer, candidates)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds (default 7)")
    parser.add_argument("--numbers", type=int, default=30, help="numbers read per round (default 30)")
    parser.add_argument("--digit", type=int, default=0, help="MNIST test index of the photographed digit")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    recognizer = Recognizer.load()  # ONNX Runtime, the default
    on_torch = Recognizer.load(backend="torch")
    data = load_mnist()
    images, labels = data.test_images.numpy(), data.test_labels.numpy()
    lines = numbers(images, labels, args.numbers, args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        paths = photos(Path(tmp), images[args.digit], args.seed)
        kinds = ("plain", "predict", "reference")
        calls = {name: {kind: {"wall": [], "cpu": []} for kind in kinds} for name, *_ in IMAGES}
        reading = {kind: {"wall": [], "cpu": []} for kind in READ_KINDS}
        answers = {
            name: (recognizer.predict(p), recognizer.classify([recognizer.prepare(p, fast=False)])[0])
            for name, p in paths.items()
        }
        recognizer.read(lines[0][0])  # load the reading model and the checker
        on_torch.read(lines[0][0])
        for _ in range(args.rounds):
            for name, _, _, repeats, _ in IMAGES:
                path = paths[name]
                for _ in range(repeats):
                    timed(calls[name]["plain"], plain, path)
                    timed(calls[name]["predict"], recognizer.predict, path)
                timed(calls[name]["reference"], predict_by_reference, recognizer, path)
            for line, length in lines:
                timed(reading["read"], recognizer.read, line)
                if length >= 6:  # the target is for numbers of 6-8 digits
                    for clock in ("wall", "cpu"):
                        reading["read, 6-8 digits"][clock].append(reading["read"][clock][-1])
                timed(reading["read, sorting"], read_sorting, recognizer, line)
                timed(reading["full search"], read_number, recognizer, line)
                timed(reading["models"], run_models, recognizer, cut_line(line).digits28 or [])
                timed(reading["read, torch"], on_torch.read, line)
                timed(reading["full search, torch"], read_number, on_torch, line)
        sizes = {name: paths[name].stat().st_size for name in paths}
    rows = {}
    for name, _, _, _, target in IMAGES:
        figures = {kind: {clock: median(calls[name][kind][clock]) for clock in ("wall", "cpu")} for kind in kinds}
        ratio = {clock: figures["predict"][clock] / figures["plain"][clock] for clock in ("wall", "cpu")}
        fast, reference = answers[name]
        rows[name] = {
            "file_kb": sizes[name] / 1024,
            "ms": figures,
            "predict_over_plain": ratio,
            "reference_over_plain": {c: figures["reference"][c] / figures["plain"][c] for c in ("wall", "cpu")},
            "target": target,
            "target_met": ratio["cpu"] <= target,
            "digit": [fast.digit, reference.digit, int(labels[args.digit])],
            "confidence": [fast.confidence, reference.confidence],
        }
    read_ms = {kind: {clock: median(reading[kind][clock]) for clock in ("wall", "cpu")} for kind in reading}
    summary = {
        "machine": f"{machine()}; load average {os.getloadavg()[0]:.1f}",
        "rounds": args.rounds,
        "images": rows,
        "read_ms_per_number": read_ms,
        "numbers_of_6_to_8_digits": sum(length >= 6 for _, length in lines),
        "read_target_met": read_ms["read, 6-8 digits"]["cpu"] <= READ_TARGET_MS,
    }
    if args.json:
        print(json.dumps(summary))
        return 0
    print(f"machine: {summary['machine']}; {args.rounds} rounds, medians of wall-clock | CPU time")
    print(
        f"{'JPEG':<20} {'plain decode':>14} {'predict':>14} {'ratio':>12} {'reference path':>16} {'ratio':>12}  target"
    )
    for name, row in rows.items():
        ms, over, ref_over = row["ms"], row["predict_over_plain"], row["reference_over_plain"]
        label = f"{name} ({row['file_kb']:.0f} KB)"
        print(
            f"{label:<20} "
            f"{ms['plain']['wall']:6.1f} |{ms['plain']['cpu']:6.1f} {ms['predict']['wall']:6.1f} |{ms['predict']['cpu']:6.1f} "
            f"{over['wall']:5.2f} |{over['cpu']:5.2f} {ms['reference']['wall']:7.1f} |{ms['reference']['cpu']:7.1f} "
            f"{ref_over['wall']:5.1f} |{ref_over['cpu']:5.1f}  <= {row['target']}x: {'met' if row['target_met'] else 'MISSED'} "
            f"(digit {row['digit'][0]}, reference {row['digit'][1]}, true {row['digit'][2]})"
        )
    read, long, sorting, full, models, torch_read, torch_full = (read_ms[k] for k in READ_KINDS)
    print(
        f"read, {args.numbers} numbers of 3-8 digits (ONNX Runtime): {read['wall']:.1f} | {read['cpu']:.1f} ms per "
        f"number, {long['wall']:.1f} | {long['cpu']:.1f} ms for the {summary['numbers_of_6_to_8_digits']} of 6-8 "
        f"digits (the target's); with sorted order statistics (before ndexact.Ranked) {sorting['wall']:.1f} | "
        f"{sorting['cpu']:.1f} ms; the full search beside it {full['wall']:.1f} | {full['cpu']:.1f} ms, of which its two models on "
        f"every candidate {models['wall']:.1f} | {models['cpu']:.1f} ms; on torch: read {torch_read['wall']:.1f} | "
        f"{torch_read['cpu']:.1f} ms, the full search {torch_full['wall']:.1f} | {torch_full['cpu']:.1f} ms; target <= {READ_TARGET_MS:.0f} ms: {'met' if summary['read_target_met'] else 'MISSED'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
