"""An iPhone photo (HEIC, stored sideways with an EXIF orientation) is read through the CLI, in a
folder, and through the HTTP API, as its JPEG twin is."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from digitrec.cli import main
from digitrec.reading import synth
from digitrec.server import create_app


def heic_photo(digit: np.ndarray, seed: int) -> tuple[bytes, bytes]:
    """(HEIC stored on its side with orientation 6, the upright picture as PNG)."""
    rng = np.random.default_rng(seed)
    upright = synth.render_digit(digit, rng, synth.clean_style(), canvas=(300, 400), height_fraction=(0.5, 0.5))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to view: how phones store a portrait photo
    buffer = io.BytesIO()
    upright.transpose(Image.Transpose.ROTATE_90).save(buffer, "HEIF", quality=85, exif=exif.tobytes())
    return buffer.getvalue(), synth.encode(upright, "PNG")


@pytest.fixture(scope="module")
def photos(mnist, tmp_path_factory) -> tuple[Path, list[int]]:
    folder = tmp_path_factory.mktemp("iphone")
    labels = []
    for i in (0, 1, 2):  # a 7, a 2 and a 1: none of them reads as itself on its side
        heic, _ = heic_photo(mnist.test_images[i].numpy(), i)
        (folder / f"IMG_000{i}.HEIC").write_bytes(heic)
        labels.append(int(mnist.test_labels[i]))
    return folder, labels


def test_the_cli_reads_heic_files_and_folders_of_them(photos, capsys):
    folder, labels = photos
    code = main(["predict", "--json", str(folder / "IMG_0000.HEIC"), str(folder)])
    out, err = capsys.readouterr()
    assert code == 0, err
    answers = [json.loads(line) for line in out.splitlines()]
    assert [a["file"] for a in answers] == [str(folder / "IMG_0000.HEIC")] + [
        str(folder / f"IMG_000{i}.HEIC") for i in range(3)
    ]
    assert [a["digit"] for a in answers] == [labels[0], *labels]
    assert not any(a["rejected"] for a in answers)


def test_the_api_reads_a_heic_upload_as_its_png_twin(mnist):
    heic, png = heic_photo(mnist.test_images[0].numpy(), 0)
    with TestClient(create_app()) as client:
        answers = [
            client.post("/v1/predict", files={"file": (name, data, kind)}).json()
            for name, data, kind in (("IMG_0001.HEIC", heic, "image/heic"), ("twin.png", png, "image/png"))
        ]
    assert answers[0]["digit"] == answers[1]["digit"] == int(mnist.test_labels[0])
    assert answers[0]["confidence"] == pytest.approx(answers[1]["confidence"], abs=0.02)
