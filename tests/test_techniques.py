"""Every training switch runs and still learns on a slice; recipes are well-formed."""

from __future__ import annotations

import pytest
import torch

from digitrec.training.config import TrainConfig
from digitrec.training.loop import train
from digitrec.training.optim import resolve_amp
from digitrec.training.recipes import RECIPES, recipe
from digitrec.training.records import STATE_NAME

TINY = dict(
    model="fast_ref_cnn",
    limit_train=1500,
    limit_eval=300,
    epochs=1,
    batch_size=50,
    lr=3e-3,
    device="cpu",
    calibrate=False,
)


@pytest.mark.parametrize(
    "switch",
    [
        dict(schedule="none"),
        dict(schedule="cosine"),
        dict(schedule="onecycle"),
        dict(label_smoothing=0.1),
        dict(ema=0.99),
        dict(aug_elastic=1.5),
        dict(augment=False),
        dict(amp="bf16"),
        dict(amp="none"),
        dict(channels_last=False),
        dict(model="bn_cnn", channels_last=True, amp="bf16"),
    ],
    ids=lambda d: ",".join(f"{k}={v}" for k, v in d.items()),
)
def test_switch_trains_and_learns(switch, mnist, tmp_path):
    result = train(TrainConfig(**{**TINY, **switch}), mnist, tmp_path)
    assert result.val.accuracy > 0.6, switch  # chance is 0.1


def test_ema_weights_are_what_gets_saved(mnist, tmp_path):
    """The checkpoint holds the averaged weights, not the last step's: with one epoch the best
    epoch is the last, so model.pt must equal the EMA in last.pt and differ from the raw weights."""
    result = train(TrainConfig(**TINY, ema=0.9), mnist, tmp_path)
    saved = torch.load(result.checkpoint, weights_only=True)["state_dict"]
    state = torch.load(tmp_path / STATE_NAME, weights_only=True)
    averaged = {k.removeprefix("module."): v for k, v in state["ema"].items() if k != "n_averaged"}
    assert set(saved) == set(averaged) == set(state["model"])
    assert all(torch.equal(saved[k], averaged[k]) for k in saved)
    floats = [k for k, v in saved.items() if v.is_floating_point()]
    assert any(not torch.equal(saved[k], state["model"][k].to(saved[k].dtype)) for k in floats)


def test_compile_switch(mnist, tmp_path):
    result = train(TrainConfig(**{**TINY, "limit_train": 500, "compile": True}), mnist, tmp_path)
    assert result.val.accuracy > 0.3


def test_tensorboard_switch_writes_events(mnist, tmp_path):
    train(TrainConfig(**TINY, tensorboard=True), mnist, tmp_path)
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))


@pytest.mark.parametrize("name", list(RECIPES))
def test_recipe_runs_a_few_steps_and_learns(name, mnist, tmp_path):
    # the recipe as written, on a slice: smaller batches so a one-epoch schedule still takes 60 steps
    values = {
        **recipe(name),
        "limit_train": 3000,
        "limit_eval": 300,
        "epochs": 1,
        "batch_size": 50,
        "device": "cpu",
        "calibrate": False,
    }
    config = TrainConfig.from_dict(values)
    result = train(config, mnist, tmp_path)
    assert result.val.accuracy > 0.5, name


def test_fp16_without_cuda_is_a_clear_error(mnist, tmp_path):
    from digitrec.errors import ConfigError

    if torch.cuda.is_available():
        pytest.skip("CUDA present: fp16 is valid here")
    with pytest.raises(ConfigError, match="fp16"):
        train(TrainConfig(**TINY, amp="fp16"), mnist, tmp_path)


@pytest.mark.parametrize(
    "avx512_bf16, amx, expected", [(True, False, "bf16"), (False, True, "bf16"), (False, False, "none")]
)
def test_amp_auto_uses_bf16_only_where_the_cpu_computes_it_natively(avx512_bf16, amx, expected, monkeypatch):
    # emulated bf16 is slower than float32, so "auto" must not pick it on such a CPU
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    assert resolve_amp("auto", torch.device("cpu")) == expected
    assert resolve_amp("none", torch.device("cpu")) == "none"  # an explicit choice is kept
    assert resolve_amp("bf16", torch.device("cpu")) == "bf16"


def test_checkpoint_records_the_precision_actually_used(mnist, tmp_path):
    result = train(TrainConfig(**{**TINY, "limit_train": 500}), mnist, tmp_path)
    meta = torch.load(result.checkpoint, weights_only=True)  # meta keys sit at the top level
    assert meta["config"]["amp"] == "auto"
    assert meta["amp"] == resolve_amp("auto", torch.device("cpu"))


def test_evaluation_runs_channels_last_without_touching_the_callers_model(mnist):
    from digitrec.models import create_model
    from digitrec.models.inputs import Normalization
    from digitrec.training.metrics import predict_logits

    torch.manual_seed(0)
    model = create_model("fast_bn_cnn").eval()
    images = mnist.test_images[:200]
    with torch.inference_mode():
        expected = model(((images.float() / 255 - 0.1307) / 0.3081).unsqueeze(1))
    logits = predict_logits(model, images, Normalization())
    torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-4)
    assert model[0].weight.is_contiguous()  # still NCHW: checkpoints written from it keep their layout


def test_amp_flag_overrides_the_recipe():
    """`digitrec train --amp none` is how a CPU with native bf16 measures the float32 path."""
    import argparse

    from digitrec.commands.train import add_arguments, config_from_args

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert config_from_args(parser.parse_args(["--recipe", "fast", "--amp", "none"])).amp == "none"
    assert config_from_args(parser.parse_args(["--recipe", "fast"])).amp == "auto"
    with pytest.raises(SystemExit):
        parser.parse_args(["--amp", "float64"])


def test_a_config_file_choosing_another_model_drops_the_recipes_model_kwargs(tmp_path):
    """The default recipe sets fast_bn_cnn's widths; a config file naming another architecture
    must not hand those to it (`fast_ref_cnn() got an unexpected keyword argument 'c1'`)."""
    import argparse

    from digitrec.commands.train import add_arguments, config_from_args

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    other = tmp_path / "other.toml"
    other.write_text('model = "fast_ref_cnn"\n')
    assert config_from_args(parser.parse_args(["--config", str(other)])).model_kwargs == {}
    own = tmp_path / "own.toml"
    own.write_text('model = "bn_cnn"\n[model_kwargs]\nwidth = 16\n')
    assert config_from_args(parser.parse_args(["--config", str(own)])).model_kwargs == {"width": 16}
    same = tmp_path / "same.toml"
    same.write_text("epochs = 2\n")
    assert config_from_args(parser.parse_args(["--config", str(same)])).model_kwargs["pool_first"] is True
