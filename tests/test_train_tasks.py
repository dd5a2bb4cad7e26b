"""The one training loop on given tensors: fine-tuning from a checkpoint, a guard set, two classes."""

from __future__ import annotations

import pytest
import torch

from digitrec.errors import ConfigError
from digitrec.models.checkpoint import load_checkpoint, save_checkpoint
from digitrec.models.inputs import Normalization
from digitrec.training.config import TrainConfig
from digitrec.training.loop import train
from digitrec.training.metrics import predict_logits
from digitrec.training.task import Labelled, Task
from digitrec.weights import DEFAULT_MODEL_PATH

SMALL = dict(
    model="fast_bn_cnn",
    model_kwargs={"c1": 8, "c2": 16, "c3": 32},
    batch_size=64,
    device="cpu",
    calibrate=False,
    augment=False,
)


def part(mnist, start: int, n: int, relabel=lambda y: y) -> Labelled:
    return Labelled(images=mnist.train_images[start : start + n], labels=relabel(mnist.train_labels[start : start + n]))


@pytest.fixture(scope="module")
def start(mnist, tmp_path_factory) -> str:
    """A small model that reads digits (about 95%): what the fine-tuning tests start from."""
    out = tmp_path_factory.mktemp("start")
    result = train(TrainConfig(**SMALL, epochs=2, lr=3e-3, limit_train=3000, limit_eval=500), mnist, out)
    assert result.val.accuracy > 0.85
    return str(result.checkpoint)


def shifted(y: torch.Tensor) -> torch.Tensor:
    return (y + 1) % 10  # every digit called the next one: learnable, and ruinous for reading digits


def test_the_guard_keeps_the_start_when_fine_tuning_ruins_it(mnist, start, tmp_path):
    """Fine-tuning towards shifted labels wins on its own validation set; only the guard (clean
    digits, which must not get worse) stops it, and then the starting weights are what is saved."""
    config = TrainConfig(**SMALL, epochs=1, lr=3e-3, init_from=start)
    task = dict(train=part(mnist, 10000, 3000, shifted), val=part(mnist, 20000, 500, shifted))
    free = train(config, mnist, tmp_path / "free", task=Task(**task))
    assert free.best_epoch == 1 and free.val.accuracy > 0.5  # the shifted labels were learnt
    guarded = train(
        config, mnist, tmp_path / "guarded", task=Task(**task, guard=part(mnist, 30000, 500), guard_tolerance=0.001)
    )
    assert guarded.best_epoch == 0 and guarded.history[0].guard_accuracy < 0.5
    saved = load_checkpoint(guarded.checkpoint)
    assert saved.meta["weights_sha256"] == load_checkpoint(start).meta["weights_sha256"]
    assert saved.meta["metrics"]["start"]["guard_accuracy"] > 0.85


def test_mixed_in_examples_are_drawn_afresh_each_epoch(mnist, start, tmp_path):
    task = Task(train=part(mnist, 0, 100), val=part(mnist, 20000, 200), mix=part(mnist, 1000, 1000), mix_per_epoch=100)
    draws = [task.epoch_examples(torch.Generator().manual_seed(seed)) for seed in (0, 1)]
    assert all(len(d) == 200 and torch.equal(d[:100], torch.arange(100)) for d in draws)
    assert all(d[100:].min() >= 100 and len(set(d[100:].tolist())) == 100 for d in draws)
    assert not torch.equal(draws[0], draws[1])
    result = train(TrainConfig(**SMALL, epochs=2, lr=3e-3, init_from=start), mnist, tmp_path, task=task)
    assert result.history[0].train_loss > 0 and len(result.history) == 2


def test_a_two_class_model_starts_from_a_ten_class_checkpoint_and_weighs_classes_alike(mnist, tmp_path):
    """A rare class ("is a 1", about one image in nine) is still found: the loss weighs both
    classes alike, the epoch kept has the lowest validation loss, and all but the last layer
    start from the checkpoint's weights."""
    ones = lambda y: (y == 1).long()  # noqa: E731
    config = TrainConfig(
        model="fast_bn_cnn",
        model_kwargs={"classes": 2},
        init_from=str(DEFAULT_MODEL_PATH),
        epochs=1,
        batch_size=128,
        lr=2e-3,
        device="cpu",
        calibrate=False,
        augment=False,
        select="loss",
        balance_classes=True,
        label_smoothing=0.0,
    )
    task = Task(
        train=part(mnist, 0, 2000, ones), val=part(mnist, 20000, 500, ones), meta={"class_labels": ["no", "yes"]}
    )
    result = train(config, mnist, tmp_path, task=task)
    saved = load_checkpoint(result.checkpoint)
    assert saved.arch_kwargs["classes"] == 2 and saved.meta["class_labels"] == ["no", "yes"]
    held = part(mnist, 40000, 1000, ones)
    predicted = predict_logits(saved.model, held.images, saved.normalization).argmax(1)
    recall = [float((predicted[held.labels == c] == c).float().mean()) for c in (0, 1)]
    assert min(recall) > 0.9, recall


def test_start_weights_take_every_layer_that_fits():
    from digitrec.models import create_model
    from digitrec.training.optim import start_weights

    config = TrainConfig(model="fast_bn_cnn", model_kwargs={"classes": 2}, init_from=str(DEFAULT_MODEL_PATH))
    torch.manual_seed(0)
    model = create_model("fast_bn_cnn", classes=2)
    base = load_checkpoint(DEFAULT_MODEL_PATH)
    assert start_weights(config, model) == base.normalization
    mine, theirs = model.state_dict(), base.model.state_dict()
    fits = [k for k in mine if mine[k].shape == theirs[k].shape]
    assert all(torch.equal(mine[k], theirs[k]) for k in fits)
    assert 0 < len(mine) - len(fits) <= 2  # only the new 2-class layer keeps its own initialisation


def test_starting_weights_must_be_of_the_model_trained(mnist, tmp_path):
    path = tmp_path / "linear.pt"
    from digitrec.models import create_model

    save_checkpoint(path, create_model("linear"), "linear", {}, Normalization(), {})
    with pytest.raises(ConfigError, match="linear"):
        train(TrainConfig(**SMALL, epochs=1, init_from=str(path)), mnist, tmp_path / "run")


def test_resuming_on_other_data_is_refused(mnist, start, tmp_path):
    config = TrainConfig(**SMALL, epochs=1, init_from=start)
    train(config, mnist, tmp_path, task=Task(train=part(mnist, 0, 300), val=part(mnist, 20000, 100)))
    with pytest.raises(ConfigError, match="different training data"):
        train(config, mnist, tmp_path, resume=True, task=Task(train=part(mnist, 300, 300), val=part(mnist, 20000, 100)))
