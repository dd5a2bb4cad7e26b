"""Form pages: templates checked strictly, a skewed page straightened, every field of a page read
from a PNG, a PDF and a multi-page TIFF, and documents refused with one line when they cannot be
read (too many pages, broken, encrypted).

The page is made of fields rendered from MNIST *training* digits, pasted on white paper at the
scale of a 300 dpi A4 scan.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from digitrec.errors import BadImageError, ConfigError
from digitrec.reading import synth
from digitrec.reading.forms import synth as fs
from digitrec.reading.forms.page import deskew, measure_skew, read_document, read_page
from digitrec.reading.forms.results import NO_DIGIT
from digitrec.reading.forms.template import load_template, parse_field, parse_template, template_from_fields
from digitrec.reading.pages import iter_pages
from digitrec.reading.recognize import Recognizer

A4 = (2480, 3508)  # 300 dpi
MARGIN = 30  # paper around each field inside its template box


@pytest.fixture(scope="module")
def recognizer() -> Recognizer:
    return Recognizer.load()


def blank_page(rng: np.random.Generator) -> np.ndarray:
    return np.clip(rng.normal(245, 3, (A4[1], A4[0])), 0, 255).astype(np.uint8)


def paste(page: np.ndarray, image: np.ndarray, x: int, y: int) -> list[int]:
    """Put a field on the page; its template box [x, y, w, h] with a margin of paper."""
    page[y : y + image.shape[0], x : x + image.shape[1]] = np.minimum(
        page[y : y + image.shape[0], x : x + image.shape[1]], image
    )
    return [x - MARGIN, y - MARGIN, image.shape[1] + 2 * MARGIN, image.shape[0] + 2 * MARGIN]


@pytest.fixture(scope="module")
def form(mnist):
    """A page holding a comb (6 boxes, 4 digits), a number on a ruled line and a plain number,
    rotated by 2 degrees; its template and the expected texts."""
    rng = np.random.default_rng(41)
    style = synth.clean_style("scan")
    idx = rng.choice(20_000, 10, replace=False)
    images, labels = list(mnist.train_images.numpy()[idx]), list(mnist.train_labels.numpy()[idx])
    comb = fs.render_comb(images[:4], labels[:4], rng, n_boxes=6, cross_probability=0.0, style=style, max_skew=0)
    ruled = fs.render_ruled(images[4:7], labels[4:7], rng, style=style, max_skew=0)
    plain = fs.render_ruled(images[7:], labels[7:], rng, style=style, max_skew=0)
    page = blank_page(rng)
    boxes = [
        paste(page, comb.image, 300, 500),
        paste(page, ruled.image, 300, 1200),
        paste(page, plain.unprinted, 1300, 2200),
    ]
    rotated = np.asarray(Image.fromarray(page).rotate(2.0, resample=Image.Resampling.BICUBIC, fillcolor=245))
    template = parse_template(
        '{"fields": ['
        f'{{"name": "account", "box": {boxes[0]}, "length": 4}},'
        f'{{"name": "amount", "box": {boxes[1]}}},'
        f'{{"name": "code", "box": {boxes[2]}, "length": 5}}]}}'
    )
    return rotated, template, {"account": comb.text, "amount": ruled.text, "code": plain.text}


def check_readings(readings, texts, page=None) -> None:
    assert [r.field for r in readings] == ["account", "amount", "code"]
    assert [r.layout for r in readings] == ["comb", "ruled", "plain"]
    assert [r.page for r in readings] == [page] * 3
    assert readings[0].text == texts["account"] and [d["box_index"] for d in readings[0].digits] == [
        i for i in range(6) if i in {d["box_index"] for d in readings[0].digits}
    ]
    assert readings[1].text == texts["amount"]
    assert readings[2].text == texts["code"]
    assert readings[2].needs_review and "expected 5 digits, read 3" in (readings[2].reason or "")
    x0, y0, x1, y1 = readings[0].digits[0]["box"]
    assert 300 <= x0 < x1 < 1300 and 500 <= y0 < y1 < 800  # page pixels, not the field's


def test_a_page_is_read_field_by_field_from_a_png(form, recognizer):
    page, template, texts = form
    buffer = io.BytesIO()
    Image.fromarray(page).save(buffer, "PNG")
    check_readings(read_page(recognizer, buffer.getvalue(), template), texts)


def test_a_page_is_read_from_a_pdf(form, recognizer, tmp_path):
    page, template, texts = form
    path = tmp_path / "form.pdf"
    Image.fromarray(page).save(path, "PDF", resolution=300)
    check_readings(read_document(recognizer, str(path), template), texts, page=1)


def test_each_page_of_a_tiff_is_read(form, recognizer, tmp_path):
    page, template, texts = form
    path = tmp_path / "form.tif"
    first, second = Image.fromarray(page), Image.fromarray(np.full_like(page, 245))
    first.save(path, "TIFF", save_all=True, append_images=[second], compression="tiff_deflate")
    readings = read_document(recognizer, path.read_bytes(), template)
    check_readings(readings[:3], texts, page=1)
    assert [(r.page, r.rejected, r.reason) for r in readings[3:]] == [(2, True, NO_DIGIT)] * 3


def test_a_page_of_printed_lines_only_reads_nothing(recognizer):
    rng = np.random.default_rng(42)
    page = blank_page(rng)
    style = synth.clean_style("scan")  # the fields' paper is the page's
    boxes = [
        paste(page, fs.blank_comb(rng, n_boxes=8, style=style).image, 300, 400),
        paste(page, fs.blank_ruled(rng, style=style).image, 300, 1000),
        paste(page, fs.blank_comb(rng, n_boxes=4, separate_probability=1.0, style=style).image, 300, 1600),
        paste(page, fs.blank_comb(rng, n_boxes=1, style=style).image, 1500, 1600),  # a frame
    ]
    page[2400:2404, 100:2400] = 40  # a table's borders, crossing the field's box
    page[2400:3400, 1200:1203] = 40
    boxes.append([150, 2350, 2200, 1000])
    template = template_from_fields([f"f{i}={','.join(map(str, b))}" for i, b in enumerate(boxes)])
    readings = read_page(recognizer, page, template)
    assert [(r.text, r.digits, r.rejected, r.reason) for r in readings] == [("", [], True, NO_DIGIT)] * 5
    assert [r.layout for r in readings] == ["comb", "ruled", "comb", "ruled", "ruled"]


# --- straightening ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("angle", [3.0, -3.0, 4.5])
def test_deskew_recovers_a_rotation(form, angle):
    page, _, _ = form
    straight = np.asarray(Image.fromarray(page).rotate(-2.0, resample=Image.Resampling.BICUBIC, fillcolor=245))
    assert abs(measure_skew(straight)) <= 0.5
    turned = np.asarray(Image.fromarray(straight).rotate(angle, resample=Image.Resampling.BICUBIC, fillcolor=245))
    fixed, found = deskew(turned)
    assert abs(found - angle) <= 0.5 and fixed.shape == turned.shape and fixed.dtype == np.uint8
    assert abs(measure_skew(fixed)) <= 0.5


def test_a_blank_page_is_left_alone():
    page = np.full((500, 400), 240, np.uint8)
    fixed, angle = deskew(page)
    assert angle == 0.0 and fixed is page


# --- templates ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"fields": [', "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('{"feilds": []}', "unknown key 'feilds'"),
        ('{"fields": []}', "non-empty list"),
        ('{"fields": [{"name": "a", "box": [0, 0, 10, 10], "lenght": 3}]}', "unknown key 'lenght'"),
        ('{"fields": [{"box": [0, 0, 10, 10]}]}', "non-empty string name"),
        ('{"fields": [{"name": "a", "box": [0, 0, 10]}]}', "4 numbers"),
        ('{"fields": [{"name": "a", "box": [0, 0, -10, 10]}]}', "negative or zero size"),
        ('{"fields": [{"name": "a", "box": [-5, 0, 10, 10]}]}', "starts outside the page"),
        ('{"fields": [{"name": "a", "box": [0, 0, 10, 10], "length": 0}]}', "positive whole number"),
        ('{"fields": [{"name": "a", "box": [0, 0, 10, 10]}, {"name": "a", "box": [0, 0, 10, 10]}]}', "two fields"),
        ('{"units": "mm", "fields": [{"name": "a", "box": [0, 0, 1, 1]}]}', "units must be"),
        ('{"units": "fraction", "fields": [{"name": "a", "box": [0.5, 0, 0.6, 0.1]}]}', "reaches outside the page"),
        ('{"page": [100, 100], "fields": [{"name": "a", "box": [50, 50, 60, 10]}]}', "reaches outside the 100x100"),
    ],
)
def test_a_bad_template_is_one_line_naming_the_problem(text, message):
    with pytest.raises(ConfigError, match=message) as caught:
        parse_template(text)
    assert "\n" not in str(caught.value)


def test_boxes_fit_the_page_read():
    fraction = parse_template('{"units": "fraction", "fields": [{"name": "a", "box": [0.1, 0.2, 0.5, 0.25]}]}')
    assert fraction.boxes_on(1000, 2000) == [(100, 400, 600, 900)]
    measured = parse_template('{"page": [1000, 2000], "fields": [{"name": "a", "box": [100, 400, 500, 500]}]}')
    assert measured.boxes_on(500, 1000) == [(50, 200, 300, 450)]  # scanned at half the resolution
    loose = parse_template('{"fields": [{"name": "a", "box": [900, 0, 200, 100]}]}')
    with pytest.raises(ConfigError, match="reaches outside the 1000x1000 page"):
        loose.boxes_on(1000, 1000)


def test_field_flags_are_parsed():
    spec = parse_field("amount=10,20,300,80,6")
    assert (spec.name, spec.box, spec.length) == ("amount", (10.0, 20.0, 300.0, 80.0), 6)
    assert template_from_fields(["a=0.1,0.2,0.3,0.05"]).units == "fraction"
    assert template_from_fields(["a=10,20,30,40", "b=50,60,70,80"]).units == "px"
    for bad in ("amount", "=1,2,3,4", "a=1,2,3", "a=x,2,3,4", "a=1,2,0,4", "a=1,2,3,4,2.5"):
        with pytest.raises(ConfigError):
            parse_field(bad)
    with pytest.raises(ConfigError, match="mix"):
        template_from_fields(["a=0.1,0.2,0.3,0.05", "b=10,20,30,40"])


# --- documents ---------------------------------------------------------------------------------------------


def test_a_500_page_pdf_is_refused_before_rasterising(tmp_path):
    path = tmp_path / "long.pdf"
    pages = [Image.new("L", (20, 20), 255) for _ in range(500)]
    pages[0].save(path, "PDF", save_all=True, append_images=pages[1:])
    with pytest.raises(BadImageError, match="500 pages, more than the 100-page limit"):
        iter_pages(str(path))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog", "not a readable PDF"),
        (b"%PDF-1.4\n" + bytes(range(256)) * 4, "not a readable PDF"),
    ],
)
def test_a_broken_pdf_is_refused_with_one_line(data, message):
    with pytest.raises(BadImageError, match=message) as caught:
        iter_pages(data)
    assert "\n" not in str(caught.value)


def test_a_single_image_is_one_page():
    image = Image.new("L", (40, 30), 255)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    [(number, page)] = list(iter_pages(buffer.getvalue()))
    assert number == 1 and page.size == (40, 30)


def encrypted_pdf() -> bytes:
    """A one-page PDF under the standard security handler whose user password is not empty."""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 100 100] >>",
        b"<< /Filter /Standard /V 1 /R 2 /O <" + b"ab" * 32 + b"> /U <" + b"cd" * 32 + b"> /P -4 >>",
    ]
    out, offsets = b"%PDF-1.4\n", []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    ids = b"<" + b"00" * 16 + b">"
    out += b"trailer\n<< /Size %d /Root 1 0 R /Encrypt 4 0 R /ID [%s %s] >>\n" % (len(objects) + 1, ids, ids)
    return out + b"startxref\n%d\n%%%%EOF\n" % xref


def test_an_encrypted_pdf_is_refused_with_one_line():
    with pytest.raises(BadImageError, match="encrypted PDF"):
        iter_pages(encrypted_pdf())


def test_a_template_file_is_loaded_or_refused_with_one_line(tmp_path):
    path = tmp_path / "form.json"
    path.write_text('{"units": "fraction", "fields": [{"name": "amount", "box": [0.1, 0.1, 0.5, 0.1], "length": 6}]}')
    template = load_template(path)
    assert template.fields[0].name == "amount" and template.fields[0].length == 6
    with pytest.raises(ConfigError, match="does not exist"):
        load_template(tmp_path / "missing.json")
    path.write_bytes(b"\xff\xfe{")
    with pytest.raises(ConfigError, match="UTF-8"):
        load_template(path)
