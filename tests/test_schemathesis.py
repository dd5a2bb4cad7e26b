"""The HTTP API against its own OpenAPI document, with schemathesis (4.x), in process.

Schemathesis reads /openapi.json from the ASGI app (no network, no server process) and generates
requests for every operation: valid and invalid multipart bodies, query parameters in and out of
range, missing fields, odd content types. Every answer must be documented: never a 5xx, a status
code the operation lists, the content type it declares, and a body that matches the response
schema (including the problem-details shape of errors).

Bounded for CI: a fixed number of examples per operation, derandomized so a CI failure
reproduces locally.
"""

from __future__ import annotations

import copy
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
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.specs.openapi.formats import unregister_string_format  # noqa: E402

from digitrec.models import create_model  # noqa: E402
from digitrec.models.checkpoint import Checkpoint, weights_sha256  # noqa: E402
from digitrec.models.inputs import Normalization  # noqa: E402
from digitrec.reading.recognize import Recognizer  # noqa: E402
from digitrec.server import create_app  # noqa: E402

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
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
    "empty.png",
)


@pytest.fixture(scope="module", autouse=True)
def uploads_from_the_corpus():
    files = [(CORPUS / name).read_bytes() for name in UPLOADS]
    schemathesis.openapi.format("binary", st.one_of(st.sampled_from(files), st.binary(max_size=4096)))
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


def with_binary_format(document: dict) -> dict:
    """OpenAPI 3.1 spells a file field `contentMediaType: application/octet-stream`; add the 3.0
    spelling `format: binary` beside it (same meaning) so the upload strategy below applies."""

    def visit(node):
        if isinstance(node, dict):
            if node.get("contentMediaType") == "application/octet-stream" and node.get("type") == "string":
                node.setdefault("format", "binary")
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(document)
    return document


# The document is taken from the app object itself (no request, no lifespan at collection time;
# `schemathesis.pytest.from_fixture` would defer even that, but it fails on pytest 9).
APP = tiny_app()
schema = schemathesis.openapi.from_dict(with_binary_format(copy.deepcopy(APP.openapi())))
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
    case.call_and_validate(checks=CHECKS)
