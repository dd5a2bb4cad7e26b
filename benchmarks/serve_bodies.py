"""Request bodies for benchmarks/serve_load.py: what people send to `digitrec serve`.

- tiny-png: a 72x72 PNG of an MNIST test digit as ink on paper, under 1 KB (the original case:
  it measures the service, hardly the image);
- photo-22k: a 342x350 JPEG photo of one digit, about 22 KB (a cropped phone photo; the example
  examples/digit_7_photo.jpg is 360x300 and 12 KB, so this one is made to the size);
- photo-1024: a 1024x768 JPEG photo, about 150 KB (a photo a phone or a web page already shrank,
  as the web page does above 1 MB);
- photo-12mp: a 4000x3000 JPEG photo, about 2 MB (a 12 MP phone photo sent as it is: the decode of
  12 million pixels is the work);
- number: a JPEG photo of a 3-7 digit number, sent to /v1/read (segmentation and one model call
  per candidate digit).

Every picture is drawn by digitrec.reading.synth from MNIST *test* digits, with a fixed seed, so
runs compare. A JPEG made "to about N KB" takes the quality whose file comes closest to N.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

BOUNDARY = "digitrecbenchboundary"


@dataclass(frozen=True)
class Body:
    name: str  # what --bodies calls it
    path: str  # the route (with its query)
    content_type: str  # of the file part
    images: list[bytes]  # distinct files, cycled through
    expect: bytes  # in every good answer's JSON

    @property
    def mean_bytes(self) -> float:
        return sum(map(len, self.images)) / len(self.images)

    def describe(self) -> str:
        size = self.mean_bytes
        shown = f"{size / 1e6:.1f} MB" if size >= 1e6 else f"{size / 1e3:.1f} KB"
        return f"{self.name} ({shown}, POST {self.path.split('?')[0]})"


def multipart(data: bytes, name: str, content_type: str) -> bytes:
    """A multipart/form-data body with one field `file` (boundary BOUNDARY)."""
    head = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
    return (head + f"Content-Type: {content_type}\r\n\r\n").encode() + data + f"\r\n--{BOUNDARY}--\r\n".encode()


def http_request(host: str, port: int, body: Body, data: bytes, name: str) -> bytes:
    """The whole HTTP/1.1 request, bytes ready to write."""
    payload = multipart(data, name, body.content_type)
    head = (
        f"POST {body.path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: multipart/form-data; "
        f"boundary={BOUNDARY}\r\nContent-Length: {len(payload)}\r\n\r\n"
    ).encode()
    return head + payload


def jpeg_near(image: Image.Image, target: int) -> bytes:
    """The JPEG of `image` whose size comes closest to `target` bytes (quality 30-98)."""
    best = b""
    low, high = 30, 98
    while low <= high:  # the size grows with the quality: bisect
        quality = (low + high) // 2
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=quality)
        data = buffer.getvalue()
        if not best or abs(len(data) - target) < abs(len(best) - target):
            best = data
        if len(data) < target:
            low = quality + 1
        else:
            high = quality - 1
    return best


def _digits() -> tuple[np.ndarray, np.ndarray]:
    from digitrec.training.data import load_mnist

    data = load_mnist()
    return data.test_images.numpy(), data.test_labels.numpy()


def tiny_pngs(n: int) -> list[bytes]:
    """n small PNGs (about 0.8 KB): MNIST test digits as dark ink on light paper, 2x size."""
    images, _ = _digits()
    out = []
    for digit in images[:n]:
        ink = np.asarray(Image.fromarray(digit).resize((56, 56), Image.Resampling.BILINEAR))
        paper = np.full((72, 72), 240, np.uint8)
        paper[8:-8, 8:-8] = 240 - (ink.astype(np.int32) * 220 // 255)
        buffer = io.BytesIO()
        Image.fromarray(paper).save(buffer, "PNG", optimize=True)
        out.append(buffer.getvalue())
    return out


def photos(n: int, size: tuple[int, int], target: int, drawn_at: float = 1.0) -> list[bytes]:
    """n phone-like photos of one digit, `size` (w, h), JPEG of about `target` bytes. Drawn at
    `drawn_at` of the size and enlarged (a 12 MP frame drawn in full takes seconds); sensor noise
    is added last, so the file is about as hard to compress as a camera's."""
    from digitrec.reading import synth

    images, _ = _digits()
    rng = np.random.default_rng(size[0])
    out = []
    for digit in images[1000 : 1000 + n]:
        style = synth.random_style(rng, "photo")
        small = (round(size[0] * drawn_at), round(size[1] * drawn_at))
        picture = synth.render_digit(digit, rng, style, canvas=small, height_fraction=(0.3, 0.6))
        pixels = np.asarray(picture.resize(size, Image.Resampling.BICUBIC), np.int16)
        noisy = pixels + rng.integers(-4, 5, pixels.shape, dtype=np.int16)
        out.append(jpeg_near(Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)), target))
    return out


def number_photos(n: int) -> list[bytes]:
    """n photos of a 3-7 digit number written on a line, JPEG at quality 85 (as examples/)."""
    from digitrec.reading import synth

    images, labels = _digits()
    rng = np.random.default_rng(7)
    out = []
    for _ in range(n):
        picks = rng.integers(0, len(images), int(rng.integers(3, 8)))
        number = synth.render_number(list(images[picks]), list(labels[picks]), rng, synth.random_style(rng, "photo"))
        buffer = io.BytesIO()
        number.image.save(buffer, "JPEG", quality=85)
        out.append(buffer.getvalue())
    return out


# name -> (route, content type, the field every good answer has, how many distinct files, maker)
MAKERS: dict[str, tuple[str, str, bytes, int, Callable[[int], list[bytes]]]] = {
    "tiny-png": ("/v1/predict", "image/png", b'"digit"', 100, tiny_pngs),
    "photo-22k": ("/v1/predict", "image/jpeg", b'"digit"', 40, lambda n: photos(n, (342, 350), 22_000)),
    "photo-1024": ("/v1/predict", "image/jpeg", b'"digit"', 16, lambda n: photos(n, (1024, 768), 150_000)),
    "photo-12mp": (
        "/v1/predict",
        "image/jpeg",
        b'"digit"',
        3,
        lambda n: photos(n, (4000, 3000), 2_000_000, drawn_at=0.25),
    ),
    "number": ("/v1/read", "image/jpeg", b'"text"', 30, number_photos),
}
BODIES = tuple(MAKERS)


def make_body(name: str, most: int) -> Body:
    """The body `name`, with at most `most` distinct files."""
    path, content_type, expect, count, maker = MAKERS[name]
    return Body(name, path, content_type, maker(min(count, most)), expect)
