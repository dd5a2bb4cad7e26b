"""digitrec read: a whole number written on a line (1 to 20 digits), digit by digit; with a page
template (`--template`, `--field`), every field of every page of a form, PDFs and TIFFs included."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from digitrec.commands.arguments import add_batch_arguments, add_image_arguments
from digitrec.commands.output import Layout, run_batch
from digitrec.errors import ConfigError
from digitrec.reading.batch import ReadTask
from digitrec.reading.forms.results import FieldReading
from digitrec.reading.forms.task import FormTask
from digitrec.reading.forms.template import Template, load_template, make_template, template_from_fields
from digitrec.reading.pages import DEFAULT_DPI, MAX_DPI
from digitrec.reading.results import Reading

NAME = "read"
HELP = "read a handwritten number (1-20 digits on one line) from each image"
CSV_COLUMNS = ("file", "text", "needs_review", "rejected", "reason", "digits", "min_confidence")
UNIT_NAMES = {"px": "pixels", "fraction": "fractions of the page"}
FORM_CSV_COLUMNS = (
    "file",
    "page",
    "field",
    "layout",
    "text",
    "needs_review",
    "rejected",
    "reason",
    "digits",
    "min_confidence",
)


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
    form = parser.add_argument_group("forms", "read named fields off each page (one answer per field and page)")
    form.add_argument(
        "--template",
        metavar="FORM.json",
        help='the page\'s fields: {"fields": [{"name": "amount", "box": [x, y, w, h], "length": 6}, ...]} '
        '(optional "units": "px" or "fraction", and "page": [width, height] the pixel boxes were measured on)',
    )
    form.add_argument(
        "--field",
        action="append",
        default=[],
        metavar="NAME=x,y,w,h[,length]",
        help="a field's box in page pixels (or all four between 0 and 1: fractions of the page), "
        "and the number of digits it should hold; repeatable, and added to --template's",
    )
    form.add_argument(
        "--dpi",
        type=int,
        metavar="N",
        help=f"resolution PDF pages are rasterised at (default {DEFAULT_DPI}, at most {MAX_DPI})",
    )
    add_batch_arguments(parser)
    parser.add_argument(
        "--overlay",
        metavar="OUT.png",
        help="draw the boxes and readings: with one image, the file to write; with several or a "
        "directory, a directory that receives NAME.overlay.png per image (mirroring subdirectories); "
        "with a template, each page's fields (page 2 and on beside page 1's file, as NAME.page2.png, ...)",
    )


def lowest_confidence(r: Reading) -> float | None:
    return min((d["confidence"] for d in r.digits), default=None)


def format_row(r: Reading) -> str:
    if r.rejected:
        return f"{r.file}\t-\trejected: {r.reason}"
    review = f"\tneeds review: {r.reason}" if r.needs_review else ""
    return f"{r.file}\t{r.text}\t{len(r.digits)} digits, lowest confidence {lowest_confidence(r) or 0.0:.3f}{review}"


def csv_row(r: Reading) -> list[object]:
    """digits: how many were read; min_confidence: the least sure of them (empty when none)."""
    low = lowest_confidence(r)
    return [r.file, r.text, r.needs_review, r.rejected, r.reason, len(r.digits), None if low is None else f"{low:.6f}"]


def lowest_field_confidence(r: FieldReading) -> float | None:
    return min((d["confidence"] for d in r.digits if d["digit"] is not None), default=None)


def form_csv_row(r: FieldReading) -> list[object]:
    """digits: how many were read (a comb box whose ink is no digit counts, as it is flagged);
    min_confidence: the least sure of them. Boxes are in the JSON lines only."""
    low = lowest_field_confidence(r)
    return [
        r.file,
        r.page,
        r.field,
        r.layout,
        r.text,
        r.needs_review,
        r.rejected,
        r.reason,
        len(r.digits),
        None if low is None else f"{low:.6f}",
    ]


def form_template(args: argparse.Namespace) -> Template | None:
    """The template of --template and --field together (None when neither is given); ConfigError
    naming the first problem, before any page is read."""
    if not args.template and not args.field:
        if args.dpi is not None:
            raise ConfigError("--dpi is for PDF pages, which are read with --template or --field")
        return None
    if args.dpi is not None and not 1 <= args.dpi <= MAX_DPI:
        raise ConfigError(f"--dpi must be between 1 and {MAX_DPI}, got {args.dpi}")
    base = load_template(args.template) if args.template else None
    if not args.field:
        return base
    extra = template_from_fields(args.field)
    if base is None:
        return extra
    if extra.units != base.units:
        raise ConfigError(
            f"--field boxes are in {UNIT_NAMES[extra.units]} but the template's in {UNIT_NAMES[base.units]}"
        )
    return make_template(base.fields + extra.fields, base.units, base.page)


def run(args: argparse.Namespace) -> int:
    template = form_template(args)
    several = len(args.images) > 1 or any(path != "-" and os.path.isdir(path) for path in args.images)
    if args.overlay and several and not Path(args.overlay).is_dir():
        raise ConfigError(f"--overlay {args.overlay}: with several images, give an existing directory")
    options: dict[str, Any] = {
        "backend": args.backend,
        "reader": args.reader,
        "checker": args.checker,
        "verifier": args.verifier,
        "overlay": args.overlay,
        "several": several,
    }
    if template is not None:
        form_task = FormTask(args.model, **options, template=template, dpi=args.dpi or DEFAULT_DPI)
        return run_batch(args, form_task, Layout("", False, None, FORM_CSV_COLUMNS, form_csv_row))
    task = ReadTask(args.model, **options)
    return run_batch(args, task, Layout("FILE\tNUMBER\tDETAILS", True, format_row, CSV_COLUMNS, csv_row))
