"""The HTTP service: every endpoint and every error path, in process (TestClient / raw ASGI).

Most tests serve a tiny randomly initialised model, so they check the service (shapes, status
codes, problem details, limits, metrics), not the accuracy; answers are compared with what the
same Recognizer returns directly, which is exactly what `digitrec predict --json` prints.
"""

from __future__ import annotations

import asyncio
import io
import json
import socket
import struct
import time
import zlib
from typing import Any

import httpx
import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

import digitrec
from digitrec.cli import main as cli_main
from digitrec.errors import ImageError
from digitrec.models import create_model
from digitrec.models.checkpoint import Checkpoint, weights_sha256
from digitrec.models.inputs import Normalization
from digitrec.reading.recognize import Recognizer
from digitrec.server import create_app, create_app_from_env
from digitrec.server.batching import MicroBatcher
from digitrec.server.limits import DRAIN_BYTES, MULTIPART_OVERHEAD, RequestBody
from digitrec.server.routes.page import STATIC_DIR
from digitrec.server.schemas import PredictionOut, ReadingOut
from digitrec.server.service import ENV_MAX_UPLOAD, ENV_MODEL

PROBLEM = "application/problem+json"


# ---- images the tests make ---------------------------------------------------------------------


def png_bytes(image: Image.Image | np.ndarray, fmt: str = "PNG", **kw: Any) -> bytes:
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kw)
    return buffer.getvalue()


def paper(digit28: torch.Tensor, scale: int = 4) -> np.ndarray:
    """An MNIST digit re-rendered as dark ink on light paper, larger, with a margin."""
    ink = digit28.numpy().astype(np.uint8)
    big = np.asarray(Image.fromarray(ink).resize((28 * scale, 28 * scale), Image.BILINEAR))
    page = np.full((big.shape[0] + 40, big.shape[1] + 40), 255, np.uint8)
    page[20:-20, 20:-20] = 255 - big
    return page


def number_on_paper(digits: list[torch.Tensor]) -> np.ndarray:
    """Digits side by side with white space between them, as written on a form field."""
    parts = [paper(d, 3) for d in digits]
    return np.concatenate(parts, axis=1)


@pytest.fixture(scope="module")
def digit_png(mnist) -> bytes:
    return png_bytes(paper(mnist.test_images[0]))


@pytest.fixture(scope="module")
def number_png(mnist) -> bytes:
    return png_bytes(number_on_paper([mnist.test_images[i] for i in (1, 2, 3)]))


BLANK_PNG = png_bytes(np.full((64, 64), 255, np.uint8))
NOT_AN_IMAGE = b"this is a plain text file, not a picture\n" * 4


def truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def bomb_png(width: int = 30000, height: int = 30000) -> bytes:
    """A valid PNG header claiming 900 megapixels (a decompression bomb) with a tiny body."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )


# ---- the service under test --------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_checkpoint() -> Checkpoint:
    torch.manual_seed(0)
    kwargs = {"c1": 4, "c2": 8, "hidden": 16}
    model = create_model("seed_cnn", **kwargs).eval()
    state = model.state_dict()
    meta = {"metrics": {"test": {"accuracy": 0.5, "loss": 1.0, "n": 10}}, "weights_sha256": weights_sha256(state)}
    return Checkpoint(model, "seed_cnn", kwargs, Normalization(), meta, path=None)


@pytest.fixture(scope="module")
def recognizer(tiny_checkpoint) -> Recognizer:
    return Recognizer(tiny_checkpoint)


@pytest.fixture(scope="module")
def client(recognizer):
    with TestClient(create_app(recognizer=recognizer)) as c:
        yield c


def post(client: TestClient, path: str, data: bytes, name: str = "image.png", **params: Any) -> httpx.Response:
    return client.post(path, files={"file": (name, data, "application/octet-stream")}, params=params)


def assert_same(a: Any, b: Any) -> None:
    """Equal JSON, floats within 1e-5 (the service may run the model on a batch of several)."""
    if isinstance(a, float) or isinstance(b, float):
        assert a == pytest.approx(b, abs=1e-5)
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), (a, b)
        for key in a:
            assert_same(a[key], b[key])
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), (a, b)
        for x, y in zip(a, b):
            assert_same(x, y)
    else:
        assert a == b


def assert_problem(response: httpx.Response, status: int, slug: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["status"] == status and body["title"] and body["detail"]
    if slug is not None:
        assert body["type"] == f"urn:digitrec:problem:{slug}"
    return body


# ---- answers -----------------------------------------------------------------------------------


def test_predict_answers_exactly_what_the_recognizer_answers(client, recognizer, digit_png):
    response = post(client, "/v1/predict", digit_png, "seven.png")
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    assert_same(response.json(), recognizer.predict(digit_png, top_k=3, name="seven.png").to_dict())


def test_predict_top_k(client, recognizer, digit_png):
    body = post(client, "/v1/predict", digit_png, top_k=5).json()
    assert [c["digit"] for c in body["top_k"]] == [c["digit"] for c in recognizer.predict(digit_png, top_k=5).top_k]
    assert len(body["top_k"]) == 5
    probabilities = [c["probability"] for c in body["top_k"]]
    assert probabilities == sorted(probabilities, reverse=True)


@pytest.mark.parametrize("top_k", ["0", "11", "three"])
def test_predict_bad_top_k_is_422(client, digit_png, top_k):
    assert_problem(post(client, "/v1/predict", digit_png, top_k=top_k), 422, "invalid-request")


def test_blank_page_is_rejected_not_guessed(client, recognizer):
    body = post(client, "/v1/predict", BLANK_PNG, "blank.png").json()
    assert body["rejected"] is True and body["digit"] is None and body["reason"]
    assert_same(body, recognizer.predict(BLANK_PNG, name="blank.png").to_dict())


def test_read_answers_exactly_what_the_recognizer_answers(client, recognizer, number_png):
    response = post(client, "/v1/read", number_png, "number.png")
    assert response.status_code == 200
    assert_same(response.json(), recognizer.read(number_png, name="number.png").to_dict())


def test_response_fields_are_the_cli_json_fields(recognizer, digit_png, number_png, client):
    # The OpenAPI models describe exactly the fields to_dict() produces, no more, no fewer.
    assert set(PredictionOut.model_fields) == set(recognizer.predict(digit_png).to_dict())
    assert set(ReadingOut.model_fields) == set(recognizer.read(number_png).to_dict())
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    assert set(schemas["PredictionOut"]["properties"]) == set(PredictionOut.model_fields)


def test_batch_gives_one_result_or_one_problem_per_file_in_order(client, recognizer, mnist, digit_png):
    other = png_bytes(paper(mnist.test_images[5]))
    files = [
        ("a.png", digit_png),
        ("notes.txt", NOT_AN_IMAGE),
        ("cut.png", truncated(digit_png)),
        ("b.png", other),
        ("blank.png", BLANK_PNG),
    ]
    response = client.post("/v1/predict/batch", files=[("files", (n, d, "image/png")) for n, d in files])
    assert response.status_code == 200
    body = response.json()
    assert [item["file"] for item in body] == [n for n, _ in files]
    assert_same(body[0], recognizer.predict(digit_png, name="a.png").to_dict())
    assert_same(body[3], recognizer.predict(other, name="b.png").to_dict())
    assert_same(body[4], recognizer.predict(BLANK_PNG, name="blank.png").to_dict())
    assert body[1]["status"] == 415 and body[1]["type"] == "urn:digitrec:problem:not-an-image"
    assert body[2]["status"] == 422 and body[2]["type"] == "urn:digitrec:problem:bad-image"


def test_batch_limits(recognizer, digit_png):
    big = png_bytes(np.random.default_rng(0).integers(0, 256, (200, 200), dtype=np.uint8))  # noise: ~40 KB
    with TestClient(create_app(recognizer=recognizer, max_upload_bytes=len(big) - 1, max_batch_files=3)) as c:
        files = [("files", (f"{i}.png", digit_png, "image/png")) for i in range(4)]
        assert_problem(c.post("/v1/predict/batch", files=files), 413, "too-many-files")
        files = [("files", ("ok.png", digit_png, "image/png")), ("files", ("big.png", big, "image/png"))]
        body = c.post("/v1/predict/batch", files=files).json()
        assert "digit" in body[0]
        assert body[1]["status"] == 413 and body[1]["file"] == "big.png"


# ---- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data", [NOT_AN_IMAGE, b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n", b"\x00" * 100], ids=["text", "pdf", "zeros"]
)
def test_not_an_image_is_415(client, data):
    body = assert_problem(post(client, "/v1/predict", data, "x.bin"), 415, "not-an-image")
    assert body["instance"] == "/v1/predict"
    assert_problem(post(client, "/v1/read", data, "x.bin"), 415, "not-an-image")


@pytest.mark.parametrize(
    "make",
    [lambda d: truncated(d), lambda d: d[:60], lambda d: bomb_png()],
    ids=["truncated", "header-only", "decompression-bomb"],
)
def test_broken_image_is_422(client, digit_png, make):
    data = make(digit_png)
    assert_problem(post(client, "/v1/predict", data), 422, "bad-image")
    assert_problem(post(client, "/v1/read", data), 422, "bad-image")


def test_empty_file_is_refused_as_the_recognizer_refuses_it(client, recognizer):
    with pytest.raises(ImageError) as raised:
        recognizer.predict(b"")
    assert_problem(post(client, "/v1/predict", b"", "empty.png"), raised.value.status)


def test_upload_over_the_limit_is_413(recognizer, digit_png):
    with TestClient(create_app(recognizer=recognizer, max_upload_bytes=len(digit_png) - 1)) as c:
        for path in ("/v1/predict", "/v1/read"):
            body = assert_problem(post(c, path, digit_png), 413, "upload-too-large")
            assert "per file" in body["detail"]
        # just under the limit is fine
    with TestClient(create_app(recognizer=recognizer, max_upload_bytes=len(digit_png))) as c:
        assert post(c, "/v1/predict", digit_png).status_code == 200


class Upload:
    """A raw ASGI request whose body streams in chunks, counting what the app pulls."""

    def __init__(self, total: int, chunk: int = 64 * 1024, declare_length: bool = False) -> None:
        self.total, self.chunk, self.pulled = total, chunk, 0
        boundary = "XyZ"
        self.headers = [(b"content-type", f"multipart/form-data; boundary={boundary}".encode())]
        if declare_length:
            self.headers.append((b"content-length", str(total).encode()))
        self.head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.png"\r\n'
            f"Content-Type: image/png\r\n\r\n"
        ).encode()
        self.messages: list[dict[str, Any]] = []
        self.pulled_when_sent: list[int] = []  # how much of the body was in when each message went out

    async def receive(self) -> dict[str, Any]:
        if self.pulled >= self.total:
            await asyncio.sleep(3600)  # a stalled client: the app must not wait for the rest
        body = self.head if self.pulled == 0 else b"\x89" * self.chunk
        self.pulled += len(body)
        return {"type": "http.request", "body": body, "more_body": self.pulled < self.total}

    async def send(self, message: dict[str, Any]) -> None:
        self.messages.append(message)
        self.pulled_when_sent.append(self.pulled)

    def run(self, app: Any, path: str = "/v1/predict") -> int:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": self.headers,
            "client": ("127.0.0.1", 1),
            "server": ("t", 80),
        }

        async def drive() -> None:
            async with app.router.lifespan_context(app):
                await asyncio.wait_for(app(scope, self.receive, self.send), timeout=60)

        asyncio.run(drive())
        return next(m["status"] for m in self.messages if m["type"] == "http.response.start")


def test_413_is_enforced_while_the_upload_streams_in(recognizer):
    limit = 256 * 1024
    app = create_app(recognizer=recognizer, max_upload_bytes=limit)
    upload = Upload(total=50 * 1024 * 1024)
    assert upload.run(app) == 413
    # The answer went out one chunk past the limit; then at most the drain budget more was read
    # (so a client that sends everything before reading can read it), not the whole 50 MB body.
    assert upload.pulled_when_sent[0] <= limit + MULTIPART_OVERHEAD + upload.chunk + len(upload.head)
    assert upload.pulled <= upload.pulled_when_sent[0] + DRAIN_BYTES + upload.chunk


def test_413_on_a_declared_length_past_the_drain_budget_reads_no_body(recognizer):
    upload = Upload(total=50 * 1024 * 1024, declare_length=True)
    assert upload.run(create_app(recognizer=recognizer)) == 413
    assert upload.pulled == 0


@pytest.mark.parametrize("declare_length", [True, False], ids=["content-length", "chunked"])
def test_an_early_413_is_sent_whole_then_the_rest_of_a_phone_photo_is_read(recognizer, declare_length):
    """Python's urllib sends the whole request before it reads: the answer is written at once, the
    rest of the upload read and dropped, and only then is the answer finished (which closes)."""
    upload = Upload(total=6_300_000, declare_length=declare_length)
    assert upload.run(create_app(recognizer=recognizer)) == 413
    assert upload.pulled >= upload.total  # all of it read, so closing cannot reset the connection
    start, body, last = upload.messages
    assert ("connection", "close") in [(k.decode(), v.decode()) for k, v in start["headers"]]
    assert json.loads(body["body"])["type"] == "urn:digitrec:problem:upload-too-large" and body["more_body"]
    assert upload.pulled_when_sent[1] < upload.total  # the answer was out before the drain
    assert last == {"type": "http.response.body", "body": b"", "more_body": False}


def test_the_drain_stops_at_its_budget_and_its_time_limit():
    async def endless() -> dict[str, Any]:  # a client that keeps sending
        return {"type": "http.request", "body": b"x" * 1000, "more_body": True}

    async def stalled() -> dict[str, Any]:  # a client that stopped sending
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    body = RequestBody(endless, None)
    asyncio.run(body.drain(50_000, seconds=30))
    assert 50_000 <= body.received <= 51_000 and not body.complete
    started = time.monotonic()
    asyncio.run(RequestBody(stalled, None).drain(50_000, seconds=0.2))
    assert time.monotonic() - started < 5


@pytest.mark.parametrize(
    "request_kw",
    [
        {"content": b"\x89PNG\r\n\x1a\n", "headers": {"content-type": "image/png"}},
        {"json": {"file": "aGVsbG8="}},
        {"data": {"file": "not a file field"}},
        {"files": {"picture": ("a.png", b"123", "image/png")}},
    ],
    ids=["raw-body", "json", "text-field", "wrong-field-name"],
)
def test_requests_without_a_file_field_are_422(client, request_kw):
    body = assert_problem(client.post("/v1/predict", **request_kw), 422, "invalid-request")
    assert "multipart/form-data" in body["detail"]


def test_malformed_multipart_is_400(client):
    response = client.post(
        "/v1/predict", content=b"--nope\r\ngarbage", headers={"content-type": "multipart/form-data; boundary=XyZ"}
    )
    assert_problem(response, 400)


def test_unknown_route_and_wrong_method_are_problems(client):
    assert assert_problem(client.get("/v2/nothing"), 404)["type"] == "about:blank"
    assert_problem(client.get("/v1/predict"), 405)


IMAGE_ODDITIES = {
    "gif-animated": lambda: png_bytes(
        Image.new("L", (40, 40), 255), "GIF", save_all=True, append_images=[Image.new("L", (40, 40), 0)]
    ),
    "png-16-bit": lambda: png_bytes(Image.fromarray(np.full((40, 40), 60000, np.uint16))),
    "jpeg-cmyk": lambda: png_bytes(Image.new("CMYK", (40, 40), (0, 0, 0, 0)), "JPEG"),
    "palette": lambda: png_bytes(Image.new("P", (40, 40), 3)),
    "one-pixel": lambda: png_bytes(Image.new("L", (1, 1), 0)),
    "very-wide": lambda: png_bytes(Image.new("L", (20000, 1), 255)),
}


@pytest.mark.parametrize("name", sorted(IMAGE_ODDITIES))
def test_odd_images_never_give_500(client, name):
    data = IMAGE_ODDITIES[name]()
    for path in ("/v1/predict", "/v1/read"):
        response = post(client, path, data, name)
        assert response.status_code in (200, 413, 415, 422), response.text
        if response.status_code != 200:
            assert_problem(response, response.status_code)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.one_of(st.binary(max_size=2000), st.binary(max_size=200).map(lambda b: b"\x89PNG\r\n\x1a\n" + b)))
def test_random_bytes_never_give_500(client, data):
    response = post(client, "/v1/predict", data)
    assert response.status_code in (200, 415, 422), response.text


# ---- operations ----------------------------------------------------------------------------------


def test_health_ready_and_model(client, tiny_checkpoint):
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready"}
    model = client.get("/v1/model").json()
    assert model["arch"] == "seed_cnn" and model["arch_kwargs"] == tiny_checkpoint.arch_kwargs
    assert model["weights_sha256"] == weights_sha256(tiny_checkpoint.model.state_dict())
    assert model["metrics"] == tiny_checkpoint.meta["metrics"]
    assert model["version"] == digitrec.__version__


def test_not_ready_before_start_up_is_503(recognizer, digit_png):
    client = TestClient(create_app(recognizer=recognizer))  # not entered: the lifespan never ran
    assert client.get("/healthz").status_code == 200
    response = client.get("/readyz")
    assert_problem(response, 503, "not-ready")
    assert response.headers["retry-after"]
    assert_problem(post(client, "/v1/predict", digit_png), 503, "not-ready")


def test_model_is_loaded_once_in_the_lifespan(monkeypatch, tiny_checkpoint):
    loads = []

    def load(path=None, backend="torch", device="cpu"):
        loads.append(path)
        return Recognizer(tiny_checkpoint)

    monkeypatch.setattr(Recognizer, "load", staticmethod(load))
    app = create_app(model_path="some/model.pt")
    assert loads == []  # building the app loads nothing
    with TestClient(app) as c:
        for _ in range(3):
            assert c.get("/readyz").status_code == 200
            assert post(c, "/v1/predict", BLANK_PNG).status_code == 200
    assert loads == ["some/model.pt"]


def metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def test_metrics_count_requests_latency_rejections_and_errors(recognizer, digit_png):
    with TestClient(create_app(recognizer=recognizer)) as c:
        answers = [post(c, "/v1/predict", digit_png).json() for _ in range(3)]
        blank = post(c, "/v1/predict", BLANK_PNG).json()
        post(c, "/v1/predict", NOT_AN_IMAGE)
        c.get("/no/such/page")
        response = c.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert metric(text, "digitrec_http_requests_total", route="/v1/predict", status="200") == 4
    assert metric(text, "digitrec_http_requests_total", route="/v1/predict", status="415") == 1
    assert metric(text, "digitrec_http_requests_total", route="unmatched", status="404") == 1
    assert metric(text, "digitrec_http_request_duration_seconds_count", route="/v1/predict") == 5
    assert metric(text, "digitrec_http_request_duration_seconds_bucket", route="/v1/predict", le="+Inf") == 5
    rejected = sum(a["rejected"] for a in answers + [blank])
    assert metric(text, "digitrec_rejections_total", endpoint="predict") == rejected
    assert metric(text, "digitrec_predictions_total", endpoint="predict") == 4
    assert metric(text, "digitrec_image_errors_total", endpoint="predict", status="415") == 1
    assert metric(text, "digitrec_ready") == 1
    assert metric(text, "digitrec_model_info", arch="seed_cnn") == 1


def test_two_apps_keep_separate_metrics(recognizer):
    with TestClient(create_app(recognizer=recognizer)) as a, TestClient(create_app(recognizer=recognizer)) as b:
        a.get("/healthz")
        a.get("/healthz")
        b.get("/healthz")
        assert metric(a.get("/metrics").text, "digitrec_http_requests_total", route="/healthz") == 2
        assert metric(b.get("/metrics").text, "digitrec_http_requests_total", route="/healthz") == 1


def test_openapi_and_docs(client):
    spec = client.get("/openapi.json").json()
    for path in ("/v1/predict", "/v1/read", "/v1/predict/batch"):
        operation = spec["paths"][path]["post"]
        assert "multipart/form-data" in operation["requestBody"]["content"]
        assert {"400", "413", "415", "422"} <= set(operation["responses"])
    for path in ("/v1/model", "/healthz", "/readyz", "/metrics"):
        assert "get" in spec["paths"][path]
    assert client.get("/docs").status_code == 200


def test_openapi_says_what_an_upload_needs(client):
    """A non-empty file (an empty one is 415), at least one `files` part in a batch (else 422), and
    bytes, not text or numbers (`format: binary`); test_schemathesis.py checks the server agrees."""
    spec = client.get("/openapi.json").json()

    def field(path: str, name: str) -> dict[str, Any]:
        ref = spec["paths"][path]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]["$ref"]
        return spec["components"]["schemas"][ref.rsplit("/", 1)[1]]["properties"][name]

    for path in ("/v1/predict", "/v1/read"):
        assert field(path, "file")["minLength"] == 1 and field(path, "file")["format"] == "binary"
    files = field("/v1/predict/batch", "files")
    assert files["minItems"] == 1 and files["items"]["format"] == "binary"


# ---- the page ------------------------------------------------------------------------------------


def test_page_and_its_assets_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for needle in (
        '<canvas id="pad"',
        'id="file"',
        'id="undo"',
        'id="clear"',
        'name="viewport"',
        'src="/static/app.js"',
        'href="/static/style.css"',
    ):
        assert needle in page.text
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/static/style.css").status_code == 200


def test_page_needs_nothing_from_the_network():
    # Works offline: no CDN, no web fonts, no absolute URLs in what the page loads.
    for name in ("index.html", "app.js", "style.css"):
        text = (STATIC_DIR / name).read_text()
        assert "http://" not in text and "https://" not in text and "//cdn" not in text, name
        assert "@import" not in text, name


# ---- micro-batching ------------------------------------------------------------------------------


class CountingRecognizer:
    """Wraps a Recognizer and records the size of every model call (classify)."""

    def __init__(self, inner: Recognizer) -> None:
        self.inner, self.calls = inner, []
        self.model, self.checkpoint, self.backend = inner.model, inner.checkpoint, inner.backend

    def prepare(self, image, name=None):
        return self.inner.prepare(image, name)

    def classify(self, prepared, top_k=3):
        self.calls.append(len(prepared))
        return self.inner.classify(prepared, top_k)


def test_concurrent_requests_share_one_model_call(recognizer, mnist):
    from concurrent.futures import ThreadPoolExecutor

    images = [png_bytes(paper(mnist.test_images[i], 2)) for i in range(8)]
    counting = CountingRecognizer(recognizer)

    async def go() -> list:
        with ThreadPoolExecutor(1) as pool:
            batcher = MicroBatcher(counting, pool, max_batch=32)
            await batcher.start()
            try:
                return await asyncio.gather(
                    *(batcher.predict(img, f"{i}.png", top_k=2 + i % 2) for i, img in enumerate(images))
                )
            finally:
                await batcher.stop()

    answers = asyncio.run(go())
    assert counting.calls == [4, 4]  # one call per top_k, not eight
    for i, (answer, image) in enumerate(zip(answers, images)):
        assert answer.file == f"{i}.png" and len(answer.top_k) == 2 + i % 2
        assert_same(answer.to_dict(), recognizer.predict(image, top_k=2 + i % 2, name=f"{i}.png").to_dict())


def test_one_bad_image_in_a_micro_batch_fails_alone(recognizer, digit_png):
    from concurrent.futures import ThreadPoolExecutor

    async def go() -> list:
        with ThreadPoolExecutor(1) as pool:
            batcher = MicroBatcher(recognizer, pool)
            await batcher.start()
            try:
                return await asyncio.gather(
                    batcher.predict(digit_png),
                    batcher.predict(NOT_AN_IMAGE),
                    batcher.predict(BLANK_PNG),
                    return_exceptions=True,
                )
            finally:
                await batcher.stop()

    good, bad, blank = asyncio.run(go())
    assert good.digit == recognizer.predict(digit_png).digit
    assert isinstance(bad, ImageError) and bad.status == 415
    assert blank.rejected


def test_a_batch_arriving_while_the_preprocessing_process_is_busy_is_prepared_on_the_inference_thread(
    recognizer, digit_png
):
    """Under load both cores preprocess: the process takes a batch when it is free, the inference
    thread prepares the batches that arrive meanwhile, and a lone request still goes to the process."""
    from concurrent.futures import ThreadPoolExecutor

    from digitrec.server.batching import prepare_images

    class HeldProcess:  # a preprocessing process that holds its batch until released
        def __init__(self) -> None:
            self.release, self.batches = asyncio.Event(), []

        async def prepare(self, images):
            self.batches.append([name for _, name in images])
            await self.release.wait()
            return prepare_images(recognizer, images)

    async def go():
        with ThreadPoolExecutor(1) as thread:
            batcher = MicroBatcher(recognizer, thread)
            await batcher.start()
            process = HeldProcess()
            batcher.use_process(process)
            try:
                first = asyncio.create_task(batcher.predict(digit_png, "first.png"))
                while not process.batches:
                    await asyncio.sleep(0.01)
                second = await asyncio.wait_for(batcher.predict(digit_png, "second.png"), 60)
                assert not first.done()  # the process still holds the first batch
                process.release.set()
                answers = [await first, second, await batcher.predict(digit_png, "third.png")]
                return answers, process.batches
            finally:
                await batcher.stop()

    answers, batches = asyncio.run(go())
    assert batches == [["first.png"], ["third.png"]]  # the second was prepared on the inference thread
    for answer in answers:
        assert_same(answer.to_dict(), recognizer.predict(digit_png, name=answer.file).to_dict())


def test_a_bug_hit_by_one_image_fails_only_its_own_request(recognizer, digit_png):
    class Fragile(CountingRecognizer):
        def prepare(self, image, name=None):
            if name == "poison.png":
                raise RuntimeError("a bug in preprocessing")
            return super().prepare(image, name)

    app = create_app(recognizer=Fragile(recognizer))

    async def go() -> list[httpx.Response]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                return await asyncio.gather(
                    *(
                        c.post("/v1/predict", files={"file": (n, digit_png, "image/png")})
                        for n in ("a.png", "poison.png", "b.png")
                    )
                )

    a, poison, b = asyncio.run(go())
    assert a.status_code == b.status_code == 200
    assert_problem(poison, 500, "internal-error")


def test_concurrent_http_requests_get_their_own_answers(recognizer, mnist):
    images = {f"{i}.png": png_bytes(paper(mnist.test_images[i], 2)) for i in range(12)}
    app = create_app(recognizer=recognizer)

    async def go() -> list[httpx.Response]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                return await asyncio.gather(
                    *(c.post("/v1/predict", files={"file": (n, d, "image/png")}) for n, d in images.items())
                )

    for response in asyncio.run(go()):
        body = response.json()
        assert_same(body, recognizer.predict(images[body["file"]], name=body["file"]).to_dict())


# ---- the command -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--port", "0"], "--port"),
        (["--port", "70000"], "--port"),
        (["--workers", "0"], "--workers"),
        (["--max-upload-mb", "0"], "--max-upload-mb"),
        (["--host", "no.such.host.invalid"], "--host"),
    ],
)
def test_serve_refuses_bad_flags_in_one_line(capsys, flags, message):
    assert cli_main(["serve", *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_serve_refuses_a_busy_port(capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert cli_main(["serve", "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert f"127.0.0.1:{port}" in err and len(err.strip().splitlines()) == 1


def test_serve_refuses_a_missing_model(capsys, tmp_path):
    with socket.socket() as probe:  # a port that is free, so the model check is what fails
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert cli_main(["serve", "--port", str(port), "--model", str(tmp_path / "nope.pt")]) == 2
    err = capsys.readouterr().err
    assert "nope.pt" in err and len(err.strip().splitlines()) == 1


def test_serve_is_listed_in_help(capsys):
    with pytest.raises(SystemExit):
        cli_main(["--help"])
    assert "serve" in capsys.readouterr().out


def test_worker_factory_reads_its_settings_from_the_environment(monkeypatch, tiny_checkpoint):
    monkeypatch.setenv(ENV_MODEL, "/models/x.pt")
    monkeypatch.setenv(ENV_MAX_UPLOAD, "12345")
    app = create_app_from_env()
    settings = app.state.service.settings
    assert settings.model_path == "/models/x.pt" and settings.max_upload_bytes == 12345


# ---- preprocessing in a process of its own ------------------------------------------------------


def test_preprocessing_in_its_own_process_answers_exactly_as_in_process_and_survives_its_death(mnist):
    import os
    import signal

    shipped = Recognizer.load()  # the process loads its recognizer from the file, as `digitrec serve` does
    images = {f"{i}.png": png_bytes(paper(mnist.test_images[i], 2)) for i in range(6)}
    app = create_app(recognizer=shipped, preprocess_processes=1)

    async def go() -> tuple[list[httpx.Response], list[httpx.Response], list[httpx.Response]]:
        async with app.router.lifespan_context(app):
            service = app.state.service
            await service.preprocess_joining  # it starts after the service is ready, and then takes over
            assert service.preprocess is not None and service.batcher.preprocess is service.preprocess
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                answers = await asyncio.gather(
                    *(c.post("/v1/predict", files={"file": (n, d, "image/png")}) for n, d in images.items())
                )
                odd = [
                    await c.post("/v1/predict", files={"file": (n, d, "image/png")})
                    for n, d in (("a.png", NOT_AN_IMAGE), ("b.png", truncated(images["0.png"])), ("c.png", BLANK_PNG))
                ]
                # The preprocessing process dies (a decoder crash, the OOM killer): the service carries on.
                for pid in list(service.preprocess._pool._processes):
                    os.kill(pid, signal.SIGKILL)
                later = [
                    await c.post("/v1/predict", files={"file": (n, images[n], "image/png")}) for n in ("1.png", "2.png")
                ]
                assert service.batcher.preprocess is None
        return answers, odd, later

    answers, (not_image, broken, blank), later = asyncio.run(go())
    for response in answers + later:
        body = response.json()
        assert_same(body, shipped.predict(images[body["file"]], name=body["file"]).to_dict())
    assert_problem(not_image, 415)
    assert_problem(broken, 422)
    assert blank.status_code == 200 and blank.json()["rejected"]


def test_a_recognizer_without_a_file_keeps_preprocessing_in_process(recognizer, digit_png):
    app = create_app(recognizer=recognizer, preprocess_processes=1)  # the tiny model exists only here
    with TestClient(app) as c:
        assert_same(post(c, "/v1/predict", digit_png).json(), recognizer.predict(digit_png, name="image.png").to_dict())
        # joining ends at its first step (no file to load from), queued before any request
        assert app.state.service.preprocess_joining.done() and app.state.service.preprocess is None
