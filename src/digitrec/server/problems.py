"""Every error the service answers with, in one JSON shape: RFC 9457 problem details.

A problem is ``{"type", "title", "status", "detail", "instance"}`` served as
``application/problem+json``. Our own problem types are URNs (``urn:digitrec:problem:<slug>``) so a
client can branch on them without parsing prose; plain HTTP errors (404, 405) use ``about:blank``
as the RFC suggests. Bad input is always a 4xx; a 500 means a bug and is logged with its traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from digitrec.errors import DigitrecError, ImageError, NotAnImageError

PROBLEM_JSON = "application/problem+json"
log = logging.getLogger("digitrec.server")


def problem_type(slug: str) -> str:
    return f"urn:digitrec:problem:{slug}"


class Problem(StarletteHTTPException):
    """An HTTP error with a problem type. Subclasses HTTPException so FastAPI re-raises it
    unchanged when it happens while parsing the request body (e.g. an upload over the limit)."""

    def __init__(
        self, status: int, slug: str, detail: str, title: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(status_code=status, detail=detail, headers=headers)
        self.slug = slug
        self.title = title or HTTPStatus(status).phrase


def upload_too_large(detail: str) -> Problem:
    # Connection: close, since the rest of an oversized body is left unread.
    return Problem(413, "upload-too-large", detail, title="Upload too large", headers={"Connection": "close"})


def format_bytes(n: int) -> str:
    if n >= 1024 * 1024 and n % (1024 * 1024) == 0:
        return f"{n // (1024 * 1024)} MB"
    if n >= 1024 and n % 1024 == 0:
        return f"{n // 1024} KB"
    return f"{n} bytes"


def problem_body(
    status: int, title: str, detail: str, type_: str = "about:blank", instance: str | None = None, **extra: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {"type": type_, "title": title, "status": status, "detail": detail}
    if instance is not None:
        body["instance"] = instance
    body.update(extra)
    return body


def problem_response(body: dict[str, Any], headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body, status_code=body["status"], media_type=PROBLEM_JSON, headers=headers)


def image_error_body(exc: ImageError, instance: str | None = None, **extra: Any) -> dict[str, Any]:
    """415 for bytes that are no image format we read, 422 for an unusable image."""
    if isinstance(exc, NotAnImageError):
        slug, title = "not-an-image", "Not an image"
    else:
        slug, title = "bad-image", "Unusable image"
    return problem_body(exc.status, title, str(exc), problem_type(slug), instance, **extra)


def _problem_handler(request: Request, exc: Problem) -> JSONResponse:
    body = problem_body(exc.status_code, exc.title, str(exc.detail), problem_type(exc.slug), request.url.path)
    return problem_response(body, exc.headers)


def _http_handler(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    status = exc.status_code
    phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    detail = exc.detail if isinstance(exc.detail, str) else phrase
    if status == 400 and detail == "There was an error parsing the body":
        detail = "the request body is not valid multipart/form-data"
    return problem_response(problem_body(status, phrase, detail, instance=request.url.path), exc.headers)


def _validation_handler(request: Request, exc: RequestValidationError) -> JSONResponse:
    # Only location, message and type: the offending input may be bytes or an UploadFile.
    errors = [
        {
            "loc": [str(part) for part in err.get("loc", ())],
            "msg": str(err.get("msg", "")),
            "type": str(err.get("type", "")),
        }
        for err in exc.errors()
    ]
    detail = "; ".join(f"{'.'.join(e['loc'])}: {e['msg']}" for e in errors)
    if any(e["loc"][:1] == ["body"] for e in errors):
        detail = f"send the image as multipart/form-data in a field named 'file' (or 'files' for a batch) ({detail})"
    body = problem_body(
        422, "Invalid request", detail, problem_type("invalid-request"), request.url.path, errors=errors
    )
    return problem_response(body)


def _image_error_handler(request: Request, exc: ImageError) -> JSONResponse:
    return problem_response(image_error_body(exc, request.url.path))


def _digitrec_error_handler(request: Request, exc: DigitrecError) -> JSONResponse:
    return problem_response(problem_body(400, "Bad request", str(exc), problem_type("bad-request"), request.url.path))


def _internal_error_handler(request: Request, exc: Exception) -> JSONResponse:
    # Starlette re-raises after this response, so uvicorn still logs the traceback.
    return problem_response(
        problem_body(
            500,
            "Internal Server Error",
            "an unexpected error happened on the server; it has been logged",
            problem_type("internal-error"),
            request.url.path,
        )
    )


# Each handler takes the exception class it is registered for; Starlette's signature says
# `Exception` for all of them, hence `Any` here rather than a cast at every registration.
_HANDLERS: list[tuple[type[Exception], Callable[[Request, Any], JSONResponse]]] = [
    (Problem, _problem_handler),
    (StarletteHTTPException, _http_handler),
    (RequestValidationError, _validation_handler),
    (ImageError, _image_error_handler),
    (DigitrecError, _digitrec_error_handler),
    (Exception, _internal_error_handler),
]


def install_problem_handlers(app: FastAPI) -> None:
    for exc_class, handler in _HANDLERS:
        app.add_exception_handler(exc_class, handler)
