"""Calibration: fitting the temperature that makes a reported confidence of 0.9 right nine times in ten.

The error it lowers, the expected calibration error (ECE), is measured in
`digitrec.evaluation.reliability` (numpy). Temperature
scaling (Guo et al., 2017) divides the logits by one scalar T > 0 fitted on the VALIDATION split
by minimising the negative log-likelihood; it never changes which class wins, only how sure the
model claims to be. The fitted T is stored in the checkpoint (``meta["calibration"]``) and read
back through ``Checkpoint.temperature``, so every confidence the product reports uses it.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from digitrec.evaluation.reliability import DEFAULT_BINS, expected_calibration_error
from digitrec.models.checkpoint import model_from_payload, read_payload, save_payload
from digitrec.models.inputs import Normalization
from digitrec.probability import softmax
from digitrec.training.data import Mnist, checkpoint_split
from digitrec.training.metrics import predict_logits

# Search range for T. Well-trained MNIST models land in 0.5-3; the bounds only stop a
# (nearly) separable validation set from driving T towards 0 or infinity.
T_MIN, T_MAX = 0.05, 20.0

# Accepted digits should be right at least this often on validation: at most 1 in 500 wrong. A
# target at the model's own accuracy (~99.5%) would reject nothing; 99.8% costs ~1% of digits.
TARGET_PRECISION = 0.998
MIN_COVERAGE = 0.9  # ... but never reject more than 10% of validation digits to get there
CALIBRATION_METHOD = "temperature scaling, NLL on the validation split"  # what `meta["calibration"]` says


@dataclass(frozen=True)
class TemperatureFit:
    temperature: float
    nll_before: float  # mean NLL (nats) at T = 1
    nll_after: float  # mean NLL (nats) at the fitted T
    ece_before: float
    ece_after: float
    n: int


def probabilities(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """`digitrec.probability.softmax` for the tensors evaluation works with: (N, C) float32."""
    return torch.from_numpy(softmax(logits, temperature)).float()


def nll(logits: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood (nats) of softmax(logits / T)."""
    return F.cross_entropy(logits.double() / temperature, labels).item()


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The T in [T_MIN, T_MAX] minimising validation NLL of softmax(logits / T).

    NLL is convex in 1/T, hence unimodal in log T, so a bounded scalar search on log T finds the
    optimum without a learning rate to tune.
    """
    from scipy.optimize import minimize_scalar  # scipy ships with scikit-learn

    if logits.numel() == 0:
        raise ValueError("cannot fit a temperature on zero examples")
    logits64, labels = logits.detach().double().cpu(), labels.cpu()

    def objective(log_t: float) -> float:
        return F.cross_entropy(logits64 / math.exp(log_t), labels).item()

    result = minimize_scalar(
        objective, bounds=(math.log(T_MIN), math.log(T_MAX)), method="bounded", options={"xatol": 1e-5}
    )
    return float(math.exp(result.x))


def calibrate_logits(logits: torch.Tensor, labels: torch.Tensor, n_bins: int = DEFAULT_BINS) -> TemperatureFit:
    """Fit T on (N, C) validation logits and report NLL and ECE before and after."""
    temperature = fit_temperature(logits, labels)
    return TemperatureFit(
        temperature=temperature,
        nll_before=nll(logits, labels),
        nll_after=nll(logits, labels, temperature),
        ece_before=expected_calibration_error(probabilities(logits), labels, n_bins),
        ece_after=expected_calibration_error(probabilities(logits, temperature), labels, n_bins),
        n=int(labels.numel()),
    )


def calibration_record(
    logits: torch.Tensor, labels: torch.Tensor, method: str, n_bins: int = DEFAULT_BINS
) -> dict[str, Any]:
    """Fit T on (N, C) validation logits and choose the reject threshold on the calibrated
    probabilities: the ``meta["calibration"]`` dict a checkpoint stores (temperature, ece_before,
    ece_after, nll_before, nll_after, n_val, n_bins, reject_threshold; `method` says on what)."""
    fit = calibrate_logits(logits, labels, n_bins)
    probs = probabilities(logits, fit.temperature)
    return {
        "method": method,
        "temperature": fit.temperature,
        "ece_before": fit.ece_before,
        "ece_after": fit.ece_after,
        "nll_before": fit.nll_before,
        "nll_after": fit.nll_after,
        "n_val": fit.n,
        "n_bins": n_bins,
        "reject_threshold": float(choose_reject_threshold(probs.numpy(), labels.numpy())),
    }


def calibrate_checkpoint(
    path: str | os.PathLike, data: Mnist, device: torch.device | str = "cpu", n_bins: int = DEFAULT_BINS
) -> dict[str, Any]:
    """Fit T on the checkpoint's validation split and store it in the file (weights untouched).

    The split is the checkpoint's own, checksum-checked (`checkpoint_split`), so a temperature or
    threshold is never chosen on images the model was trained on. Returns the
    ``meta["calibration"]`` dict written (`calibration_record`). The file is rewritten atomically.
    """
    payload = read_payload(path)
    model = model_from_payload(payload, str(path)).to(device)
    norm = Normalization(**payload["normalization"])
    _, val_idx = checkpoint_split(payload, data.train_labels)
    logits = predict_logits(model, data.train_images[val_idx], norm, device)  # (n_val, 10)
    payload["calibration"] = calibration_record(logits, data.train_labels[val_idx], CALIBRATION_METHOD, n_bins)
    save_payload(payload, path)
    return payload["calibration"]


def choose_reject_threshold(
    probabilities: np.ndarray,
    labels: np.ndarray,
    target_precision: float = TARGET_PRECISION,
    min_coverage: float = MIN_COVERAGE,
) -> float:
    """The lowest confidence threshold whose accepted predictions are right at least
    `target_precision` of the time, on VALIDATION data (never test).

    probabilities: (N, 10) as the Recognizer computes them (softmax of logits / temperature);
    labels: (N,). A prediction is accepted when its top probability >= threshold. Scanning
    thresholds from high to low, the precision of the accepted set is computed for each; the answer
    is the lowest threshold that meets the target, so as few digits as possible are rejected. If
    meeting the target would reject more than 1 - `min_coverage` of the digits, the threshold that
    keeps exactly `min_coverage` is returned instead (a model that weak needs retraining, not a
    threshold). Pure function of its inputs.
    """
    probs = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels).reshape(-1)
    if probs.ndim != 2 or probs.shape[0] != labels.shape[0] or probs.shape[0] == 0:
        raise ValueError(f"need (N, C) probabilities and N labels, got {probs.shape} and {labels.shape}")
    if not 0 < target_precision <= 1 or not 0 < min_coverage <= 1:
        raise ValueError("target_precision and min_coverage must be in (0, 1]")
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    order = np.argsort(-confidence, kind="stable")
    conf_sorted, correct_sorted = confidence[order], correct[order]
    n = len(order)
    precision = np.cumsum(correct_sorted) / np.arange(1, n + 1)  # accepting the top k+1
    # Only cut between distinct confidences: equal confidences are accepted or rejected together.
    last_of_tie = np.r_[conf_sorted[1:] < conf_sorted[:-1], True]
    meets = np.nonzero((precision >= target_precision) & last_of_tie)[0]
    keep_min = int(np.ceil(min_coverage * n)) - 1  # index of the last item we must accept
    if meets.size == 0 or meets.max() < keep_min:
        return float(conf_sorted[keep_min])
    return float(conf_sorted[meets.max()])
