"""Export a checkpoint for deployment: ONNX, torch.export (ExportedProgram) or TorchScript.

Every exported file carries the model *and* what a consumer needs to feed it (`ExportMetadata`,
runtime/metadata.py): ONNX keeps it in `metadata_props`; ExportedProgram and TorchScript keep the
same keys as `digitrec.json` inside the archive. The model is written in inference form with a
dynamic batch dimension (runtime/convert.py). TorchScript is deprecated in PyTorch and is kept
only for old runtimes. Loading an export back is `load_export` in runtime/backends.py. Exporting
needs torch (the `[train]` extra), imported when a model is exported: the formats and the checks
of an output path (what `digitrec export --help` and its flag checks use) do not.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING

from digitrec.atomic import atomic_write
from digitrec.errors import ConfigError
from digitrec.runtime.metadata import METADATA_FILE, ExportMetadata

if TYPE_CHECKING:
    from torch import nn

    from digitrec.models.checkpoint import Checkpoint

FORMATS = ("onnx", "exported-program", "torchscript")
SUFFIXES = {".onnx": "onnx", ".pt2": "exported-program", ".ts": "torchscript", ".torchscript": "torchscript"}
TORCHSCRIPT_NOTE = "TorchScript is deprecated in PyTorch; prefer --format exported-program or onnx"


@dataclass(frozen=True)
class ExportResult:
    path: Path
    format: str
    size_bytes: int
    metadata: ExportMetadata
    notes: list[str] = field(default_factory=list)


def _write_exported_program(model: nn.Module, metadata: ExportMetadata, handle: IO[bytes]) -> None:
    import torch

    from digitrec.runtime.convert import batch_dim, example_input

    program = torch.export.export(model, (example_input(),), dynamic_shapes=(batch_dim(),))
    torch.export.save(program, handle, extra_files={METADATA_FILE: json.dumps(metadata.to_props())})


def _write_torchscript(model: nn.Module, metadata: ExportMetadata, handle: IO[bytes]) -> None:
    import torch

    from digitrec.runtime.convert import example_input

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # the deprecation is reported once, in ExportResult.notes
        traced = torch.jit.trace(model, example_input())
        torch.jit.save(traced, handle, _extra_files={METADATA_FILE: json.dumps(metadata.to_props())})


def format_for(out: str | os.PathLike, fmt: str | None) -> str:
    """The export format: `fmt` when given, else inferred from the file suffix."""
    if Path(out).is_dir():
        raise ConfigError(f"{out}: is a directory; give a file name for the exported model")
    if fmt is None:
        suffix = Path(out).suffix.lower()
        if suffix not in SUFFIXES:
            raise ConfigError(
                f"cannot tell the export format from {str(out)!r}; pass --format "
                f"({', '.join(FORMATS)}) or use a suffix {', '.join(SUFFIXES)}"
            )
        return SUFFIXES[suffix]
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return fmt


def _check_out(path: Path) -> None:
    """Fail before the (seconds-long) export when the output path cannot work."""
    if path.is_dir():
        raise ConfigError(f"{path}: is a directory; give a file name for the exported model")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create directory {path.parent}: {exc.strerror or exc}") from None
    if not os.access(path.parent, os.W_OK):
        raise ConfigError(f"cannot write {path}: directory {path.parent} is not writable")


def _atomic_write(path: Path, write: Callable[[IO[bytes]], object]) -> int:
    """`atomic_write`, with a disk error as one line for the user; returns the size."""
    try:
        atomic_write(path, write)
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path.stat().st_size


def export_model(checkpoint: Checkpoint, out: str | os.PathLike, fmt: str | None = None) -> ExportResult:
    """Write `checkpoint`'s model and metadata to `out` in format `fmt` (onnx, exported-program,
    torchscript; inferred from the suffix when None). The file appears whole or not at all."""
    from digitrec.runtime.convert import onnx_bytes, prepare

    fmt = format_for(out, fmt)
    path = Path(out)
    _check_out(path)
    model, metadata = prepare(checkpoint)
    notes: list[str] = []
    if fmt == "onnx":
        data = onnx_bytes(model, metadata)
        size = _atomic_write(path, lambda handle: handle.write(data))
    elif fmt == "exported-program":
        size = _atomic_write(path, lambda handle: _write_exported_program(model, metadata, handle))
    else:
        size = _atomic_write(path, lambda handle: _write_torchscript(model, metadata, handle))
        notes.append(TORCHSCRIPT_NOTE)
    return ExportResult(path=path, format=fmt, size_bytes=size, metadata=metadata, notes=notes)
