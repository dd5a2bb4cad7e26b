"""The one path from "an image someone handed us" to the model's input.

It reproduces how MNIST itself was made (LeCun et al.): the digit's ink, size-normalised to fit a
20x20 box preserving its aspect ratio, anti-aliased, then centred in a 28x28 field by its centre of
mass, light ink on a black (exactly zero) background. Steps, each a function below:

1. ``decode``: bytes / path / PIL / numpy -> one upright, fully decoded PIL frame. Refuses what is
   not an image, empty or truncated files, decompression bombs, absurd dimensions, animated or
   multi-page files; applies the EXIF orientation of phone photos.
2. ``to_gray``: any colour mode (RGB, RGBA, LA, palette with or without transparency, CMYK,
   1-bit, 16/32-bit integer, float) -> float (H, W) on 0-1.
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

Selecting which ink is "the digit" (and rejecting blank pages, blobs, several digits) lives in
``digitrec.recognize``; splitting a number into digits in ``digitrec.segment``.
"""

from __future__ import annotations

import io
import os
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from scipy import ndimage

from .errors import BadImageError, NotAnImageError
from .pipeline import Normalization, to_model_input

ImageInput = Union[bytes, bytearray, memoryview, str, os.PathLike, Image.Image, np.ndarray]

# --- limits (why: a phone photo is at most ~50 MP; anything beyond is a mistake or an attack) ---
MAX_FILE_BYTES = 50 * 1024 * 1024  # bytes read from a file or upload
MAX_PIXELS = 60_000_000  # width * height, checked from the header before decoding
MAX_SIDE = 20_000  # pixels, either side
MIN_SIDE = 8  # pixels: smaller cannot hold a legible digit
# Formats we decode. Restricting the list keeps Pillow away from exotic decoders (EPS runs
# Ghostscript); these cover phone cameras (JPEG also opens their multi-picture MPO files),
# scanners, browsers and image editors.
FORMATS = ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP", "PPM")

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
STROKES_PER_OPENING = 3.0  # the background opening is at least this many stroke widths wide
CORE_PERCENTILE = 90  # ink at or above this percentile of the masked ink counts as full ink (1.0)


# ------------------------------------------------------------------------------------------------
# 1. decode
# ------------------------------------------------------------------------------------------------

def read_file(source: str | os.PathLike) -> bytes:
    """The bytes of an image file, every failure (missing, directory, too large) as a one-line BadImageError."""
    path = Path(source)
    try:
        if path.is_dir():
            raise BadImageError("is a directory, not an image file")
        if path.exists() and not path.is_file():  # a device or pipe could stream forever
            raise BadImageError("not a regular file")
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise BadImageError(f"file is {size / 2**20:.0f} MB, larger than the {MAX_FILE_BYTES // 2**20} MB limit")
        return path.read_bytes()
    except FileNotFoundError:
        raise BadImageError("no such file") from None
    except IsADirectoryError:
        raise BadImageError("is a directory, not an image file") from None
    except PermissionError:
        raise BadImageError("permission denied") from None
    except OSError as exc:
        raise BadImageError(f"cannot read file: {exc.strerror or exc}") from None


def _check_dimensions(width: int, height: int) -> None:
    if width > MAX_SIDE or height > MAX_SIDE or width * height > MAX_PIXELS:
        raise BadImageError(
            f"image is {width}x{height} pixels, beyond the limit ({MAX_SIDE} per side, "
            f"{MAX_PIXELS // 1_000_000} megapixels); possibly a decompression bomb")
    if width < MIN_SIDE or height < MIN_SIDE:
        raise BadImageError(f"image is {width}x{height} pixels, too small to hold a digit (at least {MIN_SIDE}x{MIN_SIDE})")


def _from_array(array: np.ndarray) -> Image.Image:
    """A numpy image (H, W), (H, W, 1|3|4); uint8, uint16, bool or float 0-1 -> PIL image."""
    a = np.asarray(array)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)):
        raise BadImageError(f"array of shape {a.shape} is not an image (need H x W, H x W x 3 or H x W x 4)")
    _check_dimensions(a.shape[1], a.shape[0])
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    elif np.issubdtype(a.dtype, np.floating):
        if not np.isfinite(a).all():
            raise BadImageError("array contains NaN or infinite values")
        a = np.clip(a, 0, 1) * 255 + 0.5
        a = a.astype(np.uint8)
    elif a.dtype == np.uint16 and a.ndim == 2:
        return Image.fromarray(a.astype(np.int32), "I")  # to_gray keeps all 16 bits
    elif a.dtype == np.uint16:  # 16-bit colour (imageio, OpenCV): 8 bits per channel are plenty
        a = np.round(a / 257.0).astype(np.uint8)
    elif a.dtype != np.uint8:
        if a.min() < 0 or a.max() > 255:
            raise BadImageError(f"integer array of dtype {a.dtype} has values outside 0-255")
        a = a.astype(np.uint8)
    mode = "L" if a.ndim == 2 else ("RGB" if a.shape[2] == 3 else "RGBA")
    return Image.fromarray(np.ascontiguousarray(a), mode)


def decode(image: ImageInput) -> Image.Image:
    """Any supported input -> one fully decoded, upright PIL image.

    Raises NotAnImageError for bytes that are not an image we decode, BadImageError for an
    image we cannot use (empty, truncated, too large, animated or multi-page).
    """
    if isinstance(image, np.ndarray):
        return _from_array(image)
    if isinstance(image, Image.Image):
        pil = image
        _check_dimensions(*pil.size)
    else:
        data = read_file(image) if isinstance(image, (str, os.PathLike)) else bytes(image)
        if not data:
            raise NotAnImageError("empty file (0 bytes)")
        if len(data) > MAX_FILE_BYTES:
            raise BadImageError(f"upload is {len(data) / 2**20:.0f} MB, larger than the {MAX_FILE_BYTES // 2**20} MB limit")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                pil = Image.open(io.BytesIO(data), formats=FORMATS)
        except UnidentifiedImageError:
            raise NotAnImageError(f"not an image in a supported format ({', '.join(FORMATS)})") from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise BadImageError("image dimensions are too large (decompression bomb)") from None
        except (OSError, ValueError, SyntaxError, EOFError) as exc:  # malformed headers
            raise BadImageError(f"corrupt image header: {_first_line(exc)}") from None
        _check_dimensions(*pil.size)
    frames = getattr(pil, "n_frames", 1)
    # MPO (phone cameras) stores a primary photo plus previews/depth maps: the first frame is the photo.
    if frames > 1 and pil.format != "MPO":
        kind = "animated" if pil.format in ("GIF", "PNG", "WEBP") else "multi-page"
        raise BadImageError(f"{kind} image with {frames} frames; send a single still image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            if frames > 1:
                pil.seek(0)
            pil.load()
    except (OSError, ValueError, SyntaxError, EOFError, IndexError, struct.error) as exc:
        message = _first_line(exc)
        if "truncated" in message or "broken data stream" in message or isinstance(exc, EOFError):
            raise BadImageError("truncated image file") from None
        raise BadImageError(f"cannot decode image: {message}") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise BadImageError("image dimensions are too large (decompression bomb)") from None
    return _upright(pil)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


def _upright(pil: Image.Image) -> Image.Image:
    """Apply the EXIF orientation (phone photos are stored sideways with a rotation tag)."""
    try:
        upright = ImageOps.exif_transpose(pil)
    except Exception:  # noqa: BLE001 - malformed EXIF must not make a readable picture unusable
        return pil
    return upright if upright is not None else pil


# ------------------------------------------------------------------------------------------------
# 2. grayscale
# ------------------------------------------------------------------------------------------------

def _luminance(rgb: np.ndarray) -> np.ndarray:
    # ITU-R 601 luma, as Pillow's convert("L")
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


def _flatten_alpha(gray: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Composite a grey image with transparency onto the colour that makes the clear parts paper.

    When only the strokes are opaque (a drawing app's transparent canvas) the clear parts take the
    colour opposite the strokes; when most of the picture is opaque (a photo with clear margins),
    the clear parts take the paper's colour, the median of the opaque pixels.
    """
    if alpha.min() >= 0.999:
        return gray
    opaque = alpha > 0.5
    if not opaque.any():
        return np.ones_like(gray)  # all transparent: an empty page
    if opaque.mean() < 0.5:
        stroke = float(np.average(gray, weights=alpha))
        background = 1.0 if stroke < 0.5 else 0.0
    else:
        background = float(np.median(gray[opaque]))
    return gray * alpha + background * (1 - alpha)


def to_gray(pil: Image.Image) -> np.ndarray:
    """PIL image in any mode -> float32 (H, W) on 0-1 (1 = white), transparency flattened."""
    mode = pil.mode
    if mode == "P":
        pil = pil.convert("RGBA" if "transparency" in pil.info else "RGB")
        mode = pil.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        a = np.asarray(pil, dtype=np.float64)
        if mode == "F" or a.max() > 65535 or a.min() < 0:  # float or 32-bit data: its own range
            lo, hi = float(np.nanmin(a)), float(np.nanmax(a))
            if not (np.isfinite(lo) and np.isfinite(hi)):
                raise BadImageError("image contains NaN or infinite values")
            a = (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
        else:
            a = a / 65535.0
        return a.astype(np.float32)
    if mode in ("1", "L"):
        return np.asarray(pil.convert("L"), dtype=np.float32) / 255.0
    if mode in ("LA", "La"):
        la = np.asarray(pil.convert("LA"), dtype=np.float32) / 255.0
        return _flatten_alpha(la[..., 0], la[..., 1]).astype(np.float32)
    if mode in ("RGBA", "RGBa", "PA"):
        rgba = np.asarray(pil.convert("RGBA"), dtype=np.float32) / 255.0
        return _flatten_alpha(_luminance(rgba[..., :3]), rgba[..., 3]).astype(np.float32)
    try:  # RGB, CMYK, YCbCr, RGBX, HSV, ...
        rgb = np.asarray(pil.convert("RGB"), dtype=np.float32) / 255.0
    except (ValueError, OSError) as exc:
        raise BadImageError(f"unsupported colour mode {mode}: {_first_line(exc)}") from None
    return _luminance(rgb).astype(np.float32)


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
    smooth = ndimage.uniform_filter(gray, size=3)  # a hot pixel is not ink
    median = float(np.median(smooth))
    for tail in (0.5, 0.05, 0.005):
        lo, hi = np.percentile(smooth, [tail, 100 - tail])
        dark, light = median - lo, hi - median
        if max(dark, light) > 0.1 and max(dark, light) > 1.5 * min(dark, light):
            return bool(dark > light)
    return True


def background_size(shape: tuple[int, int]) -> int:
    """Width (pixels) of the grey opening that estimates the paper: a quarter of the frame, far
    wider than a stroke (about 1/8 of a digit's height), narrow enough to follow shading.
    `extract_ink` widens it when the ink found turns out to have thicker strokes."""
    return max(7, int(min(shape) / 4))


def remove_background(ink_bright: np.ndarray, dark_ink: bool = True, size: int | None = None) -> np.ndarray:
    """Ink-bright image (H, W) -> residual (H, W): ink contrast above the local paper level.

    The paper level is a grey opening (erosion then dilation) with a square wider than any stroke:
    it removes the strokes and keeps the slowly varying light. It is computed on a shrunken copy
    (cheap even for a wide opening), smoothed and scaled back. Light falls on ink and paper alike,
    so for dark ink on paper the contrast is taken relative to the local paper brightness
    (a shadowed stroke is as black, relative to its paper, as a lit one).
    """
    h, w = ink_bright.shape
    size = size or background_size((h, w))
    factor = max(1, size // 12)
    small = ink_bright
    if factor > 1:
        small = np.asarray(Image.fromarray(ink_bright, "F").resize((max(1, w // factor), max(1, h // factor)), Image.BOX))
    k = max(3, size // factor)
    # Pad explicitly: scipy applies the edge mode to each of erosion and dilation separately,
    # which would underestimate paper that gets brighter towards the border (vignetting).
    pad = k + k // 2
    paper = ndimage.grey_opening(np.pad(small, pad, mode="edge"), size=(k, k))
    paper = ndimage.uniform_filter(paper, size=max(3, k // 2))[pad:-pad, pad:-pad]
    if factor > 1:
        paper = np.asarray(Image.fromarray(paper, "F").resize((w, h), Image.BILINEAR))
    paper = np.minimum(paper, ink_bright)
    residual = ink_bright - paper
    if dark_ink:
        # ink_bright = 1 - gray, so 1 - paper is the paper's own brightness
        residual = residual / np.maximum(1.0 - paper, 0.05)
    return residual


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
    smooth = ndimage.gaussian_filter(residual, sigma=max(0.7, min(residual.shape) / 400))
    floor = float(np.median(smooth))
    peak = float(smooth.max()) - floor
    # Ink contrast: a high percentile (robust to a hot pixel), but a small digit in a large frame
    # is < 0.05% of the pixels, hence also half the peak.
    contrast = max(float(np.percentile(smooth, 99.95)) - floor, 0.5 * peak)
    # Noise (sensor noise and paper texture): robust spread of the pixels that are clearly paper.
    paper = smooth[smooth < floor + INK_FRACTION * contrast]
    noise = 1.4826 * float(np.median(np.abs(paper - np.median(paper)))) if paper.size else 0.0
    found = contrast >= MIN_CONTRAST and contrast >= NOISE_SIGMAS * noise
    threshold = floor + max(INK_FRACTION * contrast, 0.5 * NOISE_SIGMAS * noise)
    mask = smooth > threshold
    if not found or not mask.any():
        zeros = np.zeros_like(residual)
        return zeros, np.zeros(residual.shape, bool), contrast, noise, False
    # Soft ink: 0 at the paper's noise floor, 1 at the stroke core (90th percentile of the mask).
    low = floor + max(0.05 * contrast, 3 * noise)
    core = float(np.percentile(smooth[mask], CORE_PERCENTILE))
    ink = np.clip((residual - low) / max(core - low, 1e-6), 0, 1).astype(np.float32)
    return ink, mask, contrast, noise, True


def _strokes_too_wide(bright: np.ndarray, mask: np.ndarray, size: int) -> bool:
    """Did an opening of `size` miss part of the strokes? Either the strokes found are nearly as
    wide as the opening, or the mask is a stroke's outline around ink-coloured "holes"."""
    if STROKES_PER_OPENING * stroke_width(mask) > size:
        return True
    filled = ndimage.binary_fill_holes(mask)
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
    bright = bright.astype(np.float32)
    size, largest = background_size(bright.shape), max(bright.shape)
    while True:
        ink, mask, contrast, noise, found = find_ink(remove_background(bright, dark, size))
        if not found or size >= largest or not _strokes_too_wide(bright, mask, size):
            break
        # Strokes about as wide as the opening are partly taken for paper: widen it (at the
        # limit, one paper level for the whole frame) and look again.
        size = min(max(2 * size, int(STROKES_PER_OPENING * stroke_width(ndimage.binary_fill_holes(mask)))), largest)
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
    mask = np.isin(lab, label_ids)
    keep = ndimage.binary_dilation(mask, structure=EIGHT, iterations=halo) if halo else mask
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
    area = int(mask.sum())
    if area == 0:
        return 0.0
    padded = np.pad(mask, 1)
    edges = int((padded[1:, :] != padded[:-1, :]).sum() + (padded[:, 1:] != padded[:, :-1]).sum())
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
    yy, xx = np.mgrid[0 : small.shape[0], 0 : small.shape[1]]
    com_y, com_x = (small * yy).sum() / total, (small * xx).sum() / total
    # MNIST translated by whole pixels (its centres of mass spread +-0.5 pixel); keep the box inside.
    top = int(np.clip(round(CENTRE - com_y), 0, FIELD - small.shape[0]))
    left = int(np.clip(round(CENTRE - com_x), 0, FIELD - small.shape[1]))
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
        long_side = max(np.ptp(rows) + 1, np.ptp(cols) + 1)
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
