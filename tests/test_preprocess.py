"""Each preprocessing step on pictures the tests make: decoding (modes, EXIF), polarity, background,
ink, size normalisation and centring; golden cases against MNIST itself."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from digitrec.models.inputs import Normalization
from digitrec.reading import ink as ik
from digitrec.reading import preprocess as pp
from digitrec.reading import synth


def best_shift_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Correlation of two 28x28 digits, best over shifts of at most one pixel (MNIST itself was
    centred to the nearest pixel)."""
    best = -1.0
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            shifted = np.roll(np.roll(a, dy, 0), dx, 1)
            best = max(best, float(np.corrcoef(shifted.ravel(), b.ravel())[0, 1]))
    return best


def page(
    digit: np.ndarray, kind: str = "scan", size: tuple[int, int] = (300, 260), fraction: float = 0.5, seed: int = 0
) -> Image.Image:
    """A clean picture of an MNIST digit: black ink on white paper ("scan") or white on black ("chalk")."""
    rng = np.random.default_rng(seed)
    return synth.render_digit(digit, rng, synth.clean_style(kind), canvas=size, height_fraction=(fraction, fraction))


def to28(image) -> np.ndarray:
    result = pp.prepare_digit(image)
    assert result.digit28 is not None, result.reason
    return result.digit28


# ---- golden cases ---------------------------------------------------------------------------------


def test_a_rendered_mnist_digit_comes_back_as_the_mnist_digit(mnist):
    # Black-on-white at 6x the size, anywhere on a page: preprocessing must undo exactly what
    # rendering did and land on MNIST's own 28x28 (same 20-pixel box, same centre of mass).
    scores = []
    for i in range(20):
        original = mnist.test_images[i].numpy() / 255.0
        ours = to28(synth.encode(page(mnist.test_images[i].numpy(), seed=i)))
        scores.append(best_shift_correlation(ours, original))
    assert min(scores) > 0.85, scores
    assert np.median(scores) > 0.95, scores


def test_an_mnist_image_itself_is_left_as_it_is(mnist):
    # An MNIST digit is already light ink on black, 20-pixel box, centred: preprocessing must not
    # invert, crop or move it noticeably.
    for i in range(10):
        original = mnist.test_images[i].numpy()
        ours = to28(original)
        assert best_shift_correlation(ours, original / 255.0) > 0.9


def test_digit_to_mnist_geometry():
    ink = np.zeros((200, 90), np.float32)
    ink[20:180, 30:60] = 1.0  # a tall bar, off-centre in its array
    out = pp.digit_to_mnist(ink, normalise_stroke=False)
    rows, cols = np.nonzero(out > 0)
    assert rows.max() - rows.min() + 1 == 20  # the long side fits the 20-pixel box exactly
    assert 3 <= cols.max() - cols.min() + 1 <= 5  # aspect ratio kept (160 x 30 -> 20 x ~4)
    yy, xx = np.mgrid[0:28, 0:28]
    com = ((out * yy).sum() / out.sum(), (out * xx).sum() / out.sum())
    assert abs(com[0] - pp.CENTRE) <= 0.5 and abs(com[1] - pp.CENTRE) <= 0.5
    assert out.min() >= 0 and out.max() <= 1 and out.dtype == np.float32


def test_shrinking_is_anti_aliased():
    # A fine checkerboard shrunk 10x must come out grey (averaged), not aliased black/white.
    ink = (np.indices((200, 200)).sum(0) % 2).astype(np.float32)
    out = pp.digit_to_mnist(ink, normalise_stroke=False)
    inside = out[out > 0]
    assert 0.35 < inside.mean() < 0.65 and inside.std() < 0.1


def test_a_thin_pen_is_thickened_to_mnist_stroke_width(mnist):
    # The same digit written with a pen a third as wide must reach MNIST's stroke width.
    cov = synth.ink_coverage(mnist.test_images[0].numpy(), 240)  # a 7, strokes ~30 px wide
    thin = ndimage.binary_erosion(cov > 0.5, iterations=11).astype(np.float32)
    assert pp.stroke_width(thin > 0.5) * 20 / 240 < 1.0  # really thin at the MNIST scale
    out = pp.digit_to_mnist(thin)
    assert pp.stroke_width(out >= 0.5) >= pp.MIN_STROKE
    assert pp.stroke_width(pp.digit_to_mnist(thin, normalise_stroke=False) >= 0.5) < pp.MIN_STROKE


def test_a_marker_is_thinned_but_a_blob_stays_a_blob(mnist):
    # The same digit written with a felt-tip marker: strokes far wider than MNIST's come out at
    # about MNIST's upper quartile, not as the wide bars the model rarely saw.
    cov = synth.ink_coverage(mnist.test_images[0].numpy(), 240)  # a 7, strokes ~30 px wide
    marker = ndimage.binary_dilation(cov > 0.5, iterations=20).astype(np.float32)
    assert pp.stroke_width(pp.digit_to_mnist(marker, normalise_stroke=False) >= 0.5) > pp.MAX_STROKE
    assert pp.stroke_width(pp.digit_to_mnist(marker) >= 0.5) <= pp.MAX_STROKE
    # The mark classifier still judges the digit as written (a thinned blob could pass for a 1).
    _, written = pp.digit_images(marker)
    assert written is not None and np.array_equal(written, pp.digit_to_mnist(marker, normalise_stroke=False))
    # An MNIST digit's own stroke is left alone, and so is a filled blob, which thinning would
    # only shrink (the mark classifier must still see a blob).
    plain = mnist.test_images[1].numpy() / 255.0
    assert np.array_equal(pp.digit_to_mnist(plain), pp.digit_to_mnist(plain, normalise_stroke=False))
    assert pp.digit_images(plain)[1] is None
    yy, xx = np.mgrid[-60:61, -60:61]
    blob = ((yy * yy + xx * xx) <= 55 * 55).astype(np.float32)
    assert np.count_nonzero(pp.digit_to_mnist(blob) >= 0.5) > 250  # still a filled disk 20 across


def test_model_input_is_normalised_like_training():
    digit = np.zeros((28, 28), np.float32)
    digit[10:18, 12:16] = 1.0
    x = pp.model_input([digit], Normalization(0.5, 0.25))
    assert tuple(x.shape) == (1, 1, 28, 28)
    assert float(x.min()) == pytest.approx(-2.0) and float(x.max()) == pytest.approx(2.0)


# ---- polarity, background, ink --------------------------------------------------------------------


def test_polarity_dark_on_light_and_light_on_dark_give_the_same_digit(mnist):
    digit = mnist.test_images[3].numpy()
    dark = to28(page(digit, "scan"))
    light = to28(page(digit, "chalk"))
    assert best_shift_correlation(dark, light) > 0.97
    assert ik.ink_is_dark(pp.to_gray(page(digit, "scan")))
    assert not ik.ink_is_dark(pp.to_gray(page(digit, "chalk")))


def shadowed(picture: Image.Image, angle: float) -> Image.Image:
    """`picture` half in a hard shadow (a straight edge at `angle` through the frame's centre with
    a penumbra 40 pixels wide, the far side at 40% of the light) under a deep light gradient, as a
    phone held over a page casts one."""
    gray = np.asarray(picture.convert("L"), np.float32) / 255
    h, w = gray.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    across = (xx - w / 2) * np.cos(angle) + (yy - h / 2) * np.sin(angle)
    light = (1 - 0.6 * np.clip(across / 40 + 0.5, 0, 1)) * (1 - 0.3 * (xx / w))
    return Image.fromarray(np.round(255 * gray * light).astype(np.uint8))


@pytest.mark.parametrize(("kind", "fast"), [("scan", True), ("scan", False), ("chalk", None)])
def test_a_digit_half_in_a_hard_shadow_keeps_its_polarity(mnist, kind, fast):
    # Lit paper is brighter than the paper in the shadow by more than the ink is darker than
    # either: against one paper level for the frame, the lit side looked like light ink and the
    # digit came out as a hole in a bright wedge. Chalk on a board in the same shadow stays light
    # ink (its strokes in the shadow are dimmed with the light, which the ink's contrast, measured
    # against the board, does not undo: only its polarity is asserted).
    for i, angle in zip(range(6), np.linspace(0.3, 5.5, 6)):
        digit = mnist.test_images[i].numpy()
        picture = shadowed(page(digit, kind, size=(400, 340), fraction=0.55, seed=i), float(angle))
        assert ik.ink_is_dark(pp.to_gray(picture)) == (kind == "scan"), i
        if fast is None:
            continue
        found = pp.prepare_digit(synth.encode(picture, "PNG"), fast=fast)
        assert found.digit28 is not None, (i, found.reason)
        assert best_shift_correlation(found.digit28, digit / 255.0) > 0.8, i


def test_background_removal_flattens_uneven_light():
    h, w = 240, 320
    light = np.linspace(0.45, 1.0, w, dtype=np.float32)[None, :].repeat(h, 0)  # dark left, bright right
    light *= 1 - 0.3 * ((np.mgrid[0:h, 0:w][0] / h - 0.5) ** 2)[..., None].squeeze()
    gray = light.copy()
    gray[100:140, 40:46] *= 0.2  # a stroke in the dark half
    gray[100:140, 270:276] *= 0.2  # and one in the bright half
    residual = ik.remove_background(1 - gray)
    paper = np.ones_like(gray, bool)
    paper[90:150, 30:56] = paper[90:150, 260:286] = False
    assert np.percentile(residual[paper], 99) < 0.05  # the lighting is gone
    # both strokes stand out equally: contrast is measured relative to the local paper
    assert residual[110:130, 41:45].mean() == pytest.approx(residual[110:130, 271:275].mean(), abs=0.05)
    assert residual[110:130, 41:45].mean() > 0.7


def test_noise_and_uneven_light_do_not_change_the_digit(mnist):
    digit = mnist.test_images[5].numpy()
    clean = to28(page(digit))
    rng = np.random.default_rng(1)
    harsh = synth.Style(
        "photo",
        paper=(0.85, 0.82, 0.75),
        ink=(0.1, 0.1, 0.3),
        ink_opacity=0.9,
        gradient=0.45,
        gradient_angle=0.7,
        vignette=0.35,
        shadow=0.3,
        texture=0.03,
        noise=0.03,
        blur=1.2,
        jpeg_quality=50,
    )
    photo = synth.render_digit(digit, rng, harsh, canvas=(400, 300), height_fraction=(0.4, 0.4))
    assert best_shift_correlation(to28(synth.encode(photo, "JPEG", quality=80)), clean) > 0.85


@pytest.mark.parametrize("kind", ["uniform", "gradient", "noisy photo"])
def test_a_blank_page_has_no_ink(kind):
    rng = np.random.default_rng(2)
    if kind == "uniform":
        image = Image.new("L", (300, 200), 228)
    elif kind == "gradient":
        image = Image.fromarray(np.linspace(90, 250, 300, dtype=np.uint8)[None, :].repeat(200, 0))
    else:
        style = synth.Style(
            "photo",
            paper=(0.9, 0.88, 0.8),
            gradient=0.4,
            vignette=0.35,
            shadow=0.3,
            texture=0.03,
            noise=0.03,
            blur=1.0,
            jpeg_quality=60,
        )
        image = synth.finish(synth.compose(np.zeros((240, 320), np.float32), style, rng), style)
    ink = ik.extract_ink(synth.encode(image))
    assert not ink.found
    assert pp.prepare_digit(synth.encode(image)).reason == "no ink found"


def test_a_ruled_line_is_not_ink_of_the_digit(mnist):
    image = page(mnist.test_images[0].numpy())
    array = np.asarray(image).copy()
    array[225:229, :, :] = 30  # a ruled line across the page, below the digit
    result = pp.prepare_digit(Image.fromarray(array))
    assert result.box[3] < 220 / result.ink.scale  # the digit box stops above the line
    only_line = np.full((200, 300), 235, np.uint8)
    only_line[100:104, 10:290] = 20
    assert pp.prepare_digit(only_line).reason.startswith("only a straight line")


def test_a_small_digit_in_a_big_photo_is_found(mnist):
    rng = np.random.default_rng(3)
    big = synth.render_digit(
        mnist.test_images[1].numpy(), rng, synth.clean_style(), canvas=(2400, 1800), height_fraction=(0.06, 0.06)
    )
    data = synth.encode(big, "JPEG", quality=90)
    reference = pp.prepare_digit(data, fast=False)
    assert reference.ink.scale == pytest.approx(2400 / ik.WORK_MAX_SIDE, rel=0.01)  # processed at working size
    expected = to28(page(mnist.test_images[1].numpy()))
    assert best_shift_correlation(reference.digit28, expected) > 0.85
    result = pp.prepare_digit(data)  # found in a small copy, refined in a crop
    assert best_shift_correlation(result.digit28, expected) > 0.85
    assert max(abs(a - b) for a, b in zip(result.input_box, reference.input_box)) <= 0.05 * 108


def test_thick_strokes_filling_the_frame_are_not_hollowed(mnist):
    # Strokes wider than the default background window must still come out solid.
    cov = synth.ink_coverage(mnist.test_images[2].numpy(), 300)  # a 1 with ~60 px strokes
    gray = 1 - 0.9 * np.pad(cov, 10)
    out = to28((gray * 255).astype(np.uint8))
    expected = to28(page(mnist.test_images[2].numpy()))
    assert best_shift_correlation(out, expected) > 0.9


# ---- decoding: modes, transparency, EXIF ------------------------------------------------------------


def reference_digit(mnist) -> tuple[np.ndarray, np.ndarray]:
    """(gray page uint8 with a black digit on white, its 28x28)."""
    gray = np.asarray(page(mnist.test_images[0].numpy()).convert("L"))
    return gray, to28(gray)


@pytest.mark.parametrize("mode", ["RGB", "CMYK", "P", "1", "I;16", "I", "F", "LA", "YCbCr"])
def test_every_colour_mode_gives_the_same_digit(mnist, mode):
    gray, expected = reference_digit(mnist)
    image = Image.fromarray(gray)
    if mode in ("I;16", "I"):
        converted = (
            Image.fromarray(gray.astype(np.uint16) * 257)
            if mode == "I;16"
            else Image.fromarray(gray.astype(np.int32) * 257, "I")
        )
    elif mode == "F":
        converted = Image.fromarray(gray.astype(np.float32) * 3.0 + 7.0, "F")  # any float range
    elif mode == "P":
        converted = image.convert("RGB").convert("P", palette=Image.ADAPTIVE, colors=16)
    elif mode == "1":
        converted = image.convert("1", dither=Image.Dither.NONE)  # a fax or a bilevel scan
    else:
        converted = image.convert(mode)
    if mode == "YCbCr":  # no file format keeps it (JPEG decodes to RGB): hand over the PIL image
        assert best_shift_correlation(to28(converted), expected) > 0.95
        return
    fmt = {"CMYK": "JPEG", "I": "TIFF", "F": "TIFF", "I;16": "PNG"}.get(mode, "PNG")
    data = synth.encode(converted, fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    assert Image.open(io.BytesIO(data)).mode.startswith(mode[0])  # really stored in that mode
    assert best_shift_correlation(to28(data), expected) > 0.95


def test_transparency_is_flattened_onto_paper(mnist):
    gray, expected = reference_digit(mnist)
    ink = 255 - gray  # alpha: opaque strokes on a clear canvas, as drawing apps save them
    black_strokes = np.dstack([np.zeros_like(gray)] * 3 + [ink])
    white_strokes = np.dstack([np.full_like(gray, 255)] * 3 + [ink])
    for rgba in (black_strokes, white_strokes):
        data = synth.encode(Image.fromarray(rgba, "RGBA"))
        assert best_shift_correlation(to28(data), expected) > 0.95
    # a photo with clear margins: the margins become paper, not a dark frame
    photo = np.dstack([gray] * 3 + [np.full_like(gray, 255)])
    photo[:, :25, 3] = 0
    assert best_shift_correlation(to28(Image.fromarray(photo, "RGBA")), expected) > 0.95
    # a palette image with a transparent colour
    pal = Image.fromarray(gray).convert("P", palette=Image.ADAPTIVE, colors=8)
    pal.info["transparency"] = int(np.asarray(pal)[0, 0])  # the paper colour is transparent
    assert best_shift_correlation(to28(synth.encode(pal)), expected) > 0.9


@pytest.mark.parametrize(
    "orientation,undo",
    [(3, Image.Transpose.ROTATE_180), (6, Image.Transpose.ROTATE_90), (8, Image.Transpose.ROTATE_270)],
)
def test_exif_rotation_of_phone_photos_is_applied(mnist, orientation, undo):
    upright = page(mnist.test_images[0].numpy(), size=(360, 240))
    expected = to28(upright)
    stored = upright.transpose(undo)  # what the camera wrote; the tag says how to turn it back
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = synth.encode(stored, "JPEG", quality=95, exif=exif.tobytes())
    decoded = pp.decode(data)
    assert decoded.size == upright.size
    assert best_shift_correlation(to28(data), expected) > 0.95


def test_inputs_as_bytes_path_pil_and_array_agree(mnist, tmp_path):
    image = page(mnist.test_images[4].numpy())
    path = tmp_path / "digit.png"
    image.save(path)
    variants = [
        path,
        str(path),
        path.read_bytes(),
        image,
        np.asarray(image),
        np.asarray(image.convert("L")),
        np.asarray(image.convert("L")).astype(np.float32) / 255,
    ]
    results = [to28(v) for v in variants]
    for r in results[1:]:
        assert np.abs(r - results[0]).max() < 0.02


def test_working_scale_keeps_small_images_and_shrinks_large_ones():
    small = np.zeros((100, 80), np.float32)
    assert ik.working_scale(small)[1] == 1.0
    large = np.zeros((3000, 1500), np.float32)
    shrunk, scale = ik.working_scale(large)
    assert max(shrunk.shape) == ik.WORK_MAX_SIDE and scale == pytest.approx(3000 / ik.WORK_MAX_SIDE, rel=0.01)
