"""Report artefacts: curves, TensorBoard scalars, confusion matrix, gallery, reliability, HTML."""

from __future__ import annotations

import base64
import dataclasses
import json
import re

import numpy as np
import pytest
from PIL import Image

from digitrec.cli import main
from digitrec.evaluation import plots
from digitrec.evaluation.analysis import analyze, predict_split
from digitrec.evaluation.report import model_info, write_report
from digitrec.models.checkpoint import load_checkpoint
from digitrec.training.tensorboard import TensorBoardLogger

HISTORY = [
    {
        "epoch": e,
        "train_loss": 1.0 / e,
        "train_accuracy": 1 - 0.1 / e,
        "val_loss": 1.2 / e,
        "val_accuracy": 1 - 0.15 / e,
        "seconds": 3.0,
        "lr": 1e-3 * e,
    }
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
    record = dataclasses.make_dataclass("Record", list(HISTORY[0]))  # like train.EpochRecord
    records = [record(**r) for r in HISTORY]
    assert _png_size(plots.plot_curves(records, tmp_path / "records.png")) == _expected(plots.CURVES_FIGSIZE)
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


@pytest.fixture(scope="module")
def slice_report(mnist, tmp_path_factory):
    """The shipped model on the first 500 test images, with a temperature != 1 so both
    reliability curves are drawn."""
    import dataclasses

    checkpoint = load_checkpoint()
    predictions = dataclasses.replace(predict_split(checkpoint, mnist, "test", limit=500), temperature=1.5)
    analysis = analyze(predictions)
    out = tmp_path_factory.mktemp("report")
    files = write_report(out, predictions, analysis, model_info(checkpoint), max_items=7)
    return files, predictions, analysis


def test_report_writes_every_artefact(slice_report):
    files, _, _ = slice_report
    names = {p.name for p in files.directory.iterdir()}
    assert names == {"metrics.json", "confusion_matrix.png", "misclassified.png", "reliability.png", "report.html"}


def test_metrics_json_fields_and_sums(slice_report):
    files, predictions, analysis = slice_report
    metrics = json.loads(files.metrics.read_text())
    assert metrics["split"] == "test" and metrics["n"] == 500
    assert np.sum(metrics["confusion"]) == 500
    assert np.array(metrics["confusion"]).shape == (10, 10)
    assert np.trace(metrics["confusion"]) == round(metrics["accuracy"] * 500)
    assert sum(m["support"] for m in metrics["per_class"].values()) == 500
    assert set(metrics["macro"]) == {"precision", "recall", "f1"}
    assert metrics["n_mistakes"] == 500 - np.trace(metrics["confusion"]) == len(metrics["mistakes"])
    assert metrics["temperature"] == 1.5
    assert 0 <= metrics["ece"] <= 1 and 0 <= metrics["ece_uncalibrated"] <= 1
    assert metrics["model"]["arch"] == load_checkpoint().arch
    for pair in metrics["confused_pairs"]:
        assert metrics["confusion"][pair["true"]][pair["predicted"]] == pair["count"]
    confidences = [m["confidence"] for m in metrics["mistakes"]]
    assert confidences == sorted(confidences, reverse=True)


def test_pngs_decode_with_the_expected_size(slice_report):
    files, _, analysis = slice_report
    assert _png_size(files.confusion_matrix) == _expected(plots.CONFUSION_FIGSIZE)
    assert _png_size(files.reliability) == _expected(plots.RELIABILITY_FIGSIZE)
    shown = min(7, len(analysis.mistakes))
    assert _png_size(files.misclassified) == _expected(plots.gallery_figsize(shown))


def test_report_html_embeds_all_images(slice_report):
    files, _, analysis = slice_report
    page = files.html.read_text()
    uris = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    embedded = {base64.b64decode(u) for u in uris}
    for png in (files.confusion_matrix, files.misclassified, files.reliability):
        assert png.read_bytes() in embedded
    assert "http://" not in page and "https://" not in page and "<script" not in page  # opens offline
    assert f"{100 * analysis.accuracy:.2f}%" in page


def test_gallery_shape_and_empty_gallery(tmp_path):
    assert plots.gallery_shape(0) == (1, 1)
    assert plots.gallery_shape(7, 10) == (1, 7)
    assert plots.gallery_shape(25, 10) == (3, 10)
    path = plots.plot_misclassified(np.zeros((0, 28, 28), np.uint8), [], [], [], tmp_path / "none.png")
    assert _png_size(path) == _expected(plots.gallery_figsize(0))
    with pytest.raises(ValueError):
        plots.plot_misclassified(np.zeros((2, 28, 28), np.uint8), [1], [2, 3], [0.5, 0.5], tmp_path / "bad.png")


def test_evaluate_cli_json_keeps_test_fields(capsys):
    assert main(["evaluate", "--device", "cpu", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["split"] == "test" and out["n"] == 10000
    assert 0 < out["test_accuracy"] <= 1 and out["test_loss"] > 0
    assert out["temperature"] == load_checkpoint().temperature
    assert "report" not in out


def test_evaluate_cli_val_split_with_report(tmp_path, capsys):
    checkpoint = load_checkpoint()
    code = main(
        ["evaluate", "--device", "cpu", "--split", "val", "--report", str(tmp_path / "rep"), "--max", "3", "--json"]
    )
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["split"] == "val" and out["n"] == checkpoint.meta["split"]["n_val"]
    assert "val_accuracy" in out and "test_accuracy" not in out
    assert out["report"] == str(tmp_path / "rep" / "report.html")
    metrics = json.loads((tmp_path / "rep" / "metrics.json").read_text())
    assert metrics["split"] == "val" and np.sum(metrics["confusion"]) == out["n"]
    assert metrics["accuracy"] == pytest.approx(out["val_accuracy"])
    shown = min(3, metrics["n_mistakes"])
    assert _png_size(tmp_path / "rep" / "misclassified.png") == _expected(plots.gallery_figsize(shown))


def test_evaluate_cli_rejects_negative_max(capsys):
    assert main(["evaluate", "--max", "-1"]) == 2
    assert "--max" in capsys.readouterr().err
