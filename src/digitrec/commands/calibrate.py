"""digitrec calibrate: fit the softmax temperature on the validation split, store it in the checkpoint."""

from __future__ import annotations

import argparse
import json

from digitrec.commands.arguments import add_data_arguments, add_model_argument, require_at_least
from digitrec.device import pick_device

NAME = "calibrate"
HELP = "fit temperature scaling on a checkpoint's validation split and store it in the file (weights unchanged)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # Imported here, not at the top: torch (the [train] extra); the CLI imports every command to list it
    from digitrec.evaluation.calibration import DEFAULT_BINS

    add_model_argument(parser, "checkpoint to calibrate, updated in place", required=True)
    parser.add_argument("--bins", type=int, default=DEFAULT_BINS, help=f"equal-width ECE bins (default {DEFAULT_BINS})")
    add_data_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print the stored calibration as one JSON object")


def run(args: argparse.Namespace) -> int:
    from digitrec.evaluation.calibration import calibrate_checkpoint
    from digitrec.training.data import load_mnist

    require_at_least("--bins", args.bins, 1)
    device = pick_device(args.device)
    data = load_mnist(args.data_dir)
    calibration = calibrate_checkpoint(args.model, data, device, n_bins=args.bins)
    if args.json:
        print(json.dumps({"model": args.model, **calibration}))
    else:
        print(
            f"{args.model}: temperature {calibration['temperature']:.4f} fitted on {calibration['n_val']} "
            f"validation images; ECE {100 * calibration['ece_before']:.2f}% -> {100 * calibration['ece_after']:.2f}%, "
            f"NLL {calibration['nll_before']:.4f} -> {calibration['nll_after']:.4f}; checkpoint updated"
        )
    return 0
