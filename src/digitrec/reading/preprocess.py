"""The one path from "an image someone handed us" to the model's input.

It reproduces how MNIST itself was made (LeCun et al.): the digit's ink, size-normalised to fit a
20x20 box preserving its aspect ratio, anti-aliased, then centred in a 28x28 field by its centre of
mass, light ink on a black (exactly zero) background. Steps, each a function:

1. ``decode`` (digitrec.reading.decode): bytes / path / PIL / numpy -> one upright, fully decoded
   PIL frame. Refuses what is not an image, empty or truncated files, decompression bombs, absurd
   dimensions, animated or multi-page files; applies the EXIF orientation of phone photos.
2. ``to_gray`` (digitrec.reading.decode): any colour mode (RGB, RGBA, LA, palette with or without
   transparency, CMYK, 1-bit, 16/32-bit integer, float) -> float (H, W) on 0-1.
3. ``working_scale`` (digitrec.reading.ink): large photos are processed at most ``WORK_MAX_SIDE``
   pixels on their long side (the model sees 20 pixels; more only costs time).
4. ``ink_is_dark`` (digitrec.reading.ink): dark ink on light paper or light ink on a dark board;
   flip so ink is bright.
5. ``remove_background`` (digitrec.reading.ink): estimate the (unevenly lit, shadowed) paper by a
   grey opening much wider than a stroke and subtract it.
6. ``find_ink`` (digitrec.reading.ink): noise level, ink contrast, ink mask and a soft ink map that
   is exactly 0 on the background and 1 in the stroke core ("no ink found" when nothing stands out
   of the noise); ``pieces`` (digitrec.reading.pieces) splits the mask into connected pieces.
7. ``digit_to_mnist`` (here): crop the digit's ink, thicken a too-thin pen stroke to MNIST's stroke
   width or thin a marker's, fit the long side to 20 pixels with anti-aliasing, centre by centre of
   mass in 28x28.
8. ``normalize`` (digitrec.models.inputs, through ``model_input`` here): normalise exactly as
   training did (``to_model_input``, the same arithmetic on torch tensors, to the last bit).

``prepare_digit`` runs them all for an image of one digit (the largest piece of ink with the
pieces near it), so that the cost follows the digit, not the megapixels: a JPEG far larger than
needed is decoded at 1/2, 1/4 or 1/8 of its size (``decode_reduced``), the digit is looked for in a
copy at most ``COARSE_SIDE`` pixels long (steps 2-6, ``find_small``), and only its crop is looked at
again, at the resolution the 20-pixel box needs (``FINE_SIDE``; steps 5-7, ``refine``). Its
``fast=False`` is the reference it is checked against: steps 1-7 on the whole frame at working
resolution. Rejecting what is not one digit (blobs, drawings, several digits) lives in
``digitrec.reading.recognize``; splitting a number into digits in ``digitrec.reading.segment``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image
from scipy import ndimage

from digitrec.models.inputs import Normalization, normalize
from digitrec.reading import ndexact as nx
from digitrec.reading.decode import (  # noqa: F401  (re-exported: the one path starts there)
    FORMATS,
    MAX_FILE_BYTES,
    MAX_PIXELS,
    MAX_SIDE,
    MIN_SIDE,
    Decoded,
    ImageInput,
    decode,
    decode_reduced,
    gray_image,
    read_file,
    to_gray,
)
from digitrec.reading.ink import (
    WORK_MAX_SIDE,
    Ink,
    extract_ink,
    ink_blur,
    ink_is_dark_in_blocks,
    ink_of_crop,
    ink_of_gray,
)
from digitrec.reading.pieces import Piece, box_union, digit_ink, group_digit, pieces, pieces_over
from digitrec.reading.results import scale_box

# --- MNIST geometry (measured on the MNIST training set) ---
BOX = 20  # the digit's non-zero pixels fit a 20x20 box, long side exactly 20
FIELD = 28
CENTRE = 14.0  # mean centre of mass (row and column) of MNIST training digits, pixel-index units
MNIST_STROKE = 2.0  # median stroke width (2 * area / boundary edges of the ink >= 0.5) in the 28x28 field
MIN_STROKE = 1.3  # thinner strokes (MNIST 5th percentile) are thickened towards MNIST_STROKE
# A felt-tip marker's strokes, wider than MNIST's 98th percentile (3.43), are thinned to its upper
# quartile (2.36). Chosen on 300 validation digits under the widest marker of
# benchmarks/robustness.py, by the model's first choice: 268 right without thinning, 283 with
# (thinning to the median read 2 fewer of the narrower marker's; from the 95th percentile, 3.06,
# as many), none of a clean scan's changed. Read through predict, 200 of them: 89.5 -> 91.5% right.
MAX_STROKE = 3.5
THICK_TARGET = 2.5
KEEP_AFTER_THINNING = 0.2  # a shape that thinning would all but erase (a blob) stays as it is


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
    edges = int(
        np.count_nonzero(mask[1:, :] != mask[:-1, :])
        + np.count_nonzero(mask[:, 1:] != mask[:, :-1])
        + np.count_nonzero(mask[0])
        + np.count_nonzero(mask[-1])
        + np.count_nonzero(mask[:, 0])
        + np.count_nonzero(mask[:, -1])
    )
    return 2.0 * area / max(edges, 1)


def _disk(radius: float) -> np.ndarray:
    r = int(np.ceil(radius))
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    return (xx * xx + yy * yy) <= radius * radius + 0.25


def _ink_bounds(ink: np.ndarray) -> tuple[int, int, int, int] | None:
    """(first row, last row, first column, last column) holding ink > 0; None without any (the
    box of `np.nonzero(ink > 0)`, from the rows and columns that have ink)."""
    positive = ink > 0
    rows, cols = np.flatnonzero(positive.any(axis=1)), np.flatnonzero(positive.any(axis=0))
    if rows.size == 0:
        return None
    return int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])


def _fit_and_centre(ink: np.ndarray, bounds: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """Non-zero ink (H, W) -> (28, 28): long side 20 pixels, aspect kept, anti-aliased
    (Pillow's resampling widens its kernel when shrinking), centre of mass at MNIST's (14, 14).
    `bounds`: the ink's `_ink_bounds`, when known."""
    out = np.zeros((FIELD, FIELD), np.float32)
    bounds = bounds or _ink_bounds(ink)
    if bounds is None:
        return out
    crop = np.ascontiguousarray(ink[bounds[0] : bounds[1] + 1, bounds[2] : bounds[3] + 1], dtype=np.float32)
    h, w = crop.shape
    factor = BOX / max(h, w)
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    # Image.fromarray(crop, "F"), without its checks (this runs for every candidate digit of a number)
    picture = Image.frombuffer("F", (w, h), crop, "raw", "F", 0, 1)
    picture = picture.resize(size, Image.Resampling.LANCZOS if factor < 1 else Image.Resampling.BICUBIC)
    small = np.clip(np.frombuffer(picture.tobytes(), np.float32).reshape(size[1], size[0]), 0, 1)
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
    padded = np.zeros((ink.shape[0] + 2 * r, ink.shape[1] + 2 * r), ink.dtype)  # np.pad(ink, r)
    padded[r : r + ink.shape[0], r : r + ink.shape[1]] = ink
    return nx.grey_dilate(padded, footprint)  # ndimage.grey_dilation(padded, footprint=footprint)


def thin(ink: np.ndarray, radius: float) -> np.ndarray:
    """Grey erosion of the ink by a disk of `radius` pixels, the frame counting as paper (scipy's
    own call: only a marker's digit is thinned, so its set-up cost is rarely paid)."""
    return ndimage.grey_erosion(ink, footprint=_disk(radius), mode="constant", cval=0.0)


def digit_to_mnist(ink: np.ndarray, normalise_stroke: bool = True) -> np.ndarray:
    """A digit's ink (H, W) float 0-1 (bright ink, exactly zero paper) -> (28, 28) float32 as
    MNIST made it.

    The model learned MNIST's stroke widths (measured as for MNIST, on ink >= 0.5, scaled to the
    20-pixel box). A pen much thinner than MNIST's (below MIN_STROKE) is thickened at the input
    resolution towards MNIST's median stroke, and a marker much wider (above MAX_STROKE) is thinned
    to THICK_TARGET, before the digit is made. Thinning cannot reopen a loop the marker closed,
    but it gives back the gaps between strokes that only nearly touch.
    """
    return stroke_normalised(ink, normalise_stroke)[0]


def stroke_normalised(ink: np.ndarray, normalise_stroke: bool = True) -> tuple[np.ndarray, bool]:
    """(`digit_to_mnist` of the ink, whether a marker's strokes were thinned for it)."""
    ink = np.asarray(ink, dtype=np.float32)
    bounds = _ink_bounds(ink) if normalise_stroke else None
    if bounds is not None:
        long_side = max(bounds[1] - bounds[0] + 1, bounds[3] - bounds[2] + 1)
        core = ink >= 0.5
        width = stroke_width(core) * BOX / long_side  # in MNIST pixels
        radius = (MNIST_STROKE - width) / 2 * long_side / BOX  # input pixels to add on each side
        if width < MIN_STROKE and radius >= 0.5:
            return _fit_and_centre(thicken(ink, radius)), False
        radius = (width - THICK_TARGET) / 2 * long_side / BOX  # input pixels to take off each side
        if width > MAX_STROKE and radius >= 0.5:
            thinner = thin(ink, radius)
            if np.count_nonzero(thinner >= 0.5) >= KEEP_AFTER_THINNING * np.count_nonzero(core):
                return _fit_and_centre(thinner), True
    return _fit_and_centre(ink, bounds), False


def digit_images(ink: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """(`digit_to_mnist` of the ink, for the digit models; the same made without thinning when a
    marker was thinned, else None). Where one picture is one digit (predict, a comb's box), the mark
    classifier judges the latter, the digit as written: a filled blob thinned is an elongated shape
    that can pass for a 1 or a 0 (on 80 validation blobs of benchmarks/robustness.py it would let 5
    through instead of 2). A number's candidates are judged as made (`candidates.candidate_images`,
    which makes only the first): there the classifier only flags."""
    digit28, thinned = stroke_normalised(ink)
    return digit28, digit_to_mnist(ink, normalise_stroke=False) if thinned else None


@dataclass
class DigitImage:
    """One image prepared for the model: the ink, its pieces split into the digit (`chosen`) and
    the rest, and the digit as MNIST made them (None when there is no ink). The ink and its
    pieces are those of the frame the digit was found in; its 28x28 may come from a finer crop."""

    ink: Ink
    labels: np.ndarray  # (H, W) piece labels at working resolution
    chosen: list[Piece]
    rest: list[Piece]
    box: tuple[int, int, int, int] | None  # the digit's box, working pixels
    digit28: np.ndarray | None  # (28, 28) float32 0-1, light ink on black
    reason: str | None = None  # why there is no digit
    input_box: tuple[int, int, int, int] | None = None  # the digit's box, input image pixels
    written28: np.ndarray | None = None  # the 28x28 before a marker was thinned (`digit_images`)

    @property
    def marks28(self) -> np.ndarray | None:
        """What the mark classifier judges: the digit as written, not thinned."""
        return self.digit28 if self.written28 is None else self.written28


def pick_digit(ink: Ink) -> DigitImage:
    """Step 6b on a frame's ink: its pieces, the largest with the pieces near it (broken strokes)
    as the digit, and the digit's box; not yet made into its 28x28 (`made`)."""
    labels, found = pieces(ink.mask) if ink.found else (np.zeros(ink.mask.shape, np.int32), [])
    if not found:
        only_lines = ink.found and bool(ink.mask.any()) and labels.max() > 0
        reason = "only a straight line (a rule or a dash), no digit" if only_lines else "no ink found"
        return DigitImage(ink=ink, labels=labels, chosen=[], rest=[], box=None, digit28=None, reason=reason)
    chosen, rest = group_digit(found)
    box = box_union([p.box for p in chosen])
    input_box = scale_box(box, ink.scale, ink.input_size)
    return DigitImage(ink=ink, labels=labels, chosen=chosen, rest=rest, box=box, digit28=None, input_box=input_box)


def made(digit: DigitImage) -> DigitImage:
    """Step 7 for a picked digit (`pick_digit`): crop its ink, size-normalise and centre it."""
    if digit.box is None:
        return digit
    crop, _ = digit_ink(digit.ink.ink, digit.labels, [p.label for p in digit.chosen], digit.box)
    digit28, written28 = digit_images(crop)
    return replace(digit, digit28=digit28, written28=written28)


def prepare_digit(image: ImageInput, fast: bool = True) -> DigitImage:
    """Steps 1-7 for an image of one digit: decode ... find the ink, take the largest piece with
    the pieces near it (broken strokes) as the digit, crop, size-normalise and centre it.

    `fast`: the digit is found in a small copy of the picture and only its crop is looked at
    closely, at the resolution the 20-pixel box needs (`find_small`, `refine`), so the cost follows
    the digit, not the megapixels. Otherwise the whole frame is processed at working resolution
    (``WORK_MAX_SIDE``): the reference the fast path is checked against, and what it falls back to
    when the digit cannot be found in a small copy (a blank page, a tiny digit in a large frame)."""
    if fast:
        decoded = decode_reduced(image, DECODE_SIDE, gray=True)
        gray = gray_image(decoded.image)
        digit = find_small(gray, decoded)
        if digit is not None:
            return refine(image, decoded, gray, digit)
    return made(pick_digit(extract_ink(image, reduce=fast)))


# ------------------------------------------------------------------------------------------------
# the fast path: the digit found in a small copy, its crop refined
# ------------------------------------------------------------------------------------------------

COARSE_SIDE = 112  # pixels: at most this long side of the small copy the digit is first looked for in
MIN_FOUND = 24  # pixels: a digit found smaller than this is looked for again in a larger copy
DECODE_SIDE = 512  # pixels: a JPEG is decoded at least this large (a digit an eighth of it: 64 px)
FINE_SIDE = 40  # pixels: at least the digit's long side at which it is made (twice the 20-pixel box)
MARGIN = 8  # pixels of the refined crop around the digit: its stroke edges and paper to measure
# Copies are made of whole blocks of the decoded pixels (each pixel the mean of a step x step block):
# a copy's pixel grid is the picture's, so a digit moved by a whole block is resampled the same way.


def as_float(gray: Image.Image) -> np.ndarray:
    """A grey PIL image ("L" or "F") -> float32 (H, W) on 0-1."""
    pixels = np.asarray(gray, dtype=np.float32)
    return pixels / 255.0 if gray.mode == "L" else pixels


def resampled(image: Image.Image, window: tuple[int, int, int, int], per_pixel: float) -> np.ndarray:
    """The `window` (x0, y0, x1, y1) of a frame whose pixels are `per_pixel` pixels of `image`
    ("L" or "F"): block means for a whole number, bilinear interpolation below one."""
    x0, y0, x1, y1 = window
    box = (x0 * per_pixel, y0 * per_pixel, min(x1 * per_pixel, image.width), min(y1 * per_pixel, image.height))
    if (x1 - x0, y1 - y0) != image.size or box != (0, 0, *image.size):
        resample = Image.Resampling.BOX if per_pixel >= 1 else Image.Resampling.BILINEAR
        image = image.resize((x1 - x0, y1 - y0), resample, box=box)
    return as_float(image)


def reference_scale(size: tuple[int, int]) -> float:
    """Input pixels per pixel of the reference path's working resolution."""
    return max(1.0, max(size) / WORK_MAX_SIDE)


def find_small(gray: Image.Image, decoded: Decoded) -> DigitImage | None:
    """The digit found in a copy of the picture (`gray`, decoded `decoded`) at most COARSE_SIDE
    pixels on its long side, or in larger copies until it is at least MIN_FOUND pixels tall or
    wide: its ink, pieces and box there. None when a copy about as fine as the reference path's
    is needed: no digit found (a blank page, only a line), or one too small to tell its pieces apart."""
    side = COARSE_SIDE
    while True:
        # decoded pixels per pixel of the copy, which keeps room for a digit MIN_FOUND pixels tall
        step = max(1, min(math.ceil(max(gray.size) / side), min(gray.size) // MIN_FOUND))
        if step * decoded.factor <= 1.5 * reference_scale(decoded.size):
            return None  # hardly cheaper than the reference path: take it
        small = as_float(gray.reduce(step))
        pixels = np.asarray(gray)  # (the thinnest strokes' tone survives in their blocks' extremes)
        darkest, lightest = nx.block_min(pixels, step), nx.block_min(pixels, step, np.maximum)
        white = 255.0 if gray.mode == "L" else 1.0
        dark = ink_is_dark_in_blocks(darkest, lightest, small, white)
        ink = ink_of_gray(small, step * decoded.factor, decoded.size, dark)
        digit = pick_digit(ink)
        if digit.box is None:
            side *= 4
            continue
        long_side = max(digit.box[2] - digit.box[0], digit.box[3] - digit.box[1])
        if long_side >= MIN_FOUND:
            return digit
        side = int(side * max(2.0, 1.5 * MIN_FOUND / long_side))


def refine(image: ImageInput, decoded: Decoded, gray: Image.Image, digit: DigitImage) -> DigitImage:
    """The digit found small (`find_small`), made from a crop around it with at least FINE_SIDE
    pixels on the digit's long side (or the reference path's working resolution, if coarser):
    the paper level and the polarity come from the small copy, the ink, its pieces and the box
    from the crop. The pieces of the crop that make the digit are those over the small copy's."""
    ink, box = digit.ink, digit.box
    assert box is not None and ink.paper is not None
    coarse = ink.scale  # input pixels per pixel of the small copy
    wanted = max(reference_scale(decoded.size), coarse * max(box[2] - box[0], box[3] - box[1]) / FINE_SIDE)
    if wanted >= coarse:
        return made(digit)  # the small copy is already as fine as the digit needs
    if wanted < decoded.factor:  # decoded too small for this digit: decode again, larger
        decoded = decode_reduced(image, math.ceil(max(decoded.size) / wanted), gray=True)
        gray = gray_image(decoded.image)
    step = max(1, math.floor(wanted / decoded.factor + 1e-9))  # whole decoded pixels per pixel of the crop
    fine = step * decoded.factor  # input pixels per pixel of the crop
    margin = MARGIN + 2 * coarse / fine  # and two pixels of the small copy: its boxes are that coarse
    x0, y0 = (max(0, math.floor(v * coarse / fine - margin)) for v in box[:2])
    x1 = min(gray.width // step, math.ceil(box[2] * coarse / fine + margin))  # whole blocks only
    y1 = min(gray.height // step, math.ceil(box[3] * coarse / fine + margin))
    to_coarse = fine / coarse
    pixels = resampled(gray, (x0, y0, x1, y1), step)
    paper = resampled(Image.fromarray(ink.paper, "F"), (x0, y0, x1, y1), to_coarse)
    # the reference path's smoothing (`ink_blur` of its working frame), in pixels of the crop
    reference = reference_scale(decoded.size)
    blur = ink_blur((round(decoded.size[1] / reference), round(decoded.size[0] / reference))) * reference / fine
    crop_ink, mask, found = ink_of_crop(pixels, paper, ink.dark_ink, blur)
    # (ruled lines were told from strokes in the whole frame, where they span it: none is dropped here)
    labels, kept = pieces(mask, lines=True) if found else (mask.astype(np.int32), [])
    # the small copy's digit, sampled at the crop's pixel centres
    rows = np.minimum(((np.arange(y0, y1) + 0.5) * to_coarse).astype(np.intp), ink.mask.shape[0] - 1)
    cols = np.minimum(((np.arange(x0, x1) + 0.5) * to_coarse).astype(np.intp), ink.mask.shape[1] - 1)
    under = np.isin(digit.labels[np.ix_(rows, cols)], [p.label for p in digit.chosen])
    chosen = pieces_over(labels, kept, under)
    if not chosen:
        return made(digit)
    fine_box = box_union([p.box for p in chosen])
    crop, _ = digit_ink(crop_ink, labels, [p.label for p in chosen], fine_box)
    shifted = (fine_box[0] + x0, fine_box[1] + y0, fine_box[2] + x0, fine_box[3] + y0)
    digit28, written28 = digit_images(crop)
    return replace(digit, digit28=digit28, written28=written28, input_box=scale_box(shifted, fine, decoded.size))


def model_input(digits28: np.ndarray | list[np.ndarray], norm: Normalization) -> np.ndarray:
    """(B, 28, 28) or a list of (28, 28) float 0-1 -> normalised float32 (B, 1, 28, 28), as training did."""
    batch = np.ascontiguousarray(np.stack(list(digits28)) if isinstance(digits28, list) else digits28, dtype=np.float32)
    if batch.ndim == 2:
        batch = batch[None]
    return normalize(batch, norm)
