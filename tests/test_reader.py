"""Reading's own models: `read` classifies the digits it cuts out of a number with a larger model
than `predict` uses, and checks each cut-out is exactly one digit with a small checker; both are
loaded only when a number is read, and both describe themselves."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from digitrec.cli import main
from digitrec.making.cutouts import Job, cut_candidates, cut_true_digits
from digitrec.making.reader import ReaderRecipe, reader_config
from digitrec.models import create_model
from digitrec.models.checkpoint import load_checkpoint, save_checkpoint
from digitrec.models.inputs import Normalization
from digitrec.probability import softmax
from digitrec.reading.preprocess import digit_to_mnist
from digitrec.reading.recognize import CHECKER_PATH, READER_PATH, Recognizer
from digitrec.training.recipes import recipe

NUMBER = "examples/number_scan.png"  # made by examples/make_examples.py: "20250317"


@pytest.fixture(scope="module")
def untrained(tmp_path_factory) -> str:
    """A checkpoint that has learnt nothing: whatever reads a number right with it is the reader."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("untrained") / "untrained.pt"
    save_checkpoint(path, create_model("linear"), "linear", {}, Normalization(), {"split": {"n_val": 5000, "seed": 0}})
    return str(path)


def test_the_shipped_model_reads_numbers_with_the_shipped_reading_model():
    recognizer = Recognizer.load()
    assert recognizer.reader is not recognizer
    assert recognizer.reader.model.path == str(READER_PATH.with_suffix(".onnx"))  # its ONNX twin, the default backend's


def test_predicting_never_loads_the_reading_model():
    recognizer = Recognizer.load()
    with open(NUMBER, "rb") as handle:
        recognizer.predict(handle.read())
    # a predict-only process (the server's predict) never pays for the reading model or the checker;
    # the mark classifier (is it a digit at all?) is predict's own
    assert set(recognizer._companions) == {"marks"}


def test_a_custom_model_reads_with_itself(untrained):
    recognizer = Recognizer.load(untrained)
    assert recognizer.reader is recognizer


def test_the_reading_model_is_what_reads_the_digits(untrained):
    with open(NUMBER, "rb") as handle:
        data = handle.read()
    assert Recognizer.load(untrained).read(data).text != "20250317"
    assert Recognizer.load(untrained, reader=str(READER_PATH)).read(data).text == "20250317"


def test_read_takes_a_reader_flag(untrained, capsys):
    assert main(["read", NUMBER, "--model", untrained, "--reader", str(READER_PATH), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["text"] == "20250317"


def test_a_missing_reader_is_one_line_before_any_image(tmp_path, capsys):
    assert main(["read", NUMBER, "--reader", str(tmp_path / "nope.pt"), "--json"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1 and "nope.pt" in err


@pytest.fixture(scope="module")
def touching_cutouts() -> tuple[np.ndarray, np.ndarray]:
    """Every true digit cut out of 40 numbers of validation digits, all neighbours touching: the
    hard case the reading model was fine-tuned for (about 200 digits, as 0-1 floats)."""
    crops, labels = cut_true_digits(Job(split="val", numbers=40, seed=7, touch_probability=1.0))
    return crops.astype(np.float32) / 255, labels


def test_the_reading_model_describes_itself():
    """How it was trained and calibrated (its split is rebuilt and checked in test_data.py)."""
    reader = load_checkpoint(READER_PATH)
    assert reader.meta["config"]["model"] == reader.arch
    assert "command" in reader.meta and "metrics" in reader.meta
    calibration = reader.meta["calibration"]
    assert 0 < calibration["reject_threshold"] < 1 and calibration["temperature"] > 0


def test_the_reading_models_temperature_calibrates_cut_out_digits(touching_cutouts):
    """The stored temperature was fitted on other validation cut-outs; on these it must still
    give a lower negative log-likelihood than the raw logits (T = 1)."""
    crops, labels = touching_cutouts
    reader = Recognizer(load_checkpoint(READER_PATH))
    raw = reader.logits(list(crops)) * reader.temperature  # Recognizer.logits divides by T
    nll = lambda t: float(-np.log(softmax(raw / t)[np.arange(len(labels)), labels]).mean())  # noqa: E731
    assert reader.temperature != 1.0 and nll(reader.temperature) < 0.8 * nll(1.0)


def test_the_checker_tells_one_digit_from_two(mnist):
    """Whole MNIST test digits are one digit; two of them side by side, squeezed into one 28x28
    candidate as the segmenter would cut a pair it failed to split, are not."""
    checker = Recognizer.load().checker
    digits = mnist.test_images[:400].numpy().astype(np.float32) / 255  # (400, 28, 28)
    singles = [digit_to_mnist(d) for d in digits[:200]]
    pairs = [
        digit_to_mnist(np.concatenate([a[:, 4:24], b[:, 4:24]], axis=1))
        for a, b in zip(digits[200:300], digits[300:400])
    ]
    one = checker.probabilities(singles + pairs)[:, 1]  # P(one digit)
    # 94.5% of these whole digits (93.3% of the first 1,000) since the checker also learnt marker
    # candidates, 96.5% (94.6%) before: it judges real candidates better (balanced accuracy on
    # validation cut-outs 95.7 -> 96.1%), whole clean digits a little more warily
    assert (one[:200] > 0.5).mean() >= 0.93
    assert (one[200:] < 0.5).mean() >= 0.9


def test_the_checker_judges_candidates_cut_out_of_validation_numbers():
    """Its classes are in the order reading assumes, and on every candidate the segmenter cuts
    out of 15 numbers of validation digits (about one in twenty a true digit) it finds both the
    true digits and the rest: balanced accuracy at least 0.9 (chance is 0.5)."""
    assert load_checkpoint(CHECKER_PATH).meta["class_labels"] == ["not one digit", "one digit"]
    crops, labels = cut_candidates(Job(split="val", numbers=15, seed=8, touch_probability=0.3))
    assert 0.02 < labels.mean() < 0.2
    predicted = Recognizer.load().checker.logits(list(crops.astype(np.float32) / 255)).argmax(1)
    recall = [(predicted[labels == c] == c).mean() for c in (0, 1)]
    assert sum(recall) / 2 >= 0.9, recall


def test_the_reading_model_reads_touching_cut_outs_better_than_a_clean_model(touching_cutouts):
    """Fine-tuned on cut-outs, it reads digits cut out of touching neighbours at least 98% right,
    with fewer mistakes than the default model, which only ever saw clean digits."""
    crops, labels = touching_cutouts
    mistakes = {
        name: int((Recognizer(load_checkpoint(path)).probabilities(list(crops)).argmax(1) != labels).sum())
        for name, path in (("reader", READER_PATH), ("default", None))
    }
    assert len(labels) >= 150 and mistakes["reader"] <= 0.02 * len(labels)
    assert mistakes["reader"] < mistakes["default"], mistakes


def test_cut_out_digits_carry_their_true_labels():
    """The reading model's training data: every true digit cut out of a written number, labelled.
    A labelling that slipped by one digit, or cut-outs taken from the wrong candidates, would be
    read as the wrong digit far more often than 1 in 20."""
    crops, labels = cut_true_digits(Job(split="val", numbers=8, seed=3, touch_probability=0.5))
    assert crops.dtype == np.uint8 and crops.shape[1:] == (28, 28) and len(crops) == len(labels) >= 20
    predicted = Recognizer.load().reader.probabilities(list(crops.astype(np.float32) / 255)).argmax(1)
    assert (predicted == labels).mean() >= 0.95


def test_marker_numbers_are_cut_up_into_thicker_digits_with_their_labels():
    """The reading model also learns from numbers written with a marker (`Job.pen_widen`): the
    digits cut out of them carry more ink than the same job's in MNIST's pen, keep their true
    labels (read at least 90% right), and a pen of 0 leaves the numbers as earlier builds cut them."""
    job = Job(split="val", numbers=8, seed=3, touch_probability=0.5)
    plain, plain_labels = cut_true_digits(job)
    assert np.array_equal(plain, cut_true_digits(replace(job, pen_widen=0.0))[0])
    marker, labels = cut_true_digits(replace(job, pen_widen=4.0))
    assert len(labels) >= 20 and (marker > 127).mean() > 1.2 * (plain > 127).mean()
    predicted = Recognizer.load().reader.probabilities(list(marker.astype(np.float32) / 255)).argmax(1)
    assert (predicted == labels).mean() >= 0.9


def test_the_reader_recipe_switches_the_pen_augmentations():
    """Off by default (they cost numbers in MNIST's pen), on with `pen_augment` as in `any_pen`."""
    base = load_checkpoint(READER_PATH)
    assert reader_config(base, ReaderRecipe()).aug_stroke == 0
    pen = reader_config(base, ReaderRecipe(pen_augment=True))
    assert (pen.aug_stroke, pen.aug_blur, pen.aug_lowres) == tuple(
        recipe("any_pen")[k] for k in ("aug_stroke", "aug_blur", "aug_lowres")
    )
    assert pen.aug_degrees == base.meta["config"]["aug_degrees"]  # the base's affine augmentation kept
