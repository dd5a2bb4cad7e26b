"""Self-describing checkpoints: everything needed to rebuild, trust and explain a model.

A checkpoint is a plain dict of tensors and JSON-like values, so it loads with
``torch.load(weights_only=True)``, which never unpickles code. It records the architecture name
and kwargs, the normalisation, the data split, the training config, the metrics, the data
checksums, library versions and the command line that produced it.
"""

from __future__ import annotations

import hashlib
import math
import os
import pickle
import platform
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from digitrec import __version__
from digitrec.atomic import atomic_write
from digitrec.errors import CheckpointError, ConfigError
from digitrec.models import create_model
from digitrec.models.inputs import Normalization
from digitrec.weights import DEFAULT_MODEL_PATH

FORMAT = "digitrec-checkpoint"
FORMAT_VERSION = 1


@dataclass
class Checkpoint:
    """A loaded model (in eval mode) and its metadata."""

    model: nn.Module
    arch: str
    arch_kwargs: dict[str, Any]
    normalization: Normalization
    meta: dict[str, Any] = field(default_factory=dict)  # config, split, metrics, versions, ...
    path: str | None = None

    @property
    def temperature(self) -> float:
        """Softmax temperature fitted on validation data (1.0 when not calibrated)."""
        return float(self.meta.get("calibration", {}).get("temperature", 1.0))


def versions() -> dict[str, str]:
    import numpy
    import torchvision

    return {
        "digitrec": __version__,
        "torch": str(torch.__version__),  # TorchVersion is not a weights_only-safe type
        "torchvision": torchvision.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
    }


def weights_sha256(state_dict: dict[str, torch.Tensor]) -> str:
    """Checksum of the weights alone (names, shapes and values), independent of metadata."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu().contiguous()
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.numpy().tobytes() if tensor.dtype != torch.bfloat16 else tensor.float().numpy().tobytes())
    return digest.hexdigest()


def build_payload(
    model: nn.Module,
    arch: str,
    arch_kwargs: dict[str, Any],
    normalization: Normalization,
    meta: dict[str, Any],
) -> dict[str, Any]:
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "arch": arch,
        "arch_kwargs": dict(arch_kwargs),
        "normalization": normalization.to_dict(),
        "input": {"size": 28, "channels": 1, "polarity": "light ink on dark background"},
        "state_dict": state,
        "weights_sha256": weights_sha256(state),
        "versions": versions(),
        "command": list(sys.argv),
        **meta,
    }


def save_payload(payload: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write atomically: a temporary file in the same directory, fsync, then rename."""
    return atomic_write(path, lambda handle: torch.save(payload, handle))


def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    arch: str,
    arch_kwargs: dict[str, Any],
    normalization: Normalization,
    meta: dict[str, Any],
) -> Path:
    return save_payload(build_payload(model, arch, arch_kwargs, normalization, meta), path)


def read_payload(path: str | os.PathLike) -> dict[str, Any]:
    """torch.load with weights_only=True, every failure turned into a one-line CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        # Files written before versions() used str() hold a TorchVersion, a plain str subclass.
        with torch.serialization.safe_globals([torch.torch_version.TorchVersion]):
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except (
        RuntimeError,
        EOFError,
        OSError,
        ValueError,
        KeyError,
        IndexError,
        TypeError,
        AttributeError,
        pickle.UnpicklingError,
        zipfile.BadZipFile,
        UnicodeDecodeError,
    ) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"{path}: not a readable checkpoint (truncated, corrupt or unsafe): {first_line[:200]}"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a digitrec checkpoint (no '{FORMAT}' marker)")
    if payload.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {payload.get('format_version')} is not supported")
    return payload


def model_from_payload(payload: dict[str, Any], where: str = "checkpoint") -> nn.Module:
    """Rebuild the architecture and load the weights, refusing anything inconsistent.

    The payload is untrusted: it unpickles safely (weights_only) but may lie. The architecture is
    first built on the meta device (no memory), and every weight is checked against it (names,
    shapes, floating dtypes, finite values) before the real model is allocated, so metadata
    asking for a huge model cannot exhaust memory.
    """
    arch, kwargs = payload.get("arch"), payload.get("arch_kwargs", {})
    if not isinstance(arch, str) or not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
        raise CheckpointError(f"{where}: malformed architecture (arch must be a name, arch_kwargs a mapping)")
    state = payload.get("state_dict")
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) and v.layout == torch.strided for k, v in state.items()
    ):
        raise CheckpointError(f"{where}: no usable state_dict")
    try:
        with torch.device("meta"):
            skeleton = create_model(arch, **kwargs)
    except ConfigError as exc:
        raise CheckpointError(f"{where}: cannot rebuild the model: {exc}") from None
    except (RuntimeError, ValueError, TypeError, OverflowError) as exc:
        raise CheckpointError(f"{where}: cannot rebuild the model {arch!r} with {kwargs}: {_first_line(exc)}") from None
    expected = skeleton.state_dict()
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{where}: weights do not match architecture {arch!r}: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    for name, tensor in state.items():
        want = expected[name]
        if tensor.shape != want.shape:
            raise CheckpointError(
                f"{where}: weights do not match architecture {arch!r}: {name!r} has shape "
                f"{tuple(tensor.shape)}, the model needs {tuple(want.shape)}"
            )
        if want.is_floating_point() and not tensor.is_floating_point():
            raise CheckpointError(f"{where}: weight {name!r} has dtype {tensor.dtype}, not a floating-point type")
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise CheckpointError(f"{where}: weight {name!r} contains NaN or infinite values")
    model = create_model(arch, **kwargs)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        summary = " ".join(str(exc).split())[:300]
        raise CheckpointError(f"{where}: weights do not match architecture {arch!r}: {summary}") from None
    return model.eval()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


def _check_calibration(meta: dict[str, Any], where: str) -> None:
    """`meta["calibration"]`, when present, must hold a usable temperature and reject threshold
    (the Recognizer and the server read them on every request)."""
    calibration = meta.get("calibration")
    if calibration is None:
        return
    if not isinstance(calibration, dict):
        raise CheckpointError(f"{where}: calibration is not a mapping")
    for key, low, high in (("temperature", 0.0, math.inf), ("reject_threshold", 0.0, 1.0)):
        value = calibration.get(key)
        if value is None:
            continue
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
            or not (low < value <= high if key == "temperature" else low <= value <= high)
        ):
            raise CheckpointError(f"{where}: calibration {key} {value!r} is not a number in the allowed range")


def load_checkpoint(path: str | os.PathLike | None = None, device: torch.device | str = "cpu") -> Checkpoint:
    """Load a checkpoint (the shipped default model when `path` is None)."""
    path = Path(path) if path is not None else DEFAULT_MODEL_PATH
    payload = read_payload(path)
    model = model_from_payload(payload, str(path)).to(device)
    norm = payload.get("normalization", {})
    try:
        normalization = Normalization(float(norm["mean"]), float(norm["std"]))
        if not (math.isfinite(normalization.mean) and math.isfinite(normalization.std) and normalization.std > 0):
            raise ValueError("mean must be finite and std finite and positive")
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: bad normalisation constants ({exc})") from None
    skip = {"state_dict", "format", "format_version", "arch", "arch_kwargs", "normalization"}
    meta = {k: v for k, v in payload.items() if k not in skip}
    _check_calibration(meta, str(path))
    return Checkpoint(
        model=model,
        arch=payload["arch"],
        arch_kwargs=dict(payload.get("arch_kwargs", {})),
        normalization=normalization,
        meta=meta,
        path=str(path),
    )
