"""`digitrec build-weights` end to end on a small slice: the three files it makes work.

Every check is on data the build never saw: digits and candidates cut out of other validation
numbers, and numbers written for the test. A slice this small cannot match the shipped files;
the bars below are what it must still clear.
"""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest

from digitrec.cli import main
from digitrec.making.cutouts import Job, cut_candidates, cut_true_digits, split_digits, write_numbers
from digitrec.making.verifier_fit import ReadingModels
from digitrec.models.checkpoint import load_checkpoint
from digitrec.reading import synth
from digitrec.reading.recognize import Recognizer
from digitrec.reading.segment import FEATURES, analyse_line, decode_line
from digitrec.reading.verifier import load_verifier
from digitrec.weights import DEFAULT_MODEL_PATH

SLICE = [
    "--reader-base",
    str(DEFAULT_MODEL_PATH),
    "--reader-numbers",
    "40",
    "--reader-val-numbers",
    "15",
    "--reader-pen-numbers",
    "15",
    "--reader-pen-val-numbers",
    "8",
    "--reader-epochs",
    "1",
    "--checker-numbers",
    "30",
    "--checker-val-numbers",
    "15",
    "--checker-pen-numbers",
    "10",
    "--checker-pen-val-numbers",
    "5",
    "--checker-epochs",
    "1",
    "--verifier-numbers",
    "25",
    "--verifier-holdout",
    "15",
    "--verifier-epochs",
    "2",
    "--limit-eval",
    "300",
    "--baseline-verifier",
    "none",
    "--jobs",
    "2",
]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("weights")
    stdout = io.StringIO()  # capsys is per test; the build runs once for the module
    with contextlib.redirect_stdout(stdout):
        code = main(["build-weights", "--out", str(out), *SLICE, "--json"])
    assert code == 0
    return out, json.loads(stdout.getvalue())


def as_float(crops: np.ndarray) -> list[np.ndarray]:
    return list(crops.astype(np.float32) / 255)


def test_the_build_writes_the_three_files_and_what_it_did(built):
    out, summary = built
    assert {p.name for p in out.iterdir()} >= {"reader.pt", "checker.pt", "verifier.json"}
    assert summary["reader"]["file"] == str(out / "reader.pt")
    reader = load_checkpoint(out / "reader.pt")
    assert reader.meta["reader"]["made_by"] == "digitrec build-weights" and reader.meta["reader"]["train_cutouts"] > 100
    assert reader.meta["config"]["init_from"] == str(DEFAULT_MODEL_PATH)
    # it learnt from marker numbers too (without the `any_pen` augmentations: they cost plain numbers)
    assert reader.meta["reader"]["recipe"]["pen_numbers"] == 15 and reader.meta["config"]["aug_stroke"] == 0
    assert any(p.name.startswith("digits-train-15-") and "-pen4-" in p.name for p in (out / "build").iterdir())
    # and so did the checker, from their candidates
    assert load_checkpoint(out / "checker.pt").meta["checker"]["recipe"]["pen_numbers"] == 10
    assert any(p.name.startswith("candidates-val-5-") and "-pen4-" in p.name for p in (out / "build").iterdir())
    assert reader.meta["split"]["val_indices_sha256"] == load_checkpoint().meta["split"]["val_indices_sha256"]
    assert (out / "build" / "reader" / "last.pt").is_file() and (out / "build" / "checker" / "metrics.jsonl").is_file()


def test_the_reading_model_reads_held_out_cut_outs(built):
    """At least 95% of the digits cut out of 12 other validation numbers (half the neighbours
    touching), with a calibrated temperature and a reject threshold."""
    out, _ = built
    crops, labels = cut_true_digits(Job(split="val", numbers=12, seed=11, touch_probability=0.5))
    reader = Recognizer(load_checkpoint(out / "reader.pt"))
    accuracy = (reader.probabilities(as_float(crops)).argmax(1) == labels).mean()
    assert len(labels) >= 40 and accuracy >= 0.95, accuracy
    assert reader.temperature != 1.0 and 0 < reader.reject_threshold < 1


def test_the_checker_beats_chance_on_held_out_candidates(built):
    out, _ = built
    crops, labels = cut_candidates(Job(split="val", numbers=10, seed=12, touch_probability=0.3))
    checker = Recognizer(load_checkpoint(out / "checker.pt"))
    predicted = checker.logits(as_float(crops)).argmax(1)
    recall = [(predicted[labels == c] == c).mean() for c in (0, 1)]
    assert sum(recall) / 2 >= 0.75 and min(recall) >= 0.6, recall  # chance: 0.5 balanced


def test_the_fitted_verifier_loads_and_reads_numbers(built):
    """The verifier file holds a weight per feature, fitted here (no baseline was given); read
    with the models it was fitted for, it reads most of 12 new validation numbers exactly, and a
    Recognizer given it and the new reading model reads the example scan."""
    out, _ = built
    verifier = load_verifier(out / "verifier.json")
    assert set(verifier.weights) == set(FEATURES) and verifier.fit["weights_from"] in ("logistic", "perceptron")
    models = ReadingModels.load(out / "reader.pt", out / "checker.pt", verifier)
    images, labels = split_digits("val", str(out / "reader.pt"))
    numbers = list(write_numbers(images, labels, 12, seed=13, touch_probability=0.2))
    readings = [
        decode_line(analyse_line(models, synth.encode(n.image)), models.reader.reject_threshold, verifier)
        for n, _ in numbers
    ]
    exact = np.mean([r.text == n.text for r, (n, _) in zip(readings, numbers)])
    assert exact >= 0.75, exact
    recognizer = Recognizer.load(reader=str(out / "reader.pt"), verifier=verifier)
    with open("examples/number_scan.png", "rb") as handle:
        assert recognizer.read(handle.read()).text == "20250317"


def test_a_finished_build_resumes_without_redoing_anything(built, capsys):
    out, _ = built
    before = {name: (out / name).stat().st_mtime_ns for name in ("reader.pt", "checker.pt", "verifier.json")}
    assert main(["build-weights", "--out", str(out), *SLICE, "--resume"]) == 0
    assert "already made; kept" in capsys.readouterr().err
    assert before == {name: (out / name).stat().st_mtime_ns for name in before}


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--reader-numbers", "0"),
        ("--checker-epochs", "0"),
        ("--jobs", "0"),
        ("--reader-pen-numbers", "-1"),
        ("--checker-pen-val-numbers", "-1"),
    ],
)
def test_sizes_below_one_are_one_line_errors(flag, value, tmp_path, capsys):
    """(Marker numbers may be 0: none.)"""
    assert main(["build-weights", "--out", str(tmp_path), flag, value]) == 2
    err = capsys.readouterr().err
    assert flag in err and len(err.strip().splitlines()) == 1
    assert not any(tmp_path.iterdir())
