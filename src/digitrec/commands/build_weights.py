"""digitrec build-weights: remake the reading model, the one-digit checker and the segment verifier.

    # the shipped files (about an hour on 2 cores), into a run directory:
    digitrec build-weights --out runs/weights --jobs 2
    # ... or over the shipped ones, explicitly:
    digitrec build-weights --out src/digitrec/weights --jobs 2
    # only choose again when a number is flagged needs_review (the models already in OUT; ~20 min):
    digitrec build-weights --out src/digitrec/weights --only review
    # a small slice, to try it (a minute or two):
    digitrec build-weights --out /tmp/w --reader-base src/digitrec/weights/default.pt --reader-numbers 60 \\
        --reader-val-numbers 20 --reader-epochs 1 --checker-numbers 40 --checker-val-numbers 20 \\
        --checker-epochs 1 --verifier-numbers 30 --verifier-holdout 20 --verifier-epochs 2 --review-numbers 30 --limit-eval 500

    # only the .onnx twins of the .pt files already there (seconds), e.g. after replacing default.pt:
    digitrec build-weights --onnx-only --out src/digitrec/weights

See `digitrec.making` for what each step does; the defaults are the recipe of the shipped files.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from digitrec.commands.arguments import add_data_arguments
from digitrec.commands.train import format_epoch
from digitrec.errors import ConfigError
from digitrec.reading.verifier import load_verifier
from digitrec.weights import VERIFIER_PATH, WEIGHTS_DIR

if TYPE_CHECKING:
    from digitrec.making.build import BuildPlan

NAME = "build-weights"
HELP = (
    "remake the reading model, the one-digit checker, the segment verifier and its review point (reader.pt, "
    "checker.pt, verifier.json) and the .onnx twins inference runs on"
)


def sizes() -> dict[str, tuple[Any, dict[str, str]]]:
    """flag -> (recipe, {field: help}); the defaults are the recipes' own."""
    # Imported here, not at the top: torch (the [train] extra); the CLI imports every command to list it
    from digitrec.making.checker import CheckerRecipe
    from digitrec.making.reader import ReaderRecipe
    from digitrec.making.review_fit import ReviewRecipe
    from digitrec.making.verifier_fit import VerifierRecipe

    return {
        "reader": (
            ReaderRecipe(),
            {
                "numbers": "training-split numbers cut up",
                "val_numbers": "validation-split numbers cut up (choosing only)",
                "pen_numbers": "training-split numbers written with a marker and cut up too (0: none)",
                "pen_val_numbers": "validation-split ones (choosing only)",
                "epochs": "fine-tuning epochs",
            },
        ),
        "checker": (
            CheckerRecipe(),
            {
                "numbers": "training-split numbers cut up",
                "val_numbers": "validation-split numbers cut up (choosing only)",
                "pen_numbers": "training-split numbers written with a marker and cut up too (0: none)",
                "pen_val_numbers": "validation-split ones (choosing only)",
                "epochs": "training epochs",
            },
        ),
        "verifier": (
            VerifierRecipe(),
            {
                "numbers": "validation-split numbers to fit on",
                "holdout": "validation-split numbers to choose among fits on",
                "epochs": "perceptron passes",
            },
        ),
        "review": (
            ReviewRecipe(),
            {"numbers": "validation-split numbers the needs_review operating point is chosen on"},
        ),
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from digitrec.making.build import STEPS  # torch, as sizes(): declared only when this command runs

    parser.add_argument(
        "--out",
        metavar="DIR",
        help="where reader.pt, checker.pt and verifier.json go (default "
        "runs/weights-<time>; the shipped files are replaced only when this names their directory)",
    )
    parser.add_argument(
        "--work",
        metavar="DIR",
        help="cut-out caches and training runs (default OUT/build, or "
        "runs/build-weights when OUT is the package's weights directory)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted build with the same --out "
        "and flags: cached cut-outs, unfinished training runs and finished files are reused",
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=STEPS,
        metavar="STEP",
        help=f"run this step alone on the files already in --out (repeatable; {', '.join(STEPS)}); "
        "'review' chooses again when a number is flagged needs_review, e.g. after the models changed",
    )
    parser.add_argument(
        "--reader-base",
        metavar="PATH",
        help="checkpoint the reading model is fine-tuned from "
        "(default: train the `best` recipe's bn_cnn, seed 2, as the shipped one was)",
    )
    parser.add_argument(
        "--base-epochs",
        type=int,
        metavar="N",
        help="epochs of that base training (default 30, as the shipped base was trained)",
    )
    parser.add_argument(
        "--checker-base",
        metavar="PATH",
        help="checkpoint whose architecture and layers the checker starts from (default: the shipped model)",
    )
    parser.add_argument(
        "--baseline-verifier",
        metavar="PATH",
        default=str(VERIFIER_PATH),
        help="verifier kept "
        "unless a refit reads held-out numbers better ('none': always the refit; default: the shipped one)",
    )
    for part, (defaults, fields) in sizes().items():
        for name, text in fields.items():
            flag = f"--{part}-{name.replace('_', '-')}"
            parser.add_argument(
                flag, type=int, metavar="N", default=getattr(defaults, name), help=f"{text} (default %(default)s)"
            )
    parser.add_argument(
        "--limit-eval",
        type=int,
        metavar="N",
        help="evaluate only the first N clean validation and test digits (smoke runs)",
    )
    parser.add_argument("--jobs", type=int, metavar="N", default=1, help="processes cutting up numbers (default 1)")
    parser.add_argument(
        "--onnx-only",
        action="store_true",
        help="only write the .onnx twin of each of default.pt, reader.pt, checker.pt, marks.pt in --out "
        "(default: the package's weights directory), from those files (and MNIST's training split, on "
        "which the int8 reader.onnx and checker.onnx are calibrated)",
    )
    add_data_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object with what each step recorded")


def plan_from_args(args: argparse.Namespace) -> BuildPlan:
    from digitrec.making.build import BuildPlan
    from digitrec.making.checker import CheckerRecipe
    from digitrec.making.reader import ReaderRecipe
    from digitrec.making.review_fit import ReviewRecipe
    from digitrec.making.verifier_fit import VerifierRecipe

    values = {
        f"{part}_{name}": getattr(args, f"{part}_{name}") for part, (_, fields) in sizes().items() for name in fields
    }
    may_be_zero = tuple(f"{part}_{n}" for part in ("reader", "checker") for n in ("pen_numbers", "pen_val_numbers"))
    small = [name for name, value in values.items() if value < (0 if name in may_be_zero else 1)]
    for name, value in (("jobs", args.jobs), ("base_epochs", args.base_epochs), ("limit_eval", args.limit_eval)):
        if value is not None and value < 1:
            small.append(name)
    if small:
        bound = lambda name: 0 if name in may_be_zero else 1  # noqa: E731
        raise ConfigError(", ".join(f"--{n.replace('_', '-')} must be >= {bound(n)}" for n in small))
    if args.resume and not args.out:
        raise ConfigError("--resume needs the --out of the build to continue")
    if args.only and not args.out:
        raise ConfigError("--only needs the --out holding the files the step works on")
    out = Path(args.out or f"runs/weights-{datetime.now().strftime('%Y%m%d-%H%M%S')}")
    shipped = out.resolve() == WEIGHTS_DIR.resolve()
    work = Path(args.work) if args.work else (Path("runs/build-weights") if shipped else out / "build")
    baseline = None if args.baseline_verifier == "none" else load_verifier(args.baseline_verifier)
    return BuildPlan(
        out=out,
        work=work,
        reader_base=args.reader_base,
        base_epochs=args.base_epochs,
        checker_base=args.checker_base,
        baseline_verifier=baseline,
        jobs=args.jobs,
        data_dir=args.data_dir,
        device=args.device,
        resume=args.resume,
        reader=ReaderRecipe(
            numbers=args.reader_numbers,
            val_numbers=args.reader_val_numbers,
            pen_numbers=args.reader_pen_numbers,
            pen_val_numbers=args.reader_pen_val_numbers,
            epochs=args.reader_epochs,
            limit_eval=args.limit_eval,
        ),
        checker=CheckerRecipe(
            numbers=args.checker_numbers,
            val_numbers=args.checker_val_numbers,
            pen_numbers=args.checker_pen_numbers,
            pen_val_numbers=args.checker_pen_val_numbers,
            epochs=args.checker_epochs,
        ),
        verifier=VerifierRecipe(
            numbers=args.verifier_numbers, holdout=args.verifier_holdout, epochs=args.verifier_epochs
        ),
        review=ReviewRecipe(numbers=args.review_numbers),
        only=tuple(args.only or ()),
    )


def run(args: argparse.Namespace) -> int:
    from digitrec.making.build import STEPS, Hooks, build_weights
    from digitrec.training.data import load_mnist

    if args.onnx_only:
        return write_twins(Path(args.out) if args.out else WEIGHTS_DIR, args.json, args.data_dir)
    plan = plan_from_args(args)
    data = load_mnist(args.data_dir)

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    log(f"building reader.pt, checker.pt and verifier.json into {plan.out} (work directory {plan.work})")
    hooks = Hooks(log=log, on_epoch=lambda stage, r: log(f"{stage}: {format_epoch(r)}"), progress=sys.stderr.isatty())
    summary = build_weights(plan, data, hooks)
    if args.json:
        print(json.dumps(summary))
    else:
        for name in (*STEPS, "onnx"):
            if name in summary:
                print(f"{name}: {json.dumps(summary[name])}")
    return 0


def write_twins(directory: Path, as_json: bool, data_dir: str | None = None) -> int:
    """--onnx-only: the .onnx twins of the checkpoints in `directory` (MNIST in `data_dir` calibrates
    the int8 ones)."""
    from digitrec.making.onnx_twins import write_onnx_twins

    if not directory.is_dir():
        raise ConfigError(f"{directory}: no such directory")
    written = write_onnx_twins(directory, data_dir)
    if not written:
        raise ConfigError(f"{directory}: none of default.pt, reader.pt, checker.pt, marks.pt is there")
    if as_json:
        print(json.dumps({"onnx": written}))
    else:
        for name, info in written.items():
            kind = ", int8" if info["int8"] else ""
            print(f"wrote {directory / name} ({info['bytes'] / 1e6:.2f} MB{kind}) from {info['from']}")
    return 0
