"""The recognition API: /v1/predict, /v1/read, /v1/predict/batch and /v1/model.

Bodies are exactly `Prediction.to_dict()` / `Reading.to_dict()`, the objects the CLI prints with
`--json`, returned as they are (no response_model filtering them); `/v1/read` with a page
`template` answers the list of `FieldReading.to_dict()`, one per field and page, as the JSON lines
of `digitrec read --template`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, File, Form, Query, UploadFile
from fastapi.responses import JSONResponse

from digitrec.errors import ConfigError, ImageError, NotAnImageError
from digitrec.reading.forms.template import Template, parse_template
from digitrec.reading.pages import document_kind
from digitrec.server.deps import get_ready_service, read_upload
from digitrec.server.problems import Problem, format_bytes, image_error_body, problem_body, problem_type
from digitrec.server.schemas import BatchProblemOut, FieldReadingOut, ModelOut, PredictionOut, ProblemOut, ReadingOut
from digitrec.server.service import DEFAULT_MAX_UPLOAD_BYTES, MAX_FORM_PAGES, ServerSettings, Service, model_info

if TYPE_CHECKING:
    from digitrec.reading.results import Prediction, Reading

router = APIRouter(prefix="/v1", tags=["recognition"])

_PROBLEM = {"model": ProblemOut, "content": {"application/problem+json": {}}}
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {**_PROBLEM, "description": "A body that is not valid multipart/form-data"},
    413: {**_PROBLEM, "description": "Upload over the size limit (refused while it streams in)"},
    415: {**_PROBLEM, "description": "Not an image format we can read"},
    422: {**_PROBLEM, "description": "A broken or unusable image, or a malformed request"},
    503: {**_PROBLEM, "description": "The model is not loaded yet"},
}
READ_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    400: {**_PROBLEM, "description": "A body that is not valid multipart/form-data, or a template that is not valid"},
    415: {**_PROBLEM, "description": "Not an image format we can read, or a PDF or multi-page TIFF without a template"},
    422: {
        **_PROBLEM,
        "description": "A broken or unusable image or document, a template field outside the page, "
        "or a malformed request",
    },
}
TEMPLATE = Form(
    "",
    description="a page template, the JSON `digitrec read --template` takes: "
    '{"fields": [{"name": "amount", "box": [x, y, w, h], "length": 6}, ...]} with optional "units" '
    '("px" or "fraction") and "page" ([width, height] the pixel boxes were measured on). With it, the file '
    f"is a form (an image, a PDF or a TIFF, at most {MAX_FORM_PAGES} pages) and the answer lists every field "
    "of every page; without it (or empty), the file is one image of a number.",
)
TopK = Query(3, ge=1, le=10, description="how many candidate digits to list")
# What the schema says about uploads. `format: binary` beside FastAPI's `contentMediaType` is
# OpenAPI 3.0's word for "any bytes" (a file part is bytes, never a number or an object), which
# 3.0-era tools and schemathesis read. A single upload must not be empty (415 otherwise); a batch
# needs at least one `files` part (422 otherwise), while an empty file inside a batch gets its own
# problem entry in a 200. Whether the bytes are an image the server decodes is beyond JSON Schema:
# the documented 415 and 422 answers say that.
BINARY = {"type": "string", "format": "binary", "contentMediaType": "application/octet-stream"}
ONE_FILE = File(
    description="the image (PNG, JPEG, ...): a non-empty file, at most the upload limit "
    f"({format_bytes(DEFAULT_MAX_UPLOAD_BYTES)} unless the server is configured otherwise)",
    json_schema_extra={**BINARY, "minLength": 1},
)

READ_FILE = File(
    description="the image (PNG, JPEG, ...), or with a template a form's pages (also a PDF or a multi-page TIFF): "
    f"a non-empty file, at most the upload limit ({format_bytes(DEFAULT_MAX_UPLOAD_BYTES)} unless the server is "
    "configured otherwise)",
    json_schema_extra={**BINARY, "minLength": 1},
)


async def _answer(
    file: UploadFile, service: Service, endpoint: str, recognise: Callable[[bytes], Awaitable[Prediction | Reading]]
) -> JSONResponse:
    """One upload through `recognise`, its outcome (or the image's error) counted under `endpoint`."""
    data = await read_upload(file, service, endpoint)
    try:
        answer = await recognise(data)
    except ImageError as exc:
        service.metrics.image_errors.labels(endpoint, str(exc.status)).inc()
        raise
    service.metrics.count_outcome(endpoint, answer.rejected)
    return JSONResponse(answer.to_dict())


@router.post(
    "/predict", summary="Read one image as a single digit", responses={200: {"model": PredictionOut}, **ERRORS}
)
async def predict(
    file: UploadFile = ONE_FILE,
    top_k: int = TopK,
    service: Service = Depends(get_ready_service),
) -> JSONResponse:
    return await _answer(
        file, service, "predict", lambda data: service.loaded_batcher().predict(data, file.filename, top_k)
    )


@router.post(
    "/read",
    summary="Read one image as a whole number (1-20 digits on a line), or every field of a form",
    description="Without `template`: the number in the image. With it: a list of field readings, one per "
    "field of the template and page of the file, each with its page number, its box and its digits' boxes "
    "in the page's pixels, and `needs_review` with a reason when a person should check it.",
    responses={200: {"model": ReadingOut | list[FieldReadingOut]}, **READ_ERRORS},
)
async def read(
    file: UploadFile = READ_FILE,
    template: str = TEMPLATE,
    service: Service = Depends(get_ready_service),
) -> JSONResponse:
    if not template:
        return await _answer(file, service, "read", lambda data: _read_number(service, data, file.filename))
    form = _template(template)  # checked before the upload is read: a bad one reads nothing
    data = await read_upload(file, service, "read")
    try:
        readings = await service.read_form(data, form, file.filename)
    except ImageError as exc:
        service.metrics.image_errors.labels("read", str(exc.status)).inc()
        raise
    except ConfigError as exc:  # a field's box is not on this page
        raise Problem(422, "template-does-not-fit", str(exc), title="Template does not fit the page") from None
    for reading in readings:
        service.metrics.count_outcome("read", reading.rejected)
    return JSONResponse([reading.to_dict() for reading in readings])


def _template(text: str) -> Template:
    try:
        return parse_template(text)
    except ConfigError as exc:
        raise Problem(400, "bad-template", str(exc), title="Bad template") from None


async def _read_number(service: Service, data: bytes, name: str | None) -> Reading:
    """A document's pages are form pages: without a template there is nothing to say where to read."""
    kind = document_kind(data)
    if kind:
        raise NotAnImageError(f"{kind} holds form pages: send a page template in the form field 'template'")
    return await service.run_model(service.loaded_recognizer().read, data, name=name)


@router.post(
    "/predict/batch",
    summary="Read several images, each as a single digit",
    description="One entry per file, in order: the prediction, or a problem-details object "
    "(with `file`) for a file that is too large, not an image or unusable.",
    responses={200: {"model": list[PredictionOut | BatchProblemOut]}, **ERRORS},
)
async def predict_batch(
    files: list[UploadFile] = File(
        description="the images, one or more, in a repeated field `files` "
        f"({ServerSettings.max_batch_files} at most unless the server is configured otherwise)",
        json_schema_extra={"items": BINARY, "minItems": 1},
    ),
    top_k: int = TopK,
    service: Service = Depends(get_ready_service),
) -> JSONResponse:
    limit = service.settings.max_batch_files
    if len(files) > limit:
        raise Problem(
            413, "too-many-files", f"a batch may hold at most {limit} files, got {len(files)}", title="Too many files"
        )
    batcher = service.loaded_batcher()

    async def one(file: UploadFile) -> dict[str, Any]:
        try:
            data = await read_upload(file, service, "predict_batch")
            prediction = await batcher.predict(data, file.filename, top_k)
        except Problem as exc:  # this file is over the size limit
            return problem_body(exc.status_code, exc.title, str(exc.detail), problem_type(exc.slug), file=file.filename)
        except ImageError as exc:
            service.metrics.image_errors.labels("predict_batch", str(exc.status)).inc()
            return image_error_body(exc, file=file.filename)
        service.metrics.count_outcome("predict_batch", prediction.rejected)
        return prediction.to_dict()

    # Submitted together, so the micro-batcher answers them in as few model calls as it can.
    return JSONResponse(list(await asyncio.gather(*(one(f) for f in files))))


@router.get("/model", response_model=ModelOut, summary="The model being served: architecture, metrics, checksum")
async def model(service: Service = Depends(get_ready_service)) -> dict[str, Any]:
    return model_info(service)
