"""The int8 twins (`digitrec.making.quantize`): remade from the shipped checkpoints, they answer as
the shipped files; and calibration never looks at a validation digit."""

from __future__ import annotations

import shutil

import numpy as np
import onnx

from digitrec.making.onnx_twins import write_onnx_twins
from digitrec.making.quantize import CALIBRATION_DIGITS, calibration_digits
from digitrec.models.checkpoint import load_checkpoint
from digitrec.models.inputs import Normalization, normalize
from digitrec.runtime.backends import OnnxBackend
from digitrec.training.data import checkpoint_split, load_mnist
from digitrec.weights import CHECKER_PATH, READER_PATH, onnx_twin


def test_remade_int8_twins_answer_as_the_shipped_ones(tmp_path, mnist):
    """`digitrec build-weights --onnx-only` on the shipped checkpoints remakes the shipped int8 files:
    the same metadata, and the same answers on test digits (the graphs' node names may differ: the
    exporter numbers them by what it exported before in the same process)."""
    for source in (READER_PATH, CHECKER_PATH):
        shutil.copy(source, tmp_path / source.name)
    written = write_onnx_twins(tmp_path)
    assert sorted(written) == ["checker.onnx", "reader.onnx"] and all(w["int8"] for w in written.values())
    digits = normalize(mnist.test_images[:500].numpy().astype(np.float32) / 255.0, Normalization(0.1307, 0.3081))
    for source in (READER_PATH, CHECKER_PATH):
        paths = (tmp_path / f"{source.stem}.onnx", onnx_twin(source))
        made, shipped = (onnx.load(str(p)) for p in paths)
        assert {p.key: p.value for p in made.metadata_props} == {p.key: p.value for p in shipped.metadata_props}
        made_logits, shipped_logits = (OnnxBackend.from_file(p).logits(digits) for p in paths)
        assert np.array_equal(made_logits.argmax(1), shipped_logits.argmax(1)), source.name
        assert float(np.abs(made_logits - shipped_logits).max()) <= 1e-4, source.name


def test_calibration_digits_come_from_the_training_split(mnist):
    checkpoint = load_checkpoint(str(READER_PATH))
    digits = calibration_digits(checkpoint)
    assert digits.shape == (CALIBRATION_DIGITS, 1, 28, 28) and digits.dtype == np.float32
    train, val = checkpoint_split(checkpoint.meta, load_mnist().train_labels)
    norm = checkpoint.normalization
    pixels = np.rint((digits[:, 0] * np.float32(norm.std) + np.float32(norm.mean)) * 255).astype(np.uint8)
    images = mnist.train_images.numpy()
    assert np.array_equal(pixels, images[train[:CALIBRATION_DIGITS].numpy()])
    assert not set(train[:CALIBRATION_DIGITS].tolist()) & set(val.tolist())
