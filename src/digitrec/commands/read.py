"""digitrec read: a whole number written on a line (1 to 20 digits), digit by digit."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from digitrec.commands.arguments import add_batch_arguments, add_image_arguments
from digitrec.commands.output import Layout, run_batch
from digitrec.errors import ConfigError
from digitrec.reading.batch import ReadTask
from digitrec.reading.results import Reading

NAME = "read"
HELP = "read a handwritten number (1-20 digits on one line) from each image"
CSV_COLUMNS = ("file", "text", "needs_review", "rejected", "reason", "digits", "min_confidence")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_image_arguments(parser)
    parser.add_argument(
        "--reader",
        metavar="PATH",
        help="checkpoint that classifies the digits cut out of a number (default: the shipped "
        "reading model with the shipped model; a custom --model reads with itself)",
    )
    parser.add_argument("--checker", metavar="PATH", help="one-digit checker checkpoint (default: the shipped one)")
    parser.add_argument(
        "--verifier",
        metavar="FILE.json",
        help="segment verifier (default: the shipped one; `digitrec build-weights` makes all three)",
    )
    add_batch_arguments(parser)
    parser.add_argument(
        "--overlay",
        metavar="OUT.png",
        help="draw the boxes and readings: with one image, the file to write; with several or a "
        "directory, a directory that receives NAME.overlay.png per image (mirroring subdirectories)",
    )


def lowest_confidence(r: Reading) -> float | None:
    return min((d["confidence"] for d in r.digits), default=None)


def format_row(r: Reading) -> str:
    if r.rejected:
        return f"{r.file}\t-\trejected: {r.reason}"
    review = "\tneeds review" if r.needs_review else ""
    return f"{r.file}\t{r.text}\t{len(r.digits)} digits, lowest confidence {lowest_confidence(r) or 0.0:.3f}{review}"


def csv_row(r: Reading) -> list[object]:
    """digits: how many were read; min_confidence: the least sure of them (empty when none)."""
    low = lowest_confidence(r)
    return [r.file, r.text, r.needs_review, r.rejected, r.reason, len(r.digits), None if low is None else f"{low:.6f}"]


def run(args: argparse.Namespace) -> int:
    several = len(args.images) > 1 or any(path != "-" and os.path.isdir(path) for path in args.images)
    if args.overlay and several and not Path(args.overlay).is_dir():
        raise ConfigError(f"--overlay {args.overlay}: with several images, give an existing directory")
    task = ReadTask(
        args.model,
        backend=args.backend,
        reader=args.reader,
        checker=args.checker,
        verifier=args.verifier,
        overlay=args.overlay,
        several=several,
    )
    return run_batch(args, task, Layout("FILE\tNUMBER\tDETAILS", True, format_row, CSV_COLUMNS, csv_row))
