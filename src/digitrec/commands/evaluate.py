"""digitrec evaluate: test loss and accuracy of a checkpoint."""

from __future__ import annotations

import argparse
import json

from ..checkpoint import load_checkpoint
from ..data import load_mnist
from ..device import DEVICE_CHOICES, pick_device
from ..evaluate import evaluate

NAME = "evaluate"
HELP = "evaluate a checkpoint on the MNIST test set"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", metavar="PATH", help="checkpoint to evaluate (default: the shipped model)")
    parser.add_argument("--data-dir", help="directory holding the four MNIST .gz files (or set DIGITREC_DATA)")
    parser.add_argument("--device", choices=DEVICE_CHOICES, default="auto", help="compute device")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    device = pick_device(args.device)
    checkpoint = load_checkpoint(args.model, device)
    data = load_mnist(args.data_dir)
    metrics = evaluate(checkpoint.model, data.test_images, data.test_labels, checkpoint.normalization, device)
    if args.json:
        print(json.dumps({"test_accuracy": metrics.accuracy, "test_loss": metrics.loss, "n": metrics.n,
                          "model": checkpoint.path, "arch": checkpoint.arch}))
    else:
        print(f"{checkpoint.path} ({checkpoint.arch}): test loss {metrics.loss:.4f}  "
              f"accuracy {metrics.accuracy:.4f} ({metrics.accuracy * 100:.2f}%)  n={metrics.n}")
    return 0
