"""Forms from the outside: `digitrec read --template/--field/--dpi` and `/v1/read` with a `template`.

The page is examples/form_page.png (made by examples/make_forms.py from MNIST *training* digits:
an account number in a comb, an amount on a ruled line, a code on plain paper) with its template
examples/form_template.json. PDFs and TIFFs are made from it here, with Pillow's writers.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from digitrec.cli import main
from digitrec.reading.forms.results import NO_DIGIT, FieldReading
from digitrec.reading.recognize import Recognizer
from digitrec.server import create_app
from digitrec.server.schemas import FieldReadingOut
from digitrec.server.service import MAX_FORM_PAGES

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
PAGE = EXAMPLES / "form_page.png"
TEMPLATE = EXAMPLES / "form_template.json"
TEXTS = {"account": "407152", "amount": "2380", "code": "91736"}  # what make_forms.py wrote
LAYOUTS = {"account": "comb", "amount": "ruled", "code": "plain"}
CSV_HEADER = "file,page,field,layout,text,needs_review,rejected,reason,digits,min_confidence"


def run(argv: list[str], capsys) -> tuple[int, list[str], list[str]]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out.splitlines(), err.splitlines()


def rows(lines: list[str]) -> list[dict]:
    return [json.loads(line) for line in lines]


def check_page(readings: list[dict], page: int = 1, file: str | None = None) -> None:
    """The example page's three fields, read right and clean, boxes on the page inside the fields'."""
    assert [(r["field"], r["layout"], r["text"], r["page"]) for r in readings] == [
        (name, LAYOUTS[name], text, page) for name, text in TEXTS.items()
    ]
    assert not any(r["needs_review"] or r["rejected"] for r in readings)
    for r in readings:
        x0, y0, x1, y1 = r["box"]
        assert all(x0 <= d["box"][0] < d["box"][2] <= x1 and y0 <= d["box"][1] < d["box"][3] <= y1 for d in r["digits"])
        assert file is None or r["file"] == file
    assert [d["box_index"] for d in readings[0]["digits"]] == [0, 1, 2, 4, 5, 6]  # box 4 (index 3) is empty


@pytest.fixture(scope="module")
def pdf(tmp_path_factory) -> Path:
    """The page as a one-page PDF at 100 dpi (Pillow's writer): 1400x990 pixels at --dpi 100."""
    path = tmp_path_factory.mktemp("pdf") / "form.pdf"
    Image.open(PAGE).convert("L").save(path, "PDF", resolution=100)
    return path


@pytest.fixture(scope="module")
def tiff(tmp_path_factory) -> Path:
    """The page, then a blank page, in one TIFF."""
    path = tmp_path_factory.mktemp("tiff") / "form.tif"
    page = Image.open(PAGE).convert("L")
    page.save(path, "TIFF", save_all=True, append_images=[Image.new("L", page.size, 250)], compression="tiff_deflate")
    return path


# --- the command line -------------------------------------------------------------------------------------------


def test_a_template_reads_each_field_as_a_json_line(capsys):
    code, out, err = run(["read", str(PAGE), "--template", str(TEMPLATE)], capsys)
    assert code == 0 and err == []
    readings = rows(out)
    check_page(readings, file=str(PAGE))
    assert set(readings[0]) == {f.name for f in dataclasses.fields(FieldReading)}


def test_field_specs_read_the_same_as_the_template(capsys):
    template = json.loads(TEMPLATE.read_text())
    specs = [
        f"{f['name']}={','.join(map(str, f['box']))}" + (f",{f['length']}" if "length" in f else "")
        for f in template["fields"]
    ]
    code, out, _ = run(["read", "--json", str(PAGE), *(arg for spec in specs for arg in ("--field", spec))], capsys)
    assert code == 0
    _, from_template, _ = run(["read", str(PAGE), "--template", str(TEMPLATE)], capsys)
    assert out == from_template


def test_csv_has_one_row_per_field_with_the_form_columns(capsys):
    code, out, _ = run(["read", "--csv", str(PAGE), "--template", str(TEMPLATE)], capsys)
    assert code == 0 and out[0] == CSV_HEADER
    table = list(csv.DictReader(io.StringIO("\n".join(out))))
    assert [(r["page"], r["field"], r["layout"], r["text"], r["needs_review"], r["rejected"]) for r in table] == [
        ("1", name, LAYOUTS[name], text, "false", "false") for name, text in TEXTS.items()
    ]
    assert [int(r["digits"]) for r in table] == [len(t) for t in TEXTS.values()]
    assert all(0.5 < float(r["min_confidence"]) <= 1 and r["reason"] == "" for r in table)


def test_a_jpeg_page_reads_the_same(tmp_path, capsys):
    jpeg = tmp_path / "form.jpg"
    Image.open(PAGE).convert("L").save(jpeg, quality=85)
    code, out, _ = run(["read", str(jpeg), "--template", str(TEMPLATE)], capsys)
    assert code == 0
    check_page(rows(out), file=str(jpeg))


def test_a_pdf_is_rasterised_at_the_dpi_asked_and_read(pdf, capsys):
    code, out, err = run(["read", str(pdf), "--template", str(TEMPLATE), "--dpi", "100"], capsys)
    assert code == 0 and err == []
    readings = rows(out)
    check_page(readings, file=str(pdf))
    assert readings[0]["box"] == [306, 146, 990, 322]  # the template's pixels: the page came out 1400x990


def test_each_page_of_a_tiff_is_read(tiff, capsys):
    code, out, _ = run(["read", str(tiff), "--template", str(TEMPLATE)], capsys)
    assert code == 0
    readings = rows(out)
    check_page(readings[:3])
    assert [(r["page"], r["rejected"], r["reason"], r["digits"]) for r in readings[3:]] == [(2, True, NO_DIGIT, [])] * 3


def test_overlay_draws_each_page_with_its_fields(tiff, tmp_path, capsys):
    overlay = tmp_path / "form.png"
    code, out, _ = run(["read", str(tiff), "--template", str(TEMPLATE), "--overlay", str(overlay)], capsys)
    assert code == 0 and len(out) == 6
    first, second = Image.open(overlay).convert("RGB"), Image.open(tmp_path / "form.page2.png").convert("RGB")
    assert first.size == second.size == Image.open(PAGE).size
    x0, y0, x1, y1 = json.loads(out[0])["box"]
    assert first.getpixel((x0 + 1, (y0 + y1) // 2)) == (31, 111, 235)  # the clean account field's box, in blue
    assert second.getpixel((x0 + 1, (y0 + y1) // 2)) == (200, 30, 30)  # nothing read on the blank page: red
    assert sorted(p.name for p in tmp_path.iterdir()) == ["form.page2.png", "form.png"]


def test_a_folder_of_forms_reads_pdfs_and_reports_each_bad_file_once(tmp_path, pdf, capsys):
    """Good pages are read in order through the folder walker, with two processes and into a file
    written at the end; a broken PDF, an encrypted-looking stub and a text file are one line each."""
    folder = tmp_path / "scans"
    folder.mkdir()
    (folder / "a.png").write_bytes(PAGE.read_bytes())
    (folder / "b.pdf").write_bytes(pdf.read_bytes())
    (folder / "c.pdf").write_bytes(b"%PDF-1.4\n")
    (folder / "d.png").write_text("not a page")
    output = tmp_path / "fields.jsonl"
    argv = ["read", str(folder), "--template", str(TEMPLATE), "--dpi", "100", "--jobs", "2", "--output", str(output)]
    code, out, err = run(argv, capsys)
    assert code == 2 and out == []
    readings = rows(output.read_text().splitlines())
    assert [r["file"] for r in readings] == [str(folder / "a.png")] * 3 + [str(folder / "b.pdf")] * 3
    check_page(readings[:3])
    check_page(readings[3:])
    assert len(err) == 2 and "Traceback" not in "\n".join(err)
    assert err[0].startswith(f"digitrec read: {folder / 'c.pdf'}: not a readable PDF")
    assert err[1].startswith(f"digitrec read: {folder / 'd.png'}: ")


def test_a_field_off_the_page_is_one_line_and_the_other_fields_are_read(tmp_path, capsys):
    """Without a "page" size, pixel boxes are checked against each page read (with one, at once)."""
    template = json.loads(TEMPLATE.read_text())
    del template["page"]
    (tmp_path / "form.json").write_text(json.dumps(template))
    argv = ["read", str(PAGE), "--template", str(tmp_path / "form.json"), "--field", "far=1300,900,200,50"]
    code, out, err = run(argv, capsys)
    assert code == 2
    check_page(rows(out))
    assert err == [
        f"digitrec read: {PAGE}: page 1: template field 'far': box [1300, 900, 200, 50] reaches outside the 1400x990 page"
    ]


def test_a_pdf_without_a_template_is_refused_in_one_line(pdf, capsys):
    code, out, err = run(["read", str(pdf), str(EXAMPLES / "number_scan.png")], capsys)
    assert code == 2 and len(out) == 2  # the header and the number
    assert err == [
        f"digitrec read: {pdf}: a PDF holds form pages: read them with a page template "
        "(digitrec read --template or --field)"
    ]


@pytest.mark.parametrize(
    ("template", "flags", "message"),
    [
        ('{"fields": [{"name": "a", "box": [0, 0, 50, 50]}], "dpi": 300}', [], "template: unknown key 'dpi'"),
        ('{"fields": [', [], "template is not valid JSON"),
        ('{"fields": [{"name": "a", "box": [0, 0, -5, 50]}]}', [], "has a negative or zero size"),
        (None, ["--field", "a=1,2,3"], "--field 'a=1,2,3': expected 4 numbers"),
        (None, ["--field", "a=0,0,50,50", "--field", "b=0.1,0.1,0.2,0.2"], "mix pixels and fractions"),
        (None, ["--dpi", "300"], "--dpi is for PDF pages"),
        ("TEMPLATE", ["--dpi", "0"], "--dpi must be between 1 and 600"),
        ("TEMPLATE", ["--field", "c=0.1,0.1,0.5,0.2"], "--field boxes are in fractions of the page but the template's"),
        ("TEMPLATE", ["--field", "code=0,0,50,50"], "two fields are named 'code'"),
        ("TEMPLATE", ["--field", "far=1300,900,200,50"], "reaches outside the 1400x990 page"),
    ],
)
def test_a_bad_template_or_field_is_one_line_and_nothing_is_read(tmp_path, capsys, template, flags, message):
    argv = ["read", str(PAGE), *flags]
    if template == "TEMPLATE":
        argv += ["--template", str(TEMPLATE)]
    elif template is not None:
        (tmp_path / "form.json").write_text(template)
        argv += ["--template", str(tmp_path / "form.json")]
    code, out, err = run(argv, capsys)
    assert code == 2 and out == [] and len(err) == 1
    assert err[0].startswith("digitrec read: error: ") and message in err[0]


# --- HTTP -------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client():
    with TestClient(create_app(recognizer=Recognizer.load())) as c:
        yield c


def post_read(client: TestClient, data: bytes, name: str, template: str | None = None):
    form = {"template": template} if template is not None else {}
    return client.post("/v1/read", files={"file": (name, data, "application/octet-stream")}, data=form)


def without_confidences(reading: dict) -> dict:
    return {**reading, "digits": [{k: v for k, v in d.items() if k != "confidence"} for d in reading["digits"]]}


def test_http_reads_the_fields_of_a_page_with_a_template(client, capsys):
    response = post_read(client, PAGE.read_bytes(), "form_page.png", TEMPLATE.read_text())
    assert response.status_code == 200
    check_page(response.json(), file="form_page.png")
    # the same answer as the command line's JSON lines but for the file's name (and the last
    # decimals of the confidences: torch adds in another order on several threads)
    _, out, _ = run(["read", str(PAGE), "--template", str(TEMPLATE)], capsys)
    assert [without_confidences({**r, "file": "form_page.png"}) for r in rows(out)] == [
        without_confidences(r) for r in response.json()
    ]
    confidences = [d["confidence"] for r in (*rows(out), *response.json()) for d in r["digits"]]
    half = len(confidences) // 2
    assert confidences[:half] == pytest.approx(confidences[half:], abs=1e-5)


def test_http_reads_every_page_of_a_pdf_and_a_tiff(client, pdf, tiff):
    from_pdf = post_read(client, pdf.read_bytes(), "form.pdf", TEMPLATE.read_text())
    assert from_pdf.status_code == 200  # at 300 dpi, the page is scaled to the template's "page"
    assert [(r["field"], r["text"], r["page"]) for r in from_pdf.json()] == [(k, v, 1) for k, v in TEXTS.items()]
    from_tiff = post_read(client, tiff.read_bytes(), "form.tif", TEMPLATE.read_text())
    assert from_tiff.status_code == 200
    assert [(r["page"], r["rejected"]) for r in from_tiff.json()] == [(1, False)] * 3 + [(2, True)] * 3


@pytest.mark.parametrize(
    ("template", "detail"),
    [
        ("not json", "template is not valid JSON"),
        ('{"fields": [{"name": "a", "box": [0, 0, 50, 50], "size": 3}]}', "template field 'a': unknown key 'size'"),
        ('{"fields": []}', 'template needs "fields"'),
    ],
)
def test_http_a_bad_template_is_a_400_problem(client, template, detail):
    response = post_read(client, PAGE.read_bytes(), "form_page.png", template)
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["type"] == "urn:digitrec:problem:bad-template" and detail in body["detail"]
    assert "\n" not in body["detail"]


def test_http_a_field_off_the_page_is_a_422_problem(client):
    template = '{"fields": [{"name": "far", "box": [1300, 900, 200, 50]}]}'
    response = post_read(client, PAGE.read_bytes(), "form_page.png", template)
    assert response.status_code == 422
    assert response.json()["type"] == "urn:digitrec:problem:template-does-not-fit"
    assert "'far'" in response.json()["detail"]


def test_http_a_pdf_or_tiff_without_a_template_is_a_415_saying_why(client, pdf, tiff):
    for path, kind in ((pdf, "a PDF"), (tiff, "a TIFF of 2 pages")):
        response = post_read(client, path.read_bytes(), path.name)
        assert response.status_code == 415
        assert response.headers["content-type"] == "application/problem+json"
        assert (
            response.json()["detail"] == f"{kind} holds form pages: send a page template in the form field 'template'"
        )
    broken = post_read(client, b"%PDF-1.4\n", "broken.pdf", TEMPLATE.read_text())
    assert broken.status_code == 422 and "not a readable PDF" in broken.json()["detail"]


def test_http_refuses_a_document_over_the_servers_page_limit_before_reading_it(client):
    """The service reads at most MAX_FORM_PAGES pages per request: each takes a second or two on
    the inference thread every other request waits for."""
    pages = [Image.new("L", (64, 64), 250) for _ in range(MAX_FORM_PAGES + 1)]
    buffer = io.BytesIO()
    pages[0].save(buffer, "TIFF", save_all=True, append_images=pages[1:])
    response = post_read(client, buffer.getvalue(), "long.tif", TEMPLATE.read_text())
    assert response.status_code == 422
    assert (
        response.json()["detail"]
        == f"document has {MAX_FORM_PAGES + 1} pages, more than the {MAX_FORM_PAGES}-page limit"
    )


def test_http_without_a_template_reads_a_number_as_before(client):
    response = post_read(client, (EXAMPLES / "number_scan.png").read_bytes(), "number_scan.png", "")
    assert response.status_code == 200 and response.json()["text"] == "20250317"


def test_the_openapi_document_describes_field_readings(client):
    document = client.get("/openapi.json").json()
    schemas = document["components"]["schemas"]
    assert set(schemas["FieldReadingOut"]["properties"]) == {f.name for f in dataclasses.fields(FieldReading)}
    assert set(FieldReadingOut.model_fields) == {f.name for f in dataclasses.fields(FieldReading)}
    read = document["paths"]["/v1/read"]["post"]
    body = read["requestBody"]["content"]["multipart/form-data"]["schema"]["$ref"].rsplit("/", 1)[1]
    assert schemas[body]["properties"]["template"]["type"] == "string"
    assert {"400", "415", "422"} <= set(read["responses"])
