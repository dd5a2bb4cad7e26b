"""Command-line flags that several subcommands share, declared once so they read the same everywhere."""

from __future__ import annotations

import argparse
from typing import Any

from digitrec.device import DEVICE_CHOICES
from digitrec.errors import ConfigError
from digitrec.runtime.backends import BACKENDS


def add_image_arguments(parser: argparse.ArgumentParser) -> None:
    """IMAGE... --model --backend: the inputs and the model of `predict` and `read`."""
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files (PNG, JPEG, ...); - reads stdin")
    add_model_argument(parser, "checkpoint (default: the shipped model)")
    parser.add_argument("--backend", choices=BACKENDS, default="torch", help="inference backend (default torch)")


def add_model_argument(parser: argparse.ArgumentParser, help_text: str, **options: Any) -> None:
    """--model PATH: the checkpoint a command works on (`options`: e.g. required, or action="append")."""
    parser.add_argument("--model", metavar="PATH", help=help_text, **options)


def add_data_arguments(parser: argparse.ArgumentParser, device_default: str | None = "auto") -> None:
    """--data-dir --device: where MNIST is and what computes."""
    parser.add_argument("--data-dir", help="directory holding the four MNIST .gz files (or set DIGITREC_DATA)")
    parser.add_argument(
        "--device", choices=DEVICE_CHOICES, default=device_default, help="compute device (default auto)"
    )


def require_at_least(flag: str, value: int, low: int) -> None:
    """A flag's smallest sensible value, checked in `run` (argparse checks only the type), so the
    refusal is a one-line `ConfigError` like every other bad setting."""
    if value < low:
        raise ConfigError(f"{flag} must be >= {low}, got {value}")
