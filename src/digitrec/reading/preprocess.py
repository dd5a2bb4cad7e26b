"""The one path from "an image someone handed us" to the model's input.

It reproduces how MNIST itself was made (LeCun et al.): the digit's ink, size-normalised to fit a
20x20 box preserving its aspect ratio, anti-aliased, then centred in a 28x28 field by its centre of
mass, light ink on a black (exactly zero) background. Steps, each a function below:

1. ``decode`` (digitrec.decode): bytes / path / PIL / numpy -> one upright, fully decoded PIL
   frame. Refuses what is not an image, empty or truncated files, decompression bombs, absurd
   dimensions, animated or multi-page files; applies the EXIF orientation of phone photos.
2. ``to_gray`` (digitrec.decode): any colour mode (RGB, RGBA, LA, palette with or without
   transparency, CMYK, 1-bit, 16/32-bit integer, float) -> float (H, W) on 0-1.
3. ``working_scale``: large photos are processed at most ``WORK_MAX_SIDE`` pixels on their long
   side (the model sees 20 pixels; more only costs time).
4. ``ink_is_dark``: dark ink on light paper or light ink on a dark board; flip so ink is bright.
5. ``remove_background``: estimate the (unevenly lit, shadowed) paper by a grey opening much wider
   than a stroke and subtract it.
6. ``find_ink``: noise level, ink contrast, ink mask and a soft ink map that is exactly 0 on the
   background and 1 in the stroke core ("no ink found" when nothing stands out of the noise).
7. ``digit_to_mnist``: crop the digit's ink, thicken a too-thin pen stroke to MNIST's stroke width,
   fit the long side to 20 pixels with anti-aliasing, centre by centre of mass in 28x28.
8. ``to_model_input`` (digitrec.pipeline): normalise exactly as training did.

``prepare_digit`` runs them all for an image of one digit (the largest piece of ink with the
pieces near it). Rejecting what is not one digit (blobs, drawings, several digits) lives in
``digitrec.recognize``; splitting a number into digits in ``digitrec.segment``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from scipy import ndimage

from digitrec.reading.decode import (  # noqa: F401  (re-exported: the one path starts there)
    FORMATS, MAX_FILE_BYTES, MAX_PIXELS, MAX_SIDE, MIN_SIDE, ImageInput, decode, read_file, to_gray,
)
from digitrec.reading import ndexact as nx
from digitrec.models.inputs import Normalization, to_model_input

WORK_MAX_SIDE = 1024  # pixels: long side of the working image for one digit

# --- MNIST geometry (measured on the MNIST training set) ---
BOX = 20  # the digit's non-zero pixels fit a 20x20 box, long side exactly 20
FIELD = 28
CENTRE = 14.0  # mean centre of mass (row and column) of MNIST training digits, pixel-index units
MNIST_STROKE = 2.0  # median stroke width (2 * area / boundary edges of the ink >= 0.5) in the 28x28 field
MIN_STROKE = 1.3  # thinner strokes (MNIST 5th percentile) are thickened towards MNIST_STROKE

# --- ink detection ---
MIN_CONTRAST = 0.15  # ink must differ from the paper by at least this much (0-1 scale)
NOISE_SIGMAS = 8.0  # ... and by this many standard deviations of the paper's noise and texture
INK_FRACTION = 0.3  # the ink mask keeps what is at least this fraction of the ink contrast
THICKEST_PER_OPENING = 1.5  # the background opening is this many times wider than the thickest ink
CORE_PERCENTILE = 90  # ink at or above this percentile of the masked ink counts as full ink (1.0)


# ------------------------------------------------------------------------------------------------
# 3-6. working scale, polarity, background, ink
# ------------------------------------------------------------------------------------------------

def working_scale(gray: np.ndarray, max_side: int = WORK_MAX_SIDE) -> tuple[np.ndarray, float]:
    """Shrink so the long side is at most `max_side` (area averaging). Returns (image, scale)
    where scale = input pixels per working pixel (>= 1)."""
    h, w = gray.shape
    scale = max(h, w) / max_side
    if scale <= 1:
        return gray, 1.0
    size = (max(1, round(w / scale)), max(1, round(h / scale)))
    small = np.asarray(Image.fromarray(gray, "F").resize(size, Image.BOX))
    return small, w / size[0]


def ink_is_dark(gray: np.ndarray) -> bool:
    """True for dark ink on light paper. The paper is the bulk of the pixels (the median); ink is
    the minority on one side of it: whichever tail reaches further from the median. A small digit
    in a large frame is a tiny minority, so ever rarer tails are looked at until one side is
    clearly further out; when neither is (a blank page), dark ink, the common case."""
    smooth = nx.uniform_filter(gray, 3).ravel()  # a hot pixel is not ink
    n = smooth.size
    part = smooth
    for step, tail in enumerate((0.5, 0.05, 0.005)):
        (i, j, t), (k, l, u) = nx.percentile_ranks(n, tail), nx.percentile_ranks(n, 100 - tail)
        part = nx.partition(part, {i, j, k, l, *(nx.median_ranks(n) if step == 0 else ())})
        median = float(nx.median_of(part, n)) if step == 0 else median
        # np.percentile(smooth, [tail, 100 - tail])
        lo, hi = nx.lerp(part[i], part[j], t, in_dtype=False), nx.lerp(part[k], part[l], u, in_dtype=False)
        dark, light = median - lo, hi - median
        if max(dark, light) > 0.1 and max(dark, light) > 1.5 * min(dark, light):
            return bool(dark > light)
    return True


def background_size(shape: tuple[int, int]) -> int:
    """Width (pixels) of the grey opening that estimates the paper: a quarter of the frame, far
    wider than a stroke (about 1/8 of a digit's height), narrow enough to follow shading.
    `extract_ink` widens it when the ink found turns out to have thicker strokes."""
    return max(7, int(min(shape) / 4))


def _smooth_opening(small: np.ndarray, k: int, pad: int, smooth: int) -> np.ndarray:
    """`nx.uniform_filter(ndimage.grey_opening(np.pad(small, pad, "edge"), size=(k, k)), smooth)`
    cropped back to `small`'s frame, bit for bit: the same scipy 1-D passes in the same order
    (erosion: minimum along rows then columns; dilation: maximum, its window one pixel back for an
    even k, as grey_dilation places it), skipping work whose result is a copy or is cut away.
    The first pass runs on the picture's own columns (the padding's columns are copies of the
    edge ones, and so are their minima), the last only on the rows that are kept."""
    h, w = small.shape
    tall = nx.edge_pad(small, pad)[:, pad : pad + w]  # (h + 2 pad, w)
    eroded = ndimage.minimum_filter1d(tall, k, axis=0)
    wide = np.empty((h + 2 * pad, w + 2 * pad), eroded.dtype)
    wide[:, pad : pad + w] = eroded
    wide[:, :pad] = eroded[:, :1]
    wide[:, pad + w :] = eroded[:, -1:]
    eroded = ndimage.minimum_filter1d(wide, k, axis=1)
    back = -1 if k % 2 == 0 else 0
    opened = ndimage.maximum_filter1d(eroded, k, axis=0, origin=back)
    opened = ndimage.maximum_filter1d(opened, k, axis=1, origin=back)
    level = ndimage.uniform_filter1d(opened, smooth, axis=0)[pad : pad + h]
    return ndimage.uniform_filter1d(level, smooth, axis=1)[:, pad : pad + w]


def remove_background(ink_bright: np.ndarray, size: int | None = None) -> np.ndarray:
    """Ink-bright image (H, W) -> residual (H, W): ink contrast above the local paper level.

    The paper level is a grey opening (erosion then dilation) with a square wider than any stroke:
    it removes the strokes and keeps the slowly varying light. It is computed on a shrunken copy
    (cheap even for a wide opening), smoothed and scaled back. Light falls on ink and paper alike,
    so the contrast is taken relative to 1 - paper level: for dark ink on paper that is the local
    paper brightness (a shadowed stroke is as black, relative to its paper, as a lit one). Light
    ink on a dark board gets the same formula, so a picture and its negative give the same ink.
    """
    h, w = ink_bright.shape
    size = size or background_size((h, w))
    factor = max(1, size // 12)
    small = ink_bright
    if factor > 1:
        # Shrink by the minimum of each block (of a lightly smoothed copy: noise is not paper):
        # a block with any paper in it is paper, exactly as the opening's own erosion would say,
        # so no trace of the ink leaks into the paper estimate wherever the digit falls.
        smooth = nx.gaussian_filter(ink_bright, factor / 2)
        hs, ws = max(1, h // factor), max(1, w // factor)
        small = smooth[: hs * factor, : ws * factor].reshape(hs, factor, ws, factor).min(axis=(1, 3))
    k = max(3, size // factor)
    # Pad explicitly: scipy applies the edge mode to each of erosion and dilation separately,
    # which would underestimate paper that gets brighter towards the border (vignetting).
    paper = _smooth_opening(small, k, pad=k + k // 2, smooth=max(3, k // 2))
    if factor > 1:
        paper = np.asarray(Image.fromarray(paper, "F").resize((w, h), Image.BILINEAR))
    paper = np.minimum(paper, ink_bright)
    return (ink_bright - paper) / np.maximum(1.0 - paper, 0.05)


@dataclass
class Ink:
    """The ink of a picture at working resolution.

    ink: (H, W) float32, 0 on the paper, 1 in the stroke core. mask: (H, W) bool, the confident
    ink. scale: input pixels per working pixel. contrast and noise are on the 0-1 scale.
    found is False when nothing stands out of the paper (a blank page).
    """

    ink: np.ndarray
    mask: np.ndarray
    scale: float
    input_size: tuple[int, int]  # (width, height) of the upright input image
    dark_ink: bool
    contrast: float
    noise: float
    found: bool


def find_ink(residual: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, float, bool]:
    """Residual (ink above paper) -> (ink map, mask, contrast, noise, found)."""
    # A light blur (about a stroke's edge) to average out sensor noise and JPEG blocks.
    smooth = nx.gaussian_filter(residual, max(0.7, min(residual.shape) / 400))
    n = smooth.size
    top = nx.percentile_ranks(n, 99.95)
    part = nx.partition(smooth.ravel(), {*nx.median_ranks(n), top[0], top[1]})  # (n,)
    floor = float(nx.median_of(part, n))
    peak = float(part[n - 1]) - floor
    # Ink contrast: a high percentile (robust to a hot pixel), but a small digit in a large frame
    # is < 0.05% of the pixels, hence also half the peak.
    contrast = max(nx.lerp(part[top[0]], part[top[1]], top[2], in_dtype=True) - floor, 0.5 * peak)
    # Noise (sensor noise and paper texture): robust spread of the pixels that are clearly paper.
    paper = smooth[smooth < floor + INK_FRACTION * contrast]  # (m,), in image order: a partial
    # sort of them is quick, one of an already partitioned array may not be (worst-case pivots)
    noise = 0.0
    if paper.size:
        centre = nx.median_of(nx.partition(paper, nx.median_ranks(paper.size)), paper.size)  # np.median(paper)
        noise = 1.4826 * float(nx.median_of(nx.partition(np.abs(paper - centre), nx.median_ranks(paper.size)), paper.size))
    found = contrast >= MIN_CONTRAST and contrast >= NOISE_SIGMAS * noise
    threshold = floor + max(INK_FRACTION * contrast, 0.5 * NOISE_SIGMAS * noise)
    mask = smooth > threshold
    if not found or not mask.any():
        zeros = np.zeros_like(residual)
        return zeros, np.zeros(residual.shape, bool), contrast, noise, False
    # Soft ink: 0 at the paper's noise floor, 1 at the stroke core (90th percentile of the mask).
    low = floor + max(0.05 * contrast, 3 * noise)
    inked = smooth[mask]
    i, j, t = nx.percentile_ranks(inked.size, CORE_PERCENTILE)
    inked = nx.partition(inked, {i, j})
    core = nx.lerp(inked[i], inked[j], t, in_dtype=True)  # np.percentile(smooth[mask], CORE_PERCENTILE)
    ink = np.clip((residual - low) / max(core - low, 1e-6), 0, 1).astype(np.float32)
    return ink, mask, contrast, noise, True


def _ink_box(mask: np.ndarray, ring: bool) -> tuple[np.ndarray, tuple[slice, slice]] | None:
    """The mask cropped to its ink's box (None without ink), with a one-pixel ring of paper around
    it: on every side (`ring` True: the frame's outside counts as paper), or only where the box
    stops short of the frame's edge (the frame's outside is not paper). Every pixel outside the box
    is paper that reaches the edge in a straight line, and no piece of ink is nearer its paper than
    the ring, so fills and distances of the ink computed on the crop are those of the whole mask."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    h, w = mask.shape
    y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    if not ring:  # keep the frame's edges where the ink touches them
        y0, y1, x0, x1 = max(y0 - 1, 0), min(y1 + 1, h), max(x0 - 1, 0), min(x1 + 1, w)
    crop = mask[y0:y1, x0:x1]
    if ring:
        crop = np.pad(crop, 1) if min(crop.shape) == 0 else nx.zero_ring(crop)
    return crop, (slice(y0, y1), slice(x0, x1))


def thickest(mask: np.ndarray) -> float:
    """Width (pixels) of the thickest part of a shape: twice its largest inscribed radius."""
    box = _ink_box(mask, ring=False)
    return 2.0 * float(ndimage.distance_transform_edt(box[0]).max()) if box is not None else 0.0


def thickest_bound(mask: np.ndarray) -> float:
    """An upper bound of `thickest(mask)`, several times cheaper: the city-block distance to the
    paper is never shorter than the straight one. Where it already settles a comparison, the
    Euclidean distance map need not be computed."""
    box = _ink_box(mask, ring=False)
    if box is None:
        return 0.0
    city = ndimage.distance_transform_cdt(box[0], metric="taxicab")  # int32; -1: no paper at all
    return 2.0 * float(city.max()) if city.min() >= 0 else float("inf")


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """`ndimage.binary_fill_holes(mask)`, exactly, in one labelling pass instead of a dilation
    repeated until nothing changes: paper that does not reach the frame's edge (4-connected,
    as there) is a hole. Labelled within the ink's box, ringed by paper that reaches the edge."""
    filled = np.zeros(mask.shape, bool)
    box = _ink_box(mask, ring=True)
    if box is None:
        return filled
    paper, _ = ndimage.label(~box[0])  # (h + 2, w + 2) int32, 0 on the ink; the ring is one piece
    filled[box[1]] = (paper != paper[0, 0])[1:-1, 1:-1]
    return filled


def _strokes_too_wide(bright: np.ndarray, mask: np.ndarray, size: int) -> bool:
    """Did an opening of `size` miss part of the strokes? Either the thickest ink found is too close
    to the opening's width (then how much of it the opening keeps depends on where it falls), or
    the mask is a stroke's outline around ink-coloured "holes"."""
    # thickest <= bound, and x -> 1.5 * x is monotonic in floating point: the bound rules out most masks.
    if THICKEST_PER_OPENING * thickest_bound(mask) > size and THICKEST_PER_OPENING * thickest(mask) > size:
        return True
    filled = fill_holes(mask)
    holes = filled & ~mask
    if holes.sum() <= 0.05 * mask.sum() or filled.all():
        return False
    paper = np.median(bright[~filled])
    return bool(np.median(bright[holes]) - paper > 0.5 * (np.median(bright[mask]) - paper))


def extract_ink(image: ImageInput | Image.Image, max_side: int = WORK_MAX_SIDE) -> Ink:
    """Steps 1-6: an image as handed to us -> its ink at working resolution."""
    pil = decode(image)
    gray = to_gray(pil)
    work, scale = working_scale(gray, max_side)
    dark = ink_is_dark(work)
    bright = 1.0 - work if dark else work
    # On a 2^-16 grid, so that a picture and its negative (1 - x, rounded differently in float32)
    # become the very same array and give the very same digit.
    bright = (np.round(bright * 65536.0) / 65536.0).astype(np.float32)
    size, largest = background_size(bright.shape), max(bright.shape)
    while True:
        ink, mask, contrast, noise, found = find_ink(remove_background(bright, size))
        if not found or size >= largest or not _strokes_too_wide(bright, mask, size):
            break
        # Strokes about as wide as the opening are partly taken for paper: widen it (at the
        # limit, one paper level for the whole frame) and look again.
        size = min(max(2 * size, int(THICKEST_PER_OPENING * thickest(fill_holes(mask))) + 1), largest)
    return Ink(ink, mask, scale, pil.size, dark, contrast, noise, found)


# ------------------------------------------------------------------------------------------------
# 6b. connected pieces of ink
# ------------------------------------------------------------------------------------------------

EIGHT = np.ones((3, 3), bool)  # 8-connectivity: diagonal pixels of a thin slanted stroke touch
SPECK_FRACTION = 0.02  # pieces smaller than this fraction of the largest piece are specks
LINE_ASPECT = 12.0  # a piece this many times wider than tall, spanning the frame, is a ruled line


@dataclass(frozen=True)
class Piece:
    """One connected piece of ink: label in the label image, box (x0, y0, x1, y1) exclusive."""

    label: int
    box: tuple[int, int, int, int]
    area: int

    @property
    def width(self) -> int:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> int:
        return self.box[3] - self.box[1]


def pieces(mask: np.ndarray) -> tuple[np.ndarray, list[Piece]]:
    """Connected pieces of the ink mask, without specks (dust, noise) and without ruled lines
    (long thin horizontal pieces spanning most of the frame). Returns (labels (H, W), pieces)."""
    labels, n = ndimage.label(mask, structure=EIGHT)
    if n == 0:
        return labels, []
    slices = ndimage.find_objects(labels)
    areas = np.bincount(labels.ravel(), minlength=n + 1)
    h, w = mask.shape
    found = []
    for label, sl in enumerate(slices, start=1):
        y0, y1, x0, x1 = sl[0].start, sl[0].stop, sl[1].start, sl[1].stop
        found.append(Piece(label, (x0, y0, x1, y1), int(areas[label])))
    largest = max(p.area for p in found)
    kept = []
    for p in found:
        if p.area < max(3, SPECK_FRACTION * largest):
            continue
        if p.width > 0.7 * w and p.width > LINE_ASPECT * p.height:
            continue  # a ruled line (a tall thin vertical piece may well be a "1")
        kept.append(p)
    return labels, kept


def box_union(boxes: list[tuple[int, int, int, int]]) -> tuple[int, int, int, int]:
    return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))


def box_gap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """Distance between two boxes (0 when they touch or overlap)."""
    dx = max(0, max(a[0], b[0]) - min(a[2], b[2]))
    dy = max(0, max(a[1], b[1]) - min(a[3], b[3]))
    return float(np.hypot(dx, dy))


def digit_ink(ink: np.ndarray, labels: np.ndarray, label_ids: list[int], box: tuple[int, int, int, int],
              halo: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """The ink of the pieces `label_ids` only, cropped to `box` grown by a halo (the soft stroke
    edge just outside the mask). Ink of other pieces and of the noise floor is zeroed.
    Returns (ink crop, mask crop)."""
    h, w = ink.shape
    x0, y0, x1, y1 = max(0, box[0] - halo), max(0, box[1] - halo), min(w, box[2] + halo), min(h, box[3] + halo)
    lab = labels[y0:y1, x0:x1]
    # np.isin(lab, label_ids), by table look-up
    wanted = np.zeros(max(int(lab.max()), *label_ids, 0) + 1, bool)
    wanted[list(label_ids)] = True
    wanted[0] = 0 in label_ids
    mask = wanted[lab]
    keep = nx.dilate_square(mask, halo)
    keep &= ~((lab > 0) & ~mask)  # never another piece's ink
    return np.where(keep, ink[y0:y1, x0:x1], 0).astype(np.float32), mask


GROUP_REACH = 0.3  # pieces this close (fraction of the digit's size) belong to the same digit


def group_digit(found: list[Piece]) -> tuple[list[Piece], list[Piece]]:
    """Split pieces into (the digit, the rest): start from the largest piece and take in pieces
    whose box lies within GROUP_REACH of the growing digit's size (a 5's cap, a broken stroke)."""
    if not found:
        return [], []
    rest = sorted(found, key=lambda p: -p.area)
    chosen = [rest.pop(0)]
    box = chosen[0].box
    grew = True
    while grew and rest:
        grew = False
        reach = GROUP_REACH * max(box[2] - box[0], box[3] - box[1])
        for p in sorted(rest, key=lambda p: box_gap(box, p.box)):
            if box_gap(box, p.box) <= reach:
                chosen.append(p)
                rest.remove(p)
                box = box_union([box, p.box])
                grew = True
                break
    return chosen, rest


# ------------------------------------------------------------------------------------------------
# 7. size-normalise and centre, as MNIST was made
# ------------------------------------------------------------------------------------------------

def stroke_width(mask: np.ndarray) -> float:
    """Mean stroke width (pixels) of a binary shape: a stroke of length L and width w has area
    L*w and a boundary of about 2L pixel edges, so w = 2 * area / edges."""
    area = int(np.count_nonzero(mask))
    if area == 0:
        return 0.0
    # Pixel edges between ink and paper, the frame counting as paper.
    edges = (np.count_nonzero(mask[1:, :] != mask[:-1, :]) + np.count_nonzero(mask[:, 1:] != mask[:, :-1])
             + np.count_nonzero(mask[0]) + np.count_nonzero(mask[-1]) + np.count_nonzero(mask[:, 0])
             + np.count_nonzero(mask[:, -1]))
    return 2.0 * area / max(edges, 1)


def _disk(radius: float) -> np.ndarray:
    r = int(np.ceil(radius))
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    return (xx * xx + yy * yy) <= radius * radius + 0.25


def _fit_and_centre(ink: np.ndarray) -> np.ndarray:
    """Non-zero ink (H, W) -> (28, 28): long side 20 pixels, aspect kept, anti-aliased
    (Pillow's resampling widens its kernel when shrinking), centre of mass at MNIST's (14, 14)."""
    rows, cols = np.nonzero(ink > 0)
    out = np.zeros((FIELD, FIELD), np.float32)
    if rows.size == 0:
        return out
    crop = ink[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    h, w = crop.shape
    factor = BOX / max(h, w)
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    small = np.asarray(Image.fromarray(crop, "F").resize(size, Image.LANCZOS if factor < 1 else Image.BICUBIC))
    small = np.clip(small, 0, 1)
    total = small.sum()
    if total <= 0:
        return out
    yy, xx = np.arange(small.shape[0])[:, None], np.arange(small.shape[1])  # broadcast as np.mgrid's
    com_y, com_x = (small * yy).sum() / total, (small * xx).sum() / total
    # MNIST translated by whole pixels (its centres of mass spread +-0.5 pixel); keep the box inside.
    top = min(max(round(CENTRE - com_y), 0), FIELD - small.shape[0])
    left = min(max(round(CENTRE - com_x), 0), FIELD - small.shape[1])
    out[top : top + small.shape[0], left : left + small.shape[1]] = small
    return out


def thicken(ink: np.ndarray, radius: float) -> np.ndarray:
    """Grey dilation of the ink by a disk of `radius` pixels (the array grows by the radius)."""
    footprint = _disk(radius)
    r = footprint.shape[0] // 2
    return ndimage.grey_dilation(np.pad(ink, r), footprint=footprint)


def digit_to_mnist(ink: np.ndarray, thicken_strokes: bool = True) -> np.ndarray:
    """A digit's ink (H, W) float 0-1 (bright ink, exactly zero paper) -> (28, 28) float32 as
    MNIST made it.

    A pen much thinner than MNIST's (stroke width scaled to the 20-pixel box below MIN_STROKE,
    measured as for MNIST on ink >= 0.5) is thickened at the input resolution towards MNIST's
    median stroke before the digit is made: the model learned MNIST's stroke widths.
    """
    ink = np.asarray(ink, dtype=np.float32)
    rows, cols = np.nonzero(ink > 0)
    if thicken_strokes and rows.size:
        long_side = max(int(rows.max() - rows.min()) + 1, int(cols.max() - cols.min()) + 1)
        width = stroke_width(ink >= 0.5) * BOX / long_side  # in MNIST pixels
        radius = (MNIST_STROKE - width) / 2 * long_side / BOX  # input pixels to add on each side
        if width < MIN_STROKE and radius >= 0.5:
            ink = thicken(ink, radius)
    return _fit_and_centre(ink)


@dataclass
class DigitImage:
    """One image prepared for the model: the ink, its pieces split into the digit (`chosen`) and
    the rest, and the digit as MNIST made them (None when there is no ink)."""

    ink: Ink
    labels: np.ndarray  # (H, W) piece labels at working resolution
    chosen: list[Piece]
    rest: list[Piece]
    box: tuple[int, int, int, int] | None  # the digit's box, working pixels
    digit28: np.ndarray | None  # (28, 28) float32 0-1, light ink on black
    reason: str | None = None  # why there is no digit


def prepare_digit(image: ImageInput) -> DigitImage:
    """Steps 1-7 for an image of one digit: decode ... find the ink, take the largest piece with
    the pieces near it (broken strokes) as the digit, crop, size-normalise and centre it."""
    ink = extract_ink(image)
    labels, found = pieces(ink.mask) if ink.found else (np.zeros(ink.mask.shape, np.int32), [])
    if not found:
        only_lines = ink.found and bool(ink.mask.any()) and labels.max() > 0
        reason = "only a straight line (a rule or a dash), no digit" if only_lines else "no ink found"
        return DigitImage(ink, labels, [], [], None, None, reason)
    chosen, rest = group_digit(found)
    box = box_union([p.box for p in chosen])
    crop, _ = digit_ink(ink.ink, labels, [p.label for p in chosen], box)
    return DigitImage(ink, labels, chosen, rest, box, digit_to_mnist(crop))


def model_input(digits28: np.ndarray | list[np.ndarray], norm: Normalization) -> torch.Tensor:
    """(B, 28, 28) or a list of (28, 28) float 0-1 -> normalised (B, 1, 28, 28), as training did."""
    batch = torch.from_numpy(np.ascontiguousarray(np.stack(list(digits28)) if isinstance(digits28, list) else digits28,
                                                  dtype=np.float32))
    if batch.dim() == 2:
        batch = batch.unsqueeze(0)
    return to_model_input(batch, norm)
