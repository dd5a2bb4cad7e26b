"""The model registry: every architecture builds, has the right shape, and trains a step."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from digitrec.errors import ConfigError
from digitrec.models import create_model, list_models, model_description


def test_unknown_model_fails_loudly_and_lists_known():
    with pytest.raises(ConfigError) as info:
        create_model("resnet9000")
    for name in list_models():
        assert name in str(info.value)


def test_seed_cnn_is_registered_first_class():
    assert "seed_cnn" in list_models()
    assert "conv" in model_description("seed_cnn").lower()


@pytest.mark.parametrize("name", list_models())
def test_each_model_builds_and_takes_a_training_step(name):
    torch.manual_seed(0)
    model = create_model(name)
    n_params = sum(p.numel() for p in model.parameters())
    assert 1_000 < n_params < 5_000_000  # small enough to ship well under 5 MB
    x, y = torch.randn(8, 1, 28, 28), torch.arange(8) % 10
    assert model(x).shape == (8, 10)  # (B, 1, 28, 28) -> (B, 10)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    before = [p.detach().clone() for p in model.parameters()]
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters()))


def test_bad_builder_arguments_are_a_config_error():
    with pytest.raises(ConfigError, match="seed_cnn"):
        create_model("seed_cnn", not_an_argument=3)


@pytest.mark.parametrize("arch", ["fast_bn_cnn", "bn_cnn"])
def test_cnns_can_judge_other_classes(arch):
    """The segmenter's one-digit checker is one of these CNNs with two classes."""
    model = create_model(arch, classes=2).eval()
    assert model(torch.zeros(3, 1, 28, 28)).shape == (3, 2)
