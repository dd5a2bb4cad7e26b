"""Command-line flags that several subcommands share, declared once so they read the same everywhere."""

from __future__ import annotations

import argparse
from dataclasses import fields, replace
from typing import TYPE_CHECKING, Any, TypeVar

from digitrec.device import DEVICE_CHOICES
from digitrec.errors import ConfigError
from digitrec.runtime.backends import BACKENDS, DEFAULT_BACKEND

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

Recipe = TypeVar("Recipe", bound="DataclassInstance")  # a making step's recipe dataclass


def add_image_arguments(parser: argparse.ArgumentParser) -> None:
    """PATH... --model --backend: the inputs and the model of `predict` and `read`."""
    parser.add_argument(
        "images",
        nargs="+",
        metavar="PATH",
        help="image files (PNG, JPEG, TIFF, ...), directories (their images, recursively, in name order); - reads stdin",
    )
    add_model_argument(parser, "checkpoint (default: the shipped model)")
    parser.add_argument(
        "--backend", choices=BACKENDS, default=DEFAULT_BACKEND, help=f"inference backend (default {DEFAULT_BACKEND})"
    )


def add_batch_arguments(parser: argparse.ArgumentParser) -> None:
    """--json --csv --output --jobs: how `predict` and `read` answer for many inputs."""
    form = parser.add_mutually_exclusive_group()
    form.add_argument("--json", action="store_true", help="one JSON object per line instead of a table")
    form.add_argument("--csv", action="store_true", help="CSV, a header row and one row per file, instead of a table")
    parser.add_argument(
        "--output",
        metavar="FILE",
        help="write the answers to FILE instead of stdout, all at once at the end (a stopped run leaves no file)",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        metavar="N",
        help="processes to share the files out to, each loading the model once (default 1: this one)",
    )


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


def add_recipe_arguments(parser: argparse.ArgumentParser, recipe: type[DataclassInstance]) -> None:
    """--FIELD for each field of a making step's recipe dataclass, its default in the help."""
    for f in fields(recipe):
        parser.add_argument(
            f"--{f.name.replace('_', '-')}", type=type(f.default), help=f"recipe: {f.name} (default {f.default})"
        )


def recipe_from_args(args: argparse.Namespace, default: Recipe) -> Recipe:
    """`default` (a recipe dataclass) with the fields given on the command line
    (`add_recipe_arguments`) replaced; its own checks refuse bad values."""
    given = {f.name: getattr(args, f.name) for f in fields(default) if getattr(args, f.name) is not None}
    return replace(default, **given)
