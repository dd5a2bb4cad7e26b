"""The HTTP API against its own OpenAPI document, with schemathesis (4.x) and all its checks.

In process, schemathesis reads the document from the ASGI app (no network, no server process)
and generates requests for every operation: valid and invalid multipart bodies, query parameters
in and out of range, missing fields, odd content types. Once more, the schemathesis command line
runs `--checks all` against a live `digitrec serve` (uvicorn, the shipped model, 127.0.0.1).
Every answer must be documented (never a 5xx, a listed status code, the declared content type, a
body matching the response schema, problem details included), invalid requests must be refused,
and valid ones accepted: what the document requires of an upload (a non-empty file, at least one
`files` part) is what the server requires.

One thing no JSON Schema can say: that a file's bytes are an image the server can decode. A valid
request whose non-empty file is not one is answered 415 (not an image) or 422 (a broken image), as
the document lists; the hook in schemathesis_hooks.py drops exactly that failure of the
positive-data check, and nothing else.

Bounded for CI: a fixed number of examples per operation, derandomized (in process) or with a
fixed seed (command line), so a CI failure reproduces locally.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

# The dev extra in pyproject.toml pins schemathesis>=4.0,<5 (the 4.x API below). Missing or older,
# the test fails with a clear message instead of being skipped, which would pass CI unchecked.
try:
    SCHEMATHESIS_VERSION = version("schemathesis")
except PackageNotFoundError:
    pytest.fail("schemathesis is not installed; install the dev extra: pip install -e '.[dev]'", pytrace=False)
if int(SCHEMATHESIS_VERSION.split(".")[0]) < 4:
    pytest.fail(
        f"schemathesis {SCHEMATHESIS_VERSION} is installed; this test needs 4.0 or later (pip install -e '.[dev]')",
        pytrace=False,
    )

import schemathesis  # noqa: E402
from live_server import digitrec_serve  # noqa: E402
from schemathesis.config import SchemathesisConfig  # noqa: E402
from schemathesis.specs.openapi.formats import unregister_string_format  # noqa: E402

from digitrec.models import create_model  # noqa: E402
from digitrec.models.checkpoint import Checkpoint, weights_sha256  # noqa: E402
from digitrec.models.inputs import Normalization  # noqa: E402
from digitrec.reading.recognize import Recognizer  # noqa: E402
from digitrec.server import create_app  # noqa: E402

# The one refusal of a valid request that is right: a file that is not an image (module docstring).
HOOKS = Path(__file__).resolve().parent / "schemathesis_hooks.py"
CONFIG = {"hooks": str(HOOKS)}
CONFIG_TOML = f"hooks = {json.dumps(str(HOOKS))}\n"  # the same, for the command line's --config-file
CORPUS = Path(__file__).resolve().parent / "fuzz" / "corpus"
# Uploads: real pictures (so the 200 answers are exercised too), broken ones, and random bytes.
UPLOADS = (
    "digit.png",
    "digit_exif6.jpg",
    "number_721.png",
    "all_white.png",
    "noise.png",
    "truncated.png",
    "animated.gif",
    "notes.txt",
)  # no empty file: the document requires one byte or more, and schemathesis sends empty ones as invalid


@pytest.fixture(scope="module", autouse=True)
def uploads_from_the_corpus():
    files = [(CORPUS / name).read_bytes() for name in UPLOADS]
    schemathesis.openapi.format("binary", st.one_of(st.sampled_from(files), st.binary(min_size=1, max_size=4096)))
    yield
    unregister_string_format("binary")  # back to schemathesis' own samples for anyone else


def tiny_app():
    """The app serving a tiny randomly initialised model: the contract does not depend on the
    weights, and the shipped model may change. Building it starts nothing: the lifespan (the
    inference thread) starts on the first request schemathesis sends."""
    torch.manual_seed(0)
    kwargs = {"c1": 4, "c2": 8, "hidden": 16}
    model = create_model("seed_cnn", **kwargs).eval()
    meta = {"metrics": {}, "weights_sha256": weights_sha256(model.state_dict())}
    return create_app(recognizer=Recognizer(Checkpoint(model, "seed_cnn", kwargs, Normalization(), meta, path=None)))


# The document is taken from the app object itself (no request, no lifespan at collection time;
# `schemathesis.pytest.from_fixture` would defer even that, but it fails on pytest 9).
APP = tiny_app()
schema = schemathesis.openapi.from_dict(copy.deepcopy(APP.openapi()), config=SchemathesisConfig.from_dict(CONFIG))
schema.app = APP  # requests go to the ASGI app in process
schema.location = "/openapi.json"


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_api_conforms_to_its_openapi_document(case):
    case.call_and_validate()  # every check schemathesis has; CONFIG adds the hook


def test_a_live_digitrec_serve_passes_schemathesis_with_all_checks(tmp_path):
    """`schemathesis run --checks all` against the real server, as a user would run it."""
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG_TOML)
    with digitrec_serve(tmp_path) as url:
        # A fixed seed, so a failure reproduces; run in tmp_path, where it leaves its files.
        command = [sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "run"]
        command += [f"{url}/openapi.json", "--checks", "all", "--max-examples", "25", "--seed", "1"]
        run = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert "7 selected" in run.stdout and " passed" in run.stdout
