"""End to end: the real `digitrec serve` on 127.0.0.1, driven by headless Debian Chromium.

The browser tests draw on the canvas with a mouse and with touch, use undo and clear, upload
files, and check what the page shows against what the API answers for the same image. They need
/usr/bin/chromium (`apt-get install chromium`; `.ci/run` installs it): outside CI they are skipped
with that reason when it is missing; where they must run (`.ci/run` sets DIGITREC_REQUIRE_BROWSER=1,
and CI=true counts too) a missing browser is a failure, so CI cannot pass without them.

Set DIGITREC_SCREENSHOTS=docs to save the README screenshots (docs/screenshot.png and
docs/screenshot-number.png).
"""

from __future__ import annotations

import json
import math
import os
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from live_server import digitrec_serve
from PIL import ExifTags, Image, ImageOps

from digitrec.reading import synth

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
# A skip would let CI pass without ever opening the page, so where the browser tests must run
# (.ci/run, or any CI=true environment) a missing browser fails them instead.
REQUIRE_BROWSER = os.environ.get("DIGITREC_REQUIRE_BROWSER") == "1" or os.environ.get("CI", "").lower() == "true"
SCREENSHOTS = os.environ.get("DIGITREC_SCREENSHOTS")


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[str]:
    """`python -m digitrec serve` with the shipped model, on a free port; yields its base URL."""
    with digitrec_serve(tmp_path_factory.mktemp("serve")) as url:
        yield url


# ---- the real server, without a browser ------------------------------------------------------------


def test_real_server_answers_and_reports_its_model(server):
    assert httpx.get(f"{server}/healthz").json() == {"status": "ok"}
    model = httpx.get(f"{server}/v1/model").json()
    assert model["arch"] and len(model["weights_sha256"]) == 64
    assert "digitrec_http_requests_total" in httpx.get(f"{server}/metrics").text


def test_real_server_refuses_an_oversized_upload_before_it_is_sent(server):
    """A declared 200 MB body is answered 413 after the headers, while the client is still sending."""
    host, port = server.removeprefix("http://").split(":")
    head = (
        f"POST /v1/predict HTTP/1.1\r\nHost: {host}\r\nContent-Length: {200 * 1024 * 1024}\r\n"
        "Content-Type: multipart/form-data; boundary=XyZ\r\n\r\n"
    ).encode()
    with socket.create_connection((host, int(port)), timeout=30) as conn:
        conn.sendall(head + b"--XyZ\r\n" + b"x" * 65536)
        reply = conn.recv(65536).decode("latin-1")
    assert reply.startswith("HTTP/1.1 413"), reply[:200]
    assert "application/problem+json" in reply


@pytest.mark.parametrize(
    "part, status",
    [
        (
            b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="big.png"\r\n'
            b"Content-Type: image/png\r\n\r\n",
            "413",
        ),
        (b"this is not multipart at all\r\n", "400"),
    ],
    ids=["too-large", "malformed"],
)
def test_real_server_stops_reading_a_huge_chunked_upload(server, part, status):
    """No Content-Length: the server answers once the body passes the limit (5 MB), or once it
    knows the body is malformed, reads at most 16 MB more (so a client that sends everything before
    reading still gets the answer) and closes the connection instead of reading all 200 MB."""
    host, port = server.removeprefix("http://").split(":")
    head = (
        f"POST /v1/predict HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n"
        "Content-Type: multipart/form-data; boundary=XyZ\r\n\r\n"
    ).encode()
    chunk = 256 * 1024
    piece = f"{chunk:x}\r\n".encode() + b"y" * chunk + b"\r\n"
    sent = 0
    with socket.create_connection((host, int(port)), timeout=30) as conn:
        conn.sendall(head + f"{len(part):x}\r\n".encode() + part + b"\r\n")
        try:
            while sent < 200 * 1024 * 1024:  # the client would send 200 MB
                conn.sendall(piece)
                sent += chunk
        except (BrokenPipeError, ConnectionResetError):
            pass
        except TimeoutError:
            pytest.fail(f"the server stopped reading after {sent} bytes but neither answered nor closed")
        try:
            reply = conn.recv(65536).decode("latin-1")
        except ConnectionResetError:
            reply = ""
    assert sent < 50 * 1024 * 1024, "the server kept reading far past the limit"
    if reply:  # the answer can be lost when the server resets a connection it stopped reading
        assert reply.startswith(f"HTTP/1.1 {status}"), reply[:200]


def multipart_file(data: bytes, name: str = "photo.jpg", boundary: str = "XyZ") -> bytes:
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
    return (head + "Content-Type: image/jpeg\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()


@pytest.mark.parametrize("megabytes", [6, 15])
@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_python_urllib_reads_the_413_for_a_phone_photo(server, megabytes, chunked):
    """The standard library's client writes the whole request before it reads the answer. The server
    answers 413 as soon as it knows, then reads and drops the rest of the upload (bounded) before it
    closes, so the close does not reset the connection under the answer ("Connection reset by peer").
    Several tries: the reset was a race the client lost nearly every time."""
    body = multipart_file(np.random.default_rng(megabytes).bytes(megabytes * 1024 * 1024))
    for _ in range(3):
        # An iterable without a length makes urllib send Transfer-Encoding: chunked.
        data = iter([body[i : i + 65536] for i in range(0, len(body), 65536)]) if chunked else body
        request = urllib.request.Request(
            f"{server}/v1/predict", data=data, headers={"Content-Type": "multipart/form-data; boundary=XyZ"}
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=30)
        assert refused.value.code == 413
        assert refused.value.headers["Content-Type"] == "application/problem+json"
        assert json.loads(refused.value.read())["type"] == "urn:digitrec:problem:upload-too-large"


# ---- the page in Chromium --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        message = "headless Chromium is not installed at /usr/bin/chromium (apt-get install chromium chromium-driver)"
        if REQUIRE_BROWSER:
            pytest.fail(
                f"the browser tests must run here (DIGITREC_REQUIRE_BROWSER=1 or CI=true) but {message}; "
                ".ci/run installs it"
            )
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1000, "height": 720}, has_touch=True)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("requestfailed", lambda request: errors.append(f"{request.url} failed"))
    page.goto(server)
    page.wait_for_function(
        "document.getElementById('model-info').textContent.includes('Model: ') "
        "&& !document.getElementById('model-info').textContent.includes('loading')"
    )
    yield page
    seen = list(errors)  # before closing: closing aborts whatever is still in flight
    context.close()
    assert seen == [], seen


def pad_points(page, points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points given as fractions of the drawing area -> page coordinates."""
    box = page.locator("#pad").bounding_box()
    return [(box["x"] + fx * box["width"], box["y"] + fy * box["height"]) for fx, fy in points]


def draw_with_mouse(page, points: list[tuple[float, float]]) -> None:
    path = pad_points(page, points)
    page.mouse.move(*path[0])
    page.mouse.down()
    for x, y in path[1:]:
        page.mouse.move(x, y, steps=2)
    page.mouse.up()


def draw_with_touch(page, points: list[tuple[float, float]]) -> None:
    """A finger on a touch screen, through the DevTools protocol (real touch events)."""
    cdp = page.context.new_cdp_session(page)
    path = pad_points(page, points)
    cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": path[0][0], "y": path[0][1]}]})
    for x, y in path[1:]:
        cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [{"x": x, "y": y}]})
    cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    cdp.detach()


# Strokes as fractions of the drawing area; `w` narrows them for the wide number pad (2:1).
def zero(cx: float = 0.5, w: float = 1.0) -> list[tuple[float, float]]:
    return [
        (cx + 0.17 * w * math.sin(2 * math.pi * i / 48), 0.5 - 0.3 * math.cos(2 * math.pi * i / 48)) for i in range(49)
    ]


def one(cx: float = 0.5, w: float = 1.0) -> list[tuple[float, float]]:
    return [(cx - 0.06 * w, 0.3), (cx, 0.2)] + [(cx, 0.2 + 0.6 * i / 20) for i in range(1, 21)]


def seven(cx: float = 0.5, w: float = 1.0) -> list[tuple[float, float]]:
    bar = [(cx + w * (-0.2 + 0.4 * i / 12), 0.22) for i in range(13)]
    return bar + [(cx + w * (0.2 - 0.22 * i / 16), 0.22 + 0.6 * i / 16) for i in range(1, 17)]


def shown(page) -> tuple[str, str]:
    page.wait_for_selector('#result[data-state="done"], #result[data-state="error"]')
    return page.inner_text("#answer").strip(), page.inner_text("#status").strip()


def recognise(page) -> tuple[str, str]:
    page.click("#submit")
    return shown(page)


def ink_pixels(page) -> int:
    return page.evaluate("""() => {
        const pad = document.getElementById('pad');
        const data = pad.getContext('2d').getImageData(0, 0, pad.width, pad.height).data;
        let n = 0;
        for (let i = 0; i < data.length; i += 4) if (data[i] < 128) n++;
        return n;
    }""")


@pytest.mark.parametrize("name, stroke, expected", [("zero", zero(), "0"), ("seven", seven(), "7")])
def test_drawing_a_digit_with_the_mouse_shows_it(page, name, stroke, expected):
    draw_with_mouse(page, stroke)
    answer, status = recognise(page)
    assert answer == expected, (answer, status)
    assert "sure" in status
    bars = page.locator("#candidates li")
    assert bars.count() == 5 and bars.first.locator(".digit").inner_text() == expected
    if SCREENSHOTS and name == "zero":
        page.screenshot(path=str(Path(SCREENSHOTS) / "screenshot.png"), full_page=True)


def test_drawing_a_digit_with_a_finger_shows_it(page):
    draw_with_touch(page, one())
    assert ink_pixels(page) > 1000
    answer, status = recognise(page)
    assert answer == "1", (answer, status)


def test_undo_and_clear(page):
    draw_with_mouse(page, one(0.3))
    first = ink_pixels(page)
    draw_with_mouse(page, one(0.7))
    assert ink_pixels(page) > first
    page.click("#undo")
    assert ink_pixels(page) == first
    page.click("#clear")
    assert ink_pixels(page) == 0
    assert page.get_attribute("#result", "data-state") == "idle"
    assert page.is_disabled("#undo") and page.is_disabled("#clear")


def test_drawing_a_number_shows_it_with_boxes(page):
    page.click("label[for=mode-number]")
    for stroke in (one(0.2, w=0.5), zero(0.5, w=0.5), seven(0.8, w=0.5)):
        draw_with_mouse(page, stroke)
    answer, status = recognise(page)
    assert answer == "107", (answer, status)
    assert page.locator("#boxes .box").count() == 3


def save_png(path: Path, array: np.ndarray) -> Path:
    Image.fromarray(array).save(path)
    return path


def paper(digit28, scale: int = 5) -> np.ndarray:
    ink = np.asarray(Image.fromarray(digit28.numpy()).resize((28 * scale, 28 * scale), Image.BILINEAR))
    page = np.full((ink.shape[0] + 60, ink.shape[1] + 60), 245, np.uint8)
    page[30:-30, 30:-30] = 245 - (ink.astype(np.int32) * 225 // 255)
    return page


def api_answer(server: str, path: str, file: Path) -> dict:
    with open(file, "rb") as handle:
        return httpx.post(f"{server}{path}", files={"file": (file.name, handle, "image/png")}).json()


def test_uploading_a_photo_of_a_digit_shows_it(page, server, mnist, tmp_path):
    image = save_png(tmp_path / "digit.png", paper(mnist.test_images[0]))  # a 7
    page.set_input_files("#file", str(image))
    answer, _ = shown(page)
    expected = api_answer(server, "/v1/predict", image)
    assert answer == str(expected["digit"]) == str(int(mnist.test_labels[0]))
    assert page.is_visible("#preview") and not page.is_visible("#pad")


def test_uploading_a_number_shows_it_with_boxes(page, server, mnist, tmp_path):
    digits = [mnist.test_images[i] for i in (1, 2, 3, 4)]  # 2 1 0 4
    image = save_png(tmp_path / "number.png", np.concatenate([paper(d, 3) for d in digits], axis=1))
    page.click("label[for=mode-number]")
    page.set_input_files("#file", str(image))
    answer, _ = shown(page)
    expected = api_answer(server, "/v1/read", image)
    assert answer == expected["text"] == "".join(str(int(mnist.test_labels[i])) for i in (1, 2, 3, 4))
    assert page.locator("#boxes .box").count() == len(expected["digits"]) == 4
    if SCREENSHOTS:
        page.screenshot(path=str(Path(SCREENSHOTS) / "screenshot-number.png"), full_page=True)


EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_a_form_page_with_its_template_shows_each_field_on_the_page(page, server, tmp_path):
    """The template loaded from its file, the page handed in: each field is drawn over the page
    with what was read in it, and listed with its review state, as the API answers."""
    template = (EXAMPLES / "form_template.json").read_text()
    fields = [f["name"] for f in json.loads(template)["fields"]]
    page.click("label[for=mode-form]")
    assert page.is_visible("#template")
    page.set_input_files("#template-file", str(EXAMPLES / "form_template.json"))
    page.wait_for_function("document.getElementById('template').value.includes('fields')")
    page.set_input_files("#file", str(EXAMPLES / "form_page.png"))
    answer, status = shown(page)
    with open(EXAMPLES / "form_page.png", "rb") as handle:
        expected = httpx.post(
            f"{server}/v1/read", files={"file": ("form_page.png", handle, "image/png")}, data={"template": template}
        ).json()
    assert [r["field"] for r in expected] == fields
    assert answer == f"{len(fields)} fields"
    labels = page.locator("#boxes .box.field span").all_inner_texts()
    assert labels == [f"{r['field']}: {r['text']}" for r in expected]
    assert page.locator("#boxes .box.digit").count() == sum(len(r["digits"]) for r in expected)
    listed = page.locator("#fields li")
    assert listed.count() == len(fields)
    for i, r in enumerate(expected):
        item = listed.nth(i)
        assert item.locator(".text").inner_text() == r["text"] and item.get_attribute("data-field") == r["field"]
        state = "rejected" if r["rejected"] else "review" if r["needs_review"] else "clean"
        assert item.get_attribute("class") == state
        assert (item.locator(".note").count() == 1) == (state != "clean")
    assert ("to check" in status) == any(r["needs_review"] or r["rejected"] for r in expected)
    # the field box over the page sits where the template put it (percent of the page's size)
    first = page.locator("#boxes .box.field").first.bounding_box()
    shown_page = page.locator("#preview").bounding_box()
    x0 = expected[0]["box"][0] / 1400 * shown_page["width"] + shown_page["x"]
    assert abs(first["x"] - x0) < 3
    page.fill("#template", '{"fields": [{"name": "a", "box": [0, 0, 50, 50]}], "oops": 1}')
    page.click("#submit")
    _, status = shown(page)
    assert page.get_attribute("#result", "data-state") == "error" and "unknown key 'oops'" in status


UPLOAD_LIMIT = 5 * 1024 * 1024  # digitrec serve's default per-file limit


@pytest.fixture(scope="module")
def phone_photo(mnist, tmp_path_factory) -> tuple[Path, str]:
    """A 12 MP phone photo of a number, as a phone saves it: JPEG at quality 98, sensor noise (so
    it compresses poorly: over 6 MB), and stored on its side with EXIF orientation 6 (rotate 90
    degrees clockwise to view), so it reads only if the page honours the rotation."""
    indices = (1, 2, 3, 4)
    digits = [mnist.test_images[i].numpy() for i in indices]
    labels = [int(mnist.test_labels[i]) for i in indices]
    rng = np.random.default_rng(12)
    style = synth.Style("photo", paper=(0.9, 0.88, 0.82), ink=(0.08, 0.1, 0.35), gradient=0.2, vignette=0.15)
    # Written at half size and enlarged: the same strokes, in a fraction of the time.
    number = synth.render_number(digits, labels, rng, style, height=280, touch_probability=0).image
    number = number.resize((2 * number.width, 2 * number.height), Image.Resampling.BICUBIC)
    frame = np.empty((3000, 4000, 3), np.int16)
    frame[:] = [round(255 * c) for c in style.paper]
    y, x = (3000 - number.height) // 2, (4000 - number.width) // 2
    frame[y : y + number.height, x : x + number.width] = np.asarray(number)
    frame += rng.integers(-16, 17, frame.shape, dtype=np.int16)
    upright = Image.fromarray(np.clip(frame, 0, 255).astype(np.uint8))
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    path = tmp_path_factory.mktemp("phone") / "IMG_4032.jpg"
    upright.rotate(90, expand=True).save(path, quality=98, exif=exif.tobytes())
    return path, "".join(map(str, labels))


def hand_in_by_dropping(page, path: Path) -> None:
    """A file dropped on the drawing area: Playwright puts it in a file input of its own, the page
    receives it in a drop event, as from a file manager."""
    page.evaluate("""() => {
        const source = document.createElement('input');
        source.type = 'file';
        source.id = 'drop-source';
        source.hidden = true;
        document.body.append(source);
    }""")
    page.set_input_files("#drop-source", str(path))
    page.evaluate("""() => {
        const data = new DataTransfer();
        data.items.add(document.getElementById('drop-source').files[0]);
        document.getElementById('stage').dispatchEvent(
            new DragEvent('drop', {dataTransfer: data, bubbles: true, cancelable: true}));
    }""")


@pytest.mark.parametrize("how", ["chosen", "dropped"])
def test_a_phone_photo_over_the_upload_limit_is_made_smaller_and_read(page, phone_photo, how):
    path, text = phone_photo
    assert path.stat().st_size > 6 * 1024 * 1024 > UPLOAD_LIMIT  # as it is, the server refuses it (413)
    assert ImageOps.exif_transpose(Image.open(path)).size == (4000, 3000)
    sent = []
    page.on("requestfinished", lambda request: "/v1/" in request.url and sent.append(request))
    page.click("label[for=mode-number]")
    if how == "chosen":
        page.set_input_files("#file", str(path))
    else:
        hand_in_by_dropping(page, path)
    answer, status = shown(page)
    assert answer == text, (answer, status)
    assert page.locator("#boxes .box").count() == len(text)
    # Sent upright (landscape, as EXIF says) at 1600 pixels on the long side, well under the limit.
    shown_size = page.evaluate("(p => [p.naturalWidth, p.naturalHeight])(document.getElementById('preview'))")
    assert shown_size == [1600, 1200]
    reads = [request for request in sent if request.url.endswith("/v1/read")]
    assert len(reads) == 1 and reads[0].sizes()["requestBodySize"] < UPLOAD_LIMIT / 4


def test_a_blank_page_is_honestly_not_a_digit(page, tmp_path):
    image = save_png(tmp_path / "blank.png", np.full((200, 200), 250, np.uint8))
    page.set_input_files("#file", str(image))
    answer, status = shown(page)
    assert answer == "Not a digit" and status


def test_a_file_that_is_not_an_image_shows_the_error(page, tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("not a picture at all\n" * 10)
    page.set_input_files("#file", str(text))
    answer, status = shown(page)
    assert page.get_attribute("#result", "data-state") == "error"
    assert "Not an image" in status and answer == "–"


def test_the_page_works_on_a_phone_screen(browser, server):
    context = browser.new_context(
        viewport={"width": 390, "height": 844}, has_touch=True, is_mobile=True, device_scale_factor=2
    )
    page = context.new_page()
    page.goto(server)
    try:
        # Nothing wider than the screen, the drawing area fits, the buttons are finger-sized.
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        pad = page.locator("#pad").bounding_box()
        assert pad["x"] >= 0 and pad["x"] + pad["width"] <= 390 and pad["width"] > 250
        for button in ("#undo", "#clear", "#submit"):
            assert page.locator(button).bounding_box()["height"] >= 44
        draw_with_touch(page, zero())
        answer, _ = recognise(page)
        assert answer == "0"
    finally:
        context.close()


def test_a_flagged_number_shows_why(page):
    """The page says why a reading needs a look: the answer's `reason`, as the API gave it."""
    reason = "the number is right with probability 0.912 only, below 0.955 (next best 101)"
    flagged = {
        "file": None,
        "text": "107",
        "digits": [
            {"digit": d, "confidence": 0.999, "box": [10 + 40 * k, 10, 40 + 40 * k, 60]}
            for k, d in enumerate((1, 0, 7))
        ],
        "needs_review": True,
        "rejected": False,
        "reason": reason,
    }
    page.route(
        "**/v1/read*",
        lambda route: route.fulfill(status=200, content_type="application/json", body=json.dumps(flagged)),
    )
    page.click("label[for=mode-number]")
    for stroke in (one(0.2, w=0.5), zero(0.5, w=0.5), seven(0.8, w=0.5)):
        draw_with_mouse(page, stroke)
    answer, status = recognise(page)
    assert answer == "107" and reason in status, status
    assert "review" in (page.get_attribute("#answer", "class") or "")
