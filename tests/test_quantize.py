"""The int8 twins (`digitrec.making.quantize`): remade from the shipped checkpoints, they are the
shipped files; and calibration never looks at a validation digit."""

from __future__ import annotations

import shutil

import numpy as np
import onnx

from digitrec.making.onnx_twins import write_onnx_twins
from digitrec.making.quantize import CALIBRATION_DIGITS, calibration_digits
from digitrec.models.checkpoint import load_checkpoint
from digitrec.training.data import checkpoint_split, load_mnist
from digitrec.weights import CHECKER_PATH, READER_PATH, onnx_twin


def test_remade_int8_twins_are_the_shipped_ones(tmp_path):
    """`digitrec build-weights --onnx-only` on the shipped checkpoints gives the shipped int8 files:
    the quantisation is reproducible, and the shipped files are what it makes."""
    for source in (READER_PATH, CHECKER_PATH):
        shutil.copy(source, tmp_path / source.name)
    written = write_onnx_twins(tmp_path)
    assert sorted(written) == ["checker.onnx", "reader.onnx"] and all(w["int8"] for w in written.values())
    for source in (READER_PATH, CHECKER_PATH):
        made, shipped = (onnx.load(str(p)) for p in (tmp_path / f"{source.stem}.onnx", onnx_twin(source)))
        assert made.graph.SerializeToString() == shipped.graph.SerializeToString(), source.name
        assert {p.key: p.value for p in made.metadata_props} == {p.key: p.value for p in shipped.metadata_props}


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
