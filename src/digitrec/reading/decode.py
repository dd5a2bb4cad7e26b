"""Step 1-2 of preprocessing: from "an image someone handed us" to one upright grey picture.

``decode`` turns bytes, a path, a PIL image or a numpy array into one fully decoded, upright PIL
frame, refusing with a one-line error what is not an image (NotAnImageError, HTTP 415) or cannot be
used (BadImageError, HTTP 422): empty or truncated files, decompression bombs, absurd dimensions,
animated or multi-page files. ``decode_reduced`` does the same but lets the JPEG decoder scale a
photo far larger than needed down by 2, 4 or 8 as it decodes (the DCT scaling of libjpeg: a 12 MP
photo in a fifth of the time, and never a full-resolution copy). ``to_gray`` turns any colour mode
(RGB, RGBA, LA, palette with or without transparency, CMYK, 1-bit, 16/32-bit integer, float) into
float (H, W) on 0-1; ``gray_image`` into a grey PIL image that can still be cropped and shrunk
cheaply. HEIC/HEIF photos (iPhones) are decoded by the pillow-heif plugin, registered here once.
The rest of the path is in `digitrec.reading.preprocess`.
"""

from __future__ import annotations

import io
import os
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from digitrec.errors import BadImageError, NotAnImageError

ImageInput = bytes | bytearray | memoryview | str | os.PathLike | Image.Image | np.ndarray

# --- limits (why: a phone photo is at most ~50 MP; anything beyond is a mistake or an attack) ---
MAX_FILE_BYTES = 50 * 1024 * 1024  # bytes read from a file or upload
MAX_PIXELS = 60_000_000  # width * height, checked from the header before decoding
MAX_SIDE = 20_000  # pixels, either side
MIN_SIDE = 8  # pixels: smaller cannot hold a legible digit
# Formats we decode. Restricting the list keeps Pillow away from exotic decoders (EPS runs
# Ghostscript); these cover phone cameras (JPEG also opens their multi-picture MPO files; HEIF is
# the iPhone's HEIC), scanners, browsers and image editors.
FORMATS: tuple[str, ...] = ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP", "PPM")
try:  # a dependency, but a platform without its wheel still reads every other format
    from pillow_heif import register_heif_opener
except ImportError:  # pragma: no cover
    pass
else:
    # Once per process. Thumbnails and depth maps are never read: not loaded.
    register_heif_opener(thumbnails=False, depth_images=False)
    FORMATS += ("HEIF",)
# Files that hold several pictures of which the current (first or primary) one is the photo: a
# camera's MPO (the photo plus previews or depth maps), a HEIF container (iPhone bursts, edits).
_CONTAINERS = ("MPO", "HEIF")
# JPEG decoders scale by these as they decode (libjpeg's DCT scaling), largest first.
_DCT_SCALES = (8, 4, 2)


# ------------------------------------------------------------------------------------------------
# decode
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
            f"{MAX_PIXELS // 1_000_000} megapixels); possibly a decompression bomb"
        )
    if width < MIN_SIDE or height < MIN_SIDE:
        raise BadImageError(
            f"image is {width}x{height} pixels, too small to hold a digit (at least {MIN_SIDE}x{MIN_SIDE})"
        )


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
        if a.ndim == 2:  # keep 16 bits of a grey float picture (to_gray reads "I" as 0-65535)
            return Image.fromarray(np.round(np.clip(a, 0, 1) * 65535).astype(np.int32), "I")
        a = (np.clip(a, 0, 1) * 255 + 0.5).astype(np.uint8)
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


def _open(image: ImageInput) -> tuple[Image.Image, bool]:
    """Any supported input -> (its PIL image, opened but not yet decoded; whether it was opened here)."""
    if isinstance(image, np.ndarray):
        return _from_array(image), True
    if isinstance(image, Image.Image):
        _check_dimensions(*image.size)
        return image, False
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
    return pil, True


def _one_frame(pil: Image.Image) -> None:
    """Refuse animations and multi-page files; a camera's container stays on its photo."""
    frames = getattr(pil, "n_frames", 1)
    if frames > 1 and pil.format not in _CONTAINERS:
        kind = "animated" if pil.format in ("GIF", "PNG", "WEBP") else "multi-page"
        raise BadImageError(f"{kind} image with {frames} frames; send a single still image")


def _load(pil: Image.Image) -> None:
    """Decode the pixels (of an MPO's first frame), every failure as a one-line BadImageError."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            if pil.format == "MPO" and getattr(pil, "n_frames", 1) > 1:
                pil.seek(0)  # a no-op on a file just opened (which keeps its draft), not on a caller's image
            pil.load()
    except (OSError, ValueError, SyntaxError, EOFError, IndexError, struct.error) as exc:
        message = _first_line(exc)
        if "truncated" in message or "broken data stream" in message or isinstance(exc, EOFError):
            raise BadImageError("truncated image file") from None
        raise BadImageError(f"cannot decode image: {message}") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise BadImageError("image dimensions are too large (decompression bomb)") from None


def decode(image: ImageInput) -> Image.Image:
    """Any supported input -> one fully decoded, upright PIL image.

    Raises NotAnImageError for bytes that are not an image we decode, BadImageError for an
    image we cannot use (empty, truncated, too large, animated or multi-page).
    """
    pil, owned = _open(image)
    _one_frame(pil)
    _load(pil)
    return _upright(pil, owned=owned)


@dataclass(frozen=True)
class Decoded:
    """An upright image decoded at `factor` times fewer pixels per side than the input has."""

    image: Image.Image
    size: tuple[int, int]  # (width, height) of the upright input image
    factor: float = 1.0  # input pixels per decoded pixel


def decode_reduced(image: ImageInput, long_side: int, gray: bool = False) -> Decoded:
    """`decode`, but a JPEG at least twice `long_side` on its long side is decoded at 1/2, 1/4 or
    1/8 of its size, still at least `long_side`: libjpeg scales the DCT blocks as it decodes, so a
    12 MP photo costs a fifth of its full decoding and its full-size pixels never exist. `gray`
    decodes a colour JPEG's luma alone (what `to_gray` would compute from its colours, rounded
    to 8 bits), faster again. Other formats and inputs are decoded as `decode` does."""
    pil, owned = _open(image)
    _one_frame(pil)
    width, height = pil.size
    scale = 1
    if owned and pil.format in ("JPEG", "MPO"):
        scale = next((s for s in _DCT_SCALES if max(width, height) // s >= long_side), 1)
        if scale > 1 or gray:
            pil.draft("L" if gray else None, (max(1, width // scale), max(1, height // scale)) if scale > 1 else None)
            # the decoder's own rounding of the size (up), from which the scale actually used follows
            scale = round(width / pil.size[0]) if pil.size != (width, height) else 1
    _load(pil)
    upright = _upright(pil, owned=owned)
    turned = upright.size != pil.size  # EXIF orientations 5-8 swap the sides
    return Decoded(image=upright, size=(height, width) if turned else (width, height), factor=float(scale))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


def _upright(pil: Image.Image, owned: bool = False) -> Image.Image:
    """Apply the EXIF orientation (phone photos are stored sideways with a rotation tag).

    `owned`: the image was opened here, so when it is already upright it is returned as it is
    rather than copied (the copy is a third of decoding a small upload). A caller's own image is
    never handed back to be modified."""
    try:
        if owned and pil.getexif().get(ExifTags.Base.Orientation, 1) not in _ROTATED:
            return pil
        upright = ImageOps.exif_transpose(pil)
    except Exception:  # noqa: BLE001 - malformed EXIF must not make a readable picture unusable
        return pil
    return upright if upright is not None else pil


_ROTATED = (2, 3, 4, 5, 6, 7, 8)  # EXIF orientations that exif_transpose turns upright


# ------------------------------------------------------------------------------------------------
# grayscale
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


def gray_image(pil: Image.Image) -> Image.Image:
    """PIL image in any mode -> grey PIL image, "L" (8 bits; what most photos and scans are) or
    "F" (0-1, 1 = white: the modes `to_gray` computes in float, with transparency flattened), to
    be cropped and shrunk by Pillow before any of it becomes a float array."""
    if pil.mode == "L":
        return pil
    if pil.mode in ("RGB", "1", "CMYK", "YCbCr") or (pil.mode == "P" and "transparency" not in pil.info):
        # ITU-R 601 luma, as `to_gray`, rounded to 8 bits (CMYK and YCbCr by way of RGB, as there)
        return (pil if pil.mode in ("RGB", "1", "P") else pil.convert("RGB")).convert("L")
    return Image.fromarray(to_gray(pil), "F")


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
        return np.asarray(pil if mode == "L" else pil.convert("L"), dtype=np.float32) / 255.0
    if mode in ("LA", "La"):
        la = np.asarray(pil.convert("LA"), dtype=np.float32) / 255.0
        return _flatten_alpha(la[..., 0], la[..., 1]).astype(np.float32)
    if mode in ("RGBA", "RGBa", "PA"):
        rgba = np.asarray(pil.convert("RGBA"), dtype=np.float32) / 255.0
        return _flatten_alpha(_luminance(rgba[..., :3]), rgba[..., 3]).astype(np.float32)
    try:  # RGB, CMYK, YCbCr, RGBX, HSV, ...
        rgb = np.asarray(pil if mode == "RGB" else pil.convert("RGB"))  # (H, W, 3) uint8
    except (ValueError, OSError) as exc:
        raise BadImageError(f"unsupported colour mode {mode}: {_first_line(exc)}") from None
    # _luminance(rgb / 255) in float32, a channel at a time: the same operations in the same
    # order on each pixel, without the (H, W, 3) float copies
    gray = np.empty(rgb.shape[:2], np.float32)
    channel = np.empty_like(gray)
    for c, weight in enumerate((0.299, 0.587, 0.114)):
        np.divide(rgb[..., c], np.float32(255.0), out=channel, dtype=np.float32)
        channel *= np.float32(weight)
        if c:
            gray += channel
        else:
            gray[...] = channel
    return gray
