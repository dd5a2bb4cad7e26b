"""Pictures that are not a digit: what `predict` must reject, made from nothing but code and the
fonts Debian ships (fonts-dejavu-core, fonts-liberation; nothing is downloaded).

Kinds (NEGATIVE_KINDS): a filled blob or smudge, a scribble, a crossed-out digit, a straight line
(not near vertical, which is a 1), a printed letter distorted like handwriting (shapes like A, S,
Z, B; never O, I or l, which *are* 0 and 1 in print), a printed word, scanner noise and blank paper.
Each is drawn as ink coverage and put on a page by `digitrec.reading.synth.compose`, the camera
and scanner model the digits go through, so the two differ only in what is written.

Used by the tests, `benchmarks/robustness.py` and the training of the not-a-digit check.
"""

from __future__ import annotations

import math
from dataclasses import replace
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

from digitrec.reading.conditions import place, scan_style
from digitrec.reading.synth import compose, finish, ink_coverage

NEGATIVE_KINDS = ("blob", "scribble", "crossed", "line", "letter", "word", "noise", "blank")
# Letters that are not also a digit in print: O, I, l, o (0 and 1) are left out.
LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZabdefghkmnpqrtuwxyz"
WORDS = ("total", "name", "date", "AB", "No.", "SZB", "Sum", "ok", "yes", "ref")
FONT_DIRS = (Path("/usr/share/fonts/truetype/dejavu"), Path("/usr/share/fonts/truetype/liberation"))


@cache
def font_files() -> tuple[Path, ...]:
    """The Debian TrueType fonts found on this machine (DejaVu, Liberation), sorted."""
    return tuple(sorted(p for d in FONT_DIRS if d.is_dir() for p in d.glob("*.ttf")))


def _smooth_path(rng: np.random.Generator, n: int, size: float, step: float) -> np.ndarray:
    """(n, 2) a wandering pen path: a random walk with momentum inside a size x size square."""
    points = np.empty((n, 2))
    pos, velocity = rng.uniform(0.2, 0.8, 2) * size, rng.normal(0, step, 2)
    for i in range(n):
        velocity = 0.8 * velocity + rng.normal(0, step, 2)
        pos = np.clip(pos + velocity, 0, size)
        points[i] = pos
    return points


def _stroke(points: np.ndarray, shape: tuple[int, int], width: float) -> np.ndarray:
    """Ink coverage (H, W) of a polyline drawn `width` pixels wide, soft-edged."""
    image = Image.new("L", (shape[1], shape[0]), 0)
    draw = ImageDraw.Draw(image)
    draw.line([tuple(p) for p in points], fill=255, width=max(1, round(width)), joint="curve")
    return ndimage.gaussian_filter(np.asarray(image, np.float32) / 255, 0.6)


def blob(rng: np.random.Generator, size: int) -> np.ndarray:
    """A filled smudge: a few overlapping ellipses, smoothed, sometimes with a ragged edge."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    cover = np.zeros((size, size), np.float32)
    for _ in range(int(rng.integers(1, 4))):
        cy, cx = rng.uniform(0.35, 0.65, 2) * size
        ry, rx = rng.uniform(0.12, 0.35, 2) * size
        angle = rng.uniform(0, math.pi)
        u = ((xx - cx) * math.cos(angle) + (yy - cy) * math.sin(angle)) / rx
        v = (-(xx - cx) * math.sin(angle) + (yy - cy) * math.cos(angle)) / ry
        cover = np.maximum(cover, (u * u + v * v <= 1).astype(np.float32))
    ragged = ndimage.gaussian_filter(rng.standard_normal((size, size)).astype(np.float32), size / 25)
    soft = ndimage.gaussian_filter(cover, size / 40) + 0.25 * ragged / (np.abs(ragged).max() + 1e-6)
    return np.clip((soft - 0.5) * 5 + 0.5, 0, 1)  # the ragged edge moves, the paper stays clean


def scribble(rng: np.random.Generator, size: int) -> np.ndarray:
    """A tangled scribble or hatching: a long wandering stroke that crosses itself many times."""
    n = int(rng.integers(40, 120))
    path = _smooth_path(rng, n, size * 0.9, size * rng.uniform(0.03, 0.07)) + size * 0.05
    return _stroke(path, (size, size), size * rng.uniform(0.02, 0.06))


def crossed(rng: np.random.Generator, size: int, digit: np.ndarray) -> np.ndarray:
    """A digit struck through: zigzag strokes or a dense hatch drawn over it."""
    cover = np.zeros((size, size), np.float32)
    ink = ink_coverage(digit, int(size * 0.8), max_width=int(size * 0.9))
    y0, x0 = (size - ink.shape[0]) // 2, (size - ink.shape[1]) // 2
    cover[y0 : y0 + ink.shape[0], x0 : x0 + ink.shape[1]] = ink
    strokes = int(rng.integers(4, 9))
    t = np.linspace(0, 1, strokes)
    xs = size * (0.05 + 0.9 * t)
    ys = np.where(np.arange(strokes) % 2 == 0, 0.1, 0.9) * size + rng.normal(0, 0.05 * size, strokes)
    zigzag = np.stack([xs, ys], 1)
    if rng.random() < 0.5:
        zigzag = zigzag[:, ::-1]  # hatch up and down instead
    return np.maximum(cover, _stroke(zigzag, (size, size), size * rng.uniform(0.04, 0.08)))


def line(rng: np.random.Generator, size: int) -> np.ndarray:
    """A straight line at least 35 degrees away from vertical (a vertical stroke is a 1)."""
    angle = math.radians(rng.uniform(-55, 55))  # from horizontal
    length = size * rng.uniform(0.6, 0.95) / 2
    c = size / 2
    dx, dy = length * math.cos(angle), length * math.sin(angle)
    points = np.array([[c - dx, c - dy], [c + dx, c + dy]])
    return _stroke(points, (size, size), size * rng.uniform(0.02, 0.06))


def printed(rng: np.random.Generator, size: int, text: str) -> np.ndarray:
    """`text` in a random Debian font, sheared, rotated and warped a little like handwriting."""
    fonts = font_files()
    if not fonts:
        raise FileNotFoundError("no fonts found; install fonts-dejavu-core and fonts-liberation")
    font = ImageFont.truetype(str(fonts[int(rng.integers(len(fonts)))]), int(size * 0.6))
    left, top, right, bottom = (int(v) for v in font.getbbox(text))
    image = Image.new("L", (right - left + 8, bottom - top + 8), 0)
    ImageDraw.Draw(image).text((4 - left, 4 - top), text, fill=255, font=font)
    shear = rng.uniform(-0.3, 0.3)
    image = image.transform(
        (image.width + int(abs(shear) * image.height), image.height),
        Image.Transform.AFFINE,
        (1, shear, -max(shear, 0) * image.height, 0, 1, 0),
        Image.Resampling.BILINEAR,
    )
    cover = np.asarray(image.rotate(rng.uniform(-10, 10), Image.Resampling.BILINEAR, expand=True), np.float32) / 255
    # a gentle elastic warp: a hand does not draw print's straight lines
    h, w = cover.shape
    field = [ndimage.gaussian_filter(rng.standard_normal((h, w)), max(h, w) / 8) for _ in range(2)]
    field = [f / (np.abs(f).max() + 1e-6) * 0.03 * max(h, w) for f in field]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cover = ndimage.map_coordinates(cover, [yy + field[0], xx + field[1]], order=1)
    if rng.random() < 0.3:  # written with a marker
        cover = ndimage.grey_dilation(cover, size=(3, 3))
    return np.clip(cover, 0, 1).astype(np.float32)


def render_negative(kind: str, rng: np.random.Generator, digit: np.ndarray | None = None) -> Image.Image:
    """One picture of `kind` (NEGATIVE_KINDS) on a scanned page (PIL RGB). `crossed` strikes
    through `digit` (28x28 MNIST), which it needs."""
    if kind not in NEGATIVE_KINDS:
        raise ValueError(f"unknown kind {kind!r}; choose one of {', '.join(NEGATIVE_KINDS)}")
    style = scan_style(rng)
    size = int(rng.integers(60, 140))
    if kind == "blob":
        cover = blob(rng, size)
    elif kind == "scribble":
        cover = scribble(rng, size)
    elif kind == "crossed":
        if digit is None:
            raise ValueError("a crossed-out digit needs the digit")
        cover = crossed(rng, size, digit)
    elif kind == "line":
        cover = line(rng, size)
    elif kind == "letter":
        cover = printed(rng, size, LETTERS[int(rng.integers(len(LETTERS)))])
    elif kind == "word":
        cover = printed(rng, int(size * 0.6), WORDS[int(rng.integers(len(WORDS)))])
    else:
        cover = np.zeros((size, size), np.float32)
    margin = int(rng.uniform(0.3, 0.8) * size)
    page = place(cover, (cover.shape[1] + 2 * margin, cover.shape[0] + 2 * margin), rng)
    if kind == "noise":  # speckle and dust all over: nothing written
        page = (rng.random(page.shape) < rng.uniform(0.002, 0.02)).astype(np.float32)
        page = ndimage.grey_dilation(page, size=(2, 2)) * rng.uniform(0.3, 1.0)
        style = replace(style, noise=rng.uniform(0.01, 0.05))
    return finish(compose(page, style, rng), style)
