"""Export a checkpoint for deployment: ONNX, torch.export (ExportedProgram) or TorchScript.

Every exported file carries the model *and* what a consumer needs to feed it: normalisation
mean/std, input shape and polarity, class labels, softmax temperature (when calibrated),
architecture, weights checksum and the digitrec version. ONNX keeps them in `metadata_props`;
ExportedProgram and TorchScript keep the same keys as `digitrec.json` inside the archive.

The model is exported in inference form: eval mode, BatchNorm folded into the preceding
convolution / linear layer (`torch.fx.experimental.optimization.fuse`, a float-rounding-level
change, checked by the parity tests) and a dynamic batch dimension, so one file serves a single
image and a batch of thousands alike. ONNX uses the dynamo exporter (`torch.onnx.export(...,
dynamo=True)`, the only one PyTorch still develops); TorchScript is deprecated in PyTorch and is
kept only for old runtimes.
"""

from __future__ import annotations

import copy
import json
import os
import warnings
import zipfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from digitrec.atomic import atomic_write
from digitrec import __version__
from digitrec.models.checkpoint import Checkpoint, weights_sha256
from digitrec.errors import CheckpointError, ConfigError

FORMATS = ("onnx", "exported-program", "torchscript")
SUFFIXES = {".onnx": "onnx", ".pt2": "exported-program", ".ts": "torchscript", ".torchscript": "torchscript"}
EXPORT_FORMAT_VERSION = 1  # bump when the layout of the metadata or the graph's inputs changes
METADATA_FILE = "digitrec.json"  # name of the metadata entry in ExportedProgram / TorchScript archives
INPUT_NAME, OUTPUT_NAME = "input", "logits"
TORCHSCRIPT_NOTE = "TorchScript is deprecated in PyTorch; prefer --format exported-program or onnx"
_EXAMPLE_BATCH = 2  # export-time batch; 2, not 1, so the exporter cannot specialise the batch dim


@dataclass(frozen=True)
class ExportMetadata:
    """What a consumer of an exported model needs to know, all JSON-serialisable."""

    arch: str
    arch_kwargs: dict[str, Any]
    weights_sha256: str
    mean: float  # normalisation on the 0-1 pixel scale: x = (pixel / 255 - mean) / std
    std: float
    temperature: float | None  # softmax(logits / T); None when the checkpoint is not calibrated
    polarity: str = "light ink on dark background"
    input_shape: tuple[int, int, int] = (1, 28, 28)  # (C, H, W) after the batch dim, NCHW float32
    class_labels: tuple[str, ...] = tuple(str(d) for d in range(10))
    input_name: str = INPUT_NAME
    output_name: str = OUTPUT_NAME
    batchnorm_folded: bool = True  # False when the model has a BatchNorm fx could not fold
    digitrec_version: str = __version__
    torch_version: str = str(torch.__version__)
    export_format_version: int = EXPORT_FORMAT_VERSION
    producer: str = "digitrec"

    def to_props(self) -> dict[str, str]:
        """Flat string key/values (ONNX metadata_props): strings as is, the rest as JSON."""
        return {k: v if isinstance(v, str) else json.dumps(v) for k, v in asdict(self).items()}

    @classmethod
    def from_props(cls, props: dict[str, str], where: str = "export") -> "ExportMetadata":
        if props.get("producer") != "digitrec":
            raise CheckpointError(f"{where}: not a digitrec export (no digitrec metadata)")
        fields = cls.__dataclass_fields__
        values: dict[str, Any] = {}
        for key, text in props.items():
            if key not in fields:
                continue  # a newer digitrec may add keys; ignore what this version does not know
            try:
                # annotations are strings here (from __future__ import annotations)
                values[key] = text if fields[key].type == "str" else json.loads(text)
            except json.JSONDecodeError:
                raise CheckpointError(f"{where}: metadata field {key!r} is not valid JSON") from None
        try:
            meta = cls(**values)
        except TypeError as exc:
            raise CheckpointError(f"{where}: incomplete digitrec metadata ({exc})") from None
        # JSON turns tuples into lists; restore them so equality with a fresh export holds
        return cls(**{**asdict(meta), "input_shape": tuple(meta.input_shape), "class_labels": tuple(meta.class_labels)})


@dataclass(frozen=True)
class ExportResult:
    path: Path
    format: str
    size_bytes: int
    metadata: ExportMetadata
    notes: list[str] = field(default_factory=list)


def metadata_for(checkpoint: Checkpoint) -> ExportMetadata:
    calibration = checkpoint.meta.get("calibration") or {}
    temperature = calibration.get("temperature") if isinstance(calibration, dict) else None
    input_info = checkpoint.meta.get("input") or {}
    labels = checkpoint.meta.get("class_labels") or [str(d) for d in range(10)]
    return ExportMetadata(
        arch=checkpoint.arch,
        arch_kwargs=dict(checkpoint.arch_kwargs),
        # recomputed, not copied from meta: the checksum must describe the weights actually exported
        weights_sha256=weights_sha256(checkpoint.model.state_dict()),
        mean=float(checkpoint.normalization.mean),
        std=float(checkpoint.normalization.std),
        temperature=None if temperature is None else float(temperature),
        polarity=str(input_info.get("polarity", ExportMetadata.polarity)),
        class_labels=tuple(str(label) for label in labels),
    )


def inference_model(model: nn.Module, device: torch.device | str = "cpu") -> nn.Module:
    """A copy of `model` on `device`, eval mode, BatchNorm folded into the preceding conv/linear.

    Folding needs the model to be traceable by torch.fx; a model that is not stays unfolded
    (same answers, a little slower).
    """
    from torch.fx.experimental.optimization import fuse

    model = copy.deepcopy(model).to(device).eval()
    try:
        return fuse(model).eval()
    except Exception:  # noqa: BLE001 - fx cannot trace every model; folding is only an optimisation
        return model


def prepare(checkpoint: Checkpoint) -> tuple[nn.Module, ExportMetadata]:
    """The inference-form CPU model to export and the metadata that describes it."""
    model = inference_model(checkpoint.model)
    folded = not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    return model, replace(metadata_for(checkpoint), batchnorm_folded=folded)


def _example_input() -> torch.Tensor:
    return torch.zeros(_EXAMPLE_BATCH, 1, 28, 28)  # (B, 1, 28, 28); values do not matter for tracing


def _batch_dim() -> dict[int, Any]:
    return {0: torch.export.Dim("batch", min=1)}


def onnx_bytes(model: nn.Module, metadata: ExportMetadata) -> bytes:
    """Serialized ONNX model (dynamo exporter, dynamic batch) with `metadata` in metadata_props."""
    import onnx

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # exporter chatter, not actionable by a user
        program = torch.onnx.export(
            model, (_example_input(),), dynamo=True, dynamic_shapes=(_batch_dim(),),
            input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], optimize=True, verbose=False,
        )
    proto = program.model_proto
    del proto.metadata_props[:]
    for key, value in metadata.to_props().items():
        proto.metadata_props.add(key=key, value=value)
    proto.producer_name, proto.producer_version = "digitrec", __version__
    proto.doc_string = "digitrec digit classifier: (B, 1, 28, 28) normalised float32 -> (B, 10) logits"
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


def _write_exported_program(model: nn.Module, metadata: ExportMetadata, handle) -> None:
    program = torch.export.export(model, (_example_input(),), dynamic_shapes=(_batch_dim(),))
    torch.export.save(program, handle, extra_files={METADATA_FILE: json.dumps(metadata.to_props())})


def _write_torchscript(model: nn.Module, metadata: ExportMetadata, handle) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # the deprecation is reported once, in ExportResult.notes
        traced = torch.jit.trace(model, _example_input())
        torch.jit.save(traced, handle, _extra_files={METADATA_FILE: json.dumps(metadata.to_props())})


def format_for(out: str | os.PathLike, fmt: str | None) -> str:
    """The export format: `fmt` when given, else inferred from the file suffix."""
    if Path(out).is_dir():
        raise ConfigError(f"{out}: is a directory; give a file name for the exported model")
    if fmt is None:
        suffix = Path(out).suffix.lower()
        if suffix not in SUFFIXES:
            raise ConfigError(f"cannot tell the export format from {str(out)!r}; pass --format "
                              f"({', '.join(FORMATS)}) or use a suffix {', '.join(SUFFIXES)}")
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


def _atomic_write(path: Path, write: Callable[[Any], None]) -> int:
    """`atomic_write`, with a disk error as one line for the user; returns the size."""
    try:
        atomic_write(path, write)
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path.stat().st_size


def export_model(checkpoint: Checkpoint, out: str | os.PathLike, fmt: str | None = None) -> ExportResult:
    """Write `checkpoint`'s model and metadata to `out` in format `fmt` (onnx, exported-program,
    torchscript; inferred from the suffix when None). The file appears whole or not at all."""
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
    return ExportResult(path, fmt, size, metadata, notes)


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
    """Which of FORMATS a file holds, from its content (not its name)."""
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
        raise CheckpointError(f"{path}: not a readable ONNX model: {str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__}") from None
    return ExportMetadata.from_props({p.key: p.value for p in proto.metadata_props}, str(path))


def load_export(path: str | os.PathLike) -> LoadedExport:
    """Load any digitrec export for CPU inference (ONNX through ONNX Runtime)."""
    path = Path(path)
    fmt = detect_format(path)
    if fmt == "onnx":
        from digitrec.runtime.backends import OnnxBackend

        backend = OnnxBackend.from_file(path)
        return LoadedExport(fmt, backend.metadata, path, backend.logits)
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

    @torch.inference_mode()
    def run(x: np.ndarray) -> np.ndarray:
        return module(torch.from_numpy(x)).float().numpy()

    return LoadedExport(fmt, metadata, path, run)
