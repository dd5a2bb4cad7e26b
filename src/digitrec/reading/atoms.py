"""A line's pieces of ink made into atoms: pieces that belong to one digit merged, wide ones cut.

A fragment (much shorter than the line, e.g. a 5's cap or a broken stroke) joins the full-height
piece it overlaps horizontally: two digits on one line never sit one above the other. A wide piece
may be touching digits: it is cut along its candidate seams (`digitrec.reading.seams`), and
segmentation later decides which of the parts to join again.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from digitrec.reading.pieces import Piece, box_union
from digitrec.reading.preprocess import stroke_width
from digitrec.reading.seams import candidate_cuts, cuts_of_pieces

FRAGMENT_HEIGHT = 0.6  # pieces shorter than this fraction of the line height are fragments
FRAGMENT_OVERLAP = 0.3  # ... and join the piece that covers this much of their width
OFF_LINE = 1.0  # pieces whose centre is this many line heights from the line's centre are off it
SPLIT_WIDTH = 0.45  # pieces wider than this (fraction of line height) get candidate cuts
FULL_HEIGHT = 0.75  # pieces at least this tall (fraction of the line) are whole digits, usually


@dataclass
class Atom:
    """A piece of ink that is part of at most one digit. box is (x0, y0, x1, y1), exclusive."""

    id: int  # label in the atom label image
    box: tuple[int, int, int, int]
    small: bool  # much shorter than the line (a fragment or a stray mark)
    piece: int = 0  # the connected piece (with its fragments) this atom was cut from
    full: bool = False  # nearly as tall as the line
    cut_strokes: float = 0.0  # strokes crossed by the cut that separates it from its left neighbour

    @property
    def centre_x(self) -> float:
        return (self.box[0] + self.box[2]) / 2


def line_height(found: list[Piece]) -> float:
    """Typical digit height: the median height of the pieces at least half as tall as the tallest."""
    tallest = max(p.height for p in found)
    return float(np.median([p.height for p in found if p.height >= 0.5 * tallest]))


def x_overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> int:
    return max(0, min(a[2], b[2]) - max(a[0], b[0]))


def internal_gap(atoms: list[Atom]) -> int:
    """Widest horizontal stretch, inside the span of these atoms, covered by none of them."""
    spans = sorted((a.box[0], a.box[2]) for a in atoms)
    gap, reach = 0, spans[0][1]
    for x0, x1 in spans[1:]:
        gap = max(gap, x0 - reach)
        reach = max(reach, x1)
    return gap


def group_pieces(found: list[Piece], height: float) -> dict[int, list[Piece]] | str:
    """Pieces -> {atom id: its pieces} (ids from 1, a fragment with the piece it overlaps; stray
    marks above or below the line left out), or why the line is rejected."""
    full = [p for p in found if p.height >= FRAGMENT_HEIGHT * height]
    centre_y = float(np.median([(p.box[1] + p.box[3]) / 2 for p in full]))
    owner: dict[int, int] = {}  # piece label -> atom id
    groups: dict[int, list[Piece]] = {}
    for p in sorted(found, key=lambda p: -p.height):  # tallest first: fragments find their hosts
        off = abs((p.box[1] + p.box[3]) / 2 - centre_y) > OFF_LINE * height
        if off:
            if p.height >= FRAGMENT_HEIGHT * height:
                return "more than one line of writing"
            continue  # a stray mark above or below the line
        if p.height < FRAGMENT_HEIGHT * height:
            hosts = [(x_overlap(p.box, q.box), q) for q in full if q.label in owner]
            best = max(hosts, key=lambda t: t[0], default=(0, None))
            if best[1] is not None and best[0] >= FRAGMENT_OVERLAP * p.width:
                owner[p.label] = owner[best[1].label]
                groups[owner[p.label]].append(p)
                continue
        owner[p.label] = len(groups) + 1
        groups[owner[p.label]] = [p]
    return groups


def is_full(box: tuple[int, int, int, int], height: float) -> bool:
    return (box[3] - box[1]) >= FULL_HEIGHT * height


def may_hold_digits(box: tuple[int, int, int, int], height: float) -> bool:
    """Is a merged piece tall and wide enough to be touching digits (to get candidate cuts)?"""
    return (box[3] - box[1]) >= FRAGMENT_HEIGHT * height and box[2] - box[0] > SPLIT_WIDTH * height


def atoms_of_piece(
    atom_labels: np.ndarray,
    atom_id: int,
    box: tuple[int, int, int, int],
    height: float,
    next_id: int,
    cuts: list[tuple[np.ndarray, float]] | None = None,
) -> list[Atom]:
    """One merged piece -> its atoms: the piece itself, or, for a wide piece with candidate cuts,
    its parts between the cuts (`cuts`: its `candidate_cuts`, when already found). A part after
    the first gets a new id (from `next_id` on) and is relabelled in `atom_labels` in place."""
    small = (box[3] - box[1]) < FRAGMENT_HEIGHT * height
    if cuts is None:
        cuts = []
        if may_hold_digits(box, height):
            cuts = candidate_cuts(atom_labels[box[1] : box[3], box[0] : box[2]] == atom_id, height)
    if not cuts:
        return [Atom(id=atom_id, box=box, small=small, piece=atom_id, full=is_full(box, height))]
    region = atom_labels[box[1] : box[3], box[0] : box[2]]  # a view: relabelled in place
    columns = np.arange(region.shape[1])[None, :]
    part_of = sum((columns >= c[:, None]).astype(np.int32) for c, _ in cuts)  # (h, w): 0..len(cuts)
    stroke = max(1.0, stroke_width(region == atom_id))
    own = region == atom_id
    atoms = []
    for k in range(len(cuts) + 1):
        sel = own & (part_of == k)
        if not sel.any():
            continue
        new_id = atom_id if k == 0 else next_id
        if k:
            region[sel] = new_id
            next_id += 1
        rows, cols = np.nonzero(sel)
        part_box = (
            box[0] + int(cols.min()),
            box[1] + int(rows.min()),
            box[0] + int(cols.max()) + 1,
            box[1] + int(rows.max()) + 1,
        )
        atoms.append(
            Atom(
                id=new_id,
                box=part_box,
                small=False,
                piece=atom_id,
                full=is_full(part_box, height),
                cut_strokes=cuts[k - 1][1] / stroke if k else 0.0,
            )
        )
    return atoms


def build_atoms(labels: np.ndarray, found: list[Piece], height: float) -> tuple[np.ndarray, list[Atom], str | None]:
    """Pieces -> atoms (merged fragments, wide pieces cut). Returns (atom labels (H, W), atoms
    left to right, reason to reject or None)."""
    groups = group_pieces(found, height)
    if isinstance(groups, str):
        return labels, [], groups
    lut = np.zeros(int(labels.max()) + 1, np.int32)
    for atom_id, members in groups.items():
        for p in members:
            lut[p.label] = atom_id
    atom_labels = lut[labels]
    boxes = {atom_id: box_union([p.box for p in members]) for atom_id, members in groups.items()}
    # the wide pieces' candidate cuts, their seams carved together (one row loop for the line)
    wide = [atom_id for atom_id, box in boxes.items() if may_hold_digits(box, height)]
    masks = [atom_labels[boxes[a][1] : boxes[a][3], boxes[a][0] : boxes[a][2]] == a for a in wide]
    cuts = dict(zip(wide, cuts_of_pieces(masks, height)))
    atoms: list[Atom] = []
    next_id = len(groups) + 1  # ids for the parts of cut pieces
    for atom_id, box in boxes.items():
        parts = atoms_of_piece(atom_labels, atom_id, box, height, next_id, cuts.get(atom_id, []))
        next_id += sum(a.id != atom_id for a in parts)
        atoms += parts
    atoms.sort(key=lambda a: a.centre_x)
    return atom_labels, atoms, None
