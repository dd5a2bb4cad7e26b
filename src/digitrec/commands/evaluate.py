"""digitrec evaluate: accuracy, loss and calibration of a checkpoint, optionally a full report.

`--json` prints one object: "split", "n", "<split>_accuracy", "<split>_loss" (so test_accuracy
and test_loss for the default split, val_accuracy and val_loss with --split val), "ece" and
"temperature" (confidences use the checkpoint's fitted temperature), "macro_f1",
"most_confused" (up to five [true, predicted, count] triples), "model", "arch" and, with
--report, "report" (the path of report.html).
"""

from __future__ import annotations

import argparse
import json

from digitrec.commands.arguments import add_data_arguments, add_model_argument, require_at_least
from digitrec.device import pick_device

NAME = "evaluate"
HELP = "evaluate a checkpoint on the MNIST test set (or its validation split), optionally write a report"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # Imported here, not at the top: torch (the [train] extra); the CLI imports every command to list it
    from digitrec.evaluation.analysis import SPLITS
    from digitrec.evaluation.report import DEFAULT_GALLERY

    add_model_argument(
        parser,
        "checkpoint to evaluate (default: the shipped model); repeat to evaluate an ensemble "
        "that averages the members' calibrated probabilities",
        action="append",
    )
    parser.add_argument(
        "--tta",
        action="store_true",
        help="test-time augmentation: average over the image and its four one-pixel shifts",
    )
    parser.add_argument(
        "--split",
        choices=SPLITS,
        default="test",
        help="test set (default) or the validation split recorded in the checkpoint",
    )
    parser.add_argument(
        "--report",
        metavar="DIR",
        help="write metrics.json, confusion_matrix.png, misclassified.png, reliability.png and report.html into DIR",
    )
    parser.add_argument(
        "--max",
        type=int,
        default=DEFAULT_GALLERY,
        metavar="N",
        help=f"misclassified images shown in the report gallery (default {DEFAULT_GALLERY})",
    )
    add_data_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    from digitrec.evaluation.analysis import analyze, predict_split
    from digitrec.evaluation.ensemble import load_ensemble
    from digitrec.evaluation.report import model_info, write_report
    from digitrec.training.data import load_mnist

    require_at_least("--max", args.max, 0)
    device = pick_device(args.device)
    checkpoint = load_ensemble(args.model or [None], tta=args.tta, device=device)
    data = load_mnist(args.data_dir)
    predictions = predict_split(checkpoint, data, args.split, device)
    analysis = analyze(predictions)
    files = write_report(args.report, predictions, analysis, model_info(checkpoint), args.max) if args.report else None
    pairs = analysis.confused_pairs[:5]
    if args.json:
        out = {
            "split": analysis.split,
            f"{analysis.split}_accuracy": analysis.accuracy,
            f"{analysis.split}_loss": analysis.loss,
            "n": analysis.n,
            "ece": analysis.ece,
            "temperature": analysis.temperature,
            "macro_f1": analysis.macro_f1,
            "most_confused": [[p.true, p.predicted, p.count] for p in pairs],
            "model": checkpoint.path,
            "arch": checkpoint.arch,
        }
        if files is not None:
            out["report"] = str(files.html)
        print(json.dumps(out))
        return 0
    print(
        f"{checkpoint.path} ({checkpoint.arch}) on the {analysis.split} set: loss {analysis.loss:.4f}  "
        f"accuracy {analysis.accuracy:.4f} ({analysis.accuracy * 100:.2f}%)  n={analysis.n}  "
        f"mistakes {len(analysis.mistakes)}"
    )
    print(f"macro F1 {analysis.macro_f1:.4f}; ECE {analysis.ece * 100:.2f}% at temperature {analysis.temperature:.3f}")
    if pairs:
        print(
            "most confused (true -> predicted: count): "
            + ", ".join(f"{p.true}->{p.predicted}: {p.count}" for p in pairs)
        )
    if files is not None:
        print(f"report written to {files.html}")
    return 0
