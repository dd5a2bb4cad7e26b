"""Synthetic photos and scans of handwriting, made from real MNIST digits.

MNIST digits are re-rendered as ink on paper the way people hand them in: a pen stroke with a
crisp edge, written at any size and position, photographed under uneven light (gradient,
vignetting, a soft shadow), with paper texture, sensor noise, defocus and JPEG compression; or
scanned (clean, bright, lightly compressed); or chalk on a dark board (light on dark). Numbers are
several digits written on one line with varied spacing, some touching.

Used by the tests, the examples and `benchmarks/reading.py`. The benchmark renders MNIST *test*
digits only, so a reading score is about digits the model never saw.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image
from scipy import ndimage

KINDS = ("photo", "scan", "chalk")


@dataclass(frozen=True)
class Style:
    """How one picture is made. Colours are RGB on the 0-1 scale."""

    kind: str = "photo"  # one of KINDS
    paper: tuple[float, float, float] = (0.93, 0.92, 0.88)
    ink: tuple[float, float, float] = (0.08, 0.09, 0.20)
    ink_opacity: float = 0.95
    gradient: float = 0.0  # fraction of light lost across the frame (linear ramp)
    gradient_angle: float = 0.0  # radians
    vignette: float = 0.0  # fraction of light lost in the corners
    shadow: float = 0.0  # fraction of light lost under a soft shadow over part of the frame
    texture: float = 0.0  # amplitude of low-frequency paper texture, 0-1 scale
    noise: float = 0.0  # sensor noise standard deviation, 0-1 scale
    blur: float = 0.0  # defocus, Gaussian sigma in pixels
    rotation: float = 0.0  # degrees, counter-clockwise
    pen_sharpness: float = 1.0  # 1 = crisp ink edge; 0 = the soft MNIST grey ramp
    jpeg_quality: int | None = None  # None = lossless


# The settings every kind draws last, each uniformly from its kind's range: (photo, scan, chalk),
# as in KINDS. A seed makes the same picture only while the draws keep their order: this one.
FINISH_RANGES: dict[str, tuple[tuple[float, float], ...]] = {
    "texture": ((0, 0.03), (0, 0.01), (0.01, 0.04)),
    "noise": ((0.004, 0.03), (0, 0.01), (0.005, 0.03)),
    "blur": ((0.3, 1.5), (0.3, 0.8), (0.3, 1.2)),
    "rotation": ((-6, 6), (-4, 4), (-6, 6)),
    "pen_sharpness": ((0.5, 1.0), (0.6, 1.0), (0.4, 0.9)),
}


def _finish(rng: np.random.Generator, kind: str) -> dict[str, float]:
    """Paper texture, sensor noise, defocus, rotation and pen sharpness for a picture of `kind`."""
    column = KINDS.index(kind)
    return {name: rng.uniform(*ranges[column]) for name, ranges in FINISH_RANGES.items()}


def random_style(rng: np.random.Generator, kind: str | None = None) -> Style:
    """A plausible picture style; `kind` None draws photo 70%, scan 20%, chalk 10%."""
    if kind is None:
        kind = str(rng.choice(KINDS, p=[0.7, 0.2, 0.1]))
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; choose one of {KINDS}")
    ink_choices = [(0.05, 0.05, 0.07), (0.08, 0.10, 0.35), (0.12, 0.12, 0.14), (0.25, 0.08, 0.10)]
    if kind == "scan":
        white = rng.uniform(0.93, 1.0)
        return Style(
            kind=kind,
            paper=(white, white, white),
            ink=ink_choices[rng.integers(len(ink_choices))],
            ink_opacity=rng.uniform(0.8, 1.0),
            **_finish(rng, kind),
            jpeg_quality=int(rng.integers(80, 96)) if rng.random() < 0.5 else None,
        )
    if kind == "chalk":
        board = rng.uniform(0.08, 0.25)
        chalk = rng.uniform(0.8, 0.95)
        return Style(
            kind=kind,
            paper=(board * 0.9, board, board * 0.95),
            ink=(chalk, chalk, chalk * 0.97),
            ink_opacity=rng.uniform(0.75, 0.95),
            gradient=rng.uniform(0, 0.3),
            gradient_angle=rng.uniform(0, 2 * math.pi),
            vignette=rng.uniform(0, 0.3),
            **_finish(rng, kind),
            jpeg_quality=int(rng.integers(50, 95)),
        )
    tint = rng.uniform(-0.04, 0.02, size=3)
    red, green, blue = (float(np.clip(rng.uniform(0.82, 0.97) + t, 0, 1)) for t in tint)
    return Style(
        kind="photo",
        paper=(red, green, blue),
        ink=ink_choices[rng.integers(len(ink_choices))],
        ink_opacity=rng.uniform(0.75, 1.0),
        gradient=rng.uniform(0, 0.45),
        gradient_angle=rng.uniform(0, 2 * math.pi),
        vignette=rng.uniform(0, 0.35),
        shadow=rng.uniform(0.15, 0.35) if rng.random() < 0.25 else 0.0,
        **_finish(rng, "photo"),
        jpeg_quality=int(rng.integers(45, 95)),
    )


# --- the ink layer ------------------------------------------------------------------------------


def crop_to_ink(digit: np.ndarray) -> np.ndarray:
    """A 28x28 MNIST digit (uint8 or 0-1 float) -> float 0-1 cropped to its non-zero pixels."""
    d = np.asarray(digit, dtype=np.float32)
    if d.max() > 1.0:
        d = d / 255.0
    rows, cols = np.nonzero(d > 0)
    if rows.size == 0:
        return d
    return d[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]


def ink_coverage(
    digit: np.ndarray, height: int, sharpness: float = 1.0, rotation: float = 0.0, max_width: int | None = None
) -> np.ndarray:
    """MNIST digit -> ink coverage (h, w) float 0-1 with the digit's ink `height` pixels tall
    (less if that would make it wider than `max_width`).

    Upscaling the anti-aliased 20-pixel digit gives a blurry grey ramp at the edges; a pen leaves a
    crisp edge, so the ramp is steepened around its midpoint (`sharpness` 1 = crisp, 0 = keep the
    ramp). The stroke centre lines and widths are the MNIST writer's, scaled.
    """
    crop = crop_to_ink(digit)
    scale = height / crop.shape[0]
    if max_width is not None:
        scale = min(scale, max_width / crop.shape[1])
    width = max(1, round(crop.shape[1] * scale))
    height = max(1, round(crop.shape[0] * scale))
    big = np.asarray(Image.fromarray(crop, mode="F").resize((width, height), Image.Resampling.BICUBIC))
    big = np.clip(big, 0, 1)
    if sharpness > 0:
        # smoothstep over a band whose width shrinks with sharpness: 1.0 keeps a 0.2-wide band
        band = 0.5 - 0.3 * sharpness
        t = np.clip((big - (0.5 - band)) / (2 * band), 0, 1)
        big = (1 - sharpness) * big + sharpness * t * t * (3 - 2 * t)
    if rotation:
        pad = int(0.2 * max(big.shape)) + 2
        big = np.pad(big, pad)
        big = ndimage.rotate(big, rotation, reshape=False, order=1)
        big = np.clip(big, 0, 1)
        rows, cols = np.nonzero(big > 0.01)
        big = big[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    return big.astype(np.float32)


# --- paper, light and camera ----------------------------------------------------------------------


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cell: float) -> np.ndarray:
    """Low-frequency noise, zero mean, unit-ish amplitude, features about `cell` pixels wide."""
    h, w = shape
    small = rng.standard_normal((max(2, int(h / cell) + 2), max(2, int(w / cell) + 2))).astype(np.float32)
    return np.asarray(Image.fromarray(small, mode="F").resize((w, h), Image.Resampling.BICUBIC))


def lighting(rng: np.random.Generator, shape: tuple[int, int], style: Style) -> np.ndarray:
    """Multiplicative illumination (H, W): 1 = full light."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    u, v = (xx + 0.5) / w - 0.5, (yy + 0.5) / h - 0.5  # -0.5..0.5
    light = np.ones(shape, np.float32)
    if style.gradient:
        ramp = u * math.cos(style.gradient_angle) + v * math.sin(style.gradient_angle)  # about -0.7..0.7
        light *= 1 - style.gradient * (ramp / 1.42 + 0.5)
    if style.vignette:
        light *= 1 - style.vignette * np.clip((u * u + v * v) / 0.5, 0, 1)
    if style.shadow:
        angle = rng.uniform(0, 2 * math.pi)
        edge = u * math.cos(angle) + v * math.sin(angle) - rng.uniform(-0.3, 0.3)
        softness = rng.uniform(0.03, 0.12)
        light *= 1 - style.shadow / (1 + np.exp(-edge / softness))
    return light


def compose(coverage: np.ndarray, style: Style, rng: np.random.Generator) -> Image.Image:
    """Ink coverage (H, W) 0-1 placed on paper -> an RGB picture as a camera or scanner sees it."""
    shape = coverage.shape
    light = lighting(rng, shape, style)
    paper: np.ndarray = np.array(style.paper, np.float32)[None, None, :] * np.ones(shape + (1,), np.float32)
    if style.texture:
        paper = paper * (1 + style.texture * _smooth_noise(rng, shape, cell=rng.uniform(4, 30)))[..., None]
    alpha = (coverage * style.ink_opacity)[..., None]
    ink = np.array(style.ink, np.float32)[None, None, :]
    rgb = (paper * (1 - alpha) + ink * alpha) * light[..., None]
    if style.blur:
        rgb = ndimage.gaussian_filter(rgb, sigma=(style.blur, style.blur, 0))
    if style.noise:
        rgb = rgb + rng.normal(0, style.noise, rgb.shape).astype(np.float32)
    return Image.fromarray(np.clip(rgb * 255 + 0.5, 0, 255).astype(np.uint8), "RGB")


def finish(image: Image.Image, style: Style) -> Image.Image:
    """Apply the style's JPEG round trip (the artefacts a phone or web upload adds)."""
    if style.jpeg_quality is None:
        return image
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=style.jpeg_quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def encode(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    """An image as file bytes (what a user would upload)."""
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


# --- single digits and numbers ------------------------------------------------------------------


def render_digit(
    digit: np.ndarray,
    rng: np.random.Generator,
    style: Style | None = None,
    canvas: tuple[int, int] | None = None,
    height_fraction: tuple[float, float] = (0.2, 0.75),
) -> Image.Image:
    """One MNIST digit written somewhere on a page, as a photo/scan (PIL RGB).

    `canvas` (width, height) defaults to a random 160-640 pixel frame; the digit's ink height is a
    random fraction of the frame height, its position random with a margin.
    """
    style = style or random_style(rng)
    if canvas is None:
        canvas = (int(rng.integers(160, 640)), int(rng.integers(160, 640)))
    w, h = canvas
    height = max(12, int(h * rng.uniform(*height_fraction)))
    cov = ink_coverage(digit, height, style.pen_sharpness, style.rotation)
    if cov.shape[1] > 0.9 * w:  # a wide digit on a narrow frame: shrink it to fit
        cov = ink_coverage(digit, max(12, int(height * 0.9 * w / cov.shape[1])), style.pen_sharpness, style.rotation)
    page = np.zeros((h, w), np.float32)
    y = int(rng.integers(0, max(1, h - cov.shape[0])))
    x = int(rng.integers(0, max(1, w - cov.shape[1])))
    ch, cw = min(cov.shape[0], h - y), min(cov.shape[1], w - x)
    page[y : y + ch, x : x + cw] = cov[:ch, :cw]
    return finish(compose(page, style, rng), style)


@dataclass(frozen=True)
class SynthNumber:
    image: Image.Image  # RGB
    text: str
    boxes: list[tuple[int, int, int, int]]  # one (x0, y0, x1, y1) per digit, x1/y1 exclusive
    touching: int  # how many neighbouring pairs were written touching or overlapping


def render_number(
    digits: Sequence[np.ndarray],
    labels: Sequence[int],
    rng: np.random.Generator,
    style: Style | None = None,
    height: int | None = None,
    gap: tuple[float, float] = (0.08, 0.5),
    touch_probability: float = 0.2,
    touch_overlap: float = 0.08,
) -> SynthNumber:
    """Several MNIST digits written on one line, as a photo/scan.

    Gaps are drawn in units of the digit height from `gap`; with `touch_probability` a pair is
    written touching or slightly overlapping instead (bounding boxes overlapping by up to
    `touch_overlap` of the height). Each digit's size and baseline wobble a little, as in real
    handwriting.
    """
    if len(digits) != len(labels) or not digits:
        raise ValueError("need one label per digit and at least one digit")
    style = style or random_style(rng)
    height = height or int(rng.integers(40, 120))
    pieces = []
    for digit in digits:
        # People write the digits of a number about equally tall; a flat digit (MNIST has a few,
        # up to twice as wide as tall) is written less tall rather than twice as wide as the others.
        h = max(10, int(height * rng.uniform(0.88, 1.12)))
        pieces.append(
            ink_coverage(
                digit, h, style.pen_sharpness, style.rotation + rng.uniform(-3, 3), max_width=int(1.1 * height)
            )
        )
    margin_x = int(height * rng.uniform(0.3, 1.2))
    margin_y = int(height * rng.uniform(0.3, 0.9))
    xs, touching, x = [], 0, margin_x
    for i, piece in enumerate(pieces):
        if i:
            if rng.random() < touch_probability:
                x -= int(round(height * rng.uniform(0.0, touch_overlap)))
                touching += 1
            else:
                x += int(round(height * rng.uniform(*gap)))
        xs.append(x)
        x += piece.shape[1]
    width = x + margin_x
    total_h = height + 2 * margin_y + int(0.3 * height)
    page = np.zeros((total_h, width), np.float32)
    boxes = []
    for piece, x0 in zip(pieces, xs):
        y0 = margin_y + int(0.15 * height) + int(rng.uniform(-0.06, 0.06) * height) + (height - piece.shape[0]) // 2
        y0 = max(0, min(total_h - piece.shape[0], y0))
        region = page[y0 : y0 + piece.shape[0], x0 : x0 + piece.shape[1]]
        np.maximum(region, piece, out=region)  # overlapping strokes are one ink layer
        boxes.append((x0, y0, x0 + piece.shape[1], y0 + piece.shape[0]))
    image = finish(compose(page, style, rng), style)
    return SynthNumber(image=image, text="".join(str(int(v)) for v in labels), boxes=boxes, touching=touching)


def clean_style(kind: str = "scan") -> Style:
    """A noiseless, unrotated style (golden tests): black ink on white, or white on black."""
    if kind == "chalk":
        return Style(kind="chalk", paper=(0.0, 0.0, 0.0), ink=(1.0, 1.0, 1.0), ink_opacity=1.0)
    return replace(Style(kind=kind), paper=(1.0, 1.0, 1.0), ink=(0.0, 0.0, 0.0), ink_opacity=1.0)
