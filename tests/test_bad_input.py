"""Bad input, file by file: a one-line error for each bad file (415 not an image, 422 unusable), the
other files of the same call still processed (in this process or shared out with --jobs), exit code
2, never a traceback. Also the images that look exotic but are fine (16-bit, CMYK, palette, phone
MPO) are read, not refused."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from digitrec.cli import main
from digitrec.errors import BadImageError, NotAnImageError
from digitrec.reading import synth
from digitrec.reading.recognize import Recognizer


@pytest.fixture(scope="module")
def recognizer() -> Recognizer:
    return Recognizer.load()


@pytest.fixture(scope="module")
def digit_page(mnist) -> Image.Image:
    return synth.render_digit(
        mnist.test_images[0].numpy(),
        np.random.default_rng(0),
        synth.clean_style(),
        canvas=(120, 120),
        height_fraction=(0.6, 0.6),
    )  # a 7


def png_with_size(width: int, height: int) -> bytes:
    """A tiny valid PNG whose header claims `width` x `height` (a decompression bomb's shape)."""
    data = synth.encode(Image.new("L", (8, 8), 255))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return data[:8] + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk)) + data[33:]


def bad_files(digit_page: Image.Image) -> dict[str, tuple[bytes, type]]:
    png = synth.encode(digit_page)
    jpeg = synth.encode(digit_page, "JPEG", quality=90)
    frames = [digit_page.convert("P"), Image.new("P", digit_page.size, 0)]
    gif, tiff, apng = io.BytesIO(), io.BytesIO(), io.BytesIO()
    frames[0].save(gif, "GIF", save_all=True, append_images=frames[1:], duration=100)
    digit_page.save(tiff, "TIFF", save_all=True, append_images=[digit_page])
    digit_page.save(apng, "PNG", save_all=True, append_images=[digit_page.rotate(90)])
    return {
        "text.png": (b"this is not an image\n", NotAnImageError),
        "empty.png": (b"", NotAnImageError),
        "pdf.png": (b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n", NotAnImageError),
        "truncated.png": (png[: len(png) // 2], BadImageError),
        "truncated.jpg": (jpeg[: len(jpeg) // 2], BadImageError),
        "bomb.png": (png_with_size(100_000, 100_000), BadImageError),
        "absurd.png": (png_with_size(50_000, 10), BadImageError),
        "tiny.png": (synth.encode(Image.new("L", (4, 4), 255)), BadImageError),
        "animated.gif": (gif.getvalue(), BadImageError),
        "animated.png": (apng.getvalue(), BadImageError),
        "pages.tiff": (tiff.getvalue(), BadImageError),
    }


def test_each_bad_file_raises_a_one_line_error(recognizer, digit_page):
    for name, (data, error) in bad_files(digit_page).items():
        for call in (recognizer.predict, recognizer.read):
            with pytest.raises(error) as info:
                call(data)
            message = str(info.value)
            assert message and "\n" not in message and len(message) < 300, (name, message)
            assert info.value.status == (415 if error is NotAnImageError else 422)


@pytest.mark.parametrize(("command", "jobs"), [("predict", "1"), ("read", "1"), ("read", "2")])
def test_cli_reports_each_bad_file_and_processes_the_rest(tmp_path, capsys, digit_page, command, jobs):
    good = tmp_path / "good.png"
    digit_page.save(good)
    paths = []
    for name, (data, _) in bad_files(digit_page).items():
        (tmp_path / name).write_bytes(data)
        paths.append(str(tmp_path / name))
    (tmp_path / "scan.pdf").write_bytes(b"%PDF-1.4\n")
    (tmp_path / "empty").mkdir()
    # a PDF, a missing file and a directory without images
    paths += [str(tmp_path / "scan.pdf"), str(tmp_path / "missing.png"), str(tmp_path / "empty")]
    code = main([command, "--json", "--jobs", jobs, paths[0], str(good), *paths[1:]])
    out, err = capsys.readouterr()
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == len(paths)  # one line per bad file, no traceback
    assert "Traceback" not in err
    for path, line in zip(paths, lines):
        assert line.startswith(f"digitrec {command}: {path}: ")
    assert lines[-3].endswith(
        ": a PDF holds form pages: read them with a page template (digitrec read --template or --field)"
    )
    assert "a directory with no image files" in lines[-1]
    assert len(out.strip().splitlines()) == 1  # the good file was still processed
    assert '"good.png' in out or "good.png" in out


def test_exotic_but_valid_images_are_read(recognizer, digit_page):
    gray = digit_page.convert("L")
    cmyk = synth.encode(digit_page.convert("CMYK"), "JPEG", quality=95)
    sixteen = synth.encode(Image.fromarray(np.asarray(gray).astype(np.uint16) * 257))
    palette = synth.encode(digit_page.convert("P", palette=Image.ADAPTIVE, colors=8))
    transparent = digit_page.convert("P", palette=Image.ADAPTIVE, colors=8)
    transparent.info["transparency"] = int(np.asarray(transparent)[0, 0])
    webp = synth.encode(digit_page, "WEBP", quality=90)
    bmp = synth.encode(digit_page, "BMP")
    mpo = io.BytesIO()  # a phone's multi-picture JPEG: the first picture is the photo
    digit_page.save(mpo, "MPO", save_all=True, append_images=[digit_page.resize((60, 60))])
    for data in (cmyk, sixteen, palette, synth.encode(transparent), webp, bmp, mpo.getvalue()):
        prediction = recognizer.predict(data)
        assert prediction.digit == 7, prediction


def test_arrays_that_are_not_images_are_refused(recognizer):
    with pytest.raises(BadImageError):
        recognizer.predict(np.zeros((10, 10, 5), np.uint8))
    with pytest.raises(BadImageError):
        recognizer.predict(np.full((30, 30), np.nan, np.float32))
    with pytest.raises(BadImageError):
        recognizer.predict(np.zeros((30, 30), np.int32) - 5)
