"""`digitrec build-default`: the default model fine-tuned on digits written with other pens and
seen by other scanners, as preprocessing hands them to it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from digitrec.cli import main
from digitrec.making.pens import _training_chunk, _validation_chunk
from digitrec.models.checkpoint import load_checkpoint
from digitrec.reading.conditions import Condition, all_conditions, render_condition, widen_pen
from digitrec.reading.recognize import Recognizer


def ink_pixels(image) -> int:
    return int((np.asarray(image.convert("L")) < 128).sum())


def test_a_marker_range_widens_the_pen_as_asked(mnist):
    digit = mnist.test_images[2].numpy()
    narrow = render_condition(digit, Condition("marker"), np.random.default_rng(1), marker_px=(1, 1))
    broad = render_condition(digit, Condition("marker"), np.random.default_rng(1), marker_px=(7, 7))
    assert ink_pixels(broad) > 1.5 * ink_pixels(narrow)
    # the benchmark's own strengths are drawn as before: the same picture with or without the default
    a = render_condition(digit, Condition("marker", 2), np.random.default_rng(3))
    b = render_condition(digit, Condition("marker", 2), np.random.default_rng(3), marker_px=None)
    assert np.array_equal(np.asarray(a), np.asarray(b))


def test_training_examples_are_preprocessed_labelled_and_decided_by_their_seed(mnist):
    images, labels = mnist.train_images.numpy()[:6], mnist.train_labels.numpy()[:6]
    made, kept = _training_chunk(images, labels, 7, 1.0, (5.0, 6.0))
    again, _ = _training_chunk(images, labels, 7, 1.0, (5.0, 6.0))
    other, _ = _training_chunk(images, labels, 8, 1.0, (5.0, 6.0))
    assert made.dtype == np.uint8 and made.shape == (6, 28, 28) and kept.tolist() == labels.tolist()
    assert np.array_equal(made, again) and not np.array_equal(made, other)
    # thinned: less ink than the same digits written even 3 px wider in their 28x28
    assert (made > 127).sum() < (widen_pen(images, 3) > 127).sum()


def test_validation_examples_cover_every_condition(mnist):
    images, labels = mnist.train_images.numpy()[:2], mnist.train_labels.numpy()[:2]
    made, kept = _validation_chunk(images, labels, 0)
    assert len(made) == 2 * len(all_conditions()) and kept.tolist() == labels.tolist() * len(all_conditions())


def test_build_default_on_a_small_slice_writes_a_calibrated_model_on_the_same_split(tmp_path, capsys):
    out = tmp_path / "default.pt"
    args = ["build-default", "--out", str(out), "--run-dir", str(tmp_path / "run"), "--device", "cpu"]
    args += ["--rendered-digits", "60", "--mix-per-epoch", "40", "--val-per-condition", "3"]
    args += ["--plain-digits", "300", "--epochs", "1"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    summary = json.loads(printed[printed.index("{\n") :])  # after one line per epoch
    assert summary["best_epoch"] in (0, 1) and 0 < summary["calibration"]["temperature"]
    made, shipped = load_checkpoint(str(out)), load_checkpoint(None)
    assert made.arch == shipped.arch and made.meta["pens"]["recipe"]["rendered_digits"] == 60
    assert made.meta["pens"]["base_command"] == shipped.meta["command"]
    assert made.meta["split"]["val_indices_sha256"] == shipped.meta["split"]["val_indices_sha256"]
    assert made.meta["calibration"]["n_val"] == 5000  # fitted on the plain validation split
    figures = made.meta["metrics"]
    assert figures["val_rendered_accuracy"] == summary["val_rendered_accuracy"] > 0.9  # the shipped model's already
    assert figures["val_accuracy_start"] == pytest.approx(shipped.meta["metrics"]["val_accuracy"], abs=0.002)
    assert (tmp_path / "run" / "examples.pt").is_file()  # a rerun reuses the made examples
    assert Recognizer.load(str(out)).predict(np.zeros((28, 28), np.float32)).rejected  # no ink


@pytest.mark.parametrize("flag,value", [("--marker-share", "2"), ("--rendered-digits", "0")])
def test_build_default_refuses_a_bad_recipe_in_one_line(tmp_path, capsys, flag, value):
    assert main(["build-default", "--out", str(tmp_path / "d.pt"), flag, value]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and flag.lstrip("-") in err and not (tmp_path / "d.pt").exists()
