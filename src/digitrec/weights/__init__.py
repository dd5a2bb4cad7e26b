"""The files digitrec ships beside its code, and where they are.

`digitrec build-weights` makes the reading files (the reading model, the one-digit checker and the
segment verifier) from the default model and the MNIST training split; see `digitrec.making`.
Each shipped checkpoint `X.pt` has its twin `X.onnx` (the same weights in inference form, with
their metadata), made from it by `digitrec build-weights` (last step) or `--onnx-only`: inference
reads the `.onnx` with ONNX Runtime, fine-tuning starts from the `.pt` (which needs torch).
"""

from __future__ import annotations

import os
from pathlib import Path

WEIGHTS_DIR = Path(__file__).resolve().parent
DEFAULT_MODEL_PATH = WEIGHTS_DIR / "default.pt"  # `predict`: fast_bn_cnn, the `any_pen` recipe
# `read` classifies the digits it cuts out of a number with the `best` recipe's bn_cnn (the seed
# best on validation) fine-tuned on such cut-outs: 6x the compute of the default model per digit,
# which reading a number affords; `predict` keeps the default model.
READER_PATH = WEIGHTS_DIR / "reader.pt"
# The segmenter's one-digit checker: is a candidate cut out of a number exactly one digit (not two
# touching digits, not half of one)? A 2-class fast_bn_cnn.
CHECKER_PATH = WEIGHTS_DIR / "checker.pt"
# The mark classifier: is a 28x28 image a digit at all, or a blob, scribble, letter...? A 7-class
# fast_bn_cnn a quarter of the default model's size, made by `digitrec build-marks`.
MARKS_PATH = WEIGHTS_DIR / "marks.pt"
# The segment verifier's weights and review margin (`digitrec.reading.verifier.Verifier`).
VERIFIER_PATH = WEIGHTS_DIR / "verifier.json"

SHIPPED_CHECKPOINTS = (DEFAULT_MODEL_PATH, READER_PATH, CHECKER_PATH, MARKS_PATH)


def onnx_twin(path: str | os.PathLike) -> Path | None:
    """The shipped `.onnx` made from the shipped checkpoint `path`; None for any other file."""
    resolved = Path(path).resolve()
    return resolved.with_suffix(".onnx") if resolved in SHIPPED_CHECKPOINTS else None
