"""What reading a form field hands back: `FieldReading`, a `Reading` that knows its field.

A field is read by `digitrec.reading.forms.field.read_field` (one image) or
`digitrec.reading.forms.page.read_page` (the fields of a page template). Its JSON object (the
CLI's `--json` line, the API's body) is its dataclass fields in the order declared here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from digitrec.reading.results import Answer

LAYOUTS = ("comb", "ruled", "plain")
NO_DIGIT = "no digit found"


@dataclass
class FieldReading(Answer):
    """A number read from one form field.

    `layout` is what was found printed in the field: "comb" (a row of boxes, one digit or
    nothing per box), "ruled" (printed lines or a frame, removed before reading) or "plain" (no
    print). `digits` lists {digit, confidence, box: [x0, y0, x1, y1]} left to right, boxes in
    the pixels of the image handed in (of the page for `read_page`; x1/y1 exclusive); a comb's
    digits also carry `box_index`, the printed box they were written in (0 = leftmost), so a
    blank box between two digits shows as a gap in the indices. `digit` may be None for a box
    whose ink could not be read as any digit (flagged, left out of `text`). `page` numbers the
    page of a document the field is on (None for a single image), and `box` is the field's own
    box on that page, [x0, y0, x1, y1] (None when the field was read alone, by `read_field`).
    """

    file: str | None
    field: str | None
    layout: str
    text: str
    digits: list[dict] = dataclasses.field(default_factory=list)
    needs_review: bool = False
    rejected: bool = False
    reason: str | None = None
    page: int | None = None  # of a document (`read_document`), from 1
    box: list[int] | None = None  # the field's box on the page (`read_page`), in the page's pixels

    def flag(self, reason: str) -> None:
        """Ask for a person's look, keeping the reasons already given (joined with "; ")."""
        self.needs_review = True
        self.reason = reason if not self.reason else f"{self.reason}; {reason}"

    def shifted(self, dx: int, dy: int) -> FieldReading:
        """The same reading with its boxes moved by (dx, dy): a field's pixels -> the page's."""
        moved = [
            {**d, "box": [d["box"][0] + dx, d["box"][1] + dy, d["box"][2] + dx, d["box"][3] + dy]} for d in self.digits
        ]
        return dataclasses.replace(self, digits=moved)
