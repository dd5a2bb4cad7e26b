"""Step 6b of preprocessing: the ink's connected pieces, and which of them make one digit.

``pieces`` labels the ink mask and drops specks and ruled lines; ``group_digit`` takes the largest
piece with the pieces near it (a 5's cap, a broken stroke) as the digit of a one-digit picture;
``digit_ink`` cuts the ink of chosen pieces out, with nothing of their neighbours.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from digitrec.reading import ndexact as nx

EIGHT = np.ones((3, 3), bool)  # 8-connectivity: diagonal pixels of a thin slanted stroke touch
SPECK_FRACTION = 0.02  # pieces smaller than this fraction of the largest piece are specks
LINE_ASPECT = 12.0  # a piece this many times wider than tall, spanning the frame, is a ruled line


@dataclass(frozen=True)
class Piece:
    """One connected piece of ink: label in the label image, box (x0, y0, x1, y1) exclusive."""

    label: int
    box: tuple[int, int, int, int]
    area: int

    @property
    def width(self) -> int:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> int:
        return self.box[3] - self.box[1]


def pieces(mask: np.ndarray, lines: bool = False) -> tuple[np.ndarray, list[Piece]]:
    """Connected pieces of the ink mask, without specks (dust, noise) and without ruled lines
    (long thin horizontal pieces spanning most of the frame; `lines` keeps them: a crop of a
    frame, where a digit's own bar may span the crop). Returns (labels (H, W), pieces)."""
    labels, n = ndimage.label(mask, structure=EIGHT)
    if n == 0:
        return labels, []
    slices = ndimage.find_objects(labels)
    areas = np.bincount(labels.ravel(), minlength=n + 1)
    h, w = mask.shape
    found = []
    for label, sl in enumerate(slices, start=1):
        y0, y1, x0, x1 = sl[0].start, sl[0].stop, sl[1].start, sl[1].stop
        found.append(Piece(label=label, box=(x0, y0, x1, y1), area=int(areas[label])))
    largest = max(p.area for p in found)
    kept = []
    for p in found:
        if p.area < max(3, SPECK_FRACTION * largest):
            continue
        if not lines and p.width > 0.7 * w and p.width > LINE_ASPECT * p.height:
            continue  # a ruled line (a tall thin vertical piece may well be a "1")
        kept.append(p)
    return labels, kept


def pieces_over(labels: np.ndarray, found: list[Piece], under: np.ndarray) -> list[Piece]:
    """The pieces of `found` (labelled in `labels`) with at least one pixel where `under` is True."""
    touched = np.zeros(int(labels.max()) + 1, bool)
    touched[labels[under]] = True
    return [p for p in found if touched[p.label]]


def box_union(boxes: list[tuple[int, int, int, int]]) -> tuple[int, int, int, int]:
    return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))


def box_gap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """Distance between two boxes (0 when they touch or overlap)."""
    dx = max(0, max(a[0], b[0]) - min(a[2], b[2]))
    dy = max(0, max(a[1], b[1]) - min(a[3], b[3]))
    return float(np.hypot(dx, dy))


def digit_ink(
    ink: np.ndarray, labels: np.ndarray, label_ids: list[int], box: tuple[int, int, int, int], halo: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """The ink of the pieces `label_ids` only, cropped to `box` grown by a halo (the soft stroke
    edge just outside the mask). Ink of other pieces and of the noise floor is zeroed.
    Returns (ink crop, mask crop)."""
    h, w = ink.shape
    x0, y0, x1, y1 = max(0, box[0] - halo), max(0, box[1] - halo), min(w, box[2] + halo), min(h, box[3] + halo)
    lab = labels[y0:y1, x0:x1]
    # np.isin(lab, label_ids), by table look-up
    wanted = np.zeros(max(int(lab.max()), *label_ids, 0) + 1, bool)
    wanted[list(label_ids)] = True
    wanted[0] = 0 in label_ids
    mask = wanted[lab]
    keep = nx.dilate_square(mask, halo)
    keep &= ~((lab > 0) & ~mask)  # never another piece's ink
    return np.where(keep, ink[y0:y1, x0:x1], 0).astype(np.float32), mask


GROUP_REACH = 0.3  # pieces this close (fraction of the digit's size) belong to the same digit


def group_digit(found: list[Piece]) -> tuple[list[Piece], list[Piece]]:
    """Split pieces into (the digit, the rest): start from the largest piece and take in pieces
    whose box lies within GROUP_REACH of the growing digit's size (a 5's cap, a broken stroke)."""
    if not found:
        return [], []
    rest = sorted(found, key=lambda p: -p.area)
    chosen = [rest.pop(0)]
    box = chosen[0].box
    grew = True
    while grew and rest:
        grew = False
        reach = GROUP_REACH * max(box[2] - box[0], box[3] - box[1])
        for p in sorted(rest, key=lambda p: box_gap(box, p.box)):
            if box_gap(box, p.box) <= reach:
                chosen.append(p)
                rest.remove(p)
                box = box_union([box, p.box])
                grew = True
                break
    return chosen, rest
