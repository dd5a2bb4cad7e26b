"""The pages of a document: a PDF (rasterised), a multi-page TIFF, or a single image.

`iter_pages` hands back each page as an upright PIL image, numbered from 1. What it refuses, it
refuses with a one-line error before any page is made:

- more than `MAX_PAGES` pages (100: a scanned form runs to a few pages; a 500-page document is a
  mistake or an attack, and rasterising it at 300 dpi would take minutes and gigabytes);
- a PDF that is encrypted (a password is needed), truncated or otherwise unreadable;
- a page that would rasterise beyond decode's pixel limits (`decode.MAX_SIDE`, `MAX_PIXELS`: a
  PDF page can declare any size);
- for single images, everything `digitrec.reading.decode.decode` refuses.

PDFs are rendered in grey at `DEFAULT_DPI` (300, a form scanner's resolution: handwriting comes
out 40-80 pixels tall) by PDFium (`pypdfium2`), which is not thread-safe: every call into it
holds one lock.
"""

from __future__ import annotations

import io
import os
import threading
import warnings
from collections.abc import Iterator

from PIL import Image, UnidentifiedImageError

from digitrec.errors import BadImageError, NotAnImageError
from digitrec.reading.decode import MAX_FILE_BYTES, MAX_PIXELS, MAX_SIDE, ImageInput, decode, read_file

MAX_PAGES = 100
DEFAULT_DPI = 300
MAX_DPI = 600
POINTS_PER_INCH = 72  # PDF page sizes are in points
PDF_MAGIC = b"%PDF-"
TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # classic and BigTIFF, both byte orders

_PDFIUM = threading.Lock()

Page = tuple[int, Image.Image]


def iter_pages(source: ImageInput, dpi: int = DEFAULT_DPI, max_pages: int = MAX_PAGES) -> Iterator[Page]:
    """(page number from 1, upright PIL image) for each page of a PDF, a multi-page TIFF or a
    single image (bytes, a path, a PIL image or a numpy array). The document is checked here,
    before the first page is made: an error is raised by this call, not while iterating."""
    if not 1 <= dpi <= MAX_DPI:
        raise BadImageError(f"dpi must be between 1 and {MAX_DPI}, got {dpi}")
    if isinstance(source, (str, os.PathLike)):
        data: bytes | None = read_file(source)
    elif isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    else:
        data = None  # a PIL image or an array: one page
    if data is not None and len(data) > MAX_FILE_BYTES:
        raise BadImageError(f"upload is {len(data) / 2**20:.0f} MB, larger than the {MAX_FILE_BYTES // 2**20} MB limit")
    if data is not None and PDF_MAGIC in data[:1024]:  # PDF readers accept the header anywhere in the first KB
        return _pdf_pages(data, dpi, max_pages)
    if data is not None and data[:4] in TIFF_MAGIC:
        return _tiff_pages(data, max_pages)
    return iter([(1, decode(source if data is None else data))])


def document_kind(data: bytes) -> str | None:
    """What `data` is when it holds pages rather than one picture: "a PDF" or "a TIFF of N pages"
    (None for anything else, a broken TIFF included: decoding it says what is wrong). Such a
    document is read as form pages, each through a template; a caller reading a single picture
    refuses it with this description and says how to give a template."""
    if PDF_MAGIC in data[:1024]:
        return "a PDF"
    if data[:4] not in TIFF_MAGIC:
        return None
    try:
        with Image.open(io.BytesIO(data), formats=("TIFF",)) as tiff:
            count = getattr(tiff, "n_frames", 1)
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError, SyntaxError, EOFError):
        return None
    return f"a TIFF of {count} pages" if count > 1 else None


def _check_size(what: str, width: int, height: int) -> None:
    """Refuse a page beyond decode's limits before it is made (a PDF page can declare any size)."""
    if width > MAX_SIDE or height > MAX_SIDE or width * height > MAX_PIXELS:
        raise BadImageError(
            f"{what} would be {width}x{height} pixels, beyond the limit "
            f"({MAX_SIDE} per side, {MAX_PIXELS // 1_000_000} megapixels)"
        )


def _too_many(count: int, max_pages: int) -> None:
    if count > max_pages:
        raise BadImageError(f"document has {count} pages, more than the {max_pages}-page limit")
    if count == 0:
        raise BadImageError("document has no pages")


# --- PDF ------------------------------------------------------------------------------------------------------


def _open_pdf(data: bytes):  # -> pypdfium2.PdfDocument (untyped library)
    try:
        import pypdfium2 as pdfium
    except ImportError:
        raise NotAnImageError("PDF input needs the pypdfium2 package (pip install pypdfium2)") from None
    try:
        with _PDFIUM:
            return pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        if getattr(exc, "err_code", None) == pdfium.raw.FPDF_ERR_PASSWORD:
            raise BadImageError("encrypted PDF: a password is needed; send it unencrypted") from None
        raise BadImageError(f"not a readable PDF: {str(exc).splitlines()[0] if str(exc) else 'broken file'}") from None


def _pdf_pages(data: bytes, dpi: int, max_pages: int) -> Iterator[Page]:
    document = _open_pdf(data)
    try:
        with _PDFIUM:
            count = len(document)
        _too_many(count, max_pages)
        with _PDFIUM:
            sizes = [document.get_page_size(i) for i in range(count)]
        for number, (width, height) in enumerate(sizes, start=1):
            _check_size(
                f"PDF page {number}", round(width * dpi / POINTS_PER_INCH), round(height * dpi / POINTS_PER_INCH)
            )
    except BadImageError:
        document.close()
        raise
    return _render(document, dpi, len(sizes))


def _render(document, dpi: int, count: int) -> Iterator[Page]:
    import pypdfium2 as pdfium

    try:
        for index in range(count):
            try:
                with _PDFIUM:
                    page = document[index]
                    bitmap = page.render(scale=dpi / POINTS_PER_INCH, grayscale=True, may_draw_forms=True)
                    image = bitmap.to_pil().convert("L")
                    page.close()
            except pdfium.PdfiumError as exc:
                raise BadImageError(f"PDF page {index + 1} cannot be rendered: {str(exc).splitlines()[0]}") from None
            yield index + 1, decode(image)
    finally:
        with _PDFIUM:
            document.close()


# --- TIFF -----------------------------------------------------------------------------------------------------


def _tiff_pages(data: bytes, max_pages: int) -> Iterator[Page]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            tiff = Image.open(io.BytesIO(data), formats=("TIFF",))
            count = getattr(tiff, "n_frames", 1)
    except UnidentifiedImageError:
        raise NotAnImageError("not a readable TIFF file") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise BadImageError("image dimensions are too large (decompression bomb)") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise BadImageError(f"corrupt TIFF: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    _too_many(count, max_pages)
    if count == 1:
        return iter([(1, decode(data))])
    return _tiff_frames(tiff, count)


def _tiff_frames(tiff: Image.Image, count: int) -> Iterator[Page]:
    for index in range(count):
        try:
            tiff.seek(index)
            _check_size(f"TIFF page {index + 1}", *tiff.size)
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                frame = tiff.copy()  # one decoded page, without the file's other frames
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise BadImageError(f"TIFF page {index + 1} is too large (decompression bomb)") from None
        except (OSError, ValueError, SyntaxError, EOFError) as exc:
            raise BadImageError(f"TIFF page {index + 1} cannot be decoded: {str(exc).splitlines()[0]}") from None
        yield index + 1, decode(frame)
