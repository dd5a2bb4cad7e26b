"""digitrec build-default: fine-tune the default model (weights/default.pt) on digits written with
other pens and seen by other scanners, as the product's preprocessing hands them to it.

    digitrec build-default --out runs/default.pt --jobs 2     # the shipped recipe
    digitrec build-default --out /tmp/d.pt --rendered-digits 300 --mix-per-epoch 200 \\
        --val-per-condition 10 --plain-digits 2000 --epochs 1   # a small slice, to try it

See `digitrec.making.pens` for what it learns from; the defaults are the shipped recipe.
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from pathlib import Path

from digitrec.commands.arguments import add_data_arguments, add_recipe_arguments, recipe_from_args
from digitrec.commands.train import format_epoch
from digitrec.making.pens_recipe import PensRecipe

NAME = "build-default"
HELP = "fine-tune the default model (default.pt) on digits written with markers and pencils, blurred and scanned"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="the model file to write (e.g. runs/default.pt)")
    parser.add_argument("--base", help="the checkpoint to start from (default: the shipped default model)")
    parser.add_argument("--run-dir", help="the training run's directory (default runs/default-<time>)")
    parser.add_argument("--jobs", type=int, metavar="N", default=1, help="processes making examples (default 1)")
    add_recipe_arguments(parser, PensRecipe)
    add_data_arguments(parser, device_default="auto")


def run(args: argparse.Namespace) -> int:
    # Imported here, not at the top: torch (the [train] extra); the CLI imports every command to list it
    from digitrec.making.pens import fine_tune_default
    from digitrec.making.runs import RunOptions
    from digitrec.training.data import load_mnist

    recipe = recipe_from_args(args, PensRecipe())
    run_dir = Path(args.run_dir or f"runs/default-{datetime.now():%Y%m%d-%H%M%S}")
    options = RunOptions(run_dir=run_dir, device=args.device, on_epoch=lambda r: print(format_epoch(r), flush=True))
    summary = fine_tune_default(load_mnist(args.data_dir), recipe, args.out, options, args.base, max(1, args.jobs))
    print(json.dumps(summary, indent=2))
    return 0
