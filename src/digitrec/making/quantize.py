"""int8 twins of the models `read` runs on every candidate digit: the reading model and the checker.

Reading a number of 6-8 digits shows about 80 candidate digits to the one-digit checker and about
56 to the reading model (`digitrec.reading.search`), and the reading model costs 19 million
multiply-adds a candidate: in float32 the two models were a third of `read`'s time. Their `.onnx`
twins are therefore quantised to int8 (static QDQ quantisation of ONNX Runtime: weights per output
channel, activations per tensor, their ranges calibrated on MNIST training-split digits), which
runs the reading model about 2.9x faster on an AVX-512 AMD EPYC and reads validation numbers as
well as float32 (see the README, "Phone photos and large scans").

Weights keep 7 bits (`reduce_range`): x86 CPUs without VNNI (AVX2 only) sum pairs of u8 x s8
products in 16 bits, which saturates with 8-bit weights; with 7 the sums fit, so every x86 CPU
computes the same integers and gives the same answers. The `.pt` checkpoints stay float32
(`--backend torch` and fine-tuning use them); `quantization` in the twin's metadata says what was
done, and tests/test_light.py checks that a twin answers as its checkpoint within int8 rounding.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from digitrec import __version__
from digitrec.models.checkpoint import Checkpoint
from digitrec.models.inputs import normalize

CALIBRATION_DIGITS = 1000  # training-split digits whose activations set the int8 ranges
CALIBRATION_BATCH = 100
QUANTIZATION = (
    "int8 (ONNX Runtime static QDQ): weights per output channel in 7 bits, activations per tensor "
    f"(uint8), ranges calibrated on {CALIBRATION_DIGITS} MNIST training-split digits"
)


def calibration_digits(checkpoint: Checkpoint, data_dir: str | None = None) -> np.ndarray:
    """(CALIBRATION_DIGITS, 1, 28, 28) float32: the first training-split digits of the checkpoint's
    own split (never a validation digit), normalised as the model's input."""
    from digitrec.training.data import checkpoint_split, load_mnist

    data = load_mnist(data_dir)
    train, _ = checkpoint_split(checkpoint.meta, data.train_labels)
    images = data.train_images[train[:CALIBRATION_DIGITS]].numpy().astype(np.float32) / 255.0
    return normalize(images, checkpoint.normalization)  # (N, 1, 28, 28)


def quantize_twin(path: str | os.PathLike, digits: np.ndarray) -> None:
    """Replace the float32 `.onnx` at `path` with its int8 form (atomically), calibrated on `digits`
    ((N, 1, 28, 28), normalised); its digitrec metadata is kept and says how it was quantised."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Digits(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(digits[i : i + CALIBRATION_BATCH] for i in range(0, len(digits), CALIBRATION_BATCH))

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self.batches, None)
            return None if batch is None else {"input": batch}

    path = Path(path)
    with tempfile.TemporaryDirectory() as tmp:
        prepared, quantized = Path(tmp) / "prepared.onnx", Path(tmp) / "int8.onnx"
        quant_pre_process(str(path), str(prepared))
        quantize_static(
            str(prepared),
            str(quantized),
            Digits(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            reduce_range=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
        )
        proto = onnx.load(str(quantized))
        keep = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
        del proto.metadata_props[:]
        for key, value in {**keep, "quantization": QUANTIZATION}.items():
            proto.metadata_props.add(key=key, value=value)
        proto.producer_name, proto.producer_version = "digitrec", __version__
        onnx.checker.check_model(proto)
        partial = path.with_name(path.name + ".partial")
        partial.write_bytes(proto.SerializeToString())
        os.replace(partial, path)
