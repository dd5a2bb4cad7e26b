"""Property tests (hypothesis) of the path from "an image someone handed us" to the model input.

Random arrays of random sizes (1..400 x 1..400), dtypes, channel counts and contents; random PIL
modes; random byte-level mutations of valid files in every format we decode. Properties:

- nothing but the documented `ImageError`s (one-line messages) ever comes out;
- a usable picture (at least 8x8, finite values in range) always gives a result, never an error;
- a result is a (28, 28) float32 digit on 0-1 that becomes a finite (1, 1, 28, 28) float32 model
  input, or a rejection with a reason;
- preprocessing is deterministic;
- a picture with no variation (any size, dtype, value) is "no ink found", never a digit;
- polarity does not matter: a digit written dark on light paper and the same picture inverted
  (light on dark) give the same model input; moving the digit on the page changes nothing.

Contents are drawn from a seeded numpy generator (noise, strokes, gradients, constants, special
float values) rather than element by element, so large arrays stay cheap while hypothesis still
shrinks a failure to a small size, a simple pattern and a seed.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from PIL import Image

from digitrec.errors import BadImageError, ImageError
from digitrec.reading import preprocess as pp
from digitrec.reading.recognize import Prepared, Reading, Recognizer

CORPUS = Path(__file__).resolve().parent / "fuzz" / "corpus"
# Pillow warns (and carries on) when it skips a broken EXIF block in a mutated file.
pytestmark = pytest.mark.filterwarnings("ignore:Corrupt EXIF data:UserWarning")
SETTINGS = dict(
    deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture], derandomize=True
)  # the same examples on every run: CI failures reproduce locally


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny model calls: a second thread only waits on a busy machine
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def recognizer() -> Recognizer:
    return Recognizer.load()


# ---- what every outcome must look like ------------------------------------------------------------


def outcome(recognizer: Recognizer, image, fast: bool = True) -> Prepared | ImageError:
    """prepare(image): the Prepared, or the ImageError it raised. Anything else propagates and
    fails the test with its traceback. `fast` False: the reference path (the whole frame at
    working resolution)."""
    try:
        prepared = recognizer.prepare(image, fast=fast)
    except ImageError as exc:
        message = str(exc)
        assert message and "\n" not in message and len(message) < 400, message
        assert exc.status in (415, 422)
        return exc
    assert isinstance(prepared, Prepared)
    if prepared.digit28 is None:
        assert isinstance(prepared.reason, str) and prepared.reason
    else:
        digit = prepared.digit28
        assert prepared.reason is None
        assert digit.shape == (28, 28) and digit.dtype == np.float32
        assert np.isfinite(digit).all() and digit.min() >= 0.0 and digit.max() <= 1.0
        assert digit.max() > 0  # a digit has ink
        x = pp.model_input(digit, recognizer.normalization)
        assert x.shape == (1, 1, 28, 28) and x.dtype == np.float32 and np.isfinite(x).all()
    return prepared


def same(a: Prepared | ImageError, b: Prepared | ImageError) -> bool:
    if isinstance(a, ImageError) or isinstance(b, ImageError):
        return type(a) is type(b) and str(a) == str(b)
    if (a.digit28 is None) != (b.digit28 is None) or a.reason != b.reason or a.box != b.box:
        return False
    return a.digit28 is None or np.array_equal(a.digit28, b.digit28)


# ---- random arrays --------------------------------------------------------------------------------

PATTERNS = ("noise", "strokes", "gradient", "constant", "dots", "specials")
DTYPES = ("uint8", "uint16", "float32", "float64", "bool", "int32", "int64")


def make_array(seed: int, h: int, w: int, channels: int | None, dtype: str, pattern: str) -> np.ndarray:
    """A picture-like float array on 0-1 (H, W[, C]) in the given dtype's natural range."""
    rng = np.random.default_rng(seed)
    shape = (h, w) if channels is None else (h, w, channels)
    if pattern == "noise":
        a = rng.random(shape)
    elif pattern == "constant":
        a = np.full(shape, rng.random())
    elif pattern == "gradient":
        a = np.broadcast_to(np.linspace(0, 1, w)[None, :] * rng.random() + rng.random() * 0.5, (h, w)).copy()
        a = np.clip(a if channels is None else np.repeat(a[..., None], channels, axis=2), 0, 1)
    elif pattern == "dots":
        a = np.ones(shape)
        n = int(rng.integers(1, 20))
        a[rng.integers(0, h, n), rng.integers(0, w, n)] = 0.0
    elif pattern == "strokes":  # dark lines on light paper, like a written mark
        a = np.full(shape, rng.uniform(0.6, 1.0))
        for _ in range(int(rng.integers(1, 6))):
            y0, y1 = sorted(rng.integers(0, h, 2))
            x0, x1 = sorted(rng.integers(0, w, 2))
            t = max(1, int(rng.integers(1, max(2, min(h, w) // 8 + 1))))
            if rng.random() < 0.5:
                a[y0 : y0 + t, x0 : x1 + 1] = rng.uniform(0, 0.4)
            else:
                a[y0 : y1 + 1, x0 : x0 + t] = rng.uniform(0, 0.4)
    else:  # "specials": values at and beyond the edges of the range, NaN and inf for floats
        a = rng.choice([0.0, 1.0, -1.0, 2.0, 0.5, np.nan, np.inf, -np.inf], size=shape)
    if dtype == "bool":
        return np.nan_to_num(a) > 0.5
    if dtype.startswith("float"):
        return a.astype(dtype)
    a = np.nan_to_num(a, nan=0.0, posinf=1.0, neginf=0.0)
    top = {"uint8": 255, "uint16": 65535, "int32": 255, "int64": 255}[dtype]
    if pattern == "specials" and dtype.startswith("int"):
        return (a * top).astype(dtype)  # -255 and 510 included: out of range for an image
    return np.round(np.clip(a, 0, 1) * top).astype(dtype)


arrays = st.builds(
    make_array,
    seed=st.integers(0, 2**32 - 1),
    h=st.integers(1, 400),
    w=st.integers(1, 400),
    channels=st.sampled_from([None, 1, 3, 4]),
    dtype=st.sampled_from(DTYPES),
    pattern=st.sampled_from(PATTERNS),
)


# Arrays that are valid pictures by construction (no filtering, so hypothesis never gives up).
usable_arrays = st.builds(
    make_array,
    seed=st.integers(0, 2**32 - 1),
    h=st.integers(pp.MIN_SIDE, 400),
    w=st.integers(pp.MIN_SIDE, 400),
    channels=st.sampled_from([None, 1, 3, 4]),
    dtype=st.sampled_from(("uint8", "uint16", "float32", "bool")),
    pattern=st.sampled_from(PATTERNS[:-1]),
)


def usable(a: np.ndarray) -> bool:
    """An array that is a valid picture: big enough, finite, values in the dtype's image range."""
    if min(a.shape[:2]) < pp.MIN_SIDE:
        return False
    if a.dtype.kind == "f":
        return bool(np.isfinite(a).all())
    if a.dtype.kind == "i":
        return bool(a.min() >= 0 and a.max() <= 255)
    return True


@settings(max_examples=150, **SETTINGS)
@given(array=arrays)
def test_random_arrays_give_a_result_or_a_documented_error(recognizer, array):
    result = outcome(recognizer, array)
    if usable(array):
        assert not isinstance(result, ImageError), f"a usable {array.dtype} {array.shape} array was refused: {result}"
    if min(array.shape[:2]) < pp.MIN_SIDE:
        assert isinstance(result, BadImageError)
    assert same(result, outcome(recognizer, array.copy())), "preprocessing is not deterministic"


def test_a_16_bit_colour_array_is_the_same_picture_as_its_8_bit_values(recognizer, mnist):
    # 16-bit RGB is what imageio/OpenCV hand over for a 16-bit PNG or TIFF; the same picture
    # with 8-bit values must give the same model input.
    page = np.pad(255 - np.kron(mnist.test_images[0].numpy(), np.ones((3, 3), np.uint8)), 20, constant_values=255)
    rgb8 = np.repeat(page[..., None], 3, axis=2)
    a = outcome(recognizer, rgb8)
    b = outcome(recognizer, rgb8.astype(np.uint16) * 257)
    assert same(a, b), b


@settings(max_examples=30, **SETTINGS)
@given(
    seed=st.integers(0, 2**32 - 1),
    h=st.integers(1, 400),
    w=st.integers(1, 400),
    dtype=st.sampled_from(DTYPES),
    channels=st.sampled_from([None, 3, 4]),
)
def test_a_picture_without_variation_has_no_ink(recognizer, seed, h, w, dtype, channels):
    array = make_array(seed, h, w, channels, dtype, "constant")
    result = outcome(recognizer, array)
    if min(h, w) >= pp.MIN_SIDE:
        assert not isinstance(result, ImageError) and result.digit28 is None and result.reason == "no ink found"


@settings(max_examples=25, **SETTINGS)
@given(array=usable_arrays)
def test_read_on_random_arrays_never_fails(recognizer, array):
    reading = recognizer.read(array)
    assert isinstance(reading, Reading)
    assert reading.rejected == (reading.reason is not None)
    assert reading.text == "".join(str(d["digit"]) for d in reading.digits) or reading.rejected
    assert len(reading.digits) <= 20
    for d in reading.digits:
        x0, y0, x1, y1 = d["box"]
        assert 0 <= x0 < x1 <= array.shape[1] and 0 <= y0 < y1 <= array.shape[0]


# ---- random PIL modes and encodings ---------------------------------------------------------------

MODES = (
    "1",
    "L",
    "P",
    "RGB",
    "RGBA",
    "LA",
    "La",
    "RGBa",
    "PA",
    "RGBX",
    "CMYK",
    "YCbCr",
    "HSV",
    "LAB",
    "I",
    "I;16",
    "F",
)
Image.init()
ENCODINGS = tuple(f for f in pp.FORMATS if f in Image.SAVE)  # every format we decode that Pillow writes


@settings(max_examples=80, **SETTINGS)
@given(
    seed=st.integers(0, 2**32 - 1),
    h=st.integers(1, 200),
    w=st.integers(1, 200),
    pattern=st.sampled_from(("noise", "strokes", "gradient", "constant", "dots")),
    mode=st.sampled_from(MODES),
    encoding=st.sampled_from((None,) + ENCODINGS),
)
def test_any_mode_in_any_format(recognizer, seed, h, w, pattern, mode, encoding):
    rgb = (make_array(seed, h, w, 3, "float64", pattern) * 255).astype(np.uint8)
    try:
        image = Image.fromarray(rgb, "RGB").convert(mode)
    except ValueError:
        assume(False)  # a conversion Pillow does not offer
    source: Image.Image | bytes = image
    if encoding is not None:
        buffer = io.BytesIO()
        try:
            image.save(buffer, encoding)
        except (OSError, ValueError, KeyError):
            assume(False)  # this format cannot hold this mode
        source = buffer.getvalue()
    result = outcome(recognizer, source)
    if min(h, w) >= pp.MIN_SIDE:
        assert not isinstance(result, ImageError), f"{mode} as {encoding}: {result}"
    else:
        assert isinstance(result, BadImageError)


# ---- mutated files ------------------------------------------------------------------------------------

VALID_FILES = (
    "digit.png",
    "digit.jpg",
    "digit.gif",
    "digit.tiff",
    "digit.webp",
    "digit.bmp",
    "digit_16bit.png",
    "digit_cmyk.jpg",
    "digit_palette_transparent.png",
    "digit_exif6.jpg",
    "digit_float.tiff",
    "digit_progressive.jpg",
)


@settings(max_examples=300, **SETTINGS)
@given(
    name=st.sampled_from(VALID_FILES),
    cut=st.one_of(st.none(), st.floats(0.0, 1.0)),
    flips=st.lists(st.tuples(st.floats(0.0, 1.0, exclude_max=True), st.integers(1, 255)), max_size=12),
    insert=st.one_of(st.none(), st.tuples(st.floats(0.0, 1.0), st.binary(min_size=1, max_size=64))),
)
def test_mutated_files_give_a_result_or_a_documented_error(recognizer, name, cut, flips, insert):
    data = bytearray((CORPUS / name).read_bytes())
    for where, mask in flips:
        data[int(where * len(data))] ^= mask
    if insert is not None:
        at = int(insert[0] * len(data))
        data[at:at] = insert[1]
    if cut is not None:
        del data[int(cut * len(data)) :]
    outcome(recognizer, bytes(data))


@settings(max_examples=100, **SETTINGS)
@given(
    prefix=st.sampled_from(
        [
            b"",
            b"\x89PNG\r\n\x1a\n",
            b"\xff\xd8\xff",
            b"GIF89a",
            b"GIF87a",
            b"BM",
            b"II*\x00",
            b"MM\x00*",
            b"RIFF\x00\x00\x00\x00WEBP",
            b"P5\n",
            b"P6\n8 8\n255\n",
        ]
    ),
    body=st.binary(max_size=512),
)
def test_garbage_behind_a_real_signature_is_refused_cleanly(recognizer, prefix, body):
    result = outcome(recognizer, prefix + body)
    assume(not isinstance(result, Prepared))  # a few byte strings happen to be tiny valid images
    assert isinstance(result, ImageError)


# ---- polarity and position ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits(mnist) -> np.ndarray:
    return mnist.test_images[:500].numpy()


def on_paper(
    digit28: np.ndarray, scale: int, page: tuple[int, int], at: tuple[int, int], paper: float, ink: float
) -> np.ndarray:
    """An MNIST digit written with `ink` on `paper` (grey levels 0-1), `scale` times larger, at
    `at` (fractions of the free space) on a page of `page` extra pixels: float32 (H, W)."""
    big = np.asarray(
        Image.fromarray(digit28.astype(np.float32) / 255, "F").resize((28 * scale, 28 * scale), Image.BILINEAR)
    )
    big = np.clip(big, 0, 1)
    h, w = big.shape[0] + page[0], big.shape[1] + page[1]
    out = np.full((h, w), paper, np.float32)
    y, x = int(at[0] * page[0]), int(at[1] * page[1])
    out[y : y + big.shape[0], x : x + big.shape[1]] = paper + (ink - paper) * big
    return out


written = dict(
    index=st.integers(0, 499),
    scale=st.integers(1, 6),
    page=st.tuples(st.integers(8, 120), st.integers(8, 120)),
    paper=st.floats(0.6, 1.0),
    ink=st.floats(0.0, 0.35),
)


@settings(max_examples=40, **SETTINGS)
@given(**written, at=st.tuples(st.floats(0, 1), st.floats(0, 1)))
def test_polarity_does_not_matter(recognizer, digits, index, scale, page, paper, ink, at):
    dark_on_light = on_paper(digits[index], scale, page, at, paper, ink)
    a = outcome(recognizer, dark_on_light)
    b = outcome(recognizer, 1.0 - dark_on_light)  # the same picture, light ink on a dark board
    assert not isinstance(a, ImageError) and not isinstance(b, ImageError)
    assert a.reason == b.reason and a.box == b.box
    if a.digit28 is not None:
        np.testing.assert_allclose(a.digit28, b.digit28, atol=1e-4)
        x_a = pp.model_input(a.digit28, recognizer.normalization)
        x_b = pp.model_input(b.digit28, recognizer.normalization)
        np.testing.assert_allclose(x_a, x_b, atol=1e-3, rtol=0)


@settings(max_examples=30, **SETTINGS)
@given(**written, at=st.tuples(st.floats(0, 1), st.floats(0, 1)), to=st.tuples(st.floats(0, 1), st.floats(0, 1)))
def test_moving_the_digit_on_the_page_changes_nothing(recognizer, digits, index, scale, page, paper, ink, at, to):
    # The reference path works at the picture's own resolution here, but estimates the paper on
    # blocks of pixels: a move by a fraction of a block changes a few of the digit's pixels by a
    # few thousandths (as it always has). The fast path finds the digit in a smaller copy, where
    # the move is a fraction of a pixel: the digit is resampled a little differently, no more, and
    # a clearly written digit reads the same wherever it is.
    here, there = (
        on_paper(digits[index], scale, page, at, paper, ink),
        on_paper(digits[index], scale, page, to, paper, ink),
    )
    a, b = outcome(recognizer, here, fast=False), outcome(recognizer, there, fast=False)
    assert not isinstance(a, ImageError) and not isinstance(b, ImageError)
    assert a.reason == b.reason
    if a.digit28 is not None:
        np.testing.assert_allclose(a.digit28, b.digit28, atol=0.01)
    c, d = outcome(recognizer, here), outcome(recognizer, there)
    assert not isinstance(c, ImageError) and not isinstance(d, ImageError)
    assert c.reason == d.reason == a.reason
    if a.digit28 is not None and c.digit28 is not None and d.digit28 is not None:
        assert np.abs(c.digit28 - d.digit28).mean() < 0.08
        p_a, p_b, p_c, p_d = recognizer.probabilities([a.digit28, b.digit28, c.digit28, d.digit28])
        if min(p_a.max(), p_b.max()) > 0.9 and p_a.argmax() == p_b.argmax():
            assert p_c.argmax() == p_d.argmax() == p_a.argmax()
