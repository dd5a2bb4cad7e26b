"""digitrec read: a whole number written on a line (1 to 20 digits), digit by digit."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from PIL import Image

from digitrec.atomic import atomic_write
from digitrec.commands.arguments import add_image_arguments
from digitrec.errors import BadImageError, ConfigError, ImageError
from digitrec.reading.decode import MAX_FILE_BYTES, read_file
from digitrec.reading.recognize import Recognizer
from digitrec.reading.results import Reading
from digitrec.reading.verifier import load_verifier

NAME = "read"
HELP = "read a handwritten number (1-20 digits on one line) from each image"


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
    parser.add_argument("--json", action="store_true", help="one JSON object per line instead of a table")
    parser.add_argument(
        "--overlay",
        metavar="OUT.png",
        help="draw the boxes and readings: with one image, the file to write; with several, "
        "a directory that receives NAME.overlay.png per image",
    )


def read_input(path: str) -> bytes:
    """The bytes of an image file ('-' = stdin), every failure as a one-line BadImageError."""
    if path != "-":
        return read_file(path)
    data = sys.stdin.buffer.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise BadImageError(f"input is larger than the {MAX_FILE_BYTES // 2**20} MB limit")
    return data


def save_atomic(image: Image.Image, path: Path) -> None:
    """Write an image to a temporary file beside `path`, then rename: never a half-written file."""
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise ConfigError(f"{path}: unknown image extension {path.suffix!r} (use .png)")
    atomic_write(path, lambda handle: image.save(handle, fmt))


def overlay_path(out: str, image_path: str, several: bool) -> Path:
    if not several:
        return Path(out)
    stem = "stdin" if image_path == "-" else Path(image_path).stem
    return Path(out) / f"{stem}.overlay.png"


def format_row(r: Reading) -> str:
    if r.rejected:
        return f"{r.file}\t-\trejected: {r.reason}"
    low = min((d["confidence"] for d in r.digits), default=0.0)
    review = "\tneeds review" if r.needs_review else ""
    return f"{r.file}\t{r.text}\t{len(r.digits)} digits, lowest confidence {low:.3f}{review}"


def run(args: argparse.Namespace) -> int:
    several = len(args.images) > 1
    if args.overlay and several and not Path(args.overlay).is_dir():
        raise ConfigError(f"--overlay {args.overlay}: with several images, give an existing directory")
    verifier = load_verifier(args.verifier) if args.verifier else None
    recognizer = Recognizer.load(
        args.model, backend=args.backend, reader=args.reader, checker=args.checker, verifier=verifier
    )
    _ = recognizer.reader, recognizer.checker  # load them now: a bad --reader or --checker fails before any image
    failed = 0
    if not args.json:
        print("FILE\tNUMBER\tDETAILS")
    for path in args.images:
        try:
            data = read_input(path)
            reading = recognizer.read(data, name=path)
            if args.overlay:
                save_atomic(recognizer.draw_overlay(data, reading), overlay_path(args.overlay, path, several))
        except ImageError as exc:  # one line per bad file; the others are still processed
            print(f"digitrec read: {path}: {exc}", file=sys.stderr)
            failed += 1
            continue
        print(json.dumps(reading.to_dict()) if args.json else format_row(reading))
    return 2 if failed else 0
