"""Inference backends: the same model answered by eager PyTorch or ONNX Runtime.

A backend maps normalised model inputs (B, 1, 28, 28) float32 to logits (B, 10) float32 numpy.
Preprocessing and softmax/temperature live outside, so every backend gives the same answers
(to float rounding: BatchNorm folding and different kernels move logits by ~1e-6).

Both backends run the model in inference form (BatchNorm folded into the preceding layer).
The torch backend also keeps activations channels-last on the CPU, which lets oneDNN pick its
fast convolution kernels (2-4x faster than the default NCHW layout for these small CNNs on a
2-core CPU). The ONNX backend exports the checkpoint with the dynamo exporter once and caches
the file under the user cache directory, keyed by the export metadata (weights checksum,
architecture, versions), so later processes start in milliseconds instead of seconds.

`load_export` loads any digitrec export back for CPU inference (ONNX through `OnnxBackend`).

Only the torch backend, exporting a checkpoint and loading a torch export import torch, when they
run: an ONNX file is answered with ONNX Runtime and numpy alone (the base install).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from digitrec.atomic import atomic_write_bytes
from digitrec.errors import CheckpointError, ConfigError
from digitrec.runtime.metadata import METADATA_FILE, ExportMetadata
from digitrec.runtime.threads import apply_to_torch, inference_threads

if TYPE_CHECKING:
    from digitrec.models.checkpoint import Checkpoint

BACKENDS = ("torch", "onnx")
# The same answers as torch (tests/test_light.py; `read`'s confidences differ in the last places, its
# reading models being int8), a tenth of the start-up, no torch.
DEFAULT_BACKEND = "onnx"


class Backend(Protocol):
    name: str

    def logits(self, x: np.ndarray) -> np.ndarray:
        """(B, 1, 28, 28) float32 normalised -> (B, 10) float32 logits."""


def _check_input(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 4 or x.shape[1:] != (1, 28, 28):
        raise ValueError(f"backend input must be (B, 1, 28, 28), got {x.shape}")
    return x


class TorchBackend:
    name = "torch"

    def __init__(self, checkpoint: Checkpoint, *, optimize: bool = True) -> None:
        import torch

        from digitrec.runtime.convert import inference_model

        apply_to_torch()
        self._torch = torch
        self.model = checkpoint.model.eval()  # the checkpoint's own module, untouched
        self.device = next(self.model.parameters()).device
        self.channels_last = optimize and self.device.type == "cpu"
        self._runner = inference_model(self.model, self.device) if optimize else self.model
        if self.channels_last:
            self._runner = self._runner.to(memory_format=torch.channels_last)

    def logits(self, x: np.ndarray) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            inputs = torch.from_numpy(_check_input(x)).to(self.device)  # (B, 1, 28, 28)
            if self.channels_last:
                inputs = inputs.contiguous(memory_format=torch.channels_last)
            return self._runner(inputs).float().cpu().numpy()  # (B, 10)


def session_options(threads: int | None = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL  # fusions + NCHWc layout
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL  # a chain of layers: nothing to run in parallel
    # the same count as torch (runtime/threads.py), so the backends compare fairly; 0: physical cores
    options.intra_op_num_threads = threads or inference_threads()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only; warnings about unused initialisers are noise
    return options


def onnx_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "digitrec" / "onnx"


class OnnxBackend:
    """ONNX Runtime on the CPU, from a `digitrec export --format onnx` file or a checkpoint."""

    name = "onnx"

    def __init__(
        self, model: bytes | str | os.PathLike, *, threads: int | None = None, where: str = "ONNX model"
    ) -> None:
        import onnxruntime as ort

        source = model if isinstance(model, bytes) else str(model)
        try:
            self.session = ort.InferenceSession(source, session_options(threads), providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types for unreadable models
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise CheckpointError(f"{where}: not a usable ONNX model: {first}") from None
        props = dict(self.session.get_modelmeta().custom_metadata_map)
        self.metadata = ExportMetadata.from_props(props, where)
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name

    @classmethod
    def from_file(cls, path: str | os.PathLike, *, threads: int | None = None) -> OnnxBackend:
        if not Path(path).is_file():
            raise CheckpointError(f"{path}: no such ONNX model file")
        return cls(path, threads=threads, where=str(path))

    @classmethod
    def from_checkpoint(
        cls,
        checkpoint: Checkpoint,
        *,
        threads: int | None = None,
        cache_dir: str | os.PathLike | None = None,
        use_cache: bool = True,
    ) -> OnnxBackend:
        """Export `checkpoint` to ONNX (or reuse the cached export of the same weights)."""
        from digitrec.runtime.convert import onnx_bytes, prepare

        model, metadata = prepare(checkpoint)
        if not use_cache:
            return cls(onnx_bytes(model, metadata), threads=threads)
        props = metadata.to_props()
        key = hashlib.sha256(json.dumps(props, sort_keys=True).encode()).hexdigest()[:32]
        path = Path(cache_dir) if cache_dir is not None else onnx_cache_dir()
        path = path / f"{checkpoint.arch}-{key}.onnx"
        if path.is_file():
            try:
                backend = cls(path, threads=threads, where=str(path))
                if backend.metadata == metadata:
                    return backend
            except CheckpointError:
                pass  # a truncated or foreign cache file: export again and replace it
        data = onnx_bytes(model, metadata)
        _write_cache(path, data)
        return cls(data, threads=threads)

    def logits(self, x: np.ndarray) -> np.ndarray:
        x = _check_input(x)
        if x.shape[0] == 0:
            return np.zeros((0, len(self.metadata.class_labels)), dtype=np.float32)
        return self.session.run([self.output_name], {self.input_name: x})[0]


def _write_cache(path: Path, data: bytes) -> None:
    """Best effort: a read-only or full cache directory only costs the next process an export."""
    with contextlib.suppress(OSError):
        atomic_write_bytes(path, data)  # concurrent processes each replace a whole file


def create_backend(name: str, checkpoint: Checkpoint) -> Backend:
    if name == "torch":
        return TorchBackend(checkpoint)
    if name == "onnx":
        return OnnxBackend.from_checkpoint(checkpoint)
    raise ConfigError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")


# ---- reading exports back (parity tests, `OnnxBackend.from_file`, users' own scripts) ----


@dataclass
class LoadedExport:
    """An exported model loaded for inference: `logits(x)` maps (B, 1, 28, 28) -> (B, 10)."""

    format: str
    metadata: ExportMetadata
    path: Path
    _run: Callable[[np.ndarray], np.ndarray]

    def logits(self, x: np.ndarray) -> np.ndarray:
        return self._run(np.ascontiguousarray(x, dtype=np.float32))


def detect_format(path: str | os.PathLike) -> str:
    """Which export format (onnx, exported-program, torchscript) a file holds, from its content (not its name)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such exported model file")
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError) as exc:
            raise CheckpointError(f"{path}: unreadable archive: {exc}") from None
        if any(name.endswith("archive_format") for name in names):
            return "exported-program"
        if any(name.endswith(f"extra/{METADATA_FILE}") for name in names):
            return "torchscript"
        raise CheckpointError(f"{path}: a zip archive but not a digitrec export")
    return "onnx"


def read_onnx_metadata(path: str | os.PathLike) -> ExportMetadata:
    import onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf raises assorted types for garbage input
        raise CheckpointError(
            f"{path}: not a readable ONNX model: {str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__}"
        ) from None
    return ExportMetadata.from_props({p.key: p.value for p in proto.metadata_props}, str(path))


def load_export(path: str | os.PathLike) -> LoadedExport:
    """Load any digitrec export for CPU inference (ONNX through ONNX Runtime)."""
    path = Path(path)
    fmt = detect_format(path)
    if fmt == "onnx":
        backend = OnnxBackend.from_file(path)
        return LoadedExport(format=fmt, metadata=backend.metadata, path=path, _run=backend.logits)
    import torch

    extra = {METADATA_FILE: ""}
    try:
        if fmt == "exported-program":
            module = torch.export.load(path, extra_files=extra).module()
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    except (RuntimeError, OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise CheckpointError(f"{path}: cannot load {fmt}: {str(exc).strip().splitlines()[0][:200]}") from None
    try:
        props = json.loads(extra[METADATA_FILE] or "{}")
    except json.JSONDecodeError:
        raise CheckpointError(f"{path}: corrupt {METADATA_FILE}") from None
    metadata = ExportMetadata.from_props(props, str(path))

    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return module(torch.from_numpy(x)).float().numpy()

    return LoadedExport(format=fmt, metadata=metadata, path=path, _run=run)
