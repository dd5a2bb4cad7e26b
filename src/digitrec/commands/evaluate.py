"""digitrec evaluate: accuracy, loss and calibration of a checkpoint, optionally a full report.

`--json` prints one object: "split", "n", "<split>_accuracy", "<split>_loss" (so test_accuracy
and test_loss for the default split, val_accuracy and val_loss with --split val), "ece" and
"temperature" (confidences use the checkpoint's fitted temperature), "macro_f1",
"most_confused" (up to five [true, predicted, count] triples), "model", "arch" and, with
--report, "report" (the path of report.html). An ensemble (repeated --model, or --ensemble DIR)
adds "members" (each member's "model", "arch" and "accuracy") and "disagreement" (the share of
images on which the members' answers are not all the same).

It runs on the base install with `--backend onnx` (the default when torch is not installed);
only --report (matplotlib) and --split val (the split is drawn with torch) need `digitrec[train]`.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from digitrec.commands.arguments import add_data_arguments, add_model_argument, require_at_least
from digitrec.errors import ConfigError

if TYPE_CHECKING:
    import torch

    from digitrec.evaluation.analysis import Analysis
    from digitrec.evaluation.members import Member
    from digitrec.evaluation.scoring import Scores

NAME = "evaluate"
HELP = "evaluate a checkpoint on the MNIST test set (or its validation split), optionally write a report"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # Imported here, not at the top: the CLI imports every command to list them, and predict's start counts
    from digitrec.evaluation.analysis import SPLITS
    from digitrec.evaluation.members import BACKEND_CHOICES
    from digitrec.evaluation.report import DEFAULT_GALLERY

    add_model_argument(
        parser,
        "checkpoint (.pt) or ONNX model (.onnx) to evaluate (default: the shipped model); repeat to "
        "evaluate an ensemble that averages the members' calibrated probabilities",
        action="append",
    )
    parser.add_argument(
        "--ensemble",
        metavar="DIR",
        help="evaluate the ensemble of every checkpoint in DIR (*.pt with --backend torch, *.onnx with onnx), "
        "with each member's accuracy and how often they disagree",
    )
    parser.add_argument(
        "--backend",
        choices=BACKEND_CHOICES,
        default="auto",
        help="torch runs .pt checkpoints; onnx runs .onnx files (a .pt stands for the .onnx beside it) "
        "without torch; auto (default): torch when it is installed and the models are not .onnx",
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
        help="test set (default) or the validation split recorded in the checkpoint (needs torch)",
    )
    parser.add_argument("--limit", type=int, metavar="N", help="evaluate the first N images of the split only")
    parser.add_argument(
        "--report",
        metavar="DIR",
        help="write metrics.json, confusion_matrix.png, misclassified.png, reliability.png and report.html "
        "into DIR (needs matplotlib: digitrec[train])",
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


def load_members(args: argparse.Namespace) -> list[Member]:
    from digitrec.evaluation.members import ensemble_paths, load_member, resolve_backend

    if args.ensemble and args.model:
        raise ConfigError("--ensemble DIR and --model: give one or the other")
    backend = resolve_backend(args.backend, args.model or (), args.ensemble)
    paths = ensemble_paths(args.ensemble, backend) if args.ensemble else (args.model or [None])
    device: torch.device | str = "cpu"
    if backend == "torch":
        from digitrec.device import pick_device

        device = pick_device(args.device)
    return [load_member(path, backend, device) for path in paths]


def member_summary(members: list[Member], scores: Scores, labels: Any) -> list[dict[str, Any]]:
    return [
        {"model": m.path, "arch": m.arch, "accuracy": float((answers == labels).mean()) if len(labels) else None}
        for m, answers in zip(members, scores.member_predictions)
    ]


def run(args: argparse.Namespace) -> int:
    from digitrec.evaluation.analysis import Predictions, analyze, split_rows
    from digitrec.evaluation.scoring import disagreement, score
    from digitrec.training.mnist_files import read_mnist

    require_at_least("--max", args.max, 0)
    if args.limit is not None:
        require_at_least("--limit", args.limit, 1)
    if args.report:
        from digitrec.evaluation.report import require_plotting

        require_plotting()  # before the model runs: without matplotlib, say so at once
    members = load_members(args)
    data = read_mnist(args.data_dir)
    meta = members[0].split_meta() if args.split == "val" else None
    indices, images, labels = split_rows(data, args.split, meta, args.limit)
    scores = score([m.scorer for m in members], images, tta=args.tta)
    predictions = Predictions(args.split, indices, images, labels, scores.logits, scores.temperature)
    analysis = analyze(predictions)
    path, arch = members[0].path, "+".join(m.arch for m in members) + (" (TTA)" if args.tta else "")
    files = None
    if args.report:
        from digitrec.evaluation.report import write_report

        info = dict(members[0].info, arch=arch) if len(members) == 1 else {"path": path, "arch": arch}
        files = write_report(args.report, predictions, analysis, info, args.max)
    ensemble = member_summary(members, scores, labels) if len(members) > 1 else None
    share = disagreement(scores.member_predictions)
    if args.json:
        out = json_answer(analysis, path, arch)
        if ensemble is not None:
            out.update(members=ensemble, disagreement=share)
        if files is not None:
            out["report"] = str(files.html)
        print(json.dumps(out))
        return 0
    print_answer(analysis, path, arch)
    if ensemble is not None:
        print(
            "members: " + ", ".join(f"{m['model']} ({m['arch']}) {100 * (m['accuracy'] or 0):.2f}%" for m in ensemble)
        )
        print(f"the members disagree on {100 * share:.2f}% of the images ({round(share * analysis.n)} of {analysis.n})")
    if files is not None:
        print(f"report written to {files.html}")
    return 0


def json_answer(analysis: Analysis, path: str, arch: str) -> dict[str, Any]:
    return {
        "split": analysis.split,
        f"{analysis.split}_accuracy": analysis.accuracy,
        f"{analysis.split}_loss": analysis.loss,
        "n": analysis.n,
        "ece": analysis.ece,
        "temperature": analysis.temperature,
        "macro_f1": analysis.macro_f1,
        "most_confused": [[p.true, p.predicted, p.count] for p in analysis.confused_pairs[:5]],
        "model": path,
        "arch": arch,
    }


def print_answer(analysis: Analysis, path: str, arch: str) -> None:
    print(
        f"{path} ({arch}) on the {analysis.split} set: loss {analysis.loss:.4f}  "
        f"accuracy {analysis.accuracy:.4f} ({analysis.accuracy * 100:.2f}%)  n={analysis.n}  "
        f"mistakes {len(analysis.mistakes)}"
    )
    print(f"macro F1 {analysis.macro_f1:.4f}; ECE {analysis.ece * 100:.2f}% at temperature {analysis.temperature:.3f}")
    pairs = analysis.confused_pairs[:5]
    if pairs:
        print(
            "most confused (true -> predicted: count): "
            + ", ".join(f"{p.true}->{p.predicted}: {p.count}" for p in pairs)
        )
