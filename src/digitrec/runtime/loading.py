"""A model ready to answer: its backend and what turns its logits into answers (`InferenceModel`).

`load_model(path, backend)` is how predict, read and the server get a model:

- `backend="onnx"` (the default) runs ONNX Runtime without importing torch when the model is an
  `.onnx` file or one of the shipped checkpoints, whose `.onnx` twin ships beside it
  (`digitrec.weights.onnx_twin`). Another `.pt` checkpoint is exported once (and cached), which
  needs torch.
- `backend="torch"` loads the `.pt` checkpoint and runs it in PyTorch (the `[train]` extra).

Either way the normalisation, temperature, reject threshold and class labels come from the same
`ExportMetadata` (a checkpoint's own, converted by `metadata_for`), so both backends answer alike.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from digitrec.errors import ConfigError
from digitrec.models.inputs import Normalization
from digitrec.runtime.backends import BACKENDS, DEFAULT_BACKEND, Backend, OnnxBackend, create_backend
from digitrec.runtime.metadata import ExportMetadata
from digitrec.weights import DEFAULT_MODEL_PATH, onnx_twin

if TYPE_CHECKING:
    from digitrec.models.checkpoint import Checkpoint


@dataclass
class InferenceModel:
    """A backend and the metadata of the model it runs. `checkpoint` is the torch checkpoint when
    the model was loaded from one (None for an ONNX file)."""

    backend: Backend
    metadata: ExportMetadata
    path: str | None = None
    checkpoint: Checkpoint | None = None

    @property
    def normalization(self) -> Normalization:
        return Normalization(self.metadata.mean, self.metadata.std)

    @property
    def temperature(self) -> float:
        """Softmax temperature fitted on validation data (1.0 when not calibrated)."""
        return 1.0 if self.metadata.temperature is None else float(self.metadata.temperature)

    @property
    def reject_threshold(self) -> float | None:
        return self.metadata.reject_threshold

    def info(self) -> dict[str, Any]:
        """What the service reports about its model (GET /v1/model)."""
        meta = self.metadata
        return {
            "arch": meta.arch,
            "arch_kwargs": dict(meta.arch_kwargs),
            "metrics": dict(meta.metrics),
            "weights_sha256": meta.weights_sha256,
            "temperature": self.temperature,
            "model_path": self.path,
        }


def model_from_checkpoint(checkpoint: Checkpoint, backend: str = DEFAULT_BACKEND) -> InferenceModel:
    """A loaded checkpoint (torch) run by `backend`."""
    from digitrec.runtime.metadata import metadata_for

    runner = create_backend(backend, checkpoint)
    metadata = runner.metadata if isinstance(runner, OnnxBackend) else metadata_for(checkpoint)
    return InferenceModel(backend=runner, metadata=metadata, path=checkpoint.path, checkpoint=checkpoint)


def load_model(
    path: str | os.PathLike | None = None, backend: str = DEFAULT_BACKEND, device: str = "cpu"
) -> InferenceModel:
    """The model at `path` (None: the shipped default) on `backend`; see the module's docstring."""
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    source = Path(path) if path is not None else DEFAULT_MODEL_PATH
    onnx_file = source if source.suffix.lower() == ".onnx" else onnx_twin(source)
    if onnx_file is not None and source.suffix.lower() == ".onnx" and backend != "onnx":
        raise ConfigError(f"{source}: an ONNX model runs on --backend onnx only")
    if backend == "onnx" and onnx_file is not None and (onnx_file.is_file() or onnx_file == source):
        runner = OnnxBackend.from_file(onnx_file)
        return InferenceModel(backend=runner, metadata=runner.metadata, path=str(onnx_file))
    # a torch checkpoint: the `[train]` extra (the CLI turns a missing torch into one line)
    from digitrec.models.checkpoint import load_checkpoint

    return model_from_checkpoint(load_checkpoint(None if path is None else str(path), device), backend)
