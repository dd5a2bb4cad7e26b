"""The shipped `.onnx` files: each shipped checkpoint in inference form, for ONNX Runtime.

`write_onnx_twins(directory)` exports every one of default.pt, reader.pt, checker.pt and marks.pt found in
`directory` to the `.onnx` beside it (`digitrec.runtime.export`: BatchNorm folded, dynamic batch,
the metadata inference needs: normalisation, temperature, reject threshold, class labels,
architecture and the checksum of the `.pt` weights); the reading model's and the checker's twins
are then quantised to int8 (`digitrec.making.quantize`: `read` runs them on every candidate
digit). `digitrec build-weights` does it as its last step; `digitrec build-weights --onnx-only`
does only this, from the `.pt` files already there.
tests/test_light.py checks that the shipped twins answer as their checkpoints do (the int8 ones
within int8 rounding).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from digitrec.making.quantize import calibration_digits, quantize_twin
from digitrec.models.checkpoint import load_checkpoint
from digitrec.runtime.export import export_model
from digitrec.weights import CHECKER_PATH, READER_PATH, SHIPPED_CHECKPOINTS

QUANTIZED = (READER_PATH.name, CHECKER_PATH.name)  # run on every candidate digit of a number


def write_onnx_twins(directory: str | os.PathLike, data_dir: str | None = None) -> dict[str, Any]:
    """Export each shipped checkpoint name found in `directory` to its `.onnx` (replaced
    atomically; the reading model and the checker quantised, calibrated on MNIST from `data_dir`);
    returns, per file written, its size and the weights checksum it carries."""
    written: dict[str, Any] = {}
    for name in (path.name for path in SHIPPED_CHECKPOINTS):
        source = Path(directory) / name
        if not source.is_file():
            continue
        checkpoint = load_checkpoint(str(source))
        result = export_model(checkpoint, source.with_suffix(".onnx"), "onnx")
        if name in QUANTIZED:
            quantize_twin(result.path, calibration_digits(checkpoint, data_dir))
        written[result.path.name] = {
            "from": str(source),
            "bytes": result.path.stat().st_size,
            "weights_sha256": result.metadata.weights_sha256,
            "int8": name in QUANTIZED,
        }
    return written
