"""digitrec predict: one digit per image, with a confidence, or a reason to reject it."""

from __future__ import annotations

import argparse

from digitrec.commands.arguments import add_batch_arguments, add_image_arguments
from digitrec.commands.output import Layout, run_batch
from digitrec.errors import ConfigError
from digitrec.reading.batch import PredictTask
from digitrec.reading.results import Prediction

NAME = "predict"
HELP = "recognise one handwritten digit per image (photos, scans, drawings)"
CSV_COLUMNS = ("file", "digit", "confidence", "rejected", "reason", "top_k")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_image_arguments(parser)
    parser.add_argument("--top-k", type=int, default=3, metavar="K", help="alternatives to list, 1-10 (default 3)")
    add_batch_arguments(parser)


def format_row(p: Prediction) -> str:
    if p.rejected and not p.top_k:
        return f"{p.file}\t-\t-\trejected: {p.reason}"
    top = ", ".join(f"{t['digit']} {t['probability']:.3f}" for t in p.top_k)
    digit = "-" if p.digit is None else str(p.digit)
    note = f"\trejected: {p.reason}" if p.rejected else ""
    return f"{p.file}\t{digit}\t{p.confidence:.3f}\t{top}{note}"


def csv_row(p: Prediction) -> list[object]:
    """top_k as `digit:probability` pairs separated by spaces, best first."""
    top = " ".join(f"{t['digit']}:{t['probability']:.6f}" for t in p.top_k)
    return [p.file, p.digit, f"{p.confidence:.6f}", p.rejected, p.reason, top]


def run(args: argparse.Namespace) -> int:
    if not 1 <= args.top_k <= 10:
        raise ConfigError(f"--top-k must be between 1 and 10, got {args.top_k}")
    task = PredictTask(args.model, backend=args.backend, top_k=args.top_k)
    header = f"FILE\tDIGIT\tCONFIDENCE\tTOP-{args.top_k}"
    return run_batch(args, task, Layout(header, False, format_row, CSV_COLUMNS, csv_row))
