"""What travels with an exported model: `ExportMetadata`, and `metadata_for(checkpoint)`.

Every exported file carries, beside the model, what a consumer needs to feed it: normalisation
mean/std, input shape and polarity, class labels, softmax temperature (when calibrated),
architecture, weights checksum and the digitrec version. ONNX keeps them in `metadata_props`;
ExportedProgram and TorchScript keep the same keys as `digitrec.json` inside the archive.

It imports no torch: the shipped `.onnx` files are read with ONNX Runtime alone (a base install).
This module is the bottom of `digitrec.runtime`: writing an export (export.py), converting a model
(convert.py) and loading one back (backends.py) all describe the model with the same metadata.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from digitrec import __version__
from digitrec.errors import CheckpointError

if TYPE_CHECKING:
    from digitrec.models.checkpoint import Checkpoint

EXPORT_FORMAT_VERSION = 1  # bump when the layout of the metadata or the graph's inputs changes
METADATA_FILE = "digitrec.json"  # name of the metadata entry in ExportedProgram / TorchScript archives
INPUT_NAME, OUTPUT_NAME = "input", "logits"


@dataclass(frozen=True)
class ExportMetadata:
    """What a consumer of an exported model needs to know, all JSON-serialisable."""

    arch: str
    arch_kwargs: dict[str, Any]
    weights_sha256: str
    mean: float  # normalisation on the 0-1 pixel scale: x = (pixel / 255 - mean) / std
    std: float
    temperature: float | None  # softmax(logits / T); None when the checkpoint is not calibrated
    # confidence below which `predict` rejects (chosen on the validation split by calibration); None: not chosen
    reject_threshold: float | None = None
    metrics: dict[str, Any] = field(default_factory=dict)  # the checkpoint's recorded metrics (test accuracy, ...)
    polarity: str = "light ink on dark background"
    input_shape: tuple[int, int, int] = (1, 28, 28)  # (C, H, W) after the batch dim, NCHW float32
    class_labels: tuple[str, ...] = tuple(str(d) for d in range(10))
    input_name: str = INPUT_NAME
    output_name: str = OUTPUT_NAME
    batchnorm_folded: bool = True  # False when the model has a BatchNorm fx could not fold
    digitrec_version: str = __version__
    torch_version: str = ""  # the torch that exported the model
    export_format_version: int = EXPORT_FORMAT_VERSION
    producer: str = "digitrec"
    quantization: str = ""  # how the weights were quantised ("": float32, as trained)

    def to_props(self) -> dict[str, str]:
        """Flat string key/values (ONNX metadata_props): strings as is, the rest as JSON."""
        return {k: v if isinstance(v, str) else json.dumps(v) for k, v in asdict(self).items()}

    @classmethod
    def from_props(cls, props: dict[str, str], where: str = "export") -> ExportMetadata:
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


def metadata_for(checkpoint: Checkpoint) -> ExportMetadata:
    import torch

    from digitrec.models.checkpoint import weights_sha256

    calibration = checkpoint.meta.get("calibration") or {}
    temperature = calibration.get("temperature") if isinstance(calibration, dict) else None
    threshold = calibration.get("reject_threshold") if isinstance(calibration, dict) else None
    marks = checkpoint.meta.get("marks")
    if threshold is None and isinstance(marks, dict) and marks.get("digit_threshold") is not None:
        # a mark classifier's threshold is on its "digit" class: below it, an image is not a digit
        threshold = marks["digit_threshold"]
    metrics = checkpoint.meta.get("metrics")
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
        reject_threshold=None if threshold is None else float(threshold),
        metrics=dict(metrics) if isinstance(metrics, dict) else {},
        polarity=str(input_info.get("polarity", ExportMetadata.polarity)),
        class_labels=tuple(str(label) for label in labels),
        torch_version=str(torch.__version__),
    )
