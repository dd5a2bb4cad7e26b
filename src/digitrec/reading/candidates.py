"""A line of writing cut into candidate digits, before any model has looked at it.

The ink is found as for one digit, split into pieces and made into atoms (`digitrec.reading.atoms`);
every run of 1 to `MAX_RUN` neighbouring atoms that could be one digit is a candidate, made into its
28x28 image like any digit. The candidates depend on the picture alone, so training data for the
reading model and the one-digit checker is cut out with `cut_line` (`digitrec.making.cutouts`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from digitrec.reading.atoms import FRAGMENT_HEIGHT, Atom, build_atoms, line_height
from digitrec.reading.decode import ImageInput
from digitrec.reading.ink import Ink, extract_ink
from digitrec.reading.pieces import box_union, digit_ink, pieces
from digitrec.reading.preprocess import stroke_normalised

READ_MAX_SIDE = 1600  # working resolution for a line: 20 digits keep ~50 pixels each
MAX_DIGITS = 20
MAX_RUN = 8  # atoms that may form one digit
MAX_DIGIT_WIDTH = 1.8  # a candidate digit wider than this (line heights) is not considered
FLAT_WIDTH = 0.5  # a short atom at least this wide (line heights) may be a flat digit on its own
# (MNIST has "0"s twice as wide as tall; written no wider than the others, they come out short)


@dataclass
class LineAnalysis:
    """Everything about a line that does not depend on the decoding weights: the atoms and every
    candidate digit (a run of atoms) with its box, class probabilities and geometry."""

    ink: Ink
    height: float
    atoms: list[Atom]
    spans: list[tuple[int, int]]  # candidate digits: atoms i..j
    boxes: list[tuple[int, int, int, int]]  # working pixels, per span
    probs: np.ndarray  # (len(spans), 10)
    reason: str | None = None  # why the line is rejected before decoding
    one_digit: np.ndarray | None = None  # (len(spans),) the checker's log-odds of exactly one digit
    digits28: list[np.ndarray] | None = None  # (28, 28) per span, when asked for (training the checker)
    atom_labels: np.ndarray | None = None  # (H, W) atom ids at working resolution: cuts candidates out
    geometry: list[dict[str, float]] | None = None  # per span, the features no model is needed for
    thinned: np.ndarray | None = None  # (len(spans),) bool: a marker's strokes thinned (`candidate_images`)


def rejected_line(ink: Ink, height: float, reason: str) -> LineAnalysis:
    """A line rejected before any candidate digit was made."""
    return LineAnalysis(ink=ink, height=height, atoms=[], spans=[], boxes=[], probs=np.zeros((0, 10)), reason=reason)


def is_stray(run: list[Atom], box: tuple[int, int, int, int], height: float) -> bool:
    """Stray marks alone are not a digit (but a flat "0", short and wide, may be)."""
    return (
        all(a.small for a in run)
        and (box[3] - box[1]) < FRAGMENT_HEIGHT * height
        and box[2] - box[0] < FLAT_WIDTH * height
    )


def cut_line(image: ImageInput) -> LineAnalysis:
    """The model-free part of reading a line: find the ink, build the atoms, and make every
    candidate digit (a run of atoms) into its 28x28 image (`digits28`); `probs` is left empty.
    The candidates' images depend on the picture alone, so training data for the reading model
    and the checker is cut out with this (`digitrec.making.cutouts`)."""
    line = line_candidates(image)
    if not line.reason:
        line.digits28, thinned = candidate_images(line, range(len(line.spans)))
        line.thinned = np.array(thinned, bool)
        line.atom_labels = None  # what the images were cut from: not kept with many lines in memory
    return line


def line_candidates(image: ImageInput) -> LineAnalysis:
    """`cut_line` without the candidates' images: the ink, the atoms, and every candidate digit's
    span and box (`candidate_images` makes the images of those a reader wants)."""
    ink = extract_ink(image, READ_MAX_SIDE)
    if not ink.found:
        return rejected_line(ink, 0.0, "no ink found")
    labels, found = pieces(ink.mask)
    if not found:
        return rejected_line(ink, 0.0, "no ink found")
    height = line_height(found)
    atom_labels, atoms, reason = build_atoms(labels, found, height)
    if reason:
        return rejected_line(ink, height, reason)
    if len({a.piece for a in atoms if not a.small}) > 3 * MAX_DIGITS:  # pieces: cuts make many atoms
        return rejected_line(ink, height, f"far more than {MAX_DIGITS} digits")
    n = len(atoms)
    spans, boxes = [], []
    for i in range(n):
        for j in range(i, min(n, i + MAX_RUN)):
            box = box_union([a.box for a in atoms[i : j + 1]])
            if j > i and box[2] - box[0] > MAX_DIGIT_WIDTH * height:
                break
            if is_stray(atoms[i : j + 1], box, height):
                continue
            spans.append((i, j))
            boxes.append(box)
    return LineAnalysis(
        ink=ink, height=height, atoms=atoms, spans=spans, boxes=boxes, probs=np.zeros((0, 10)), atom_labels=atom_labels
    )


def candidate_images(line: LineAnalysis, which: Iterable[int]) -> tuple[list[np.ndarray], list[bool]]:
    """The 28x28 images of the candidates `which` (indices into `line.spans`), as any digit's, and
    whether each one's strokes were a marker's, thinned for it (`preprocess.stroke_normalised`)."""
    assert line.atom_labels is not None, "a line from line_candidates"
    images, thinned = [], []
    for k in which:
        (i, j), box = line.spans[k], line.boxes[k]
        crop, _ = digit_ink(line.ink.ink, line.atom_labels, [a.id for a in line.atoms[i : j + 1]], box)
        image, was_thinned = stroke_normalised(crop)
        images.append(image)
        thinned.append(was_thinned)
    return images, thinned
