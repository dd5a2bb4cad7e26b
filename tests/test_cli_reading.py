"""`digitrec predict` and `digitrec read` as a user runs them: JSON lines, tables, options, overlay."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from digitrec.cli import main
from digitrec.reading import synth


@pytest.fixture(scope="module")
def files(tmp_path_factory, mnist):
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(21)
    paths = {}
    for i in range(3):  # test digits 7, 2, 1 as phone photos
        image = synth.render_digit(mnist.test_images[i].numpy(), rng, synth.random_style(rng, "photo"))
        paths[f"digit{i}"] = folder / f"digit{i}.jpg"
        image.save(paths[f"digit{i}"], quality=92)
    number = synth.render_number(
        [mnist.test_images[i].numpy() for i in (0, 1, 2, 3)],
        mnist.test_labels[:4].tolist(),
        rng,
        synth.clean_style(),
        height=70,
        touch_probability=0,
    )
    paths["number"] = folder / "number.png"
    number.image.save(paths["number"])
    paths["blank"] = folder / "blank.png"
    Image.new("L", (200, 200), 235).save(paths["blank"])
    return paths


def test_predict_json_lines(files, capsys):
    code = main(["predict", "--json", "--top-k", "2", str(files["digit0"]), str(files["digit1"]), str(files["blank"])])
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 0
    assert [o["digit"] for o in out] == [7, 2, None]
    assert all(list(o) == ["file", "digit", "confidence", "top_k", "rejected", "reason"] for o in out)
    assert out[0]["file"] == str(files["digit0"]) and len(out[0]["top_k"]) == 2
    assert out[2]["rejected"] and out[2]["reason"] == "no ink found"


def test_predict_table(files, capsys):
    assert main(["predict", str(files["digit2"]), str(files["blank"])]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split("\t") == ["FILE", "DIGIT", "CONFIDENCE", "TOP-3"]
    assert lines[1].split("\t")[:2] == [str(files["digit2"]), "1"]
    assert lines[2].endswith("rejected: no ink found")


def test_predict_refuses_a_bad_top_k_in_one_line(files, capsys):
    assert main(["predict", "--top-k", "0", str(files["digit0"])]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--top-k" in err


def test_read_json_and_overlay(files, capsys, tmp_path):
    out_png = tmp_path / "out" / "overlay.png"
    code = main(["read", "--json", "--overlay", str(out_png), str(files["number"])])
    reading = json.loads(capsys.readouterr().out)
    assert code == 0
    assert reading["text"] == "7210" and len(reading["digits"]) == 4
    assert list(reading) == ["file", "text", "digits", "needs_review", "rejected", "reason"]
    with Image.open(out_png) as overlay:
        assert overlay.format == "PNG" and overlay.width == Image.open(files["number"]).width
    assert [p.name for p in out_png.parent.iterdir()] == ["overlay.png"]  # no temporary file left


def test_read_table_and_overlays_for_several_images(files, capsys, tmp_path):
    code = main(["read", "--overlay", str(tmp_path), str(files["number"]), str(files["blank"])])
    lines = capsys.readouterr().out.splitlines()
    assert code == 0
    assert lines[0].split("\t") == ["FILE", "NUMBER", "DETAILS"]
    assert lines[1].split("\t")[1] == "7210"
    assert lines[2].endswith("rejected: no ink found")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blank.overlay.png", "number.overlay.png"]


def test_read_overlay_for_several_images_needs_a_directory(files, capsys, tmp_path):
    assert main(["read", "--overlay", str(tmp_path / "x.png"), str(files["number"]), str(files["blank"])]) == 2
    assert "directory" in capsys.readouterr().err


def test_predict_and_read_are_listed_in_help(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "predict" in out and "read" in out


def test_read_uses_the_verifier_and_checker_it_is_given(files, capsys, tmp_path):
    """A set made by `digitrec build-weights` is used by naming it: a verifier whose review margin
    no reading can clear flags every number, and a checker that is not a checkpoint is refused."""
    from digitrec.reading.verifier import load_verifier
    from digitrec.weights import CHECKER_PATH

    shipped = load_verifier()
    strict = tmp_path / "verifier.json"
    type(shipped)(bias=shipped.bias, weights=shipped.weights, review_margin=1e9).save(strict)
    number = str(files["number"])
    assert main(["read", "--json", number]) == 0
    assert json.loads(capsys.readouterr().out)["needs_review"] is False
    assert main(["read", "--json", "--verifier", str(strict), "--checker", str(CHECKER_PATH), number]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["needs_review"] is True and out["text"] == "7210"
    assert main(["read", "--checker", str(strict), number]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_read_overlays_for_a_directory_mirror_its_folders(files, capsys, tmp_path):
    scans = tmp_path / "scans"
    (scans / "week1").mkdir(parents=True)
    (scans / "week1" / "number.png").write_bytes(files["number"].read_bytes())
    (scans / "number.png").write_bytes(files["number"].read_bytes())
    out = tmp_path / "overlays"
    out.mkdir()
    assert main(["read", "--overlay", str(out), str(scans)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[:2] for line in lines[1:]] == [
        [str(scans / "number.png"), "7210"],
        [str(scans / "week1" / "number.png"), "7210"],
    ]
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*.png")) == [
        "number.overlay.png",
        "week1/number.overlay.png",
    ]
    one = tmp_path / "one"
    one.mkdir()
    (one / "number.png").write_bytes(files["number"].read_bytes())
    assert main(["read", "--overlay", str(tmp_path / "x.png"), str(one)]) == 2  # a directory: several images
    assert "directory" in capsys.readouterr().err
