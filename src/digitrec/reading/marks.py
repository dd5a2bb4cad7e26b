"""The mark classifier's side of reading: what a 28x28 mark is, when it is not a digit.

The shape rules of `digitrec.reading.recognize` judge ink by its geometry; a filled blob and a
felt-tip `1` or a closed-up `8` have the same geometry (much ink in a small box). The mark
classifier (`weights/marks.pt`, made by `digitrec.making.marks`) is a small CNN that looks at the
same 28x28 image the digit model sees and says which kind of mark it is: a digit, or one of the
kinds of non-digit the project renders (`digitrec.making.negatives`). A picture is rejected when
the classifier's probability of "digit" is below the threshold stored with it, and the reason
names the kind it most looks like.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MARK_CLASSES = ("digit", "blob", "scribble", "crossed", "line", "letter", "noise")
REASONS = {
    "blob": "a filled blob or smudge, not a written digit",
    "scribble": "a scribble or drawing, not a written digit",
    "crossed": "crossed out, not a written digit",
    "line": "a line or dash, not a written digit",
    "letter": "a letter or printed text, not a digit",
    "noise": "specks or noise, not a written digit",
}
DEFAULT_DIGIT_THRESHOLD = 0.5  # a mark classifier without a stored threshold
# Where a digit is expected (a digit of a number `read` found, a form's comb box), a mark is refused
# only below this p(digit), or the classifier's own threshold if lower: the classifier must be
# surer there. On 300 comb fields of validation digits, 0.01 lost no field that the models read
# right (the shipped classifier's own 0.18 lost 4), and on 600 numbers of validation digits it
# flagged none read right, while it refuses 72% of validation letters and 80% of blobs.
EXPECTED_DIGIT_THRESHOLD = 0.01


@dataclass(frozen=True)
class MarkOpinions:
    """What the mark classifier says of some 28x28 images."""

    reasons: list[str | None]  # per image: why it is no digit, or None
    digit: tuple[float, ...] = ()  # per image: its probability of "digit" (empty without a classifier)


def mark_reasons(probabilities: np.ndarray, threshold: float) -> list[str | None]:
    """(B, len(MARK_CLASSES)) probabilities -> per image the reason to reject it (the most likely
    kind of non-digit) or None when it is likely enough a digit."""
    reasons: list[str | None] = []
    for row in probabilities:
        if row[0] >= threshold:
            reasons.append(None)
        else:
            reasons.append(REASONS[MARK_CLASSES[1 + int(np.argmax(row[1:]))]])
    return reasons
