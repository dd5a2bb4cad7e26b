"""Synthetic form fields made from real MNIST digits, with their ground truth.

Two kinds of field, as found on paper forms:

- a comb field: a row of printed boxes, one digit per box, some boxes left empty, some digits
  touching or crossing their box's frame (written too low, too far left, too big);
- a number written on a printed ruled line: the line under the digits' feet, touching or crossing
  them, sometimes dashed or dotted, slightly skewed.

The printed lines are 1-3 pixels wide, black to mid grey (0-120 on 0-255) or a colour seen in grey;
digits are 40-80 pixels tall, as on a 200-300 dpi scan. The handwriting itself comes from
`digitrec.reading.synth` (a digit's ink at a given height, the layout of a number, the paper,
light and camera styles); this module adds the print and keeps the masks of what is print and what
is handwriting, so that removing the print can be measured pixel by pixel.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image
from scipy import ndimage

from digitrec.reading import synth

PATTERNS = ("solid", "dashed", "dotted")
Box = tuple[int, int, int, int]  # x0, y0, x1, y1; x1 and y1 exclusive


@dataclass(frozen=True)
class LineLook:
    """How the printed lines of one field look."""

    width: float  # pixels
    rgb: tuple[float, float, float]  # 0-1; grey or a colour
    pattern: str  # one of PATTERNS
    dash: float  # pixels of ink per dash (dotted: per dot)
    gap: float  # pixels of paper between dashes or dots


@dataclass(frozen=True)
class FormField:
    """A rendered field and what is in it."""

    image: np.ndarray  # uint8 (H, W) grey, dark ink on light paper
    kind: str  # "comb" or "ruled"
    labels: tuple[int | None, ...]  # comb: one per box, None when empty; ruled: the digits left to right
    boxes: tuple[Box, ...]  # comb: each box's interior; ruled: each digit's ink box
    line_mask: np.ndarray  # bool (H, W): printed line coverage >= 0.5
    hand_mask: np.ndarray  # bool (H, W): handwriting coverage >= 0.5
    crossing: int  # digits touching or crossing a printed line
    look: LineLook
    skew: float  # degrees, counter-clockwise
    unprinted: np.ndarray  # uint8 (H, W): the same handwriting, paper, light and noise without the print

    @property
    def text(self) -> str:
        return "".join(str(v) for v in self.labels if v is not None)


def random_look(rng: np.random.Generator, patterns: Sequence[float] = (1.0, 0.0, 0.0)) -> LineLook:
    """Line width 1-3 px; grey 0-120, or (30%) a colour whose grey is 40-150; `patterns` gives the
    odds of solid, dashed and dotted."""
    width = float(rng.uniform(1.0, 3.0))
    if rng.random() < 0.3:
        hue = rng.uniform(0, 1, 3)
        rgb = hue / max(float(hue.max()), 1e-6)  # a saturated colour ...
        lum = float(rgb @ np.array([0.299, 0.587, 0.114]))
        target = rng.uniform(40, 150) / 255  # ... scaled to the wanted grey
        rgb = np.clip(rgb * target / max(lum, 1e-6), 0, 1)
        colour = (float(rgb[0]), float(rgb[1]), float(rgb[2]))
    else:
        grey = float(rng.uniform(0, 120) / 255)
        colour = (grey, grey, grey)
    odds = np.asarray(patterns, float) / float(np.sum(patterns))
    pattern = str(rng.choice(PATTERNS, p=odds))
    if pattern == "dashed":
        dash, gap = float(rng.uniform(6, 18)), float(rng.uniform(3, 8))
    elif pattern == "dotted":
        dash, gap = float(rng.uniform(1, 2.5)), float(rng.uniform(2.5, 6))
    else:
        dash, gap = 1.0, 0.0
    return LineLook(width=width, rgb=colour, pattern=pattern, dash=dash, gap=gap)


# --- drawing ------------------------------------------------------------------------------------


def draw_segment(
    cover: np.ndarray, p0: tuple[float, float], p1: tuple[float, float], look: LineLook, phase: float = 0.0
) -> None:
    """Add an anti-aliased straight segment from p0 to p1 ((x, y) pixel centres) to `cover` in place.

    Coverage falls off linearly over one pixel at the stroke's edge (a box filter); dashes and
    dots follow the pattern along the segment, starting `phase` pixels into it.
    """
    (x0, y0), (x1, y1) = p0, p1
    length = math.hypot(x1 - x0, y1 - y0)
    if length == 0:
        return
    ux, uy = (x1 - x0) / length, (y1 - y0) / length
    pad = look.width + 2
    h, w = cover.shape
    c0, c1 = max(0, int(min(x0, x1) - pad)), min(w, int(max(x0, x1) + pad) + 1)
    r0, r1 = max(0, int(min(y0, y1) - pad)), min(h, int(max(y0, y1) + pad) + 1)
    if c0 >= c1 or r0 >= r1:
        return
    yy, xx = np.mgrid[r0:r1, c0:c1].astype(np.float32)
    along = (xx - x0) * ux + (yy - y0) * uy
    across = np.abs(-(xx - x0) * uy + (yy - y0) * ux)
    cov = np.clip(look.width / 2 + 0.5 - across, 0, 1) * np.clip(np.minimum(along, length - along) + 0.5, 0, 1)
    if look.pattern != "solid":
        period = look.dash + look.gap
        t = np.mod(along + phase, period)
        cov = cov * np.clip(np.minimum(t, look.dash - t) + 0.5, 0, 1)
    region = cover[r0:r1, c0:c1]
    np.maximum(region, cov, out=region)


def compose(
    hand: np.ndarray, lines: np.ndarray, look: LineLook, style: synth.Style, rng: np.random.Generator
) -> np.ndarray:
    """Handwriting and print coverage (H, W) -> uint8 grey scan or photo of the form.

    Print and ink both absorb light, so they multiply: handwriting over a line is darker than
    either. Light, defocus, noise and JPEG come from the style, as for `synth` pictures.
    """
    paper = np.asarray(style.paper, np.float32)
    line_rgb = np.asarray(look.rgb, np.float32)
    ink = np.asarray(style.ink, np.float32)
    printed = 1 - lines[..., None] * (1 - line_rgb / paper)
    inked = 1 - (hand * style.ink_opacity)[..., None] * (1 - ink / paper)
    rgb = paper * printed * inked * synth.lighting(rng, hand.shape, style)[..., None]
    if style.blur:
        rgb = ndimage.gaussian_filter(rgb, sigma=(style.blur, style.blur, 0))
    if style.noise:
        rgb = rgb + rng.normal(0, style.noise, rgb.shape).astype(np.float32)
    picture = Image.fromarray(np.clip(rgb * 255 + 0.5, 0, 255).astype(np.uint8), "RGB")
    return np.asarray(synth.finish(picture, style).convert("L"))


def compose_pair(
    hand: np.ndarray, lines: np.ndarray, look: LineLook, style: synth.Style, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """The field with and without its print, under the very same light and noise."""
    seed = int(rng.integers(2**63))
    return (
        compose(hand, lines, look, style, np.random.default_rng(seed)),
        compose(hand, np.zeros_like(lines), look, style, np.random.default_rng(seed)),
    )


def field_style(rng: np.random.Generator) -> synth.Style:
    """A scan (60%) or a photo (40%) of a form: dark ink on light paper, never chalk. The digits'
    own rotation is left to each field (a form is not photographed at 6 degrees)."""
    style = synth.random_style(rng, "scan" if rng.random() < 0.6 else "photo")
    return replace(style, rotation=0.0, blur=min(style.blur, 1.0))


# --- comb fields --------------------------------------------------------------------------------


def _place(page: np.ndarray, piece: np.ndarray, x: int, y: int) -> Box:
    """Add a digit's ink at (x, y), clipped to the page; its box on the page."""
    h, w = page.shape
    xa, ya = max(0, x), max(0, y)
    xb, yb = min(w, x + piece.shape[1]), min(h, y + piece.shape[0])
    region = page[ya:yb, xa:xb]
    np.maximum(region, piece[ya - y : yb - y, xa - x : xb - x], out=region)
    return (xa, ya, xb, yb)


def _digit_offset(rng: np.random.Generator, room_x: int, room_y: int, spill: float, cross: bool) -> tuple[int, int]:
    """Where a digit sits in its box: centred with some jitter, or pushed `spill` pixels over one
    of the box's edges (down most often, as people write low in boxes)."""
    jitter_x, jitter_y = max(0, room_x) // 4, max(0, room_y) // 4
    if not cross:
        return (
            room_x // 2 + int(rng.integers(-jitter_x, jitter_x + 1)),
            room_y // 2 + int(rng.integers(-jitter_y, jitter_y + 1)),
        )
    side = rng.choice(4, p=[0.45, 0.2, 0.2, 0.15])  # bottom, left, right, top
    dx = room_x // 2 + int(rng.integers(-jitter_x, jitter_x + 1))
    dy = room_y // 2
    amount = int(round(spill))
    if side == 0:
        dy = room_y + amount
    elif side == 1:
        dx = -amount
    elif side == 2:
        dx = room_x + amount
    else:
        dy = -amount
    return dx, dy


def render_comb(
    digits: Sequence[np.ndarray],
    labels: Sequence[int],
    rng: np.random.Generator,
    n_boxes: int | None = None,
    empty_probability: float = 0.2,
    cross_probability: float = 0.3,
    separate_probability: float = 0.25,
    max_skew: float = 2.0,
    style: synth.Style | None = None,
    look: LineLook | None = None,
) -> FormField:
    """A comb field: `n_boxes` printed boxes (default: one per digit plus the empty ones) holding
    the digits in order; a box stays empty with `empty_probability` (at least one digit is
    written); a digit is written over its box's edge with `cross_probability`. Boxes share their
    side lines, or (`separate_probability`) are separate rectangles with a gap between them."""
    if len(digits) != len(labels) or not (digits or n_boxes):
        raise ValueError("need one label per digit, and digits or a number of boxes")
    style = style or field_style(rng)
    look = look or random_look(rng)
    if n_boxes is None:
        n_boxes = len(digits) + int(rng.binomial(len(digits), empty_probability))
    slots = np.sort(rng.choice(n_boxes, size=min(len(digits), n_boxes), replace=False))
    height = int(rng.integers(40, 81))
    bw, bh = int(height * rng.uniform(1.0, 1.35)), int(height * rng.uniform(1.2, 1.5))
    gap = int(bw * rng.uniform(0.1, 0.4)) if rng.random() < separate_probability else 0
    mx, my = int(bw * rng.uniform(0.25, 0.6)), int(bh * rng.uniform(0.3, 0.6))
    shape = (2 * my + bh, 2 * mx + n_boxes * bw + (n_boxes - 1) * gap)
    hand = np.zeros(shape, np.float32)
    lines = np.zeros(shape, np.float32)
    sharp = float(rng.uniform(0.5, 1.0))
    box_labels: list[int | None] = [None] * n_boxes
    crossing = 0
    for i in range(n_boxes):
        x0 = mx + i * (bw + gap)
        if gap or i == 0:
            draw_segment(lines, (x0, my), (x0, my + bh), look)
        draw_segment(lines, (x0 + bw, my), (x0 + bw, my + bh), look)
        if gap:
            draw_segment(lines, (x0, my), (x0 + bw, my), look)
            draw_segment(lines, (x0, my + bh), (x0 + bw, my + bh), look)
    if not gap:
        draw_segment(lines, (mx, my), (shape[1] - mx, my), look)
        draw_segment(lines, (mx, my + bh), (shape[1] - mx, my + bh), look)
    for slot, digit, label in zip(slots, digits, labels):
        size = int(height * rng.uniform(0.9, 1.1))
        piece = synth.ink_coverage(digit, size, sharp, float(rng.uniform(-5, 5)), max_width=int(0.95 * bw))
        cross = bool(rng.random() < cross_probability)
        spill = height * rng.uniform(0.0, 0.15)
        dx, dy = _digit_offset(rng, bw - piece.shape[1], bh - piece.shape[0], spill, cross)
        _place(hand, piece, mx + int(slot) * (bw + gap) + dx, my + dy)
        box_labels[int(slot)] = int(label)
        crossing += cross
    skew = float(rng.uniform(-max_skew, max_skew))
    hand, lines = (np.clip(ndimage.rotate(a, skew, reshape=False, order=1), 0, 1) for a in (hand, lines))
    interiors = [_rotated_box(mx + i * (bw + gap), my, bw, bh, look.width, skew, shape) for i in range(n_boxes)]
    image, unprinted = compose_pair(hand, lines, look, style, rng)
    return FormField(
        image=image,
        kind="comb",
        labels=tuple(box_labels),
        boxes=tuple(interiors),
        line_mask=lines >= 0.5,
        hand_mask=hand >= 0.5,
        crossing=crossing,
        look=look,
        skew=skew,
        unprinted=unprinted,
    )


def _rotated_box(x0: int, y0: int, bw: int, bh: int, width: float, skew: float, shape: tuple[int, int]) -> Box:
    """A box's interior (inside its lines) after the page is rotated by `skew` degrees about its
    centre, as `ndimage.rotate` does: the interior keeps its size, its centre moves."""
    cy, cx = (shape[0] - 1) / 2, (shape[1] - 1) / 2
    a = math.radians(skew)
    dx, dy = x0 + bw / 2 - cx, y0 + bh / 2 - cy
    nx, ny = cx + dx * math.cos(a) + dy * math.sin(a), cy - dx * math.sin(a) + dy * math.cos(a)
    half_w, half_h = (bw - width) / 2, (bh - width) / 2
    return (int(round(nx - half_w)), int(round(ny - half_h)), int(round(nx + half_w)), int(round(ny + half_h)))


# --- ruled lines --------------------------------------------------------------------------------


def render_ruled(
    digits: Sequence[np.ndarray],
    labels: Sequence[int],
    rng: np.random.Generator,
    touch_probability: float = 0.6,
    max_skew: float = 3.0,
    style: synth.Style | None = None,
    look: LineLook | None = None,
) -> FormField:
    """A number written on a printed line: `synth.render_number` lays the digits out (spacing,
    touching pairs, baseline wobble); the line runs under them, touching or crossing the digits'
    feet with `touch_probability`, solid 50%, dashed 25%, dotted 25%, skewed up to `max_skew`
    degrees. No digits: the line alone."""
    style = style or field_style(rng)
    look = look or random_look(rng, patterns=(0.5, 0.25, 0.25))
    height = int(rng.integers(40, 81))
    if digits:
        pen = replace(synth.clean_style("scan"), pen_sharpness=float(rng.uniform(0.5, 1.0)))
        number = synth.render_number(digits, labels, rng, pen, height=height)
        hand = 1 - np.asarray(number.image.convert("L"), np.float32) / 255
        boxes = tuple(number.boxes)
        feet = float(np.median([b[3] for b in boxes]))
    else:
        hand = np.zeros((int(height * rng.uniform(1.8, 2.6)), int(height * rng.uniform(3, 9))), np.float32)
        boxes, feet = (), hand.shape[0] * 0.7
    if rng.random() < touch_probability:
        below = rng.uniform(-0.1, 0.02) * height  # through the feet, or just touching them
    else:
        below = rng.uniform(0.04, 0.2) * height
    hand = np.pad(hand, ((0, max(0, int(feet + below + 0.2 * height) - hand.shape[0])), (0, 0)))
    lines = np.zeros_like(hand)
    w = hand.shape[1]
    slope = math.tan(math.radians(rng.uniform(-max_skew, max_skew)))
    xa, xb = w * rng.uniform(0, 0.08), w * (1 - rng.uniform(0, 0.08))
    y_mid = feet + below
    draw_segment(
        lines,
        (xa, y_mid + slope * (xa - w / 2)),
        (xb, y_mid + slope * (xb - w / 2)),
        look,
        phase=float(rng.uniform(0, look.dash + look.gap)),
    )
    line_y = y_mid + slope * (np.array([(b[0] + b[2]) / 2 for b in boxes]) - w / 2)
    crossing = int(sum(b[3] >= y - look.width / 2 - 1 for b, y in zip(boxes, line_y)))
    image, unprinted = compose_pair(hand, lines, look, style, rng)
    return FormField(
        image=image,
        kind="ruled",
        labels=tuple(int(v) for v in labels),
        boxes=boxes,
        line_mask=lines >= 0.5,
        hand_mask=hand >= 0.5,
        crossing=crossing,
        look=look,
        skew=-math.degrees(math.atan(slope)),
        unprinted=unprinted,
    )


def blank_comb(rng: np.random.Generator, n_boxes: int = 6, **kwargs) -> FormField:
    """An empty comb field (print only): nothing in it may be read as a digit."""
    return render_comb([], [], rng, n_boxes=n_boxes, **kwargs)


def blank_ruled(rng: np.random.Generator, **kwargs) -> FormField:
    """A printed line with nothing written on it."""
    return render_ruled([], [], rng, **kwargs)
