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
   width, fit the long side to 20 pixels with anti-aliasing, centre by centre of mass in 28x28.
8. ``to_model_input`` (digitrec.models.inputs, through ``model_input`` here): normalise exactly as
   training did.

``prepare_digit`` runs them all for an image of one digit (the largest piece of ink with the
pieces near it). Rejecting what is not one digit (blobs, drawings, several digits) lives in
``digitrec.reading.recognize``; splitting a number into digits in ``digitrec.reading.segment``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from scipy import ndimage

from digitrec.models.inputs import Normalization, to_model_input
from digitrec.reading.decode import (  # noqa: F401  (re-exported: the one path starts there)
    FORMATS,
    MAX_FILE_BYTES,
    MAX_PIXELS,
    MAX_SIDE,
    MIN_SIDE,
    ImageInput,
    decode,
    read_file,
    to_gray,
)
from digitrec.reading.ink import Ink, extract_ink
from digitrec.reading.pieces import Piece, box_union, digit_ink, group_digit, pieces

# --- MNIST geometry (measured on the MNIST training set) ---
BOX = 20  # the digit's non-zero pixels fit a 20x20 box, long side exactly 20
FIELD = 28
CENTRE = 14.0  # mean centre of mass (row and column) of MNIST training digits, pixel-index units
MNIST_STROKE = 2.0  # median stroke width (2 * area / boundary edges of the ink >= 0.5) in the 28x28 field
MIN_STROKE = 1.3  # thinner strokes (MNIST 5th percentile) are thickened towards MNIST_STROKE


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
    small = np.asarray(
        Image.fromarray(crop, "F").resize(size, Image.Resampling.LANCZOS if factor < 1 else Image.Resampling.BICUBIC)
    )
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
        return DigitImage(ink=ink, labels=labels, chosen=[], rest=[], box=None, digit28=None, reason=reason)
    chosen, rest = group_digit(found)
    box = box_union([p.box for p in chosen])
    crop, _ = digit_ink(ink.ink, labels, [p.label for p in chosen], box)
    return DigitImage(ink=ink, labels=labels, chosen=chosen, rest=rest, box=box, digit28=digit_to_mnist(crop))


def model_input(digits28: np.ndarray | list[np.ndarray], norm: Normalization) -> torch.Tensor:
    """(B, 28, 28) or a list of (28, 28) float 0-1 -> normalised (B, 1, 28, 28), as training did."""
    batch = torch.from_numpy(
        np.ascontiguousarray(np.stack(list(digits28)) if isinstance(digits28, list) else digits28, dtype=np.float32)
    )
    if batch.dim() == 2:
        batch = batch.unsqueeze(0)
    return to_model_input(batch, norm)
