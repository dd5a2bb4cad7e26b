"""Honest flags (issue 15 part 4): every needs_review carries its reason, and the operating point
(review margin, review confidence) is chosen on an error-reject curve by `digitrec.making.review_fit`."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
from fastapi.testclient import TestClient

from digitrec.cli import main
from digitrec.errors import ConfigError
from digitrec.making import review_fit as rf
from digitrec.making.build import BuildPlan, build_weights
from digitrec.reading import segment as sg
from digitrec.reading import synth
from digitrec.reading.confidence import MARK_SURE_CAP, NUMBER_FEATURES, NumberModel, number_features
from digitrec.reading.recognize import Recognizer
from digitrec.reading.verifier import Verifier, load_verifier
from digitrec.server import create_app
from digitrec.weights import CHECKER_PATH, READER_PATH, VERIFIER_PATH


@pytest.fixture(scope="module")
def recognizer() -> Recognizer:
    return Recognizer.load()


@pytest.fixture(scope="module")
def numbers(mnist) -> list[synth.SynthNumber]:
    """Ten numbers of test digits in the benchmark's styles, some touching."""
    images, labels = mnist.test_images[:400].numpy(), mnist.test_labels[:400].numpy()
    return [number for number, _ in rf.photographed_numbers(images, labels, 10, seed=5, touch_probability=0.4)]


def wary(verifier: Verifier) -> Verifier:
    """Bounds no reading clears: every number is flagged, for one reason or both."""
    return replace(verifier, review_margin=1e9, review_confidence=1.0)


def doubting(verifier: Verifier) -> Verifier:
    """A number model that finds every reading doubtful (and no other bound)."""
    model = NumberModel(bias=-1.0, weights={name: 0.0 for name in NUMBER_FEATURES})  # p = 0.27
    return replace(verifier, review_margin=0.0, review_confidence=0.0, number_model=model, review_probability=0.5)


# --- the reason ------------------------------------------------------------------------------------


def test_review_reason_names_the_digit_and_the_other_reading():
    assert sg.review_reason([4, 0, 9, 6], [0.999, 0.9996, 0.998, 0.991], None, 0.995, 1.2) == (
        "digit 6 (position 4) read at 0.991, below 0.995"
    )
    assert sg.review_reason([4, 0, 9], [0.999, 0.999, 0.999], ("409637", 0.8), 0.995, 1.2) == (
        "could also be read as 409637 (margin 0.80 < 1.20)"
    )
    both = sg.review_reason([1, 7], [0.9, 0.8], ("11", 0.5), 0.95, 1.0)
    assert (
        both
        == "digit 7 (position 2) read at 0.800, below 0.950 (and 1 more); could also be read as 11 (margin 0.50 < 1.00)"
    )
    assert sg.review_reason([1, 7], [0.999, 0.999], ("11", 3.0), 0.95, 1.0) is None
    # figures are written with the decimals that tell them apart, never "0.999 below 0.999"
    assert "0.99985, below 0.99990" in (sg.review_reason([3], [0.99985], None, 0.9999, 1.0) or "")


def test_the_review_confidence_never_goes_below_the_reject_threshold():
    v = Verifier(bias=0.0, weights={}, review_margin=1.0, review_confidence=0.5)
    assert sg.review_bound(0.8, v) == 0.8 and sg.review_bound(0.3, v) == 0.5
    assert sg.review_bound(0.8, replace(v, review_confidence=None)) == 0.8


def test_every_flag_has_a_reason(recognizer, numbers):
    """Property: over synthetic numbers, at the shipped bounds and at bounds that flag everything,
    a reading is never needs_review without a reason, and a clean reading has none."""
    threshold = recognizer.reader.reject_threshold
    flagged = 0
    for number in numbers:
        line = sg.analyse_line(recognizer, synth.encode(number.image), keep_digits=True)
        strict, doubtful = wary(recognizer.verifier), doubting(recognizer.verifier)
        for verifier in (recognizer.verifier, strict, doubtful):
            reading = sg.decode_line(line, threshold, verifier)
            if reading.rejected:
                assert reading.reason
                continue
            assert bool(reading.reason) == reading.needs_review, reading
            flagged += reading.needs_review
            if verifier is strict:
                assert reading.needs_review and "below 1.000" in (reading.reason or "")
            if verifier is doubtful:
                assert reading.reason and reading.reason.startswith("the number is right with probability 0.269")
        # the fit sees the very features the reader computes, the mark classifier's say included
        check = sg.span_check(line, recognizer.expected_digit_opinions)
        seen = rf.number_evidence(line, number.text, threshold, recognizer.verifier, check)
        if not seen.rejected:
            paths = sg.decode_paths(line, recognizer.verifier)
            marks = check([(i, j) for i, j, _ in paths[0].digits]).digit
            assert len(marks) == len(seen.digits) and all(0.0 <= p <= 1.0 for p in marks)
            assert seen.features() == pytest.approx(sg.reading_features(line, paths, recognizer.verifier, None, marks))
    assert flagged >= 2 * len(numbers)  # the wary bounds and the doubting model flagged every number read


def test_number_features_and_model():
    f = number_features("12", [0.99, 0.5], [("17", 2.0), ("112", 3.0)], [4.0, -1.0], [2.0, 3.0])
    assert f["gap"] == 2.0 and f["min_digit_logit"] == pytest.approx(0.0) and f["other_length"] == 0.0
    assert f["log_posterior"] == pytest.approx(-np.log1p(np.exp(-2.0) + np.exp(-3.0)))
    assert f["min_segment_log_odds"] == -1.0 and f["min_checker_log_odds"] == 2.0 and f["digits"] == 2.0
    assert f["min_mark_log_odds"] == MARK_SURE_CAP  # no mark classifier: nothing against the digits
    # the mark classifier's say counts as doubt only: a sure digit earns no more than the cap
    assert number_features("7", [0.999], [], [5.0], [], [0.99999])["min_mark_log_odds"] == MARK_SURE_CAP
    alone = number_features("7", [0.999], [], [5.0], [], [0.5])
    assert alone["gap"] == 15.0 and alone["log_posterior"] == 0.0 and alone["min_checker_log_odds"] == 0.0
    assert alone["min_mark_log_odds"] == pytest.approx(0.0)
    model = NumberModel(bias=0.5, weights={name: 0.0 for name in NUMBER_FEATURES} | {"gap": 1.0})
    assert model.probability(f) == pytest.approx(1 / (1 + np.exp(-2.5)))
    assert NumberModel.from_dict(model.to_dict()) == model
    # a model fitted before a feature was added weighs the features it names, as it did
    older = NumberModel(bias=0.5, weights={"gap": 1.0})
    assert older.probability({"gap": 2.0}) == pytest.approx(model.probability(f))
    with pytest.raises(ValueError, match="unknown features: hunch"):
        NumberModel(bias=0.0, weights={"gap": 1.0, "hunch": 2.0})


# --- the operating point -----------------------------------------------------------------------------


def evidence(right: bool, confidence: float, gap: float | None) -> rf.NumberEvidence:
    return rf.NumberEvidence(
        truth="12",
        text="12" if right else "17",
        rejected=False,
        digits=(1, 2),
        confidences=(0.9999, confidence),
        runner_up=None if gap is None else ("17", gap),
    )


def tiny_set() -> list[rf.NumberEvidence]:
    """20 numbers: 16 right and sure; 2 right with a close runner-up; 2 wrong: one with a
    low-confidence digit, one with a close runner-up."""
    return (
        [evidence(True, 0.9999, 5.0)] * 16
        + [evidence(True, 0.9999, 1.0)] * 2
        + [evidence(False, 0.9, 4.0), evidence(False, 0.9999, 0.5)]
    )


def test_the_curve_and_the_chosen_point_on_a_tiny_set():
    points = rf.error_reject_curve(tiny_set(), 0.5, margins=(0.0, 0.75, 2.0, 4.5), confidences=(0.0, 0.95))
    by = {(p.margin, p.confidence): p for p in points}
    assert by[(0.0, 0.0)].review_rate == 0 and by[(0.0, 0.0)].silent_rate == pytest.approx(0.1)
    assert by[(0.75, 0.95)].review_rate == pytest.approx(0.1) and by[(0.75, 0.95)].silent_rate == 0
    assert by[(2.0, 0.95)].review_rate == pytest.approx(0.2) and by[(2.0, 0.95)].silent_rate == 0
    assert all(p.exact == pytest.approx(0.9) for p in points)
    chosen, met = rf.choose_point(points, target=0.0)
    assert met and (chosen.margin, chosen.confidence) == (0.75, 0.95)  # no silent error, fewest flags
    chosen, met = rf.choose_point(points, target=0.05)  # one silent error in 20 is allowed
    assert met and chosen.review_rate == pytest.approx(0.05) and chosen.silent_rate == pytest.approx(0.05)
    front = rf.pareto(points)
    assert [round(p.review_rate, 6) for p in front] == [0, 0.05, 0.1]
    assert [round(p.silent_rate, 6) for p in front] == [0.1, 0.05, 0]


def test_a_missed_target_is_said_and_the_fewest_silent_errors_kept():
    points = rf.error_reject_curve(tiny_set()[-1:], 0.5, margins=(0.0, 0.25), confidences=(0.0,))
    chosen, met = rf.choose_point(points, target=0.0)
    assert not met and chosen.silent_rate == 1.0 and chosen.margin == 0.0


def test_fit_review_records_how_the_point_was_chosen(tmp_path):
    shipped = load_verifier()
    fitted = rf.fit_review(shipped, tiny_set(), 0.5, rf.ReviewRecipe(numbers=20, target=0.0))
    # the first margin above the close wrong reading's gap (0.5), a confidence above its weak digit's (0.9)
    assert (fitted.review_margin, fitted.review_confidence) == (0.75, 0.95)
    record = fitted.fit["review"]
    assert record["split"] == "validation" and record["target_met"] and record["numbers"] == 20
    assert record["chosen"]["silent_rate"] == 0 and record["curve"]
    assert fitted.weights == shipped.weights and fitted.bias == shipped.bias  # only the bounds change
    again = load_verifier(fitted.save(tmp_path / "v.json"))
    assert again == fitted and again.review_confidence == fitted.review_confidence


def test_a_verifier_file_without_a_review_confidence_still_loads(tmp_path):
    data = json.loads(VERIFIER_PATH.read_text())
    data.pop("review_confidence", None)
    (tmp_path / "old.json").write_text(json.dumps(data))
    assert load_verifier(tmp_path / "old.json").review_confidence is None
    with pytest.raises(ValueError, match="probability"):
        replace(load_verifier(), review_confidence=1.5)


def test_build_weights_only_review_rechooses_the_point(tmp_path, numbers):
    out = tmp_path / "w"
    with pytest.raises(ConfigError, match="build them first"):
        build_weights(BuildPlan(out=out, work=tmp_path / "work", only=("review",)), data=None)  # type: ignore[arg-type]
    for path in (READER_PATH, CHECKER_PATH, VERIFIER_PATH):
        shutil.copy(path, out / path.name)
    plan = BuildPlan(out=out, work=tmp_path / "work", only=("review",), review=rf.ReviewRecipe(numbers=6))
    summary = build_weights(plan, data=None)  # type: ignore[arg-type]
    assert set(summary) == {"out", "work", "review"}
    made = load_verifier(out / "verifier.json")
    assert made.fit["review"]["numbers"] == 6 and made.review_confidence is not None
    assert made.weights == load_verifier().weights  # the segmenter's weights are untouched
    with pytest.raises(ConfigError, match="unknown build step"):
        build_weights(replace(plan, only=("reviews",)), data=None)  # type: ignore[arg-type]


# --- where people see it ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def flagged_number(tmp_path_factory, numbers) -> tuple[str, str]:
    """A number image and a verifier file whose bounds flag it."""
    folder = tmp_path_factory.mktemp("flagged")
    path = folder / "number.png"
    numbers[0].image.save(path)
    strict = folder / "verifier.json"
    wary(load_verifier()).save(strict)
    return str(path), str(strict)


def test_the_cli_shows_the_reason(flagged_number, capsys):
    image, strict = flagged_number
    assert main(["read", "--verifier", strict, image]) == 0
    row = capsys.readouterr().out.splitlines()[1]
    assert "\tneeds review: digit " in row and "below 1.000" in row
    assert main(["read", "--csv", "--verifier", strict, image]) == 0
    header, line = capsys.readouterr().out.splitlines()[:2]
    assert header.split(",")[4] == "reason" and "below 1.000" in line


def test_the_api_gives_the_reason(flagged_number):
    image, strict = flagged_number
    recognizer = Recognizer.load(verifier=load_verifier(strict))
    with TestClient(create_app(recognizer=recognizer)) as client:
        with open(image, "rb") as handle:
            body = client.post("/v1/read", files={"file": ("number.png", handle, "image/png")}).json()
    assert body["needs_review"] is True and "below 1.000" in body["reason"]
    assert body["reason"] == recognizer.read(image).reason


def test_the_number_model_is_chosen_when_only_it_catches_the_errors(tmp_path):
    """Numbers read wrong with sure digits and a distant runner-up, but a doubtful segment (a
    "14" read as a "4"): no margin or digit confidence catches them, the number model does."""

    def number(right: bool, k: int) -> rf.NumberEvidence:
        return rf.NumberEvidence(
            truth="14",
            text="14" if right else "4",
            rejected=False,
            digits=(1, 4) if right else (4,),
            confidences=(0.9999, 0.9999 - 0.00001 * (k % 5)) if right else (0.9999,),
            runner_up=("11", 6.0),
            gaps=(6.0,),
            segment_log_odds=(8.0 + k % 3, 7.0) if right else (-5.0 + k % 2,),
            checker_log_odds=(4.0, 3.0) if right else (-2.0,),
        )

    evidence = [number(True, k) for k in range(36)] + [number(False, k) for k in range(4)]
    fitted = rf.fit_review(load_verifier(), evidence, 0.5, rf.ReviewRecipe(numbers=40, target=0.0))
    chosen = fitted.fit["review"]["chosen"]
    assert chosen["silent_rate"] == 0 and chosen["review_rate"] == pytest.approx(0.1) and chosen["probability"] > 0
    assert fitted.number_model is not None and fitted.review_probability == chosen["probability"]
    assert load_verifier(fitted.save(tmp_path / "v.json")) == fitted
