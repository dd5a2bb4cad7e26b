"""Schemathesis hooks for test_schemathesis.py, loaded through its config (in process and by the CLI).

No JSON Schema can say that a file's bytes must be an image the server decodes: a schema-valid
upload of other bytes is answered 415 (not an image) or 422 (a broken image), as the document
lists, and the positive-data check (ST202) would call that a valid request rejected. This hook
drops exactly that failure: a 415/422 whose problem is about the image, for a request whose every
file has at least one byte. Likewise, a `template` form field is JSON text whose contents (fields,
boxes on the page) no JSON Schema for a string can describe: a 400 (a template that is not valid)
or 422 (a field off the page) about the template of a request that sends one is dropped too.
Anything else stays a failure: an empty file, a missing `files` part or a bad parameter refused
while the document allows it is what the check is for.
"""

from __future__ import annotations

from typing import Any

import schemathesis

SCHEMA_VALID_REQUEST_REJECTED = "ST202"  # schemathesis' code for the positive-data check
IMAGE_PROBLEMS = ("urn:digitrec:problem:not-an-image", "urn:digitrec:problem:bad-image")
TEMPLATE_PROBLEMS = {400: "urn:digitrec:problem:bad-template", 422: "urn:digitrec:problem:template-does-not-fit"}


def _files(body: Any) -> list[Any]:
    """The file parts of a multipart body as schemathesis holds it: {"file": x} or {"files": [x, ...]}."""
    if not isinstance(body, dict):
        return []
    one = [body["file"]] if "file" in body else []
    many = body.get("files") or []
    return one + (many if isinstance(many, list) else [many])


def _size(part: Any) -> int:
    data = getattr(part, "data", part)  # schemathesis may wrap raw bytes
    return len(data) if isinstance(data, (bytes, bytearray, str)) else 0


@schemathesis.hook
def filter_failure(context: Any, failure: Any, case: Any, response: Any) -> bool:
    """False (drop) only for a valid request whose non-empty file is not a usable image, or whose
    template is not one for that file."""
    if getattr(failure, "code", None) != SCHEMA_VALID_REQUEST_REJECTED or response.status_code not in (400, 415, 422):
        return True
    try:
        problem = response.json()
    except ValueError:
        return True
    if isinstance(problem, dict) and problem.get("type") == TEMPLATE_PROBLEMS.get(response.status_code):
        return not (isinstance(case.body, dict) and case.body.get("template") is not None)
    files = _files(case.body)
    about_the_image = isinstance(problem, dict) and problem.get("type") in IMAGE_PROBLEMS
    return not (about_the_image and files and all(_size(part) > 0 for part in files))
