"""Training on a slice: it learns, it is deterministic, it records what it did."""

from __future__ import annotations

import json

import pytest
import torch

from digitrec.errors import ConfigError
from digitrec.models.checkpoint import load_checkpoint
from digitrec.models.inputs import Normalization, to_model_input
from digitrec.training.config import TrainConfig, read_toml
from digitrec.training.loop import CURVES_NAME, train
from digitrec.training.metrics import evaluate
from digitrec.training.pipeline import Augment, batches

SLICE = dict(model="fast_ref_cnn", limit_train=2000, limit_eval=1000, batch_size=64, lr=3e-3, device="cpu")


@pytest.fixture(scope="module")
def run(mnist, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    records = []
    result = train(TrainConfig(epochs=2, **SLICE), mnist, out, on_epoch=records.append)
    return result, records, out


def test_short_training_measurably_learns(run):
    result, records, _ = run
    assert result.val.accuracy > 0.85  # chance is 0.10
    assert result.test.accuracy > 0.85 and result.test.n == 1000
    assert records[-1].train_loss < records[0].train_loss


def test_epoch_records_and_jsonl(run):
    result, records, out = run
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [line["epoch"] for line in lines] == [1, 2]
    assert set(lines[0]) >= {"train_loss", "train_accuracy", "val_loss", "val_accuracy", "seconds"}
    assert lines[1]["val_accuracy"] == records[1].val_accuracy
    assert result.train_seconds == pytest.approx(sum(r.seconds for r in records))


def test_checkpoint_is_best_on_validation_and_self_describing(run, mnist):
    result, records, _ = run
    ckpt = load_checkpoint(result.checkpoint)
    best = max(records, key=lambda r: (r.val_accuracy, -r.val_loss))
    assert ckpt.meta["metrics"]["best_epoch"] == best.epoch == result.best_epoch
    assert ckpt.arch == "fast_ref_cnn"
    assert ckpt.meta["config"]["epochs"] == 2
    assert ckpt.meta["split"]["n_val"] == 1000 and ckpt.meta["split"]["n_train"] == 2000
    assert set(ckpt.meta["data"]["checksums_md5"]) == {
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    }
    assert {"torch", "digitrec", "python"} <= set(ckpt.meta["versions"])
    assert isinstance(ckpt.meta["command"], list)
    # the stored test metrics are those of the stored weights
    again = evaluate(ckpt.model, mnist.test_images[:1000], mnist.test_labels[:1000], ckpt.normalization)
    assert again.accuracy == pytest.approx(result.test.accuracy)


def test_train_returns_its_result_and_the_command_calibrates_and_plots(run, tmp_path, capsys):
    """The loop only trains; `digitrec train` fits the temperature and reject threshold on the
    run's validation split, stores them, prints the temperature and draws the curves."""
    from digitrec.cli import main

    result, _, out = run
    assert result.calibration is None and "calibration" not in load_checkpoint(result.checkpoint).meta
    assert not (out / CURVES_NAME).exists()
    (tmp_path / "c.toml").write_text('model = "fast_ref_cnn"\nlimit_eval = 700\nbatch_size = 64\n')
    assert (
        main(
            [
                "train",
                "--config",
                str(tmp_path / "c.toml"),
                "--epochs",
                "1",
                "--limit-train",
                "500",
                "--device",
                "cpu",
                "--out",
                str(tmp_path / "cmd"),
                "--json",
            ]
        )
        == 0
    )
    summary = json.loads(capsys.readouterr().out)
    calibration = load_checkpoint(summary["checkpoint"]).meta["calibration"]
    assert summary["temperature"] == calibration["temperature"] > 0 and calibration["n_val"] == 700
    assert 0 < calibration["reject_threshold"] <= 1
    assert (tmp_path / "cmd" / CURVES_NAME).stat().st_size > 1000


def test_same_seed_gives_identical_metrics(mnist, tmp_path):
    config = dict(SLICE, limit_train=1000, limit_eval=300, epochs=1)
    a = train(TrainConfig(seed=7, **config), mnist, tmp_path / "a")
    b = train(TrainConfig(seed=7, **config), mnist, tmp_path / "b")
    c = train(TrainConfig(seed=8, **config), mnist, tmp_path / "c")
    strip = lambda r: [(e.train_loss, e.train_accuracy, e.val_loss, e.val_accuracy) for e in r.history]  # noqa: E731
    assert strip(a) == strip(b)
    assert strip(a) != strip(c)
    assert torch.equal(
        torch.load(a.checkpoint, weights_only=True)["state_dict"]["0.weight"],
        torch.load(b.checkpoint, weights_only=True)["state_dict"]["0.weight"],
    )


@pytest.mark.parametrize(
    "bad, match",
    [
        (dict(epochs=0), "epochs"),
        (dict(batch_size=0), "batch size"),
        (dict(lr=-1.0), "learning rate"),
        (dict(model="nope"), "unknown model"),
        (dict(schedule="linear"), "schedule"),
    ],
)
def test_bad_config_values_are_refused(bad, match):
    with pytest.raises(ConfigError, match=match):
        TrainConfig(**bad)


def test_unknown_config_key_is_refused(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("epochs = 2\nlearning_rate = 0.1\n")
    with pytest.raises(ConfigError, match="learning_rate"):
        TrainConfig.from_dict(read_toml(path))


def test_batches_cover_everything_once_and_reshuffle(mnist):
    images, labels = mnist.train_images[:1000], torch.arange(1000)
    gen = torch.Generator().manual_seed(0)
    epochs = [
        torch.cat([y for _, y in batches(images, labels, 128, Normalization(), shuffle=True, generator=gen)])
        for _ in range(2)
    ]
    assert sorted(epochs[0].tolist()) == list(range(1000))
    assert not torch.equal(epochs[0], epochs[1])


def test_normalisation_and_augmentation_on_whole_batches(mnist):
    norm = Normalization()
    x = to_model_input(mnist.train_images[:256], norm)
    assert x.shape == (256, 1, 28, 28)
    assert abs(x.mean().item()) < 0.1 and abs(x.std().item() - 1) < 0.1  # MNIST statistics
    augmented = Augment(degrees=15, scale=0.1, translate_px=2, elastic_alpha=1.5)(x, torch.Generator().manual_seed(0))
    assert augmented.shape == x.shape
    assert not torch.allclose(augmented, x)
    # background stays background: the corner pixel keeps the normalised value of black
    assert torch.allclose(augmented[:, :, 0, 0], x[:, :, 0, 0], atol=1e-5)
