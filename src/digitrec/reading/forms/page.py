"""Read the fields of a form page: straighten the page, cut each field of the template, read it.

- `deskew` measures a small rotation of the page (a scan fed askew, a photo taken at a slant;
  up to `MAX_SKEW` degrees) from its ink: printed lines and rows of writing line up along the
  page's rows only when the page is straight, so the rotation whose projection onto the rows is
  sharpest (the sum of squared row counts is largest) is the page's. The page is then turned back
  with Pillow, the corners filled with paper.
- `read_page` cuts each field of a `Template` out of the straightened page and reads it with
  `digitrec.reading.forms.field.read_field`; boxes come back in the straightened page's pixels
  (the template's coordinates, which are those of an upright page). A field holding another
  number of digits than its template's `length` is flagged.
- `read_document` does so for every page of a PDF, multi-page TIFF or image
  (`digitrec.reading.pages`), each reading numbered with its page.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from digitrec.errors import ConfigError
from digitrec.reading import preprocess as pp
from digitrec.reading.forms.field import read_field
from digitrec.reading.forms.results import FieldReading
from digitrec.reading.forms.template import Template
from digitrec.reading.pages import DEFAULT_DPI, MAX_PAGES, iter_pages

if TYPE_CHECKING:
    from digitrec.reading.recognize import Recognizer

MAX_SKEW = 5.5  # degrees: the search's range either way (the issue asks for +-5)
COARSE_STEP, FINE_STEP = 0.25, 0.02  # degrees
SKEW_SIDE = 1000  # pixels: the angle is measured on the page shrunk to this long side
MIN_SKEW = 0.1  # degrees: a smaller rotation is left alone (turning the page blurs it, and moves
# its corners by at most 4 pixels at 300 dpi, well within a field's margin)
INK_SHARE = 0.35  # ink is darker than the paper by this share of the darkest ink's contrast ...
MIN_CONTRAST = 0.15  # ... and by at least this much (0-1)


def _ink_points(gray: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(x, y) of the ink pixels of a shrunk copy of the page, centred on the page's middle."""
    g = np.asarray(gray, np.float32) / (255.0 if gray.dtype == np.uint8 else 1.0)
    scale = max(g.shape) / SKEW_SIDE
    if scale > 1:
        size = (max(1, round(g.shape[1] / scale)), max(1, round(g.shape[0] / scale)))
        g = np.asarray(Image.fromarray(g, "F").resize(size, Image.Resampling.BOX))
    paper = float(np.median(g))
    darkness = paper - g
    contrast = float(np.percentile(darkness, 99.9))
    if contrast < MIN_CONTRAST:
        return None  # a blank page: nothing to measure
    ys, xs = np.nonzero(darkness > max(MIN_CONTRAST, INK_SHARE * contrast))
    if xs.size < 50:
        return None
    return xs - g.shape[1] / 2, ys - g.shape[0] / 2


def _sharpness(xs: np.ndarray, ys: np.ndarray, angle: float) -> float:
    """How sharply the ink, rotated by -angle degrees, projects onto the rows."""
    a = np.radians(angle)
    rows = np.round(ys * np.cos(a) + xs * np.sin(a)).astype(np.int64)
    counts = np.bincount(rows - rows.min())
    return float(np.dot(counts, counts))


def measure_skew(gray: np.ndarray) -> float:
    """The page's rotation in degrees, counter-clockwise as seen (0.0 when there is nothing to
    measure it by): a coarse search over +-MAX_SKEW, refined around the best angle."""
    points = _ink_points(gray)
    if points is None:
        return 0.0
    xs, ys = points
    coarse = np.arange(-MAX_SKEW, MAX_SKEW + 1e-9, COARSE_STEP)
    best = float(coarse[int(np.argmax([_sharpness(xs, ys, a) for a in coarse]))])
    fine = np.arange(best - COARSE_STEP, best + COARSE_STEP + 1e-9, FINE_STEP)
    return float(fine[int(np.argmax([_sharpness(xs, ys, a) for a in fine]))])


def deskew(gray: np.ndarray) -> tuple[np.ndarray, float]:
    """(the page turned straight, the rotation found in degrees counter-clockwise). `gray` is
    uint8 0-255 or float 0-1 (dark ink on light paper); the result has its shape and dtype."""
    angle = measure_skew(gray)
    if abs(angle) < MIN_SKEW:
        return gray, angle
    as_float = gray.dtype != np.uint8
    picture = Image.fromarray(np.asarray(gray, np.float32) if as_float else gray, "F" if as_float else "L")
    paper = float(np.median(gray))
    turned = picture.rotate(-angle, resample=Image.Resampling.BICUBIC, fillcolor=paper if as_float else round(paper))
    out = np.asarray(turned)
    return (np.clip(out, 0, 1).astype(gray.dtype) if as_float else out), angle


def read_page(
    recognizer: Recognizer,
    page_image: pp.ImageInput,
    template: Template,
    name: str | None = None,
    page: int | None = None,
    straighten: bool = True,
    problems: list[str] | None = None,
) -> list[FieldReading]:
    """Read every field of `template` on one page (an image, a path or bytes of a single-page
    image); `page` numbers the readings. A field whose box is not on the page raises ConfigError;
    with a `problems` list, its one-line reason is added there instead and the other fields are
    still read (a batch of scans reports the page and goes on)."""
    gray = np.clip(pp.to_gray(pp.decode(page_image)) * 255 + 0.5, 0, 255).astype(np.uint8)
    if straighten:
        gray, _ = deskew(gray)
    placed = []  # every box is checked before any field is read
    for spec in template.fields:
        try:
            placed.append((spec, template.box_on(spec, gray.shape[1], gray.shape[0])))
        except ConfigError as exc:
            if problems is None:
                raise
            problems.append(str(exc))
    readings = []
    for spec, (x0, y0, x1, y1) in placed:
        reading = read_field(recognizer, gray[y0:y1, x0:x1], name=name, field=spec.name).shifted(x0, y0)
        reading.page, reading.box = page, [x0, y0, x1, y1]
        if spec.length is not None and not reading.rejected and len(reading.text) != spec.length:
            reading.flag(f"expected {spec.length} digits, read {len(reading.text)}")
        readings.append(reading)
    return readings


def read_document(
    recognizer: Recognizer,
    source: pp.ImageInput,
    template: Template,
    name: str | None = None,
    dpi: int = DEFAULT_DPI,
    straighten: bool = True,
    max_pages: int = MAX_PAGES,
) -> list[FieldReading]:
    """Every field of `template` on every page of a PDF, a multi-page TIFF or an image (a
    service may lower `max_pages`: a page takes a second or two)."""
    return [
        reading
        for number, image in iter_pages(source, dpi=dpi, max_pages=max_pages)
        for reading in read_page(recognizer, image, template, name=name, page=number, straighten=straighten)
    ]
