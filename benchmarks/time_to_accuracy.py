"""Seconds of training to reach 99.0% test accuracy: the fast reference recipe vs ours.

Runs `digitrec train --recipe R --seed S --json` as a user would, alternating recipe by recipe
within each seed so machine noise hits all alike:
- `reference`: the fastest public recipe (tuomaso/train_mnist_fast: fast_ref_cnn, Adam lr 0.01
  betas (0.7, 0.9), OneCycle, batch 256, one epoch, data in memory, float32);
- our `fast` recipe, and our `default` recipe (what `digitrec train` does with no flags).
Every recipe trains on the same 55,000-image split. Reported per recipe, mean over seeds:
- "train s": `train_seconds`, the training loop alone (no data loading, no evaluation);
- "wall s": the whole `digitrec train` process, start-up, evaluation and calibration included
  (the `default` recipe's budget is 2 minutes of this);
- "s to 99.0%": for the one-epoch recipes the training seconds, when the mean test accuracy
  reaches 99.0%; for the multi-epoch default, the training seconds up to the first epoch whose
  validation accuracy reaches 99.0% (the test set is never looked at during training).

With `--amp none auto` every recipe but `reference` (always float32, as published) runs twice:
in float32, as on a CPU without native bf16 (most laptops, AVX2-only servers), and with `auto`
(bf16 where this CPU computes it natively). Ratios are to the reference of the same run.

    python benchmarks/time_to_accuracy.py [--seeds 5] [--recipes reference fast default] [--amp none auto]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from common import machine, mean_std, native_bf16

TARGET = 0.99


@dataclass
class Run:
    test_accuracy: float
    val_accuracy: float
    train_seconds: float
    wall_seconds: float
    epochs: int
    history: list[dict]

    def seconds_to_target(self) -> float | None:
        elapsed = 0.0
        for record in self.history:
            elapsed += record["seconds"]
            if record["val_accuracy"] >= TARGET:
                return elapsed
        return None


def train(recipe: str, seed: int, out: Path, amp: str) -> Run:
    command = [
        sys.executable,
        "-m",
        "digitrec",
        "train",
        "--recipe",
        recipe,
        "--seed",
        str(seed),
        "--device",
        "cpu",
        "--out",
        str(out),
        "--json",
        *(["--amp", amp] if recipe != "reference" else []),
    ]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr}")
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return Run(
        summary["test_accuracy"], summary["val_accuracy"], summary["train_seconds"], wall, summary["epochs"], history
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--recipes", nargs="+", default=["reference", "fast", "default"])
    parser.add_argument(
        "--amp",
        nargs="+",
        default=["auto"],
        choices=["auto", "none", "bf16"],
        help="precision(s) for every recipe but the reference: none = float32 (a CPU without native bf16)",
    )
    args = parser.parse_args()
    variants = [(name, amp) for name in args.recipes for amp in (["none"] if name == "reference" else args.amp)]
    results: dict[tuple[str, str], list[Run]] = {variant: [] for variant in variants}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            for name, amp in variants:
                run = train(name, seed, Path(tmp) / f"{name}-{amp}-{seed}", amp)
                results[name, amp].append(run)
                print(
                    f"  seed {seed} {name:9s} amp {amp:4s} val {100 * run.val_accuracy:.2f}%  "
                    f"test {100 * run.test_accuracy:.2f}%  "
                    f"train {run.train_seconds:.1f}s  wall {run.wall_seconds:.1f}s  ({run.epochs} epoch(s))",
                    flush=True,
                )

    print(f"\nmachine: {machine()}, native bf16: {native_bf16()}")
    print(f"{args.seeds} seeds per recipe; train s = training loop only; wall s = the whole `digitrec train`\n")
    print(
        "| recipe | amp | epochs | train s | x reference | wall s | val acc % | test acc % (mean ± std) | min test acc % "
        "| s to 99.0% |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    reference = (
        statistics.mean(r.train_seconds for r in results["reference", "none"]) if "reference" in args.recipes else None
    )
    for (name, amp), runs in results.items():
        accs = [100 * r.test_accuracy for r in runs]
        mean_acc = statistics.mean(accs)
        if runs[0].epochs == 1:
            to_target = statistics.mean(r.train_seconds for r in runs) if mean_acc >= 100 * TARGET else None
        else:
            times = [r.seconds_to_target() for r in runs]
            to_target = statistics.mean(times) if all(t is not None for t in times) else None
        shown = f"{to_target:.1f}" if to_target is not None else "not reached"
        train_mean = statistics.mean(r.train_seconds for r in runs)
        ratio = f"{train_mean / reference:.2f}x" if reference else "-"
        print(
            f"| {name} | {amp} | {runs[0].epochs} | {mean_std([r.train_seconds for r in runs])} | {ratio} | "
            f"{mean_std([r.wall_seconds for r in runs])} | {100 * statistics.mean(r.val_accuracy for r in runs):.2f} | "
            f"{mean_acc:.2f} ± {statistics.stdev(accs) if len(accs) > 1 else 0:.2f} | {min(accs):.2f} | {shown} |"
        )


if __name__ == "__main__":
    main()
