"""The `best` recipe's figures from finished runs: each model, its last epoch, and their ensemble.

Train the runs first, one per seed (each about 15 minutes with 2 threads on a 2-core CPU with
native bf16, or 28 with one thread):

    digitrec train --recipe best --seed 0 --out runs/best-s0 --json
    digitrec train --recipe best --seed 1 --out runs/best-s1 --json   # ...
    python benchmarks/best_recipe.py runs/best-s0 runs/best-s1 runs/best-s2

Per run it prints the test accuracy of the saved model (the epoch best on validation) and of the
last epoch's weights (the EMA weights in `last.pt`), the training seconds and the epoch chosen;
then the test accuracy of the ensemble of the saved models (mean of their calibrated
probabilities), without and with test-time augmentation. The test set only reports: nothing
here is chosen on it.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch
from common import machine

from digitrec.evaluation.analysis import predict_split
from digitrec.evaluation.ensemble import load_ensemble
from digitrec.models import create_model
from digitrec.models.checkpoint import load_checkpoint
from digitrec.models.inputs import Normalization
from digitrec.training.data import load_mnist
from digitrec.training.metrics import evaluate


def last_epoch_model(run: Path) -> torch.nn.Module:
    """The weights after the last epoch: the EMA average when the run used one."""
    state = torch.load(run / "last.pt", weights_only=True)
    config = state["config"]
    model = create_model(config["model"], **config["model_kwargs"])
    if state.get("ema") is not None:
        weights = {k.removeprefix("module."): v for k, v in state["ema"].items() if k != "n_averaged"}
    else:
        weights = state["model"]
    model.load_state_dict(weights)
    return model.eval()


def accuracy(predictions) -> float:
    return float((predictions.logits.argmax(1) == predictions.labels).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run directories of `digitrec train --recipe best`")
    args = parser.parse_args()
    data = load_mnist(allow_download=False)
    print(f"machine: {machine()}\n")
    print(
        "| run | epochs | epoch kept (best on val) | val acc % | test acc % (kept) | test acc % (last epoch) | train s |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    kept, last = [], []
    for run in args.runs:
        checkpoint = load_checkpoint(run / "model.pt")
        metrics = checkpoint.meta["metrics"]
        kept.append(100 * accuracy(predict_split(checkpoint, data)))
        last.append(100 * evaluate(last_epoch_model(run), data.test_images, data.test_labels, Normalization()).accuracy)
        print(
            f"| {run.name} | {len(metrics['history'])} | {metrics['best_epoch']} | {100 * metrics['val']['accuracy']:.2f} | "
            f"{kept[-1]:.2f} | {last[-1]:.2f} | {metrics['train_seconds']:.0f} |"
        )
    if len(args.runs) > 1:
        print(f"| mean | | | | {statistics.mean(kept):.2f} | {statistics.mean(last):.2f} | |")
        paths = [run / "model.pt" for run in args.runs]
        plain = accuracy(predict_split(load_ensemble(paths), data))
        tta = accuracy(predict_split(load_ensemble(paths, tta=True), data))
        print(f"\nensemble of {len(paths)}: test {100 * plain:.2f}%; with test-time augmentation {100 * tta:.2f}%")


if __name__ == "__main__":
    main()
