"""Response shapes, for the OpenAPI document only.

Routes return `Prediction.to_dict()` / `Reading.to_dict()` as they are (the same objects
`digitrec predict --json` and `digitrec read --json` print), so these models describe the JSON
but never filter or reshape it; a test checks they list exactly the same fields.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class Candidate(BaseModel):
    digit: int = Field(ge=0, le=9)
    probability: float = Field(ge=0, le=1)


class PredictionOut(BaseModel):
    """One image read as a single digit, or rejected as not a digit."""

    file: str | None = Field(description="the uploaded file's name")
    digit: int | None = Field(description="0-9, or null when rejected")
    confidence: float = Field(description="calibrated probability of `digit` (of the best guess when rejected)")
    top_k: list[Candidate] = Field(description="the most likely digits, best first")
    rejected: bool = Field(description="true when the image is not (confidently) a digit")
    reason: str | None = Field(description="why it was rejected ('no ink found', 'low confidence', ...)")


class DigitOut(BaseModel):
    digit: int = Field(ge=0, le=9)
    confidence: float
    box: list[int] = Field(
        description="[x0, y0, x1, y1] in the input image's pixel coordinates", min_length=4, max_length=4
    )


class ReadingOut(BaseModel):
    """One image read as a whole number written on a line."""

    file: str | None
    text: str | None = Field(description="the number as a string of digits")
    digits: list[DigitOut] = Field(description="each digit, left to right, with its box")
    needs_review: bool = Field(
        description="true when a person should check it: a digit is read below the review confidence, or "
        "another reading of the number scores close to this one (`reason` says which)"
    )
    rejected: bool
    reason: str | None = Field(
        description="why it needs review (e.g. 'digit 7 (position 6) read at 0.991, below 0.995' or 'could also "
        "be read as 4096321 (margin 4.94 < 5.30)') or was rejected; null only for a clean reading"
    )


class FieldDigitOut(BaseModel):
    digit: int | None = Field(ge=0, le=9, description="null for a comb box whose ink is no digit (flagged)")
    confidence: float
    box: list[int] = Field(description="[x0, y0, x1, y1] in the page's pixels", min_length=4, max_length=4)
    box_index: int | None = Field(
        None, ge=0, description="comb fields only: the printed box the digit is in (0 = leftmost)"
    )


class FieldReadingOut(BaseModel):
    """One field of a form page (`/v1/read` with a `template`), read as a number."""

    file: str | None
    field: str | None = Field(description="the field's name in the template")
    layout: str = Field(
        description="what is printed in the field: comb (a row of boxes), ruled (lines, a frame) or plain"
    )
    text: str = Field(description="the digits read, left to right (empty when nothing was read)")
    digits: list[FieldDigitOut] = Field(description="each digit, left to right, with its box on the page")
    needs_review: bool = Field(
        description="true when a person should check it: a digit is uncertain, printed structure could not be "
        "explained, or the count differs from the template's length"
    )
    rejected: bool = Field(description="true when no number could be read from the field")
    reason: str | None = Field(description="why it needs review or was rejected")
    page: int | None = Field(description="the page the field is on, from 1 (a PDF or TIFF may hold several)")
    box: list[int] | None = Field(description="the field's box on the page, [x0, y0, x1, y1] in pixels")


class ProblemOut(BaseModel):
    """RFC 9457 problem details (`application/problem+json`)."""

    type: str = Field(description="urn:digitrec:problem:<slug>, or about:blank for plain HTTP errors")
    title: str
    status: int
    detail: str
    instance: str | None = None


class BatchProblemOut(ProblemOut):
    file: str | None = Field(description="the file this error is about")


class ModelOut(BaseModel):
    arch: str
    arch_kwargs: dict[str, Any]
    metrics: dict[str, Any] = Field(description="validation and test metrics stored in the checkpoint")
    weights_sha256: str | None
    version: str = Field(description="digitrec version serving the model")
    backend: str
    temperature: float = Field(description="softmax temperature from calibration (1.0 when uncalibrated)")
    model_path: str | None


class Health(BaseModel):
    status: str
