"""digitrec predict: one digit per image, with a confidence, or a reason to reject it."""

from __future__ import annotations

import argparse
import json
import sys

from digitrec.commands.arguments import add_image_arguments
from digitrec.commands.read import read_input
from digitrec.errors import ConfigError, ImageError
from digitrec.reading.recognize import Recognizer
from digitrec.reading.results import Prediction, Prepared

NAME = "predict"
HELP = "recognise one handwritten digit per image (photos, scans, drawings)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_image_arguments(parser)
    parser.add_argument("--top-k", type=int, default=3, metavar="K", help="alternatives to list, 1-10 (default 3)")
    parser.add_argument("--json", action="store_true", help="one JSON object per line instead of a table")


def format_row(p: Prediction) -> str:
    if p.rejected and not p.top_k:
        return f"{p.file}\t-\t-\trejected: {p.reason}"
    top = ", ".join(f"{t['digit']} {t['probability']:.3f}" for t in p.top_k)
    digit = "-" if p.digit is None else str(p.digit)
    note = f"\trejected: {p.reason}" if p.rejected else ""
    return f"{p.file}\t{digit}\t{p.confidence:.3f}\t{top}{note}"


def run(args: argparse.Namespace) -> int:
    if not 1 <= args.top_k <= 10:
        raise ConfigError(f"--top-k must be between 1 and 10, got {args.top_k}")
    recognizer = Recognizer.load(args.model, backend=args.backend)
    prepared: list[Prepared] = []
    failed = 0
    for path in args.images:
        try:
            prepared.append(recognizer.prepare(read_input(path), name=path))
        except ImageError as exc:  # one line per bad file; the others are still processed
            print(f"digitrec predict: {path}: {exc}", file=sys.stderr)
            failed += 1
    predictions = recognizer.classify(prepared, args.top_k)  # one batched model call
    if args.json:
        for p in predictions:
            print(json.dumps(p.to_dict()))
    elif predictions:
        print(f"FILE\tDIGIT\tCONFIDENCE\tTOP-{args.top_k}")
        for p in predictions:
            print(format_row(p))
    return 2 if failed else 0
