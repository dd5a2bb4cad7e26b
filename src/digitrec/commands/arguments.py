"""Command-line flags that several subcommands share, declared once so they read the same everywhere."""

from __future__ import annotations

import argparse

from digitrec.device import DEVICE_CHOICES
from digitrec.runtime.backends import BACKENDS


def add_image_arguments(parser: argparse.ArgumentParser) -> None:
    """IMAGE... --model --backend: the inputs and the model of `predict` and `read`."""
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files (PNG, JPEG, ...); - reads stdin")
    parser.add_argument("--model", metavar="PATH", help="checkpoint (default: the shipped model)")
    parser.add_argument("--backend", choices=BACKENDS, default="torch", help="inference backend (default torch)")


def add_data_arguments(parser: argparse.ArgumentParser, device_default: str | None = "auto") -> None:
    """--data-dir --device: where MNIST is and what computes."""
    parser.add_argument("--data-dir", help="directory holding the four MNIST .gz files (or set DIGITREC_DATA)")
    parser.add_argument(
        "--device", choices=DEVICE_CHOICES, default=device_default, help="compute device (default auto)"
    )
