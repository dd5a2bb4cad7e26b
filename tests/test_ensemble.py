"""Test-time augmentation and ensembles behave like a model and do not hurt accuracy."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from digitrec.evaluation.ensemble import Ensemble, ShiftTTA, load_ensemble, shift
from digitrec.models import create_model
from digitrec.models.checkpoint import load_checkpoint
from digitrec.training.metrics import evaluate
from digitrec.weights import DEFAULT_MODEL_PATH


def test_shift_moves_content_and_keeps_background():
    x = torch.full((1, 1, 5, 5), -1.0)
    x[0, 0, 2, 2] = 3.0
    moved = shift(x, 1, -1)
    assert moved[0, 0, 3, 1] == 3.0 and moved[0, 0, 2, 2] == -1.0
    assert (moved == -1.0).sum() == 24


def test_ensemble_of_one_equals_its_member_probabilities():
    torch.manual_seed(0)
    model = create_model("fast_ref_cnn").eval()
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(Ensemble([model])(x).exp(), F.softmax(model(x), 1), atol=1e-6)
        # two members: the mean of their probabilities, which sums to one
        other = create_model("fast_ref_cnn").eval()
        both = Ensemble([model, other])(x).exp()
        assert torch.allclose(both, (F.softmax(model(x), 1) + F.softmax(other(x), 1)) / 2, atol=1e-6)
        assert torch.allclose(both.sum(1), torch.ones(4))
        assert ShiftTTA(model)(x).shape == (4, 10)


def test_tta_and_ensembles_keep_accuracy_on_real_digits(mnist):
    images, labels = mnist.test_images[:1000], mnist.test_labels[:1000]
    single = load_checkpoint()
    base = evaluate(single.model, images, labels, single.normalization).accuracy
    tta = load_ensemble([None], tta=True)
    pair = load_ensemble([DEFAULT_MODEL_PATH, DEFAULT_MODEL_PATH])
    assert evaluate(tta.model, images, labels, tta.normalization).accuracy >= base - 0.01
    assert evaluate(pair.model, images, labels, pair.normalization).accuracy == base


def test_evaluate_cli_accepts_ensembles(capsys):
    import json

    from digitrec.cli import main

    assert main(["evaluate", "--model", str(DEFAULT_MODEL_PATH), "--model", str(DEFAULT_MODEL_PATH), "--json"]) == 0
    pair = json.loads(capsys.readouterr().out)
    assert main(["evaluate", "--json"]) == 0
    single = json.loads(capsys.readouterr().out)
    assert pair["n"] == 10000 and pair["test_accuracy"] == single["test_accuracy"]
    assert pair["arch"] == f"{single['arch']}+{single['arch']}"
