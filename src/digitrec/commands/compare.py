"""digitrec compare: train several architectures under one budget and tabulate the results."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict

from digitrec.commands.arguments import require_at_least
from digitrec.errors import ConfigError
from digitrec.training.recipes import RECIPES, recipe

NAME = "compare"
HELP = "train several models under the same budget; table of accuracy, cost and speed"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # Imported here, not at the top: torch (the [train] extra); the CLI imports every command to list it
    from digitrec.models import list_models

    parser.add_argument(
        "models", nargs="+", metavar="MODEL", help=f"registry names, or 'all' ({', '.join(list_models())})"
    )
    parser.add_argument("--seeds", type=int, default=3, help="training seeds per model (default 3)")
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--epochs", type=int, help="epochs per run (on the default recipe)")
    budget.add_argument("--recipe", choices=list(RECIPES), help="train every model with this recipe")
    parser.add_argument("--limit-train", type=int, help="train on a stratified slice of N images (smoke runs)")
    parser.add_argument("--data-dir", help="directory holding the four MNIST .gz files")
    parser.add_argument("--out", default="runs/compare", help="directory for compare.md/.csv/.png and the runs")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON lines")


def run(args: argparse.Namespace) -> int:
    from digitrec.evaluation.compare import compare, to_markdown, write_outputs
    from digitrec.models import list_models
    from digitrec.training.data import load_mnist

    models = list_models() if args.models == ["all"] else args.models
    unknown = [m for m in models if m not in list_models()]
    if unknown:
        raise ConfigError(f"unknown model(s) {', '.join(unknown)}; known models: {', '.join(list_models())}")
    require_at_least("--seeds", args.seeds, 1)
    base = recipe(args.recipe or "default")
    base["calibrate"] = False  # not needed for the table; saves a pass over validation per run
    if args.epochs is not None:
        base["epochs"] = args.epochs
    if args.limit_train is not None:
        base["limit_train"] = args.limit_train
    data = load_mnist(args.data_dir)
    log = sys.stderr if args.json else sys.stdout
    rows = compare(
        models,
        data,
        base,
        args.seeds,
        args.out,
        on_run=lambda m, s, r: print(
            f"{m} seed {s}: test acc {r.test.accuracy:.4f} in {r.train_seconds:.1f}s", file=log, flush=True
        ),
    )
    paths = write_outputs(rows, args.out)
    if args.json:
        for row in rows:
            print(json.dumps(asdict(row)))
    else:
        print(to_markdown(rows))
        print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0
