"""digitrec train: train a model, keep the best-on-validation checkpoint, report test metrics."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime

from ..config import TrainConfig, read_toml
from ..data import load_mnist
from ..device import DEVICE_CHOICES
from ..models import list_models
from ..train import EpochRecord, train

NAME = "train"
HELP = "train a model on MNIST and report validation and test accuracy"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = TrainConfig()
    parser.add_argument("--config", metavar="FILE.toml", help="TOML file of TrainConfig keys; flags override it")
    parser.add_argument("--model", choices=list_models(), help=f"architecture (default {defaults.model})")
    parser.add_argument("--epochs", type=int, help=f"passes over the training split (default {defaults.epochs})")
    parser.add_argument("--batch-size", type=int, help=f"images per step (default {defaults.batch_size})")
    parser.add_argument("--lr", type=float, help=f"Adam learning rate, the peak for OneCycle (default {defaults.lr})")
    parser.add_argument("--seed", type=int, help=f"training seed (default {defaults.seed})")
    parser.add_argument("--device", choices=DEVICE_CHOICES, help="compute device (default auto)")
    parser.add_argument("--limit-train", type=int, help="train on a stratified slice of N images (smoke runs)")
    parser.add_argument("--data-dir", help="directory holding the four MNIST .gz files (or set DIGITREC_DATA)")
    parser.add_argument("--out", help="run directory for model.pt and metrics.jsonl (default runs/<time>)")
    parser.add_argument("--json", action="store_true", help="print one JSON object with the final metrics")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    values = read_toml(args.config) if args.config else {}
    flags = {"model": args.model, "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
             "seed": args.seed, "device": args.device, "limit_train": args.limit_train}
    values.update({k: v for k, v in flags.items() if v is not None})
    return TrainConfig.from_dict(values)


def format_epoch(record: EpochRecord) -> str:
    return (f"epoch {record.epoch:3d}  train loss {record.train_loss:.4f} acc {record.train_accuracy:.4f}  "
            f"val loss {record.val_loss:.4f} acc {record.val_accuracy:.4f}  {record.seconds:.1f}s")


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    out = args.out or f"runs/{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    data = load_mnist(args.data_dir)
    log = sys.stderr if args.json else sys.stdout
    print(f"training {config.model} for {config.epochs} epoch(s) on {data.source}, run directory {out}", file=log)
    result = train(config, data, out, on_epoch=lambda r: print(format_epoch(r), file=log, flush=True),
                   progress=sys.stderr.isatty())
    if args.json:
        print(json.dumps(result.summary()))
    else:
        print(f"best epoch {result.best_epoch}: val acc {result.val.accuracy:.4f}; "
              f"test loss {result.test.loss:.4f} acc {result.test.accuracy:.4f} (n={result.test.n}); "
              f"training {result.train_seconds:.1f}s; checkpoint {result.checkpoint}")
    return 0
