"""The mark classifier: its decision rule, and `digitrec build-marks` end to end on a small slice."""

from __future__ import annotations

import json

import numpy as np
import pytest

from digitrec.cli import main
from digitrec.models.checkpoint import load_checkpoint
from digitrec.reading.marks import MARK_CLASSES, REASONS, mark_reasons
from digitrec.reading.recognize import Recognizer
from digitrec.reading.results import Prepared


def test_a_mark_is_rejected_below_the_digit_threshold_with_the_likeliest_kind():
    probs = np.array(
        [
            [0.90, 0.05, 0.05, 0, 0, 0, 0],  # a digit
            [0.30, 0.10, 0.00, 0, 0, 0.60, 0],  # most like a letter
            [0.20, 0.70, 0.10, 0, 0, 0, 0],  # a blob
        ]
    )
    assert len(MARK_CLASSES) == probs.shape[1]
    assert mark_reasons(probs, 0.5) == [None, REASONS["letter"], REASONS["blob"]]
    assert mark_reasons(probs, 0.25) == [None, None, REASONS["blob"]]
    assert set(REASONS) == set(MARK_CLASSES[1:])


def test_build_marks_on_a_small_slice_makes_a_classifier_the_recognizer_uses(tmp_path, capsys):
    out = tmp_path / "marks.pt"
    args = ["build-marks", "--out", str(out), "--run-dir", str(tmp_path / "run"), "--device", "cpu"]
    args += ["--plain-digits", "300", "--rendered-digits", "20", "--negatives", "4"]
    args += ["--val-digits", "10", "--val-negatives", "2", "--epochs", "1"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    summary = json.loads(printed[printed.index("{\n") :])  # after one line per epoch
    assert 0 <= summary["digit_threshold"] <= 1 and "val_rejected_by_class" in summary
    checkpoint = load_checkpoint(str(out))
    stored = checkpoint.meta["marks"]
    assert stored["classes"] == list(MARK_CLASSES) and 0 <= stored["digit_threshold"] <= 1
    assert checkpoint.meta["metrics"]["val_negatives_rejected"] >= 0
    assert (tmp_path / "run" / "examples.pt").is_file()  # a rerun reuses the made examples
    recognizer = Recognizer.load(marks=str(out))
    assert recognizer.marks is not None and recognizer.marks.checkpoint.arch == "fast_bn_cnn"


def test_marks_false_reads_with_the_blob_rule():
    assert Recognizer.load(marks=False).marks is None


@pytest.mark.parametrize("flag", ["--epochs", "--negatives"])
def test_build_marks_help_lists_the_recipe(flag, capsys):
    with pytest.raises(SystemExit):
        main(["build-marks", "--help"])
    assert flag in capsys.readouterr().out


def test_the_mark_classifier_judges_the_digit_as_written_not_as_thinned(mnist):
    # A thinned marker digit goes to the digit model; the picture as written goes to the mark
    # classifier, which must refuse a filled blob even when its thinned version looks like a digit.
    recognizer = Recognizer.load()
    seven = mnist.test_images[0].numpy() / 255.0
    yy, xx = np.mgrid[-14:14, -14:14]
    blob = (((yy / 12.0) ** 2 + (xx / 8.0) ** 2) <= 1).astype(np.float32)
    plain, thinned_blob = recognizer.classify(
        [Prepared(name="7", digit28=seven), Prepared(name="blob", digit28=seven, written28=blob)]
    )
    assert plain.digit == 7 and not plain.rejected
    assert thinned_blob.rejected and thinned_blob.reason == REASONS["blob"]
