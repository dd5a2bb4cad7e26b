"""Calibration: ECE on hand-made cases, temperature recovery, and the checkpoint round trip."""

from __future__ import annotations

import hashlib
import math

import pytest
import torch

from digitrec.errors import CheckpointError
from digitrec.evaluation.calibration import (
    calibrate_checkpoint,
    calibrate_logits,
    fit_temperature,
    nll,
    probabilities,
)
from digitrec.evaluation.reliability import expected_calibration_error, reliability
from digitrec.models.checkpoint import load_checkpoint, read_payload, save_payload
from digitrec.training.config import TrainConfig
from digitrec.training.data import checkpoint_split, stratified_split
from digitrec.training.loop import train


def test_ece_hand_computed():
    # Four bins of width 0.25; confidences 0.6 and 0.7 land in (0.5, 0.75], 0.9 and 0.9 in (0.75, 1].
    probs = torch.tensor([[0.6, 0.4], [0.7, 0.3], [0.9, 0.1], [0.1, 0.9]])
    labels = torch.tensor([0, 1, 0, 1])
    rel = reliability(probs, labels, n_bins=4)
    # bin (0.5, 0.75]: conf mean 0.65, accuracy 0.5 -> gap 0.15, weight 2/4
    # bin (0.75, 1]:   conf mean 0.9,  accuracy 1.0 -> gap 0.10, weight 2/4
    assert rel.count == [0, 0, 2, 2]
    assert rel.confidence[2] == pytest.approx(0.65) and rel.accuracy[2] == pytest.approx(0.5)
    assert rel.confidence[3] == pytest.approx(0.9) and rel.accuracy[3] == pytest.approx(1.0)
    assert math.isnan(rel.confidence[0]) and math.isnan(rel.accuracy[1])
    assert rel.ece == pytest.approx(0.5 * 0.15 + 0.5 * 0.10)
    assert expected_calibration_error(probs, labels, n_bins=4) == pytest.approx(0.125)
    assert rel.edges == pytest.approx([0, 0.25, 0.5, 0.75, 1.0])


def test_ece_zero_when_confidence_matches_accuracy_and_bin_edges_are_right_closed():
    # Confidence exactly 0.75 falls in (0.5, 0.75]; 3 of 4 right at 0.75 -> perfectly calibrated.
    probs = torch.tensor([[0.75, 0.25]] * 4)
    labels = torch.tensor([0, 0, 0, 1])
    rel = reliability(probs, labels, n_bins=4)
    assert rel.count == [0, 0, 4, 0]
    assert rel.ece == pytest.approx(0.0, abs=1e-12)


def _sample_labels(logits: torch.Tensor, seed: int) -> torch.Tensor:
    return torch.multinomial(torch.softmax(logits, 1), 1, generator=torch.Generator().manual_seed(seed)).flatten()


def test_fit_temperature_recovers_a_known_temperature():
    # Labels drawn from softmax(z / 2.5) make T = 2.5 the true temperature of the logits z.
    g = torch.Generator().manual_seed(0)
    z = torch.randn(20000, 10, generator=g) * 6
    labels = _sample_labels(z / 2.5, seed=1)
    assert fit_temperature(z, labels) == pytest.approx(2.5, rel=0.05)
    # and an under-confident model (true T below 1)
    labels = _sample_labels(z / 0.6, seed=2)
    assert fit_temperature(z, labels) == pytest.approx(0.6, rel=0.05)


def test_calibration_lowers_nll_and_ece_and_keeps_predictions():
    g = torch.Generator().manual_seed(3)
    z = torch.randn(5000, 10, generator=g) * 8
    labels = _sample_labels(z / 3.0, seed=4)  # logits three times too sharp: overconfident
    fit = calibrate_logits(z, labels)
    assert fit.nll_after < fit.nll_before - 0.1
    assert fit.ece_after < fit.ece_before / 2
    assert fit.n == 5000
    assert nll(z, labels, fit.temperature) == pytest.approx(fit.nll_after)
    probs = probabilities(z, fit.temperature)
    assert torch.equal(probs.argmax(1), z.argmax(1))  # temperature never changes the answer
    assert torch.allclose(probs.sum(1), torch.ones(5000), atol=1e-5)


def test_probabilities_rejects_non_positive():
    with pytest.raises(ValueError):
        probabilities(torch.zeros(1, 10), 0.0)


def _sha(idx: torch.Tensor) -> str:
    return hashlib.sha256(idx.numpy().tobytes()).hexdigest()


def test_checkpoint_split_rebuilds_and_checks_the_recorded_split(mnist):
    train, val = stratified_split(mnist.train_labels, 5000, 7)
    meta = {"split": {"seed": 7, "n_val": 5000, "val_indices_sha256": _sha(val)}}
    rebuilt = checkpoint_split(meta, mnist.train_labels)
    assert torch.equal(rebuilt[0], train) and torch.equal(rebuilt[1], val)
    meta["split"]["val_indices_sha256"] = "0" * 64
    with pytest.raises(CheckpointError, match="validation split"):
        checkpoint_split(meta, mnist.train_labels)
    with pytest.raises(CheckpointError, match="no validation split"):
        checkpoint_split({}, mnist.train_labels)
    with pytest.raises(CheckpointError, match="no checksum"):  # an unchecked split is not trusted either
        checkpoint_split({"split": {"seed": 7, "n_val": 5000}}, mnist.train_labels)


@pytest.fixture(scope="module")
def overconfident_checkpoint(mnist, tmp_path_factory):
    """A model trained briefly on a slice (limit_eval exercises the truncated-split path), and a
    copy whose final layer is scaled by 4, so its logits are exactly four times too sharp."""
    out = tmp_path_factory.mktemp("calib")
    config = TrainConfig(model="fast_ref_cnn", epochs=1, limit_train=1000, limit_eval=600, batch_size=64, device="cpu")
    result = train(config, mnist, out)
    payload = read_payload(result.checkpoint)
    last = [k for k, v in payload["state_dict"].items() if v.dim() == 2][-1].rsplit(".", 1)[0]
    for suffix in ("weight", "bias"):
        payload["state_dict"][f"{last}.{suffix}"] *= 4
    sharp = save_payload(payload, out / "sharp.pt")
    return result.checkpoint, sharp


def test_calibrate_checkpoint_stores_temperature_and_leaves_weights(mnist, overconfident_checkpoint):
    plain, sharp = overconfident_checkpoint
    before = read_payload(sharp)
    plain_cal = calibrate_checkpoint(plain, mnist)
    sharp_cal = calibrate_checkpoint(sharp, mnist)
    # Scaling the logits by 4 scales the fitted temperature by 4.
    assert sharp_cal["temperature"] == pytest.approx(4 * plain_cal["temperature"], rel=1e-3)
    assert sharp_cal["n_val"] == 600
    assert sharp_cal["nll_after"] < sharp_cal["nll_before"]
    assert sharp_cal["ece_after"] < sharp_cal["ece_before"]
    assert sharp_cal["nll_after"] == pytest.approx(plain_cal["nll_after"], rel=1e-3)
    after = read_payload(sharp)
    assert after["calibration"] == sharp_cal
    assert after["weights_sha256"] == before["weights_sha256"]
    assert all(torch.equal(after["state_dict"][k], v) for k, v in before["state_dict"].items())
    assert load_checkpoint(sharp).temperature == pytest.approx(sharp_cal["temperature"])
    # the reject threshold is chosen on calibrated probabilities, so it does not depend on the logit scale
    assert 0 < sharp_cal["reject_threshold"] <= 1
    assert sharp_cal["reject_threshold"] == pytest.approx(plain_cal["reject_threshold"], abs=0.02)


def test_calibrate_checkpoint_refuses_a_missing_file(mnist, tmp_path):
    with pytest.raises(CheckpointError):
        calibrate_checkpoint(tmp_path / "nope.pt", mnist)
