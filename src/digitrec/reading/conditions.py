"""MNIST digits written with other pens and seen by other scanners: the robustness conditions.

Each condition re-renders a real MNIST digit as a scan of a page (the canvas of
`digitrec.reading.synth`: ink coverage on paper, light, noise, JPEG), at two strengths:

| condition | strength 1 | strength 2 |
|---|---|---|
| clean   | a plain scan (the reference) | the same |
| marker  | strokes 2-3 px wider (at MNIST's 20-px digit height) | 4-6 px wider |
| pencil  | grey, grainy ink at 50-60% darkness | 30-40% |
| blur    | defocus, sigma 0.8 px at MNIST scale | 1.5 px |
| lowres  | scanned with the digit 14-16 px tall, then enlarged | 8-10 px tall |
| jpeg    | JPEG quality 30 | quality 30 with the digit only 24-32 px tall |
| light   | a light gradient and vignetting | a deep gradient and a hard shadow |

The tests (a thick 1, a blurred 0), `benchmarks/robustness.py` and tuning share this one
implementation. The benchmark renders *test* digits for its report and *validation* digits for
tuning.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image
from scipy import ndimage

from digitrec.reading.synth import Style, compose, finish, ink_coverage

CONDITIONS = ("clean", "marker", "pencil", "blur", "lowres", "jpeg", "light")
STRENGTHS = (1, 2)
MNIST_HEIGHT = 20  # pixels: an MNIST digit's ink height, the unit the widths and sigmas are given in


@dataclass(frozen=True)
class Condition:
    name: str
    strength: int = 1

    def __post_init__(self) -> None:
        if self.name not in CONDITIONS:
            raise ValueError(f"unknown condition {self.name!r}; choose one of {', '.join(CONDITIONS)}")
        if self.strength not in STRENGTHS:
            raise ValueError(f"strength must be one of {STRENGTHS}, got {self.strength!r}")

    @property
    def label(self) -> str:
        return self.name if self.name == "clean" else f"{self.name}-{self.strength}"


def all_conditions() -> list[Condition]:
    """clean once, then every other condition at each strength."""
    return [Condition("clean")] + [Condition(n, s) for n in CONDITIONS[1:] for s in STRENGTHS]


def scan_style(rng: np.random.Generator) -> Style:
    """A plain office scan: near-white paper, dark ink, a little noise and scanner softness."""
    white = rng.uniform(0.92, 1.0)
    dark = rng.uniform(0.02, 0.12)
    return Style(
        kind="scan",
        paper=(white, white, white * rng.uniform(0.97, 1.0)),
        ink=(dark, dark, dark + rng.uniform(0, 0.15)),
        ink_opacity=rng.uniform(0.9, 1.0),
        noise=rng.uniform(0.0, 0.01),
        blur=rng.uniform(0.3, 0.7),
        rotation=rng.uniform(-4, 4),
        pen_sharpness=rng.uniform(0.7, 1.0),
    )


def disk(radius: float) -> np.ndarray:
    r = max(radius, 0.5)
    n = math.ceil(r)
    yy, xx = np.mgrid[-n : n + 1, -n : n + 1]
    return (xx * xx + yy * yy) <= r * r + 0.25


def widen_pen(images: np.ndarray, pixels: float) -> np.ndarray:
    """(N, 28, 28) digits written with a pen `pixels` wider: grey dilation by a disk of radius
    pixels / 2, as `marker_stroke` widens a marker's strokes, but in place: MNIST's 4-pixel margin
    leaves the widened digit inside its 28x28. A disk narrower than about 1.7 pixels is the one
    centre pixel, so smaller widths leave the digit as it is."""
    if pixels <= 0:
        return images
    footprint = disk(pixels / 2)
    return np.stack([ndimage.grey_dilation(image, footprint=footprint) for image in images])


def marker_stroke(coverage: np.ndarray, extra: float) -> np.ndarray:
    """Widen every stroke by `extra` pixels (grey dilation by a disk of radius extra / 2); the
    ink grows past the old edges, so the array grows with it."""
    pad = math.ceil(extra / 2) + 1
    return ndimage.grey_dilation(np.pad(coverage, pad), footprint=disk(extra / 2)).astype(np.float32)


def closed_up(coverage: np.ndarray, start: float = 6.0, most: float = 40.0, hole_px: int = 4) -> np.ndarray:
    """`marker_stroke` widened until the digit's loops have closed (fewer than `hole_px` pixels of
    paper left inside the ink): a felt-tip 8 or 9 whose holes have filled in."""
    extra = start
    while True:
        fat = marker_stroke(coverage, extra)
        ink = fat > 0.5
        if extra >= most or (ndimage.binary_fill_holes(ink) & ~ink).sum() < hole_px:
            return fat
        extra += 2.0


def render_closed_up(digit: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """A digit written so fat that its loops have closed up, scanned as the conditions are."""
    style = replace(scan_style(rng), pen_sharpness=1.0)
    height = int(rng.integers(70, 140))
    coverage = closed_up(ink_coverage(digit, height, 1.0, style.rotation))
    margin = int(rng.uniform(0.3, 0.8) * height)
    page = place(coverage, (coverage.shape[1] + 2 * margin, coverage.shape[0] + 2 * margin), rng)
    return finish(compose(page, style, rng), style)


def pencil_grain(coverage: np.ndarray, rng: np.random.Generator, amount: float) -> np.ndarray:
    """Pencil lead on paper's tooth: ink missing in fine random spots."""
    tooth = np.abs(rng.standard_normal(coverage.shape)).astype(np.float32)
    tooth = ndimage.gaussian_filter(tooth, 0.7)
    return coverage * np.clip(1 - amount * tooth, 0, 1)


def place(coverage: np.ndarray, canvas: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Ink coverage placed at a random spot of a (width, height) page with a margin."""
    w, h = canvas
    page = np.zeros((h, w), np.float32)
    ch, cw = min(coverage.shape[0], h), min(coverage.shape[1], w)
    y = int(rng.integers(0, max(1, h - ch + 1)))
    x = int(rng.integers(0, max(1, w - cw + 1)))
    page[y : y + ch, x : x + cw] = coverage[:ch, :cw]
    return page


def render_condition(
    digit: np.ndarray, condition: Condition, rng: np.random.Generator, marker_px: tuple[float, float] | None = None
) -> Image.Image:
    """One MNIST digit (28x28, uint8 or 0-1) written and scanned under `condition` (PIL RGB).
    `marker_px`: a marker's extra width is drawn from this range instead of the strength's (the
    training examples of `digitrec.making.pens` cover every width; the draws are the same)."""
    style = scan_style(rng)
    name, strong = condition.name, condition.strength == 2
    height = int(rng.integers(70, 140))  # the digit's ink height on the page, pixels
    if name == "jpeg" and strong:
        height = int(rng.integers(24, 33))
    px = height / MNIST_HEIGHT  # page pixels per MNIST pixel
    if name == "marker":
        extra = rng.uniform(*(marker_px or ((4, 6) if strong else (2, 3))))
        style = replace(style, pen_sharpness=1.0)
        coverage = marker_stroke(ink_coverage(digit, height, 1.0, style.rotation), extra * px)
    else:
        coverage = ink_coverage(digit, height, style.pen_sharpness, style.rotation)
    margin = int(rng.uniform(0.3, 0.8) * height)
    canvas = (coverage.shape[1] + 2 * margin, coverage.shape[0] + 2 * margin)
    if name == "pencil":
        darkness = rng.uniform(0.3, 0.4) if strong else rng.uniform(0.5, 0.6)
        grey = rng.uniform(0.25, 0.4)
        style = replace(style, ink=(grey, grey, grey + 0.03), ink_opacity=1.0)
        coverage = pencil_grain(coverage, rng, 0.35 if strong else 0.2)
        # darkness: how much of the paper's light the pencil takes away at full coverage
        style = replace(style, ink_opacity=darkness / max(1 - grey, 1e-3))
    elif name == "blur":
        style = replace(style, blur=(1.5 if strong else 0.8) * px)
    elif name == "jpeg":
        style = replace(style, jpeg_quality=30, noise=rng.uniform(0.005, 0.02))
    elif name == "light":
        style = replace(
            style,
            gradient=rng.uniform(0.5, 0.7) if strong else rng.uniform(0.25, 0.4),
            gradient_angle=rng.uniform(0, 2 * math.pi),
            vignette=rng.uniform(0.2, 0.4) if strong else rng.uniform(0.1, 0.2),
            shadow=rng.uniform(0.4, 0.6) if strong else 0.0,
        )
    page = place(coverage, canvas, rng)
    if name == "lowres":
        return low_resolution_scan(page, style, rng, rng.uniform(8, 10) if strong else rng.uniform(14, 16), height)
    return finish(compose(page, style, rng), style)


def low_resolution_scan(
    page: np.ndarray, style: Style, rng: np.random.Generator, scanned_height: float, height: int
) -> Image.Image:
    """The page scanned with the digit only `scanned_height` pixels tall, then enlarged back to
    its size (bilinear, as an image viewer or a form system does)."""
    factor = scanned_height / height
    h, w = page.shape
    small_size = (max(4, round(w * factor)), max(4, round(h * factor)))
    small = np.asarray(Image.fromarray(page, mode="F").resize(small_size, Image.Resampling.BOX))
    scanned = compose(np.clip(small, 0, 1).astype(np.float32), replace(style, blur=0.3), rng)
    return scanned.resize((w, h), Image.Resampling.BILINEAR)
