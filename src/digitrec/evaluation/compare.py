"""Compare architectures under one training budget: accuracy, cost and speed, mean over seeds."""

from __future__ import annotations

import csv
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from digitrec.evaluation.calibration import calibrate_checkpoint
from digitrec.models import create_model
from digitrec.training.config import TrainConfig
from digitrec.training.data import Mnist
from digitrec.training.loop import CURVES_NAME, train
from digitrec.training.metrics import channels_last_copy
from digitrec.training.recipes import overridden
from digitrec.training.records import TrainResult


@dataclass(frozen=True)
class CompareRow:
    model: str
    params: int
    macs: int  # multiply-accumulates per image, forward pass
    seeds: int
    train_seconds: float  # mean over seeds
    train_seconds_std: float
    val_accuracy: float
    val_accuracy_std: float
    test_accuracy: float
    test_accuracy_std: float
    images_per_second: float  # eager inference, batch 1024, this machine


def count_macs(model: torch.nn.Module) -> int:
    """Forward-pass MACs for one 28x28 image, counted by PyTorch's own FLOP counter."""
    model = model.eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, 1, 28, 28))
    return counter.get_total_flops() // 2


@torch.inference_mode()
def inference_rate(model: torch.nn.Module, batch: int = 1024, repeats: int = 3) -> float:
    """Images per second of eager inference at `batch` (best of `repeats`, after a warm-up).

    With channels-last weights, as digitrec's own evaluation runs them.
    """
    model = channels_last_copy(model.eval())
    x = torch.randn(batch, 1, 28, 28)
    model(x)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        model(x)
        best = min(best, time.perf_counter() - start)
    return batch / best


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def model_config(base: dict[str, Any], model: str, seed: int) -> TrainConfig:
    return TrainConfig.from_dict(overridden(base, {"model": model, "seed": seed}))


def compare(
    models: list[str],
    data: Mnist,
    base: dict[str, Any],
    seeds: int,
    out_dir: str | Path,
    on_run: Callable[[str, int, TrainResult], None] | None = None,
) -> list[CompareRow]:
    """Train every model with every seed under the same config overrides `base`. Each run's
    directory gets its curves, and its checkpoint a temperature when the config calibrates."""
    from digitrec.evaluation.plots import plot_curves

    rows = []
    for name in models:
        results = []
        for seed in range(seeds):
            config = model_config(base, name, seed)
            run_dir = Path(out_dir) / "runs" / f"{name}-seed{seed}"
            result = train(config, data, run_dir)
            if config.calibrate:
                result.calibration = calibrate_checkpoint(result.checkpoint, data, "cpu")
            plot_curves([asdict(r) for r in result.history], run_dir / CURVES_NAME)
            results.append(result)
            if on_run is not None:
                on_run(name, seed, result)
        model = create_model(config.model, **config.model_kwargs)
        seconds = _mean_std([r.train_seconds for r in results])
        val = _mean_std([r.val.accuracy for r in results])
        test = _mean_std([r.test.accuracy for r in results])
        rows.append(
            CompareRow(
                name,
                sum(p.numel() for p in model.parameters()),
                count_macs(model),
                seeds,
                *seconds,
                *val,
                *test,
                inference_rate(model),
            )
        )
    return rows


def to_markdown(rows: list[CompareRow]) -> str:
    lines = [
        "| model | params | MACs/image | train s | val acc % | test acc % | infer img/s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.model} | {r.params:,} | {r.macs / 1e6:.2f} M | {r.train_seconds:.1f} ± {r.train_seconds_std:.1f} | "
            f"{100 * r.val_accuracy:.2f} ± {100 * r.val_accuracy_std:.2f} | "
            f"{100 * r.test_accuracy:.2f} ± {100 * r.test_accuracy_std:.2f} | {r.images_per_second:,.0f} |"
        )
    return "\n".join(lines) + "\n"


def write_outputs(rows: list[CompareRow], out_dir: str | Path) -> dict[str, Path]:
    """compare.md, compare.csv and compare.png (test accuracy against training time)."""
    from digitrec.evaluation.plots import plot_compare

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": out / "compare.md", "csv": out / "compare.csv", "plot": out / "compare.png"}
    paths["markdown"].write_text(to_markdown(rows))
    with paths["csv"].open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(asdict(rows[0])))
        writer.writeheader()
        writer.writerows(asdict(r) for r in rows)
    plot_compare(rows, paths["plot"])
    return paths
