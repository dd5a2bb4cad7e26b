"""The shipped `.onnx` files: each shipped checkpoint in inference form, for ONNX Runtime.

`write_onnx_twins(directory)` exports every one of default.pt, reader.pt, checker.pt and marks.pt found in
`directory` to the `.onnx` beside it (`digitrec.runtime.export`: BatchNorm folded, dynamic batch,
the metadata inference needs: normalisation, temperature, reject threshold, class labels,
architecture and the checksum of the `.pt` weights). `digitrec build-weights` does it as its last
step; `digitrec build-weights --onnx-only` does only this, from the `.pt` files already there.
tests/test_light.py checks that the shipped twins answer as their checkpoints do.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from digitrec.models.checkpoint import load_checkpoint
from digitrec.runtime.export import export_model
from digitrec.weights import SHIPPED_CHECKPOINTS


def write_onnx_twins(directory: str | os.PathLike) -> dict[str, Any]:
    """Export each shipped checkpoint name found in `directory` to its `.onnx` (replaced
    atomically); returns, per file written, its size and the weights checksum it carries."""
    written: dict[str, Any] = {}
    for name in (path.name for path in SHIPPED_CHECKPOINTS):
        source = Path(directory) / name
        if not source.is_file():
            continue
        result = export_model(load_checkpoint(str(source)), source.with_suffix(".onnx"), "onnx")
        written[result.path.name] = {
            "from": str(source),
            "bytes": result.size_bytes,
            "weights_sha256": result.metadata.weights_sha256,
        }
    return written
