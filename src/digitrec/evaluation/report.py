"""An evaluation report in one directory: metrics.json, three PNGs and a self-contained HTML page.

report.html embeds the images as base64 data URIs, so the single file can be mailed, attached
to an issue or opened offline without the PNGs beside it. The PNGs need matplotlib (the `[train]`
extra), imported when a report is written, so `digitrec evaluate` without --report runs without it.
"""

from __future__ import annotations

import base64
import html
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from digitrec.atomic import atomic_write_text
from digitrec.evaluation.analysis import Analysis, Predictions
from digitrec.evaluation.reliability import reliability
from digitrec.probability import softmax

if TYPE_CHECKING:
    from digitrec.models.checkpoint import Checkpoint

METRICS_JSON = "metrics.json"
CONFUSION_PNG = "confusion_matrix.png"
MISCLASSIFIED_PNG = "misclassified.png"
RELIABILITY_PNG = "reliability.png"
REPORT_HTML = "report.html"
DEFAULT_GALLERY = 60  # images in the misclassified gallery (six rows of ten)


@dataclass(frozen=True)
class ReportFiles:
    directory: Path
    metrics: Path
    confusion_matrix: Path
    misclassified: Path
    reliability: Path
    html: Path

    @classmethod
    def under(cls, directory: Path) -> ReportFiles:
        """The files of a report written into `directory`, each under its fixed name."""
        return cls(
            directory,
            directory / METRICS_JSON,
            directory / CONFUSION_PNG,
            directory / MISCLASSIFIED_PNG,
            directory / RELIABILITY_PNG,
            directory / REPORT_HTML,
        )


def require_plotting() -> None:
    """Raise ImportError now, before a model runs, when matplotlib (the `[train]` extra) is missing."""
    import matplotlib  # noqa: F401


def model_info(checkpoint: Checkpoint) -> dict[str, Any]:
    """What identifies the evaluated model in a report."""
    return {
        "path": checkpoint.path,
        "arch": checkpoint.arch,
        "arch_kwargs": checkpoint.arch_kwargs,
        "weights_sha256": checkpoint.meta.get("weights_sha256"),
        "calibration": checkpoint.meta.get("calibration"),
    }


def report_metrics(analysis: Analysis, predictions: Predictions, model: dict[str, Any] | None = None) -> dict[str, Any]:
    """The content of metrics.json: the analysis plus the uncalibrated ECE and the model identity."""
    out = analysis.to_dict()
    out["ece_uncalibrated"] = reliability(softmax(predictions.logits), predictions.labels).ece
    out["model"] = model or {}
    return out


def write_report(
    out_dir: str | os.PathLike,
    predictions: Predictions,
    analysis: Analysis,
    model: dict[str, Any] | None = None,
    max_items: int = DEFAULT_GALLERY,
) -> ReportFiles:
    """Write metrics.json, confusion_matrix.png, misclassified.png, reliability.png, report.html."""
    from digitrec.evaluation.plots import plot_confusion_matrix, plot_misclassified, plot_reliability

    if max_items < 0:
        raise ValueError(f"max_items must be >= 0, got {max_items}")
    files = ReportFiles.under(Path(out_dir))
    files.directory.mkdir(parents=True, exist_ok=True)
    metrics = report_metrics(analysis, predictions, model)
    atomic_write_text(files.metrics, json.dumps(metrics, indent=1) + "\n")

    plot_confusion_matrix(
        analysis.confusion,
        files.confusion_matrix,
        title=f"{analysis.split} set: {analysis.n} images, accuracy {100 * analysis.accuracy:.2f}%",
    )

    shown = analysis.mistakes[:max_items]
    plot_misclassified(
        predictions.images[[m.position for m in shown]],
        [m.true for m in shown],
        [m.predicted for m in shown],
        [m.confidence for m in shown],
        files.misclassified,
        title=f"{len(shown)} of {len(analysis.mistakes)} misclassified {analysis.split} images, "
        f"most confident mistakes first",
    )

    curves = {"uncalibrated (T = 1)": reliability(softmax(predictions.logits), predictions.labels)}
    if predictions.temperature != 1.0:
        curves[f"calibrated (T = {predictions.temperature:.3f})"] = reliability(predictions.probs, predictions.labels)
    plot_reliability(curves, files.reliability, title=f"reliability on the {analysis.split} set")

    images = {
        "confusion": files.confusion_matrix,
        "misclassified": files.misclassified,
        "reliability": files.reliability,
    }
    atomic_write_text(files.html, render_html(metrics, images))
    return files


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _table(header: list[str] | None, rows: list[list[Any]]) -> str:
    head = (
        ""
        if header is None
        else "<thead><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr></thead>"
    )
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table>{head}<tbody>{body}</tbody></table>"


def render_html(metrics: dict[str, Any], images: dict[str, Path]) -> str:
    """One HTML page, images inlined, no scripts and no external resources."""
    model = metrics.get("model", {})
    split = metrics["split"]
    if model.get("calibration") is None and metrics["temperature"] == 1.0:
        calibration = f"{100 * metrics['ece']:.2f}% (not calibrated: run digitrec calibrate)"
    else:
        calibration = f"{100 * metrics['ece_uncalibrated']:.2f}% / {100 * metrics['ece']:.2f}%"
    summary = _table(
        None,
        [
            ["model", f"{model.get('arch', '?')} ({model.get('path', '?')})"],
            ["split", f"{split} ({metrics['n']} images)"],
            ["accuracy", f"{100 * metrics['accuracy']:.2f}% ({metrics['n_mistakes']} mistakes)"],
            ["loss", f"{metrics['loss']:.4f} nats per image"],
            [
                "macro precision / recall / F1",
                " / ".join(f"{metrics['macro'][k]:.4f}" for k in ("precision", "recall", "f1")),
            ],
            ["temperature", f"{metrics['temperature']:.4f}"],
            ["ECE uncalibrated / calibrated", calibration],
        ],
    )
    per_class = _table(
        ["digit", "precision", "recall", "F1", "support"],
        [
            [d, f"{m['precision']:.4f}", f"{m['recall']:.4f}", f"{m['f1']:.4f}", m["support"]]
            for d, m in metrics["per_class"].items()
        ],
    )
    pairs = _table(
        ["true", "predicted as", "count", "% of true digit"],
        [[p["true"], p["predicted"], p["count"], f"{100 * p['rate']:.2f}"] for p in metrics["confused_pairs"]],
    )
    figure = lambda key, alt: f'<figure><img src="{_data_uri(images[key])}" alt="{alt}"></figure>'  # noqa: E731
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>digitrec evaluation: {html.escape(str(model.get("arch", "")))} on the {html.escape(split)} set</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1600px; margin: 2em auto; padding: 0 1em; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; }}
td, th {{ border: 1px solid #ccc; padding: 0.25em 0.7em; text-align: right; }}
th {{ background: #f3f3f3; }}
td:first-child {{ text-align: left; }}
img {{ max-width: 100%; height: auto; }}
</style></head><body>
<h1>digitrec evaluation on the {html.escape(split)} set</h1>
{summary}
<h2>Per-class metrics</h2>
{per_class}
<h2>Confusion matrix</h2>
{figure("confusion", "confusion matrix, counts and row-normalised")}
<h2>Most confused pairs</h2>
{pairs}
<h2>Misclassified images</h2>
{figure("misclassified", "misclassified images with true label, prediction and confidence")}
<h2>Calibration</h2>
{figure("reliability", "reliability diagram")}
<p>Full numbers, including every misclassified index, are in {METRICS_JSON}.</p>
</body></html>
"""
