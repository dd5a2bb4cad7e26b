"""Inference speed: eager PyTorch vs digitrec's torch and ONNX Runtime backends, one run.

Measured on real MNIST test digits (already normalised: preprocessing is not timed), in process:

- images/s at batch 1 (one image per call, as `digitrec predict` does) and at batch 1024;
- single-image latency p50 / p99 over many calls;

for these contenders, interleaved round by round so machine noise hits all alike:

- torch eager: the checkpoint's module as trained (NCHW, BatchNorm unfolded), inference_mode;
- torch backend: `digitrec.runtime.backends.TorchBackend` (BatchNorm folded, channels-last);
- onnxruntime backend: `digitrec.runtime.backends.OnnxBackend` (dynamo export, ORT graph optimisations);
- reference: the plain eager CNN `fast_ref_cnn` (conv5x5-24, conv3x3-32, fc 800-256-10,
  untrained: weights do not change its speed), which the targets are measured against.

Targets (issue 3): the faster backend reaches >= 3x the reference's images/s at batch 1024, and
its single-image p50 latency is below 1 ms. Run:
    python benchmarks/inference.py [--model PATH | --arch NAME] [--threads 2] [--rounds 5] [--strict]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from common import machine

from digitrec.models import create_model
from digitrec.models.checkpoint import Checkpoint, load_checkpoint
from digitrec.models.inputs import Normalization, to_model_input
from digitrec.runtime.backends import OnnxBackend, TorchBackend
from digitrec.training.data import load_mnist

BIG_BATCH = 1024
REFERENCE_ARCH = "fast_ref_cnn"
TARGET_SPEEDUP = 3.0  # faster backend / reference, images/s at batch 1024
TARGET_P50_MS = 1.0  # one image, in process
PAUSE_S = 0.05  # between contenders, so one runtime's spinning worker threads do not tax the next


@dataclass
class Contender:
    label: str
    model: str
    run: Callable[[np.ndarray], Any]  # (B, 1, 28, 28) float32 -> logits
    big_batch_s: list[float] = field(default_factory=list)  # seconds per 1024-image call
    single_s: list[float] = field(default_factory=list)  # seconds per 1-image call

    def images_per_s(self) -> tuple[float, float]:
        big = BIG_BATCH / statistics.median(self.big_batch_s) if self.big_batch_s else float("nan")
        one = 1 / statistics.mean(self.single_s) if self.single_s else float("nan")
        return one, big

    def latency_ms(self, q: float) -> float:
        return float(np.percentile(np.array(self.single_s) * 1e3, q)) if self.single_s else float("nan")


def eager_runner(model: torch.nn.Module) -> Callable[[np.ndarray], Any]:
    model.eval()

    def run(x: np.ndarray) -> torch.Tensor:
        with torch.inference_mode():
            return model(torch.from_numpy(x))

    return run


def mmacs_per_image(model: torch.nn.Module) -> float:
    """Multiply-accumulates of the conv and linear layers for one 28x28 image, in millions."""
    total = 0

    def count(module: torch.nn.Module, inputs: Any, output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, torch.nn.Conv2d):
            kh, kw = module.kernel_size
            total += output.numel() * module.in_channels // module.groups * kh * kw
        else:
            total += output.numel() * module.in_features

    layers = [m for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    handles = [m.register_forward_hook(count) for m in layers]
    try:
        with torch.inference_mode():
            model.eval()(torch.zeros(1, 1, 28, 28))
    finally:
        for handle in handles:
            handle.remove()
    return total / 1e6


def checkpoint_for(args: argparse.Namespace) -> Checkpoint:
    if args.arch:  # an untrained registry model: speed does not depend on the weights
        torch.manual_seed(0)
        return Checkpoint(create_model(args.arch).eval(), args.arch, {}, Normalization(), {}, None)
    return load_checkpoint(args.model)


def measure(contenders: list[Contender], digits: np.ndarray, rounds: int, singles: int, warmup: int) -> None:
    big = digits[:BIG_BATCH]
    for c in contenders:  # warm-up: allocators, oneDNN primitive caches, ORT arenas
        for _ in range(2):
            c.run(big)
        for i in range(warmup):
            c.run(digits[i : i + 1])
    for r in range(rounds):
        for c in contenders:
            time.sleep(PAUSE_S)
            start = time.perf_counter()
            c.run(big)
            c.big_batch_s.append(time.perf_counter() - start)
            for i in range(singles):
                image = digits[(r * singles + i) % len(digits)][None]  # (1, 1, 28, 28)
                start = time.perf_counter()
                c.run(image)
                c.single_s.append(time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--model", metavar="PATH", help="checkpoint to time (default: the shipped model)")
    source.add_argument("--arch", help="time an untrained registry architecture instead of a checkpoint")
    parser.add_argument("--threads", type=int, default=2, help="torch and ONNX Runtime intra-op threads")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds (one 1024-batch call each)")
    parser.add_argument("--singles", type=int, default=300, help="single-image calls per round and contender")
    parser.add_argument("--warmup", type=int, default=50, help="single-image warm-up calls per contender")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    import onnxruntime

    checkpoint = checkpoint_for(args)
    data = load_mnist()
    digits = to_model_input(data.test_images[:BIG_BATCH], checkpoint.normalization).numpy()  # (1024, 1, 28, 28)
    torch.manual_seed(0)
    reference = create_model(REFERENCE_ARCH)
    name = checkpoint.arch + ("" if args.arch else " (default model)" if args.model is None else f" ({args.model})")
    t0 = time.perf_counter()
    onnx_backend = OnnxBackend.from_checkpoint(checkpoint, threads=args.threads)
    setup_s = time.perf_counter() - t0
    contenders = [
        Contender("torch eager (as trained, NCHW)", name, eager_runner(checkpoint.model)),
        Contender("torch backend (BN folded, channels-last)", name, TorchBackend(checkpoint).logits),
        Contender("onnxruntime backend", name, onnx_backend.logits),
        Contender("reference: plain eager torch", f"{REFERENCE_ARCH} (ref)", eager_runner(reference)),
    ]
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    measure(contenders, digits, args.rounds, args.singles, args.warmup)
    elapsed = time.perf_counter() - start

    print(f"## Inference speed ({args.rounds} interleaved rounds, {args.singles} single-image calls per round)\n")
    print(f"Machine: {machine()}, onnxruntime {onnxruntime.__version__} ({args.threads} intra-op threads)")
    print(
        f"Load average (1 min) before/after: {load_before:.2f}/{os.getloadavg()[0]:.2f} on {os.cpu_count()} cores "
        f"(the machine may be shared); measured in {elapsed:.0f} s; "
        f"ONNX backend ready in {setup_s:.2f} s (export or cache)\n"
    )
    ref_big = contenders[-1].images_per_s()[1]
    macs = {c.model: mmacs_per_image(m) for c, m in zip(contenders, [checkpoint.model] * 3 + [reference])}
    print(
        "| backend | model | MMAC/image | images/s, batch 1 | images/s, batch 1024 (min-max) | x reference @1024 "
        "| p50 ms (1 image) | p99 ms (1 image) |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for c in contenders:
        one, big = c.images_per_s()
        low, high = BIG_BATCH / max(c.big_batch_s), BIG_BATCH / min(c.big_batch_s)
        print(
            f"| {c.label} | {c.model} | {macs[c.model]:.2f} | {one:,.0f} | {big:,.0f} ({low:,.0f}-{high:,.0f}) | {big / ref_big:.2f}x | "
            f"{c.latency_ms(50):.3f} | {c.latency_ms(99):.3f} |"
        )
    print(
        "\nbatch 1024: median over rounds (min-max); batch 1: 1 / mean latency over all single-image calls; "
        "preprocessing not included."
    )

    backends = contenders[:-1]
    best_big = max(backends, key=lambda c: c.images_per_s()[1])
    best_p50 = min(backends, key=lambda c: c.latency_ms(50))
    speedup = best_big.images_per_s()[1] / ref_big
    best_of_rounds = min(contenders[-1].big_batch_s) / min(best_big.big_batch_s)  # least-disturbed calls
    speed_ok = speedup >= TARGET_SPEEDUP
    latency_ok = best_p50.latency_ms(50) < TARGET_P50_MS
    print(
        f"\nTarget images/s >= {TARGET_SPEEDUP:.0f}x reference at batch 1024: {speedup:.2f}x with {best_big.label} "
        f"(best call vs best call: {best_of_rounds:.2f}x) -> {'met' if speed_ok else 'MISSED'}"
    )
    print(
        f"Target p50 < {TARGET_P50_MS:.0f} ms for one image: {best_p50.latency_ms(50):.3f} ms with {best_p50.label} "
        f"-> {'met' if latency_ok else 'MISSED'}"
    )
    return 0 if (speed_ok and latency_ok) or not args.strict else 1


if __name__ == "__main__":
    sys.exit(main())
