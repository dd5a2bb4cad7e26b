"""Hostile inputs: every file of the committed fuzz corpus through every door a user has.

tests/fuzz/corpus/ holds zero-byte files, documents sent by mistake, truncated and corrupt
images, decompression bombs, absurd dimensions, animations, multi-page files and odd-but-valid
pictures; MANIFEST.json says what each should give (see tests/fuzz/make_corpus.py). Each one goes
through `Recognizer.predict` and `Recognizer.read`, the CLI (`digitrec predict` / `read`) and the
HTTP API, and must end in a result or a clear one-line error with the expected status: never an
unexpected exception, a traceback, a 5xx or a hang. Each case runs in a daemon thread with a
generous time limit, so a hang fails its test instead of blocking CI (the limit is far above the
normal time, a fraction of a second, so it only catches real hangs).

The shipped model is used, but nothing here depends on its accuracy: only on outcome classes,
and on relations that hold for any model (the same pixels in another container give the same
prediction; an EXIF-rotated photo gives the prediction of its pixels turned upright by hand).
"""

from __future__ import annotations

import importlib.util
import json
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from digitrec.cli import main as cli_main
from digitrec.commands import COMMANDS
from digitrec.errors import ImageError
from digitrec.reading.recognize import Prediction, Reading, Recognizer
from digitrec.server import create_app

FUZZ = Path(__file__).resolve().parent / "fuzz"
CORPUS = FUZZ / "corpus"
MANIFEST: dict[str, dict[str, Any]] = json.loads((CORPUS / "MANIFEST.json").read_text())
NAMES = sorted(MANIFEST)
RESULTS = [n for n in NAMES if MANIFEST[n]["expect"] == "result"]
ERRORS = [n for n in NAMES if MANIFEST[n]["expect"] == "error"]
HANG_SECONDS = 120.0  # per case; normal is well under a second
PROBLEM_JSON = "application/problem+json"

# digit_exif_garbage.jpg makes Pillow warn while it skips the broken EXIF block, as it should.
pytestmark = pytest.mark.filterwarnings("ignore:Corrupt EXIF data:UserWarning")


def statuses(name: str) -> set[int]:
    status = MANIFEST[name]["status"]
    return set(status) if isinstance(status, list) else {status}


def bounded(fn: Callable[..., Any], *args: Any, seconds: float = HANG_SECONDS, **kwargs: Any) -> Any:
    """fn(*args, **kwargs) in a daemon thread: its value or its exception, or a test failure when
    it has not returned after `seconds` (the thread is abandoned; being a daemon, it cannot keep
    the test process alive)."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = fn(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - handed back to the test thread
            outcome["error"] = exc

    thread = threading.Thread(target=target, name="fuzz-case", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        pytest.fail(f"{getattr(fn, '__name__', fn)} did not return within {seconds:.0f} s (a hang)")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    # One 28x28 image gains nothing from two threads, and on a busy 2-core machine the second
    # thread makes each model call ~50x slower (the server sets the same for its processes).
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def recognizer() -> Recognizer:
    return Recognizer.load()


@pytest.fixture(scope="module")
def client(recognizer):
    with TestClient(create_app(recognizer=recognizer), raise_server_exceptions=False) as c:
        yield c


def assert_clear_message(message: str) -> None:
    assert message and "\n" not in message.strip() and len(message) < 400, message
    assert "Traceback" not in message


def assert_prediction(p: Prediction) -> None:
    assert isinstance(p, Prediction)
    assert 0.0 <= p.confidence <= 1.0
    if p.rejected:
        assert p.digit is None and p.reason
    else:
        assert p.digit in range(10) and p.reason is None
        assert p.top_k and p.top_k[0]["digit"] == p.digit
    probabilities = [c["probability"] for c in p.top_k]
    assert probabilities == sorted(probabilities, reverse=True)
    json.dumps(p.to_dict())  # what the CLI and the API send


def assert_reading(r: Reading) -> None:
    assert isinstance(r, Reading)
    assert r.text == "".join(str(d["digit"]) for d in r.digits) or r.rejected
    if r.rejected:
        assert r.reason
    for d in r.digits:
        assert d["digit"] in range(10) and 0.0 <= d["confidence"] <= 1.0
        x0, y0, x1, y1 = d["box"]
        assert 0 <= x0 < x1 and 0 <= y0 < y1
    json.dumps(r.to_dict())


# ---- the corpus itself ---------------------------------------------------------------------------


def test_corpus_is_complete_small_and_described():
    files = {p.name for p in CORPUS.iterdir() if p.name != "MANIFEST.json"}
    assert files == set(MANIFEST), "corpus and manifest disagree; rerun tests/fuzz/make_corpus.py"
    assert len(NAMES) >= 30 and len(ERRORS) >= 25
    assert sum((CORPUS / n).stat().st_size for n in NAMES) < 1024 * 1024
    for name, entry in MANIFEST.items():
        assert entry["what"] and entry["expect"] in ("result", "error"), name
        if entry["expect"] == "error":
            assert statuses(name) <= {415, 422}, name
    # The kinds the issue names are all there.
    for needle in (
        "zero bytes",
        "first half of a PNG",
        "first half of a JPEG",
        "wrong extension",
        "plain text",
        "HTML",
        "decompression bomb",
        "1x1",
        "20000x20000",
        "animated GIF",
        "3-page TIFF",
        "16-bit",
        "CMYK",
        "palette",
        "EXIF orientation",
        "blank white",
        "all-black",
        "noise",
    ):
        assert any(needle.lower() in e["what"].lower() for e in MANIFEST.values()), needle


def test_manifest_is_what_the_generator_makes(mnist):
    spec = importlib.util.spec_from_file_location("make_corpus", FUZZ / "make_corpus.py")
    make_corpus = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_corpus)
    entries = make_corpus.build([mnist.test_images[i].numpy() for i in make_corpus.DIGITS])
    assert {name: {"what": what, **expect} for name, what, _, expect in entries} == MANIFEST


# ---- the library ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_predict(recognizer, name):
    path = CORPUS / name
    if MANIFEST[name]["expect"] == "result":
        assert_prediction(bounded(recognizer.predict, path, name=name))
        return
    with pytest.raises(ImageError) as info:
        bounded(recognizer.predict, path, name=name)
    assert info.value.status in statuses(name), str(info.value)
    assert_clear_message(str(info.value))


@pytest.mark.parametrize("name", NAMES)
def test_read(recognizer, name):
    data = (CORPUS / name).read_bytes()  # bytes, as the service hands them over
    if MANIFEST[name]["expect"] == "result":
        assert_reading(bounded(recognizer.read, data, name=name))
        return
    with pytest.raises(ImageError) as info:
        bounded(recognizer.read, data, name=name)
    assert info.value.status in statuses(name), str(info.value)
    assert_clear_message(str(info.value))


def assert_same_prediction(a: Prediction, b: Prediction) -> None:
    assert (a.digit, a.rejected, a.reason) == (b.digit, b.rejected, b.reason)
    assert a.confidence == pytest.approx(b.confidence, abs=1e-5)
    assert [c["digit"] for c in a.top_k] == [c["digit"] for c in b.top_k]


@pytest.mark.parametrize("name", [n for n in RESULTS if "same_as" in MANIFEST[n]])
def test_same_pixels_in_another_container_give_the_same_prediction(recognizer, name):
    assert_same_prediction(recognizer.predict(CORPUS / name), recognizer.predict(CORPUS / MANIFEST[name]["same_as"]))


@pytest.mark.parametrize("name", [n for n in RESULTS if "orientation" in MANIFEST[n]])
def test_exif_rotation_is_applied(recognizer, name):
    with Image.open(CORPUS / name) as image:
        stored = np.asarray(image.convert("L"))  # Pillow does not apply EXIF by itself
        assert image.getexif()[0x0112] == MANIFEST[name]["orientation"]
    turns = {6: -1, 8: 1, 3: 2}[MANIFEST[name]["orientation"]]  # np.rot90 turns counter-clockwise
    upright = np.ascontiguousarray(np.rot90(stored, turns))
    assert_same_prediction(recognizer.predict(CORPUS / name), recognizer.predict(upright))
    reading = recognizer.read(CORPUS / name)
    assert reading.text == recognizer.read(upright).text
    for d in reading.digits:  # boxes are in upright pixels
        assert d["box"][2] <= upright.shape[1] and d["box"][3] <= upright.shape[0]


# ---- the CLI -------------------------------------------------------------------------------------


def _has_command(name: str) -> bool:
    return any(module.NAME == name for module in COMMANDS)


def json_records(stdout: str) -> list[dict]:
    """`--json` output: one JSON array, or one object per line."""
    text = stdout.strip()
    if not text:
        return []
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    return value if isinstance(value, list) else [value]


@pytest.mark.parametrize("command", ["predict", "read"])
def test_cli_reports_each_bad_file_in_one_line_and_processes_the_others(capsys, command):
    assert _has_command(command), f"`digitrec {command}` is not registered in digitrec.commands.COMMANDS"
    paths = [str(CORPUS / n) for n in NAMES]
    code = bounded(cli_main, [command, *paths, "--json"], seconds=4 * HANG_SECONDS)
    out, err = capsys.readouterr()
    assert code == 2  # some files failed
    assert "Traceback" not in err and "Traceback" not in out
    lines = [line for line in err.splitlines() if line.strip()]
    for name in ERRORS:  # the file's name as a whole word ("bomb.png" is not "ztxt_bomb.png")
        mentions = [line for line in lines if re.search(rf"(^|[\s/]){re.escape(name)}(:|\s|$)", line)]
        assert len(mentions) == 1, (name, lines)
    assert len(lines) == len(ERRORS), lines
    records = json_records(out)
    assert [Path(r["file"]).name for r in records] == RESULTS
    for record in records:
        assert {"file", "rejected", "reason"} <= set(record)


# ---- the HTTP API --------------------------------------------------------------------------------


def post(client: TestClient, path: str, name: str):
    files = {"file": (name, (CORPUS / name).read_bytes(), "application/octet-stream")}
    return bounded(client.post, path, files=files)


def assert_http_outcome(response, name: str) -> dict:
    assert response.status_code < 500, response.text
    if MANIFEST[name]["expect"] == "result":
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/json"
        return response.json()
    assert response.status_code in statuses(name), response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    body = response.json()
    assert body["status"] == response.status_code and body["title"]
    assert_clear_message(body["detail"])
    return body


@pytest.mark.parametrize("name", NAMES)
def test_http_predict(client, recognizer, name):
    body = assert_http_outcome(post(client, "/v1/predict", name), name)
    if MANIFEST[name]["expect"] == "result":
        assert_same_prediction(Prediction(**body), recognizer.predict(CORPUS / name, name=name))


@pytest.mark.parametrize("name", NAMES)
def test_http_read(client, name):
    body = assert_http_outcome(post(client, "/v1/read", name), name)
    if MANIFEST[name]["expect"] == "result":
        assert_reading(Reading(**body))


def test_http_batch_of_the_whole_corpus(client):
    half = (len(NAMES) + 1) // 2  # a batch holds at most 64 files
    for names in (NAMES[:half], NAMES[half:]):
        files = [("files", (n, (CORPUS / n).read_bytes(), "application/octet-stream")) for n in names]
        response = bounded(client.post, "/v1/predict/batch", files=files, seconds=4 * HANG_SECONDS)
        assert response.status_code == 200, response.text
        body = response.json()
        assert [item["file"] for item in body] == names
        for name, item in zip(names, body):
            if MANIFEST[name]["expect"] == "result":
                assert_prediction(Prediction(**item))
            else:
                assert item["status"] in statuses(name), item
                assert_clear_message(item["detail"])
