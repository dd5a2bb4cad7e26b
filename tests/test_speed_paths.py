"""The fast paths answer as the slow ones do.

`predict` finds the digit in a small copy of the picture and refines only its crop
(`digitrec.reading.preprocess.prepare_digit`), and JPEGs far larger than needed are decoded at
1/2, 1/4 or 1/8 of their size (`digitrec.reading.decode.decode_reduced`). The reference is the
whole frame at working resolution (`fast=False`). Photos of one MNIST digit, 350 px to 12 MP:
the same digit, probabilities and boxes close. Reading a number from a large JPEG decoded small
gives the same number, its boxes in the input's pixels.
"""

from __future__ import annotations

import io
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from digitrec.errors import NotAnImageError
from digitrec.reading import decode as dc
from digitrec.reading import synth
from digitrec.reading.recognize import Recognizer
from digitrec.reading.segment import READ_MAX_SIDE


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def recognizer() -> Recognizer:
    return Recognizer.load()


def photo(digit: np.ndarray, canvas: tuple[int, int], fraction: float, seed: int) -> bytes:
    """A digit written on paper, photographed (uneven light, noise, a little blur), as a JPEG."""
    rng = np.random.default_rng(seed)
    style = replace(synth.random_style(rng, "photo"), jpeg_quality=None, rotation=0.0)
    image = synth.render_digit(digit, rng, style, canvas=canvas, height_fraction=(fraction, fraction))
    return synth.encode(image, "JPEG", quality=90)


def close_boxes(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    """Boxes of the same ink seen at two resolutions: within a few pixels of the smaller one's."""
    size = max(b[2] - b[0], b[3] - b[1])
    return max(abs(u - v) for u, v in zip(a, b)) <= max(3, 0.04 * size)


@pytest.mark.parametrize(
    "canvas,fraction,indices",
    [((342, 350), 0.6, (0, 1, 2)), ((1024, 768), 0.4, (3, 4, 5)), ((4032, 3024), 0.3, (7,))],
)
def test_the_fast_path_reads_photos_as_the_reference_does(recognizer, mnist, canvas, fraction, indices):
    for index in indices:
        data = photo(mnist.test_images[index].numpy(), canvas, fraction, seed=index)
        fast, reference = recognizer.prepare(data), recognizer.prepare(data, fast=False)
        assert fast.reason is None and reference.reason is None
        p, q = recognizer.probabilities([fast.digit28, reference.digit28])
        assert p.argmax() == q.argmax() == int(mnist.test_labels[index])
        assert np.abs(p - q).max() < 0.02, (index, np.abs(p - q).max())
        assert fast.box is not None and reference.box is not None and close_boxes(fast.box, reference.box)


def test_a_large_jpeg_is_decoded_small_and_upright(mnist):
    upright = Image.new("L", (4000, 3000), 230)
    upright.paste(0, (100, 200, 300, 1000))  # a dark bar near the top left corner
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # what the camera wrote: 3000 x 4000
    exif = Image.Exif()
    exif[0x0112] = 6  # ... and the tag that turns it back
    data = synth.encode(stored, "JPEG", quality=90, exif=exif.tobytes())
    decoded = dc.decode_reduced(data, 512, gray=True)
    assert decoded.factor == 4 and decoded.size == (4000, 3000)  # 1/8 would be smaller than asked
    assert decoded.image.size == (1000, 750) and decoded.image.mode == "L"
    pixels = np.asarray(decoded.image)
    assert pixels[50:250, 25:75].mean() < 40 and pixels[400:, 400:].mean() > 200  # the bar, upright
    assert dc.decode_reduced(data, 3000).factor == 1  # not twice as large as needed: decoded whole
    assert dc.decode_reduced(synth.encode(upright, "PNG"), 100).factor == 1  # only JPEGs scale as they decode


def test_a_number_in_a_large_jpeg_is_read_as_from_the_whole_picture(recognizer, mnist):
    rng = np.random.default_rng(21)
    idx = rng.choice(len(mnist.test_labels), size=4, replace=False)
    images, labels = [mnist.test_images[i].numpy() for i in idx], [int(mnist.test_labels[i]) for i in idx]
    number = synth.render_number(images, labels, rng, synth.clean_style(), height=700, touch_probability=0)
    assert max(number.image.size) >= 2 * READ_MAX_SIDE  # decoded at half size at least
    data = synth.encode(number.image, "JPEG", quality=90)
    small, whole = recognizer.read(data), recognizer.read(number.image)
    assert small.text == whole.text == number.text
    for a, b in zip(small.digits, whole.digits):
        assert close_boxes(tuple(a["box"]), tuple(b["box"]))
        assert abs(a["confidence"] - b["confidence"]) < 0.02


def test_a_heic_photo_is_read_upright(recognizer, mnist):
    rng = np.random.default_rng(5)
    digit = mnist.test_images[0].numpy()  # a 7: turned a quarter, it reads as nothing like one
    upright = synth.render_digit(digit, rng, synth.clean_style(), canvas=(360, 240), height_fraction=(0.6, 0.6))
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # the phone stored it sideways ...
    exif = Image.Exif()
    exif[0x0112] = 6  # ... with the tag that turns it upright
    buffer = io.BytesIO()
    stored.save(buffer, "HEIF", quality=90, exif=exif.tobytes())
    data = buffer.getvalue()
    assert Image.open(io.BytesIO(data)).format == "HEIF"
    assert dc.decode(data).size == (360, 240)
    prediction = recognizer.predict(data)
    assert prediction.digit == int(mnist.test_labels[0]) and not prediction.rejected
    reference = recognizer.predict(synth.encode(upright, "PNG"))
    assert abs(prediction.confidence - reference.confidence) < 0.02


def test_heif_is_among_the_formats_named_when_refusing():
    with pytest.raises(NotAnImageError, match="HEIF"):
        dc.decode(b"this is not an image, but text")
