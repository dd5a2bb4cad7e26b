"""Seconds of training to reach 99.0% test accuracy: the fast reference recipe vs ours.

Runs, in one process and alternating seed by seed so machine noise hits all alike:
- `reference`: the fastest public recipe (tuomaso/train_mnist_fast: fast_ref_cnn, Adam lr 0.01
  betas (0.7, 0.9), OneCycle, batch 256, one epoch, data in memory);
- our `fast` recipe, and our `default` recipe (what `digitrec train` does).
Every recipe trains on the same 55,000-image split. "train s" is the training loop alone
(train_seconds: no data loading, no evaluation). For the one-epoch recipes, time-to-99.0% is
the training time when the mean test accuracy reaches 99.0%; for the multi-epoch default it is
the cumulative training time of the first epoch whose validation accuracy reaches 99.0%.

    python benchmarks/time_to_accuracy.py [--seeds 5] [--recipes reference fast default]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile

from common import machine, mean_std
from digitrec.config import TrainConfig
from digitrec.data import load_mnist
from digitrec.recipes import recipe
from digitrec.train import train

TARGET = 0.99


def seconds_to_target(result) -> float | None:
    elapsed = 0.0
    for record in result.history:
        elapsed += record.seconds
        if record.val_accuracy >= TARGET:
            return elapsed
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--recipes", nargs="+", default=["reference", "fast", "default"])
    args = parser.parse_args()
    data = load_mnist(allow_download=False)
    results: dict[str, list] = {name: [] for name in args.recipes}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            for name in args.recipes:
                config = TrainConfig.from_dict({**recipe(name), "seed": seed, "calibrate": False, "device": "cpu"})
                result = train(config, data, f"{tmp}/{name}-{seed}")
                results[name].append(result)
                print(f"  seed {seed} {name:9s} test {100 * result.test.accuracy:.2f}%  train {result.train_seconds:.1f}s"
                      f"  ({config.epochs} epoch(s))", flush=True)

    print(f"\nmachine: {machine()}")
    print(f"{args.seeds} seeds per recipe; train s = training loop only\n")
    print("| recipe | model | epochs | train s | test acc % (mean ± std) | min test acc % | seconds to 99.0% |")
    print("|---|---|---:|---:|---:|---:|---:|")
    reference_seconds = statistics.mean(r.train_seconds for r in results.get("reference", results[args.recipes[0]]))
    for name, runs in results.items():
        accs = [100 * r.test.accuracy for r in runs]
        config = TrainConfig.from_dict(recipe(name))
        mean_acc = statistics.mean(accs)
        if config.epochs == 1:
            to_target = statistics.mean(r.train_seconds for r in runs) if mean_acc >= 100 * TARGET else None
        else:
            times = [seconds_to_target(r) for r in runs]
            to_target = statistics.mean(times) if all(t is not None for t in times) else None
        shown = f"{to_target:.1f}" if to_target is not None else "not reached"
        print(f"| {name} | {config.model} | {config.epochs} | {mean_std([r.train_seconds for r in runs])} | "
              f"{mean_acc:.2f} ± {statistics.stdev(accs) if len(accs) > 1 else 0:.2f} | {min(accs):.2f} | {shown} |")
    if "reference" in results:
        print()
        for name, runs in results.items():
            if name != "reference":
                ratio = statistics.mean(r.train_seconds for r in runs) / reference_seconds
                print(f"{name}: {ratio:.2f}x the reference's training seconds")


if __name__ == "__main__":
    main()
