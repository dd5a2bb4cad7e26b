"""Every training switch runs and still learns on a slice; recipes are well-formed."""

from __future__ import annotations

import pytest
import torch

from digitrec.config import TrainConfig
from digitrec.recipes import RECIPES, recipe
from digitrec.train import train

TINY = dict(model="fast_ref_cnn", limit_train=1500, limit_eval=300, epochs=1, batch_size=50, lr=3e-3,
            device="cpu", calibrate=False)


@pytest.mark.parametrize("switch", [
    dict(schedule="none"), dict(schedule="cosine"), dict(schedule="onecycle"),
    dict(label_smoothing=0.1), dict(ema=0.99), dict(aug_elastic=1.5), dict(augment=False),
    dict(amp="bf16"), dict(channels_last=True), dict(model="bn_cnn", channels_last=True, amp="bf16"),
], ids=lambda d: ",".join(f"{k}={v}" for k, v in d.items()))
def test_switch_trains_and_learns(switch, mnist, tmp_path):
    result = train(TrainConfig(**{**TINY, **switch}), mnist, tmp_path)
    assert result.val.accuracy > 0.6, switch  # chance is 0.1


def test_ema_weights_are_what_gets_saved(mnist, tmp_path):
    plain = train(TrainConfig(**TINY), mnist, tmp_path / "plain")
    ema = train(TrainConfig(**TINY, ema=0.9), mnist, tmp_path / "ema")
    # same seed, same steps: only the averaging differs, so the saved weights must differ
    a = torch.load(plain.checkpoint, weights_only=True)["state_dict"]["0.weight"]
    b = torch.load(ema.checkpoint, weights_only=True)["state_dict"]["0.weight"]
    assert not torch.equal(a, b)


def test_compile_switch(mnist, tmp_path):
    result = train(TrainConfig(**{**TINY, "limit_train": 500, "compile": True}), mnist, tmp_path)
    assert result.val.accuracy > 0.3


def test_tensorboard_switch_writes_events(mnist, tmp_path):
    train(TrainConfig(**TINY, tensorboard=True), mnist, tmp_path)
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert (tmp_path / "curves.png").stat().st_size > 1000


@pytest.mark.parametrize("name", list(RECIPES))
def test_recipe_runs_a_few_steps_and_learns(name, mnist, tmp_path):
    # the recipe as written, on a slice: smaller batches so a one-epoch schedule still takes 60 steps
    values = {**recipe(name), "limit_train": 3000, "limit_eval": 300, "epochs": 1, "batch_size": 50,
              "device": "cpu", "calibrate": False}
    config = TrainConfig.from_dict(values)
    result = train(config, mnist, tmp_path)
    assert result.val.accuracy > 0.5, name


def test_fp16_without_cuda_is_a_clear_error(mnist, tmp_path):
    from digitrec.errors import ConfigError

    if torch.cuda.is_available():
        pytest.skip("CUDA present: fp16 is valid here")
    with pytest.raises(ConfigError, match="fp16"):
        train(TrainConfig(**TINY, amp="fp16"), mnist, tmp_path)
