"""The files digitrec ships beside its code, and where they are.

`digitrec build-weights` makes the reading files (the reading model, the one-digit checker and the
segment verifier) from the default model and the MNIST training split; see `digitrec.making`.
"""

from __future__ import annotations

from pathlib import Path

WEIGHTS_DIR = Path(__file__).resolve().parent
DEFAULT_MODEL_PATH = WEIGHTS_DIR / "default.pt"  # `predict`: fast_bn_cnn, the `best` recipe
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
