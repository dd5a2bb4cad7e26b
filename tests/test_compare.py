"""`digitrec compare`: same budget for every model, a table, CSV, Markdown and a plot."""

from __future__ import annotations

import csv
import json

from PIL import Image

from digitrec.cli import main
from digitrec.evaluation.compare import count_macs
from digitrec.models import create_model


def test_macs_match_a_hand_count():
    # Linear 784 -> 10 is 7,840 MACs; fast_ref_cnn: conv 24*24*24*25 + conv 10*10*32*24*9 + fc 800*256 + 256*10
    assert count_macs(create_model("linear")) == 7840
    assert count_macs(create_model("fast_ref_cnn")) == 24 * 24 * 24 * 25 + 10 * 10 * 32 * 24 * 9 + 800 * 256 + 256 * 10


def test_compare_writes_table_csv_and_plot(tmp_path, capsys):
    out = tmp_path / "cmp"
    code = main(
        [
            "compare",
            "linear",
            "fast_ref_cnn",
            "--seeds",
            "2",
            "--epochs",
            "2",  # the default recipe's batch of 256: eight steps over the 1,000-image slice
            "--limit-train",
            "1000",
            "--out",
            str(out),
            "--json",
        ]
    )
    assert code == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["model"] for r in rows] == ["linear", "fast_ref_cnn"]
    for row in rows:
        assert row["seeds"] == 2 and row["params"] > 0 and row["macs"] > 0 and row["images_per_second"] > 0
        assert 0.5 < row["test_accuracy"] <= 1 and row["test_accuracy_std"] >= 0
    assert rows[1]["test_accuracy"] > rows[0]["test_accuracy"] - 0.05  # a CNN is not worse than a linear model
    with open(out / "compare.csv") as handle:
        assert [r["model"] for r in csv.DictReader(handle)] == ["linear", "fast_ref_cnn"]
    assert "| fast_ref_cnn |" in (out / "compare.md").read_text()
    with Image.open(out / "compare.png") as image:
        assert image.size[0] > 300 and image.size[1] > 200
    assert len(list((out / "runs").glob("*/model.pt"))) == 4


def test_compare_refuses_unknown_models(tmp_path, capsys):
    assert main(["compare", "linear", "nope", "--out", str(tmp_path)]) == 2
    assert "nope" in capsys.readouterr().err
