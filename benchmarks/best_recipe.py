"""The `best` recipe's figures and its ensembles, from finished runs: each model, its last epoch, and
the ensemble of them (all given, or the one chosen on validation).

Train the members with one command; rerun it after an interruption and it resumes each unfinished
run from its last finished epoch (`digitrec train --resume`), skipping finished ones:

    python benchmarks/best_recipe.py --train runs/best

That runs `digitrec train --recipe best_bn|best|best_resnet --seed 0|1|2` (bn_cnn, simple_cnn
and resnet_small, three seeds each) into runs/best/<member>, then scores them and the ensemble
of all nine. On runs already trained:

    python benchmarks/best_recipe.py runs/best/simple-s0 runs/best/simple-s1 runs/best/simple-s2
    python benchmarks/best_recipe.py --link runs/best/ensemble runs/best/*-s?
    digitrec evaluate --ensemble runs/best/ensemble

Per run it prints validation and test accuracy of the saved model (the epoch best on validation)
and of the last epoch's weights (the EMA weights in `last.pt`), the epoch kept, the training
seconds as recorded and as they would be had every epoch taken its 25th-percentile time ("quiet
s", for a machine shared with other jobs). Then an ensemble (mean of the members' calibrated
probabilities, the numpy path of `digitrec evaluate`): of all the runs given, or with `--choose` the subset of at least two whose
ensemble is most accurate on the validation split the runs share (ties: lower validation loss).
Its test accuracy is printed once, for that ensemble only, with and without test-time
augmentation, and how often its members disagree. Nothing is chosen on the test set.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from common import machine, native_bf16

from digitrec.evaluation.analysis import split_rows
from digitrec.evaluation.members import torch_member
from digitrec.evaluation.scoring import Scores, combine, disagreement, probabilities
from digitrec.models import create_model
from digitrec.models.checkpoint import Checkpoint, load_checkpoint
from digitrec.training.mnist_files import MnistArrays, read_mnist

# The ensemble's members: run name -> (recipe, seed), three seeds of each architecture.
# simple_cnn is `best` itself (chosen on validation, see training/recipes.py).
MEMBERS = {
    "bn-s0": ("best_bn", 0),
    "bn-s1": ("best_bn", 1),
    "bn-s2": ("best_bn", 2),
    "simple-s0": ("best", 0),
    "simple-s1": ("best", 1),
    "simple-s2": ("best", 2),
    "resnet-s0": ("best_resnet", 0),
    "resnet-s1": ("best_resnet", 1),
    "resnet-s2": ("best_resnet", 2),
}


def train_members(out: Path) -> list[Path]:
    """Train every member not finished yet into out/<name>, resuming an interrupted one."""
    runs = []
    for name, (recipe, seed) in MEMBERS.items():
        run = out / name
        runs.append(run)
        if (run / "model.pt").is_file():  # written once, when the run has finished
            print(f"{name}: finished, skipped", flush=True)
            continue
        train = [sys.executable, "-m", "digitrec", "train"]
        if (run / "last.pt").is_file():  # interrupted: a resumed run keeps the config it started with
            command = [*train, "--resume", str(run)]
        else:
            command = [*train, "--recipe", recipe, "--seed", str(seed), "--out", str(run)]
        print(" ".join(command[1:]), flush=True)
        subprocess.run(command, check=True)
    return runs


def last_epoch(checkpoint: Checkpoint, run: Path) -> Checkpoint:
    """The checkpoint with the weights after the last epoch: the EMA average when the run used one."""
    state = torch.load(run / "last.pt", weights_only=True)
    config = state["config"]
    model = create_model(config["model"], **config["model_kwargs"])
    if state.get("ema") is not None:
        weights = {k.removeprefix("module."): v for k, v in state["ema"].items() if k != "n_averaged"}
    else:
        weights = state["model"]
    model.load_state_dict(weights)
    return replace(checkpoint, model=model.eval(), path=str(run / "last.pt"))


@dataclass
class Run:
    name: str
    arch: str
    checkpoint: Checkpoint
    probs: dict[str, np.ndarray]  # split -> (N, 10) calibrated probabilities of the kept model


def accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    return 100 * float((probs.argmax(1) == labels).mean())


def nll(scores: Scores, labels: np.ndarray) -> float:
    return float(-np.mean(np.maximum(scores.logits[np.arange(len(labels)), labels], -1e9)))


def quiet_seconds(history: list[dict]) -> float:
    """Training seconds had every epoch taken as long as the 25th-percentile one: on a shared
    machine some epochs stretch (other jobs, or a process stopped while someone times theirs)."""
    seconds = sorted(r["seconds"] for r in history)
    return len(seconds) * seconds[len(seconds) // 4]


def shared_val(data: MnistArrays, checkpoints: list[Checkpoint]) -> tuple[np.ndarray, np.ndarray]:
    """The validation images and labels every run was chosen on: the runs must share their split."""
    rows = [split_rows(data, "val", c.meta) for c in checkpoints]
    for c, (indices, _, _) in zip(checkpoints, rows):
        if not np.array_equal(indices, rows[0][0]):
            sys.exit(f"{c.path}: another validation split than {checkpoints[0].path}; cannot choose on validation")
    return rows[0][1], rows[0][2]


def choose(runs: list[Run], labels: np.ndarray) -> list[Run]:
    """The subset of at least two runs whose ensemble is most accurate on validation (ties: lower loss)."""
    ranked = []
    for k in range(2, len(runs) + 1):
        for subset in itertools.combinations(runs, k):
            scores = combine([r.probs["val"] for r in subset])
            ranked.append((-accuracy(np.exp(scores.logits), labels), nll(scores, labels), list(subset)))
    ranked.sort(key=lambda row: (row[0], row[1]))
    print("\n| ensemble (chosen on validation) | val acc % | val loss |\n|---|---:|---:|")
    for neg_acc, loss, subset in ranked[:10]:
        print(f"| {' + '.join(r.name for r in subset)} | {-neg_acc:.2f} | {loss:.4f} |")
    return ranked[0][2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="*", type=Path, help="run directories of `digitrec train --recipe best...`")
    parser.add_argument("--train", type=Path, metavar="DIR", help="first train (or resume) every member into DIR")
    parser.add_argument("--choose", action="store_true", help="choose the ensemble's members on validation")
    parser.add_argument("--link", type=Path, metavar="DIR", help="link the ensemble's members into DIR for --ensemble")
    args = parser.parse_args()
    if args.train:
        args.runs = args.runs or train_members(args.train)
    if not args.runs:
        parser.error("give run directories, or --train DIR")
    data = read_mnist(allow_download=False)
    print(f"machine: {machine()}; native bf16: {'yes' if native_bf16() else 'no'}\n")
    test_images, test_labels = np.asarray(data.test_images), np.asarray(data.test_labels).astype(np.int64)
    checkpoints = [load_checkpoint(run / "model.pt") for run in args.runs]
    val_images, val_labels = shared_val(data, checkpoints)
    print(
        "| run | arch | amp | epochs | epoch kept | val % (kept) | val % (last) | test % (kept) | test % (last) | train s | quiet s |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    runs, kept, last = [], [], []
    for path, checkpoint in zip(args.runs, checkpoints):
        member = torch_member(checkpoint).scorer
        probs = {
            "val": probabilities(member, val_images, temperature=member.temperature),
            "test": probabilities(member, test_images, temperature=member.temperature),
        }
        run = Run(path.resolve().name, checkpoint.arch, checkpoint, probs)
        runs.append(run)
        final = torch_member(last_epoch(checkpoint, path)).scorer
        kept.append(accuracy(probs["test"], test_labels))
        last.append(accuracy(probabilities(final, test_images), test_labels))
        metrics = checkpoint.meta["metrics"]
        history = metrics["history"]
        print(
            f"| {run.name} | {run.arch} | {checkpoint.meta.get('amp', '?')} | {len(history)} | {metrics['best_epoch']} | "
            f"{accuracy(probs['val'], val_labels):.2f} | {100 * history[-1]['val_accuracy']:.2f} | "
            f"{kept[-1]:.2f} | {last[-1]:.2f} | {metrics['train_seconds']:.0f} | {quiet_seconds(history):.0f} |"
        )
    if len(runs) > 1:
        print(f"| mean | | | | | | | {statistics.mean(kept):.2f} | {statistics.mean(last):.2f} | | |")
    if len(runs) < 2:
        return
    members = choose(runs, val_labels) if args.choose else runs
    report_ensemble(members, (val_labels, test_images, test_labels))
    if args.link:
        args.link.mkdir(parents=True, exist_ok=True)
        for r in members:
            target = args.link / f"{r.name}.pt"
            target.unlink(missing_ok=True)
            target.symlink_to(Path(r.checkpoint.path or "").resolve())
        print(f"\nmembers linked into {args.link}: digitrec evaluate --ensemble {args.link}")


def report_ensemble(members: list[Run], labels_and_test: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    """The ensemble's validation and (once) test accuracy, with TTA, and its members' disagreement."""
    val_labels, test_images, test_labels = labels_and_test
    val = combine([r.probs["val"] for r in members])
    test = combine([r.probs["test"] for r in members])
    scorers = [torch_member(r.checkpoint).scorer for r in members]
    tta = combine([probabilities(s, test_images, tta=True, temperature=s.temperature) for s in scorers])
    share = disagreement(test.member_predictions)
    print(f"\nensemble of {len(members)}: {' + '.join(f'{r.name} ({r.arch})' for r in members)}")
    print(f"  validation {accuracy(np.exp(val.logits), val_labels):.2f}%")
    print(
        f"  test {accuracy(np.exp(test.logits), test_labels):.2f}%; with test-time augmentation "
        f"{accuracy(np.exp(tta.logits), test_labels):.2f}%"
    )
    print(
        f"  the members disagree on {100 * share:.2f}% of the test images ({round(share * len(test_labels))}); "
        f"on validation {100 * disagreement(val.member_predictions):.2f}%"
    )


if __name__ == "__main__":
    main()
