"""digitrec train: train a model, keep the best-on-validation checkpoint, calibrate it, report test metrics."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from digitrec.commands.arguments import add_data_arguments, require_at_least
from digitrec.training.config import AMP_MODES, TrainConfig, read_toml
from digitrec.training.recipes import RECIPES, overridden, recipe

if TYPE_CHECKING:
    from digitrec.training.data import Mnist
    from digitrec.training.records import EpochRecord, TrainResult

NAME = "train"
HELP = "train a model on MNIST and report validation and test accuracy"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # Imported here, not at the top: torch (the [train] extra); the CLI imports every command to list it
    from digitrec.models import list_models

    defaults = TrainConfig()
    parser.add_argument("--recipe", choices=list(RECIPES), help="named recipe (default: 'default'); flags override it")
    parser.add_argument("--config", metavar="FILE.toml", help="TOML file of TrainConfig keys; flags override it")
    parser.add_argument("--model", choices=list_models(), help=f"architecture (default {defaults.model})")
    parser.add_argument("--epochs", type=int, help=f"passes over the training split (default {defaults.epochs})")
    parser.add_argument("--batch-size", type=int, help=f"images per step (default {defaults.batch_size})")
    parser.add_argument("--lr", type=float, help=f"Adam learning rate, the peak for OneCycle (default {defaults.lr})")
    parser.add_argument("--seed", type=int, help=f"training seed (default {defaults.seed})")
    parser.add_argument(
        "--amp",
        choices=AMP_MODES,
        help="mixed precision: auto (bf16 where the CPU computes it natively) | none (float32) | bf16 | fp16",
    )
    parser.add_argument("--limit-train", type=int, help="train on a stratified slice of N images (smoke runs)")
    parser.add_argument("--tensorboard", action="store_true", default=None, help="log scalars to RUN_DIR/tensorboard")
    add_data_arguments(parser, device_default=None)  # None: the config's (or recipe's) device
    parser.add_argument(
        "--out", help="run directory for model.pt, last.pt, metrics.jsonl, curves.png (default runs/<time>)"
    )
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run from its last finished epoch")
    parser.add_argument(
        "--nproc", type=int, default=1, help="data-parallel processes on this machine (launches torchrun)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object with the final metrics")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    if args.resume:
        from digitrec.training.records import read_resume_config

        return read_resume_config(args.resume)
    values = recipe(args.recipe or "default")
    if args.config:
        values = overridden(values, read_toml(args.config))
    flags = {
        "model": args.model,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "seed": args.seed,
        "amp": args.amp,
        "device": args.device,
        "limit_train": args.limit_train,
        "tensorboard": args.tensorboard,
    }
    return TrainConfig.from_dict(overridden(values, {k: v for k, v in flags.items() if v is not None}))


def format_epoch(record: EpochRecord) -> str:
    return (
        f"epoch {record.epoch:3d}  train loss {record.train_loss:.4f} acc {record.train_accuracy:.4f}  "
        f"val loss {record.val_loss:.4f} acc {record.val_accuracy:.4f}  {record.seconds:.1f}s"
    )


def launch_torchrun(nproc: int) -> int:
    """Re-run this command under torchrun with `nproc` processes on this machine."""
    argv = [a for a in sys.argv[1:]]
    for i, arg in enumerate(argv):  # drop --nproc N / --nproc=N
        if arg == "--nproc":
            del argv[i : i + 2]
            break
        if arg.startswith("--nproc="):
            del argv[i]
            break
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc}",
        "-m",
        "digitrec",
        *argv,
    ]
    return subprocess.call(command)


def finish_run(result: TrainResult, config: TrainConfig, data: Mnist, out: str | os.PathLike) -> None:
    """What `digitrec train` does with a finished run: fit the softmax temperature and reject
    threshold on its validation split (stored in the checkpoint) and draw its learning curves."""
    from digitrec.evaluation.calibration import calibrate_checkpoint
    from digitrec.evaluation.plots import plot_curves  # matplotlib: only once a run has finished
    from digitrec.training.loop import CURVES_NAME

    if config.calibrate:
        result.calibration = calibrate_checkpoint(result.checkpoint, data, "cpu")
    plot_curves([asdict(r) for r in result.history], Path(out) / CURVES_NAME)


def run(args: argparse.Namespace) -> int:
    from digitrec.training.data import load_mnist
    from digitrec.training.loop import train

    require_at_least("--nproc", args.nproc, 1)
    config = config_from_args(args)
    if args.nproc > 1 and "WORLD_SIZE" not in os.environ:
        return launch_torchrun(args.nproc)
    out = args.resume or args.out or f"runs/{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    data = load_mnist(args.data_dir)
    main_rank = os.environ.get("RANK", "0") == "0"
    log = sys.stderr if args.json else sys.stdout
    if main_rank:
        verb = "resuming" if args.resume else "training"
        print(f"{verb} {config.model} for {config.epochs} epoch(s) on {data.source}, run directory {out}", file=log)
    result = train(
        config,
        data,
        out,
        on_epoch=lambda r: print(format_epoch(r), file=log, flush=True),
        progress=sys.stderr.isatty(),
        resume=bool(args.resume),
    )
    if result.world_size > 1:  # lets a user (and the tests) check that the ranks stayed in step
        # one write(2) of a whole line: the ranks share stderr, and a line split over two writes
        # can interleave with the other rank's
        sys.stderr.flush()
        line = f"rank {result.rank}/{result.world_size}: final parameters sha256 {result.final_params_sha256}\n"
        os.write(sys.stderr.fileno(), line.encode())
    if not main_rank:
        return 0
    finish_run(result, config, data, out)
    if args.json:
        print(json.dumps(result.summary()))
    else:
        print(
            f"best epoch {result.best_epoch}: val acc {result.val.accuracy:.4f}; "
            f"test loss {result.test.loss:.4f} acc {result.test.accuracy:.4f} (n={result.test.n}); "
            f"training {result.train_seconds:.1f}s; checkpoint {result.checkpoint}"
        )
        if result.calibration:
            print(
                f"calibrated: temperature {result.calibration['temperature']:.3f}, "
                f"ECE {result.calibration['ece_before']:.4f} -> {result.calibration['ece_after']:.4f} on validation"
            )
    return 0
