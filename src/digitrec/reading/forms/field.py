"""Read the number in one form field: find what is printed there, take it out, read what is left.

`read_field` looks at the field's print first (`digitrec.reading.forms.unrule`):

- a comb (a row of printed boxes, `digitrec.reading.forms.comb`): the boxes are the segmentation.
  Each filled box's crop (the digit alone, its spill over the box's edge included, the print
  painted over) is one digit; all of them go through the model in one batch. Empty boxes are
  skipped; a box whose ink is not shaped like one digit, or that the mark classifier
  (`digitrec.reading.marks`) says is no digit (then no digit is read from it), is flagged with the
  box's number in the reason, and so is a field whose digits are all right with a probability
  (their product) below COMB_FIELD_CONFIDENCE;
- printed lines or a frame (one box alone: "ruled"): the lines are removed and the handwriting alone (on flat
  paper: no trace of a line is left for the reader's own thresholds) is read as a number;
- nothing printed ("plain"): the field is read as a number, as `Recognizer.read` does.

A printed line is never read as a digit: what the remover leaves of the print is not
handwriting, and a field with no handwriting left is rejected ("no digit found") without asking
the model anything.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from PIL import Image
from scipy import ndimage

from digitrec.reading import preprocess as pp
from digitrec.reading.forms.comb import Comb, split_comb
from digitrec.reading.forms.results import NO_DIGIT, FieldReading
from digitrec.reading.forms.rulings import EIGHT
from digitrec.reading.forms.unrule import Cleaned, remove_rulings
from digitrec.reading.recognize import check_single_digit
from digitrec.reading.results import Reading
from digitrec.reading.segment import format_below

if TYPE_CHECKING:
    from digitrec.reading.recognize import Recognizer

FIELD_MAX_SIDE = 2400  # pixels: a larger field image is shrunk first (digits 40-80 px tall need no more)
# A comb field is flagged when the product of its digits' probabilities (each the mean of both
# models) is below this: the chance that every digit is right, were the boxes' errors independent.
# On 300 comb fields of validation digits (`benchmarks/forms.py --split val`), with the print's own
# flags below, 0.90 / 0.95 / 0.97 flagged 12.0 / 14.7 / 16.7% of the fields and left 0.67 / 0.33 /
# 0.33% wrong and not flagged (a box alone below 0.9, the rule before, left 0.67% for 12.3%).
COMB_FIELD_CONFIDENCE = 0.95
# A box with this share of a typical digit's ink on its printed edges, beyond the other boxes', is
# flagged. On the same fields: 5 of the 7 digits hidden under a side are caught, for 1.4% more
# fields flagged (a thin line's width varies by a pixel from box to box).
HIDDEN_SHARE = 0.15
MIN_DIGIT_PX = 8  # a mark less tall is no digit (decode refuses smaller images for the same reason)
MIN_COMB_BOXES = 2  # one printed box alone is a frame around a number, read as a number


def field_gray(image: pp.ImageInput) -> tuple[Image.Image, np.ndarray, float]:
    """(upright decoded image, uint8 grey working image, input pixels per working pixel)."""
    picture = pp.decode(image)
    gray = pp.to_gray(picture)
    scale = max(gray.shape) / FIELD_MAX_SIDE
    if scale > 1:
        size = (max(1, round(gray.shape[1] / scale)), max(1, round(gray.shape[0] / scale)))
        gray = np.asarray(Image.fromarray(gray, "F").resize(size, Image.Resampling.BOX))
    else:
        scale = 1.0
    return picture, np.clip(gray * 255 + 0.5, 0, 255).astype(np.uint8), scale


def read_field(
    recognizer: Recognizer, image: pp.ImageInput, name: str | None = None, field: str | None = None
) -> FieldReading:
    """Read the number in a form field image (a comb, a ruled line, a frame or plain paper).
    Raises NotAnImageError / BadImageError for unusable input, as `Recognizer.read` does."""
    picture, gray, scale = field_gray(image)
    cleaned = remove_rulings(gray)
    comb = split_comb(gray, cleaned)
    if comb is not None and len(comb.boxes) >= MIN_COMB_BOXES:
        out = read_comb(recognizer, comb, name=name, field=field)
    elif cleaned.rulings.lines:
        out = read_ruled(recognizer, cleaned, name=name, field=field)
    else:
        reading = recognizer.read(picture, name=name)
        return from_reading(reading, layout="plain", field=field)
    return _scaled(out, scale) if scale != 1 else out


def _scaled(reading: FieldReading, scale: float) -> FieldReading:
    """Working-image boxes -> the input image's pixels."""
    for d in reading.digits:
        x0, y0, x1, y1 = d["box"]
        d["box"] = [int(x0 * scale), int(y0 * scale), int(np.ceil(x1 * scale)), int(np.ceil(y1 * scale))]
    return reading


def nothing_read(layout: str, name: str | None, field: str | None) -> FieldReading:
    return FieldReading(file=name, field=field, layout=layout, text="", rejected=True, reason=NO_DIGIT)


# --- a comb: one digit or nothing per box -----------------------------------------------------------------


def box_digits(
    crops: list[np.ndarray], blob_rule: bool = True
) -> tuple[list[np.ndarray | None], list[np.ndarray | None], list[str | None]]:
    """Each box's crop -> (its 28x28 digit or None, the 28x28 the mark classifier judges (a
    marker's not thinned), why it is not plainly one digit or None).
    A crop that is not shaped like one digit is still made into a digit when it has ink: the
    model's guess is shown to the person checking it. `blob_rule` False leaves filled blobs to
    the mark classifier (the filled-area rule also refuses felt-tip digits)."""
    digits: list[np.ndarray | None] = []
    as_written: list[np.ndarray | None] = []
    reasons: list[str | None] = []
    for crop in crops:
        prepared = pp.prepare_digit(crop)
        digits.append(prepared.digit28)
        as_written.append(prepared.marks28)
        shape = check_single_digit(prepared, blob_rule=blob_rule) if prepared.digit28 is not None else None
        reasons.append(prepared.reason or shape)
    return digits, as_written, reasons


def box_probabilities(recognizer: Recognizer, digits28: list[np.ndarray]) -> np.ndarray:
    """(B, 10): the mean of the recogniser's model and its reading model (when it has another
    one). On validation digits the two disagree on most of what either gets wrong, so their mean
    is less often confidently wrong than either."""
    probabilities = recognizer.probabilities(digits28)
    reader = recognizer.reader
    return probabilities if reader is recognizer else (probabilities + reader.probabilities(digits28)) / 2


def read_comb(recognizer: Recognizer, comb: Comb, name: str | None = None, field: str | None = None) -> FieldReading:
    """One digit per filled box, all boxes through the models in one batch. A box the mark
    classifier says holds no digit (a blob, a scribble, a crossed-out digit) gives no digit; the
    field's confidence is the product of its digits' probabilities. Boxes are numbered from 1 in
    the reasons given (`box_index` counts from 0)."""
    out = FieldReading(file=name, field=field, layout="comb", text="")
    filled = [(b.index, b.crop, b.ink_box) for b in comb.filled if b.crop is not None and b.ink_box is not None]
    digits28, as_written, reasons = box_digits([crop for _, crop, _ in filled], blob_rule=recognizer.marks is None)
    usable = [d for d in digits28 if d is not None]
    probabilities = iter(box_probabilities(recognizer, usable) if usable else [])
    marks = iter(recognizer.expected_digit_opinions([w for w in as_written if w is not None]).reasons)
    least: tuple[float, int, int] | None = None  # the least sure digit: (probability, box, digit)
    field_probability = 1.0
    for (index, _, ink_box), digit28, reason in zip(filled, digits28, reasons):
        row = next(probabilities) if digit28 is not None else None
        mark = next(marks) if digit28 is not None else None
        digit = int(np.argmax(row)) if row is not None and mark is None else None
        confidence = float(np.max(row)) if digit is not None and row is not None else 0.0
        out.digits.append({"digit": digit, "confidence": confidence, "box": list(ink_box), "box_index": index})
        if reason or mark:
            out.flag(f"box {index + 1}: {reason or mark}")
        if digit is None:
            continue
        out.text += str(digit)
        field_probability *= confidence
        least = min(least, (confidence, index, digit)) if least is not None else (confidence, index, digit)
    if least is not None and field_probability < COMB_FIELD_CONFIDENCE:
        value, bound = format_below(field_probability, COMB_FIELD_CONFIDENCE)
        out.flag(
            f"the field is right with probability {value} only, below {bound} "
            f"(least sure: box {least[1] + 1}, digit {least[2]} at {least[0]:.3f})"
        )
    _hidden_ink(comb, out)
    _unboxed_print(comb, out)
    if not out.text:
        out.rejected, out.reason = True, NO_DIGIT if not out.reason else f"{NO_DIGIT}; {out.reason}"
    return out


def _hidden_ink(comb: Comb, out: FieldReading) -> None:
    """Flag the boxes with much more ink on their printed edges than the others: handwriting
    lying along the print (a "1" written against a side) is taken away with it, and a box would
    silently read as empty, or a 0 as a 6. (A comb with no digit is rejected anyway: a thin
    line's ink varies by a pixel's width from box to box, and there is no digit to measure by.)"""
    filled = [b.ink_pixels for b in comb.filled]
    if not filled:
        return
    typical = float(np.median(filled))
    for box in comb.boxes:
        if box.edge_ink >= HIDDEN_SHARE * typical:
            out.flag(f"box {box.index + 1}: handwriting on its printed edge")


def _unboxed_print(comb: Comb, out: FieldReading) -> None:
    """Flag a comb whose top or bottom line runs on past the boxes found by half a box or more: a
    side hidden under a digit (a "1" written over it) can cost the row a box, and the digits
    would be read into the wrong boxes."""
    interiors = [b.interior for b in comb.boxes]
    top, bottom = min(b[1] for b in interiors), max(b[3] for b in interiors)
    left, right = interiors[0][0], interiors[-1][2]
    width = float(np.median([b[2] - b[0] for b in interiors]))
    reach = width / 2
    for line in comb.cleaned.rulings.horizontal:
        y = line.at((line.start + line.end) / 2)
        if top - reach <= y <= bottom + reach and (line.start < left - reach or line.end > right + reach):
            out.flag("the printed row runs on past the boxes found: a box may be hidden")
            return


# --- ruled lines and frames: remove the print, read the rest as a number --------------------------------


def handwriting_only(cleaned: Cleaned) -> np.ndarray:
    """The handwriting (with a pixel of its blurred edge) on flat paper: everything that is not
    handwriting, the removed print's faint traces included, painted with the paper's brightness."""
    near = ndimage.binary_dilation(cleaned.hand, EIGHT)
    paper = np.clip(cleaned.rulings.paper * 255 + 0.5, 0, 255).astype(np.uint8)
    return np.where(near, cleaned.image, paper)


def read_ruled(
    recognizer: Recognizer, cleaned: Cleaned, name: str | None = None, field: str | None = None
) -> FieldReading:
    if not cleaned.hand.any():
        return nothing_read("ruled", name, field)
    reading = recognizer.read(handwriting_only(cleaned), name=name)
    return from_reading(reading, layout="ruled", field=field)


def from_reading(reading: Reading, layout: str, field: str | None = None) -> FieldReading:
    """A number read by `Recognizer.read` as a field's reading ("no digit found" when nothing was).
    Marks less than MIN_DIGIT_PX tall are no digits (the dots of a dotted line too faint to be
    found as print): a rejected reading does not list them, an accepted one is flagged."""
    digits = [dict(d) for d in reading.digits]
    tiny = [d for d in digits if d["box"][3] - d["box"][1] < MIN_DIGIT_PX]
    if reading.rejected:
        digits = [d for d in digits if d not in tiny]
    if not digits and not reading.text:
        empty = NO_DIGIT if reading.reason in (None, "no ink found") or tiny else reading.reason
        return FieldReading(file=reading.file, field=field, layout=layout, text="", rejected=True, reason=empty)
    out = FieldReading(
        file=reading.file,
        field=field,
        layout=layout,
        text=reading.text,
        digits=digits,
        needs_review=reading.needs_review,
        rejected=reading.rejected,
        reason=reading.reason,  # the reader gives a reason with every needs_review
    )
    if tiny and not reading.rejected:
        out.flag(f"{len(tiny)} marks read as digits are less than {MIN_DIGIT_PX} pixels tall")
    return out
