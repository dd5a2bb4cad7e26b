"""digitrec build-marks: remake the mark classifier (weights/marks.pt), the check that rejects what
is not a digit (blobs, scribbles, crossed-out digits, lines, letters, noise).

    digitrec build-marks --out runs/marks.pt    # the shipped recipe (53 minutes on 2 busy cores, most of it making examples)
    digitrec build-marks --out /tmp/m.pt --rendered-digits 200 --negatives 40 --val-digits 100 \\
        --val-negatives 20 --epochs 1                       # a small slice, to try it

See `digitrec.making.marks` for what it learns from; the defaults are the shipped recipe.
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from pathlib import Path

from digitrec.commands.arguments import add_data_arguments, add_recipe_arguments, recipe_from_args
from digitrec.commands.train import format_epoch
from digitrec.making.marks_recipe import MarksRecipe

NAME = "build-marks"
HELP = "remake the mark classifier (marks.pt) that rejects blobs, scribbles, letters and other non-digits"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="the classifier file to write (e.g. runs/marks.pt)")
    parser.add_argument("--run-dir", help="the training run's directory (default runs/marks-<time>)")
    add_recipe_arguments(parser, MarksRecipe)
    add_data_arguments(parser, device_default="auto")


def run(args: argparse.Namespace) -> int:
    # Imported here, not at the top: torch (the [train] extra); the CLI imports every command to list it
    from digitrec.making.marks import train_marks
    from digitrec.making.runs import RunOptions
    from digitrec.training.data import load_mnist

    recipe = recipe_from_args(args, MarksRecipe())
    run_dir = Path(args.run_dir or f"runs/marks-{datetime.now():%Y%m%d-%H%M%S}")
    options = RunOptions(run_dir=run_dir, device=args.device, on_epoch=lambda r: print(format_epoch(r), flush=True))
    summary = train_marks(load_mnist(args.data_dir), recipe, args.out, options)
    print(json.dumps(summary, indent=2))
    return 0
