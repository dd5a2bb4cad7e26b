"""User-facing errors.

Anything a user can cause (a bad flag, a missing file, a corrupt checkpoint) is raised as a
`DigitrecError`; the CLI prints its message as one line on stderr and exits with code 2.
Everything else is a bug and keeps its traceback.
"""

from __future__ import annotations

# What the `[train]` extra installs beyond the base (inference) install, by import name.
TRAIN_EXTRA_MODULES = frozenset({"torch", "torchvision", "onnx", "onnxscript", "matplotlib", "sklearn", "tensorboard"})


class DigitrecError(Exception):
    """An error caused by the user's input or environment, with a one-line explanation."""


class DataError(DigitrecError):
    """MNIST files are missing, corrupt or cannot be fetched."""


class CheckpointError(DigitrecError):
    """A checkpoint file is missing, truncated, corrupt, foreign or inconsistent."""


class ConfigError(DigitrecError):
    """A training or command option is out of range or unknown."""


class ImageError(DigitrecError):
    """An input image cannot be used. `status` is the HTTP status the service answers with."""

    status = 422


class NotAnImageError(ImageError):
    """The bytes are not an image format we can decode (HTTP 415)."""

    status = 415


class BadImageError(ImageError):
    """An image that is truncated, too large, animated, or otherwise unusable (HTTP 422)."""

    status = 422


def needs_train_extra(exc: ImportError) -> bool:
    """Is `exc` a module of the `[train]` extra missing (a base install asked to train or export)?"""
    name = exc.name or ""
    return name.split(".")[0] in TRAIN_EXTRA_MODULES
