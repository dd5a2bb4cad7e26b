"""Step 1-2 of preprocessing: from "an image someone handed us" to one upright grey picture.

``decode`` turns bytes, a path, a PIL image or a numpy array into one fully decoded, upright PIL
frame, refusing with a one-line error what is not an image (NotAnImageError, HTTP 415) or cannot be
used (BadImageError, HTTP 422): empty or truncated files, decompression bombs, absurd dimensions,
animated or multi-page files. ``to_gray`` turns any colour mode (RGB, RGBA, LA, palette with or
without transparency, CMYK, 1-bit, 16/32-bit integer, float) into float (H, W) on 0-1. The rest of
the path is in `digitrec.preprocess`.
"""

from __future__ import annotations

import io
import os
import struct
import warnings
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
# Ghostscript); these cover phone cameras (JPEG also opens their multi-picture MPO files),
# scanners, browsers and image editors.
FORMATS = ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP", "PPM")


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
            raise BadImageError(
                f"upload is {len(data) / 2**20:.0f} MB, larger than the {MAX_FILE_BYTES // 2**20} MB limit"
            )
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
    return _upright(pil, owned=not isinstance(image, Image.Image))


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
        rgb = np.asarray(pil.convert("RGB"), dtype=np.float32) / 255.0
    except (ValueError, OSError) as exc:
        raise BadImageError(f"unsupported colour mode {mode}: {_first_line(exc)}") from None
    return _luminance(rgb).astype(np.float32)
