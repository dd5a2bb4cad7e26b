"""(Re)create the hostile-input corpus in tests/fuzz/corpus/ and its MANIFEST.json.

    python tests/fuzz/make_corpus.py            # rewrite the corpus next to this script
    python tests/fuzz/make_corpus.py --check    # exit 1 if the committed corpus differs

Every file is something a public upload form receives sooner or later: nothing at all, text and
documents sent by mistake, truncated and corrupt images, decompression bombs, absurd dimensions,
animations and multi-page files, and the odd-but-valid pictures (16-bit, CMYK, palette with
transparency, EXIF-rotated phone photos, blank pages, noise) that a decoder must turn into a
result rather than an error. The manifest says, per file, what it is and the outcome
tests/test_fuzz_corpus.py expects from `Recognizer.predict`/`read`, the CLI and the HTTP API:

- ``"expect": "result"``: a Prediction / Reading (possibly rejected, e.g. "no ink found");
  the HTTP API answers 200.
- ``"expect": "error"`` with ``"status"``: a one-line ImageError; HTTP 415 (not an image format
  we decode) or 422 (an image we cannot use).

Optional relations, checked exactly by the tests because they hold for any model:
``"same_as": FILE`` (the same pixels in another container, so the same prediction) and
``"orientation": N`` (a JPEG whose stored pixels are sideways, with EXIF orientation N, so the
prediction equals that of the stored pixels turned upright by hand).

Deterministic: the digits are fixed MNIST test images from the repository's data/mnist, noise
comes from a seeded generator, and Pillow writes no timestamps. (Re-running with another
Pillow/libjpeg/libwebp version may change the bytes of the lossy files, not what they are.)
The corpus stays small (well under 1 MB): bombs are small compressed files with huge headers.
"""

from __future__ import annotations

import argparse
import io
import json
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

CORPUS = Path(__file__).resolve().parent / "corpus"
MANIFEST = "MANIFEST.json"
DIGITS = (0, 1, 2)  # MNIST test-set indices (a 7, a 2 and a 1) used for the picture files


# ---- building blocks ----------------------------------------------------------------------------


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def chunk(kind: bytes, body: bytes, crc: int | None = None) -> bytes:
    """One PNG chunk: length, type, body, CRC-32 of type + body (or a forged `crc`)."""
    crc = zlib.crc32(kind + body) if crc is None else crc
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc & 0xFFFFFFFF)


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def raw_png(
    width: int, height: int, bit_depth: int, colour_type: int, idat: bytes, extra: tuple[bytes, ...] = ()
) -> bytes:
    """A PNG assembled chunk by chunk, so its header may say anything."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return PNG_SIGNATURE + chunk(b"IHDR", ihdr) + b"".join(extra) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def zeros_compressed(n_bytes: int) -> bytes:
    """zlib stream of `n_bytes` zero bytes, compressed without ever holding them all in memory
    (deflate packs zeros about 1000:1, which is what makes a decompression bomb small)."""
    compressor = zlib.compressobj(9)
    block = bytes(1 << 20)
    parts = []
    for start in range(0, n_bytes, len(block)):
        parts.append(compressor.compress(block[: min(len(block), n_bytes - start)]))
    parts.append(compressor.flush())
    return b"".join(parts)


def paper_digit(digit28: np.ndarray, scale: int = 3, margin: int = 20) -> np.ndarray:
    """An MNIST digit (light ink on black) as dark ink on white paper, `scale` times larger, with
    a margin: (28*scale + 2*margin) square uint8."""
    big = np.asarray(Image.fromarray(digit28).resize((28 * scale, 28 * scale), Image.BILINEAR))
    page = np.full((big.shape[0] + 2 * margin, big.shape[1] + 2 * margin), 255, np.uint8)
    page[margin:-margin, margin:-margin] = 255 - big
    return page


def exif_jpeg(upright: np.ndarray, orientation: int) -> bytes:
    """A grey JPEG whose pixels are stored turned as a phone stores them, with the EXIF tag that
    says how to turn them back (6: stored rotated 90 degrees counter-clockwise; 8: clockwise)."""
    stored = {6: np.rot90(upright, 1), 8: np.rot90(upright, -1), 3: np.rot90(upright, 2)}[orientation]
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(Image.fromarray(np.ascontiguousarray(stored)), "JPEG", quality=92, exif=exif.tobytes())


def animated(frames: list[np.ndarray], fmt: str, **options) -> bytes:
    images = [Image.fromarray(f) for f in frames]
    return encode(images[0], fmt, save_all=True, append_images=images[1:], **options)


# ---- the corpus ---------------------------------------------------------------------------------

Entry = tuple[str, str, bytes, dict]  # (file name, what it is, bytes, expectation)


def result(**extra) -> dict:
    return {"expect": "result", **extra}


def error(*status: int) -> dict:
    """An ImageError answered with `status`; two statuses when either is right: a file with an
    image format's signature but a header too broken to parse is, to Pillow, not identifiable
    (415), though "a broken image" (422) would describe it as well."""
    return {"expect": "error", "status": status[0] if len(status) == 1 else list(status)}


def build(digits: list[np.ndarray]) -> list[Entry]:
    rng = np.random.default_rng(7)
    seven = paper_digit(digits[0])  # (124, 124) uint8, dark ink on white
    two = paper_digit(digits[1])
    digit_png = encode(Image.fromarray(seven), "PNG")
    digit_jpg = encode(Image.fromarray(seven), "JPEG", quality=90)
    number = np.concatenate([paper_digit(d, 2, 12) for d in digits], axis=1)  # "721" on one line
    frames = [seven, two, 255 - seven]

    # Transparent canvas of a drawing app: palette image, index 0 fully transparent white paper.
    palette_img = Image.fromarray(seven).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    background_index = palette_img.getpixel((0, 0))
    rgba = np.zeros((124, 124, 4), np.uint8)
    rgba[..., 3] = 255 - seven  # black ink opaque, paper clear
    cmyk = Image.fromarray(seven).convert("CMYK")
    noise = rng.integers(0, 256, (96, 96), dtype=np.uint8)
    sixteen = Image.fromarray(seven.astype(np.uint16) * 257)  # mode I;16, exactly the 8-bit values
    rgb16_rows = b"".join(b"\0" + np.repeat(row.astype(">u2") * 257, 3).tobytes() for row in seven)
    tiff_float = Image.fromarray(seven.astype(np.float32) / 255.0, "F")
    tiff_int32 = Image.fromarray(seven.astype(np.int32) * 1000, "I")

    def bad_crc(kind: bytes) -> bytes:
        data = bytearray(digit_png)
        at = data.find(kind)
        length = struct.unpack(">I", bytes(data[at - 4 : at]))[0]
        data[at + 4 + length] ^= 0xFF  # first byte of the chunk's CRC
        return bytes(data)

    digit_gif = encode(Image.fromarray(seven), "GIF")

    ztxt_bomb = chunk(b"zTXt", b"Comment\0\0" + zeros_compressed(64 * 1024 * 1024))
    gif_no_frames = b"GIF89a" + struct.pack("<HHBBB", 64, 64, 0, 0, 0) + b";"

    entries: list[Entry] = [
        # --- not an image at all: 415 ---
        ("empty.png", "zero bytes", b"", error(415)),
        ("notes.txt", "plain text", b"The number is 42.\nPlease read it.\n", error(415)),
        (
            "page.html",
            "an HTML page",
            b"<!DOCTYPE html>\n<html><body><img src='digit.png'></body></html>\n",
            error(415),
        ),
        ("data.json", "a JSON document", json.dumps({"image": "7", "pixels": [0, 255]}).encode(), error(415)),
        (
            "document.pdf",
            "a PDF header and a minimal PDF body",
            b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n",
            error(415),
        ),
        (
            "drawing.svg",
            "an SVG drawing of a digit",
            b'<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64">'
            b'<text x="16" y="48" font-size="48">7</text></svg>\n',
            error(415),
        ),
        (
            "drawing.eps",
            "an EPS file (Pillow would hand it to Ghostscript; we must not)",
            b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 64 64\nnewpath 8 8 moveto 56 56 lineto stroke\n"
            b"showpage\n%%EOF\n",
            error(415),
        ),
        (
            "favicon.ico",
            "an ICO icon (not a format we decode)",
            encode(Image.fromarray(seven).resize((32, 32)), "ICO"),
            error(415),
        ),
        ("random.bin", "4 KB of random bytes", rng.integers(0, 256, 4096, dtype=np.uint8).tobytes(), error(415)),
        ("archive.zip", "a ZIP archive header", b"PK\x03\x04" + bytes(26) + b"digit.png", error(415)),
        ("jpeg_soi_only.jpg", "a JPEG start-of-image marker and nothing else", b"\xff\xd8", error(415)),
        # --- an image we cannot use: 422 ---
        ("png_signature_only.png", "the 8-byte PNG signature and nothing else", PNG_SIGNATURE, error(415, 422)),
        ("truncated.png", "the first half of a PNG", digit_png[: len(digit_png) // 2], error(422)),
        ("truncated.jpg", "the first half of a JPEG", digit_jpg[: len(digit_jpg) // 2], error(422)),
        (
            "jpeg_header_only.jpg",
            "a JPEG cut right after its headers, before any scan data",
            digit_jpg[: digit_jpg.find(b"\xff\xda")],
            error(422),
        ),
        ("bad_crc_ihdr.png", "a PNG whose header checksum is wrong", bad_crc(b"IHDR"), error(415, 422)),
        (
            "bad_ihdr.png",
            "a PNG header with an impossible bit depth and colour type",
            raw_png(64, 64, 7, 9, zlib.compress(bytes(64 * 65))),
            error(415, 422),
        ),
        (
            "no_idat.png",
            "a PNG with a header but no image data",
            PNG_SIGNATURE + chunk(b"IHDR", struct.pack(">IIBBBBB", 64, 64, 8, 0, 0, 0, 0)) + chunk(b"IEND", b""),
            error(422),
        ),
        (
            "bomb.png",
            "a decompression bomb: 30 KB of deflated zeros declaring a 16000x16000 1-bit image",
            raw_png(16000, 16000, 1, 0, zeros_compressed(16000 * (16000 // 8 + 1))),
            error(422),
        ),
        (
            "header_20000x20000.png",
            "a 20000x20000 header with a few bytes of data",
            raw_png(20000, 20000, 8, 0, zlib.compress(bytes(64))),
            error(422),
        ),
        (
            "header_100000x10.png",
            "a 100000x10 header (one side over the limit)",
            raw_png(100000, 10, 8, 0, zlib.compress(bytes(64))),
            error(422),
        ),
        (
            "ztxt_bomb.png",
            "a PNG whose compressed text chunk inflates to 64 MB",
            raw_png(64, 64, 8, 0, zlib.compress(bytes(64 * 65)), extra=(ztxt_bomb,)),
            error(422),
        ),
        ("one_pixel.png", "a 1x1 image", encode(Image.new("L", (1, 1), 0), "PNG"), error(422)),
        (
            "needle_1x5000.png",
            "a 1x5000 image (huge aspect ratio)",
            encode(Image.new("L", (1, 5000), 255), "PNG"),
            error(422),
        ),
        ("animated.gif", "an animated GIF, 3 frames", animated(frames, "GIF", duration=100, loop=0), error(422)),
        ("animated.png", "an animated PNG (APNG), 3 frames", animated(frames, "PNG", duration=100), error(422)),
        (
            "animated.webp",
            "an animated WebP, 3 frames",
            animated(frames, "WEBP", duration=100, lossless=True),
            error(422),
        ),
        # 422 to /v1/predict (one picture expected); 415 to /v1/read without a template (pages of a form)
        ("multipage.tiff", "a 3-page TIFF", animated(frames, "TIFF"), error(422, 415)),
        (
            "gif_no_frames.gif",
            "a GIF with a screen descriptor and a trailer but no frame",
            gif_no_frames,
            error(415, 422),
        ),
        ("gif_cut_in_palette.gif", "a GIF cut inside its colour table", digit_gif[:200], error(415, 422)),
        ("truncated.gif", "a GIF cut in the middle of its image data", digit_gif[: len(digit_gif) // 2], error(422)),
        (
            "bmp_huge_header.bmp",
            "a BMP header declaring 30000x30000 pixels",
            b"BM"
            + struct.pack("<IHHI", 54, 0, 0, 54)
            + struct.pack("<IiiHHIIiiII", 40, 30000, 30000, 1, 24, 0, 0, 0, 0, 0, 0),
            error(422),
        ),
        # --- odd but valid pictures: a result (perhaps rejected) ---
        ("digit.png", "a handwritten 7 on white paper, 8-bit grey PNG", digit_png, result()),
        (
            "bad_crc_idat.png",
            "the 7 as a PNG whose image-data checksum is wrong (the pixels are intact; Pillow does not check it)",
            bad_crc(b"IDAT"),
            result(same_as="digit.png"),
        ),
        ("digit_png_named.jpg", "the same PNG, named .jpg (wrong extension)", digit_png, result(same_as="digit.png")),
        (
            "digit_jpeg_named.png",
            "a JPEG of the 7, named .png (wrong extension)",
            digit_jpg,
            result(same_as="digit.jpg"),
        ),
        ("digit.jpg", "the 7 as a grey JPEG", digit_jpg, result()),
        (
            "digit_16bit.png",
            "the 7 as a 16-bit grey PNG (the same values times 257)",
            encode(sixteen, "PNG"),
            result(same_as="digit.png"),
        ),
        (
            "digit_rgb16.png",
            "the 7 as a 16-bit-per-channel RGB PNG",
            raw_png(124, 124, 16, 2, zlib.compress(rgb16_rows)),
            result(),
        ),
        ("digit_cmyk.jpg", "the 7 as a CMYK JPEG", encode(cmyk, "JPEG", quality=90), result()),
        (
            "digit_palette_transparent.png",
            "the 7 as a 16-colour palette PNG whose paper colour is transparent",
            encode(palette_img, "PNG", transparency=background_index),
            result(),
        ),
        (
            "digit_rgba_canvas.png",
            "the 7 as opaque strokes on a fully transparent canvas (drawing app)",
            encode(Image.fromarray(rgba, "RGBA"), "PNG"),
            result(),
        ),
        (
            "digit_exif6.jpg",
            "the 7 stored sideways with EXIF orientation 6 (phone held upright)",
            exif_jpeg(seven, 6),
            result(orientation=6),
        ),
        (
            "digit_exif8.jpg",
            "the 7 stored sideways with EXIF orientation 8",
            exif_jpeg(seven, 8),
            result(orientation=8),
        ),
        (
            "digit_exif3.jpg",
            "the 7 stored upside down with EXIF orientation 3",
            exif_jpeg(seven, 3),
            result(orientation=3),
        ),
        (
            "digit_exif_garbage.jpg",
            "the 7 as a JPEG with a malformed EXIF block",
            encode(Image.fromarray(seven), "JPEG", quality=90, exif=b"Exif\0\0MM\0*\0\0\0\x08\xff\xff\x01"),
            result(),
        ),
        ("digit_1bit.png", "the 7 as a 1-bit PNG", encode(Image.fromarray(seven).convert("1"), "PNG"), result()),
        (
            "digit_la.png",
            "the 7 as grey + alpha, fully opaque",
            encode(Image.fromarray(seven).convert("LA"), "PNG"),
            result(same_as="digit.png"),
        ),
        ("digit_float.tiff", "the 7 as a 32-bit float TIFF on 0-1", encode(tiff_float, "TIFF"), result()),
        ("digit_int32.tiff", "the 7 as a 32-bit integer TIFF (values 0-255000)", encode(tiff_int32, "TIFF"), result()),
        (
            "digit.webp",
            "the 7 as a lossless WebP",
            encode(Image.fromarray(seven), "WEBP", lossless=True),
            result(same_as="digit.png"),
        ),
        ("digit.bmp", "the 7 as a BMP", encode(Image.fromarray(seven), "BMP"), result(same_as="digit.png")),
        ("digit.gif", "the 7 as a single-frame GIF", digit_gif, result()),
        (
            "digit.tiff",
            "the 7 as a single-page TIFF",
            encode(Image.fromarray(seven), "TIFF"),
            result(same_as="digit.png"),
        ),
        (
            "digit_progressive.jpg",
            "the 7 as a progressive JPEG",
            encode(Image.fromarray(seven), "JPEG", quality=90, progressive=True),
            result(),
        ),
        (
            "chalk.png",
            "a light 2 on a dark board (inverted polarity)",
            encode(Image.fromarray(255 - two), "PNG"),
            result(),
        ),
        ("number_721.png", "the number 721 written on one line", encode(Image.fromarray(number), "PNG"), result()),
        ("all_white.png", "a blank white page", encode(Image.new("L", (96, 96), 255), "PNG"), result()),
        ("all_black.png", "an all-black picture", encode(Image.new("L", (96, 96), 0), "PNG"), result()),
        (
            "transparent.png",
            "an RGBA image, fully transparent",
            encode(Image.new("RGBA", (96, 96), (0, 0, 0, 0)), "PNG"),
            result(),
        ),
        ("noise.png", "uniform random grey noise", encode(Image.fromarray(noise), "PNG"), result()),
        (
            "noise_rgb.jpg",
            "random colour noise as a JPEG",
            encode(Image.fromarray(rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)), "JPEG", quality=75),
            result(),
        ),
        (
            "smallest_8x8.png",
            "an 8x8 picture (the smallest accepted size) with a dot of ink",
            encode(Image.fromarray(np.pad(np.zeros((2, 2), np.uint8), 3, constant_values=255)), "PNG"),
            result(),
        ),
        (
            "sliver_10x4000.png",
            "a 10x4000 strip with a line of ink (huge aspect ratio, still decodable)",
            encode(
                Image.fromarray(np.pad(np.zeros((3990, 2), np.uint8), ((5, 5), (4, 4)), constant_values=255)), "PNG"
            ),
            result(),
        ),
        ("banner_4000x10.png", "a 4000x10 strip, blank", encode(Image.new("L", (4000, 10), 255), "PNG"), result()),
    ]
    return entries


def load_digits() -> list[np.ndarray]:
    from digitrec.training.data import load_mnist

    mnist = load_mnist(allow_download=False)
    return [mnist.test_images[i].numpy() for i in DIGITS]


def write(entries: list[Entry], directory: Path) -> dict:
    directory.mkdir(parents=True, exist_ok=True)
    manifest = {}
    for name, what, data, expectation in entries:
        (directory / name).write_bytes(data)
        manifest[name] = {"what": what, **expectation}
    text = json.dumps(manifest, indent=1, sort_keys=True) + "\n"
    (directory / MANIFEST).write_text(text)
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the corpus on disk, write nothing")
    args = parser.parse_args(argv)
    entries = build(load_digits())
    names = [e[0] for e in entries]
    assert len(set(names)) == len(names), "duplicate corpus file name"
    if args.check:
        stale = [
            name
            for name, _, data, _ in entries
            if not (CORPUS / name).is_file() or (CORPUS / name).read_bytes() != data
        ]
        if stale:
            print(f"corpus differs from the generator: {', '.join(stale)}", file=sys.stderr)
            return 1
        print(f"corpus up to date: {len(entries)} files")
        return 0
    for old in CORPUS.glob("*"):  # files the generator no longer makes
        if old.name != MANIFEST and old.name not in names:
            old.unlink()
    write(entries, CORPUS)
    total = sum(len(e[2]) for e in entries)
    print(f"wrote {len(entries)} files ({total / 1024:.0f} KB) to {CORPUS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
