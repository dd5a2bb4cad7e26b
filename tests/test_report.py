"""Report artefacts: curves, TensorBoard scalars, confusion matrix, gallery, reliability, HTML."""

from __future__ import annotations

import pytest
from PIL import Image

from digitrec import plots
from digitrec.tensorboard import TensorBoardLogger

HISTORY = [
    {"epoch": e, "train_loss": 1.0 / e, "train_accuracy": 1 - 0.1 / e, "val_loss": 1.2 / e,
     "val_accuracy": 1 - 0.15 / e, "seconds": 3.0, "lr": 1e-3 * e}
    for e in (1, 2, 3)
]


def _png_size(path) -> tuple[int, int]:
    with Image.open(path) as image:
        assert image.format == "PNG"
        image.load()  # decodes the whole file, not only the header
        return image.size


def _expected(figsize) -> tuple[int, int]:
    return round(figsize[0] * plots.DPI), round(figsize[1] * plots.DPI)


def test_plot_curves_writes_a_png_of_the_fixed_size(tmp_path):
    path = plots.plot_curves(HISTORY, tmp_path / "sub" / "curves.png")
    assert path == tmp_path / "sub" / "curves.png"
    assert _png_size(path) == _expected(plots.CURVES_FIGSIZE)
    assert [p.name for p in path.parent.iterdir()] == ["curves.png"]  # no temporary left behind
    assert _png_size(plots.plot_curves(HISTORY[:1], tmp_path / "one.png")) == _expected(plots.CURVES_FIGSIZE)
    with pytest.raises(ValueError):
        plots.plot_curves([], tmp_path / "none.png")


def test_tensorboard_logger_writes_scalars_per_epoch(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    with TensorBoardLogger(tmp_path / "tb") as logger:
        for record in HISTORY:
            logger.log_epoch(record)
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"loss/train", "loss/val", "accuracy/train", "accuracy/val", "optim/lr"} <= tags
    val_loss = [(s.step, s.value) for s in events.Scalars("loss/val")]
    assert [step for step, _ in val_loss] == [1, 2, 3]
    assert [v for _, v in val_loss] == pytest.approx([1.2, 0.6, 0.4])
