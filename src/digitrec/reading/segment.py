"""Read a whole number written on a line: segment it into digits and recognise each.

1. The ink is found exactly as for one digit (`preprocess.extract_ink`) and split into connected
   pieces (specks and ruled lines dropped).
2. Pieces that belong to one digit are merged: a fragment (much shorter than the line, e.g. a 5's
   cap or a broken stroke) joins the full-height piece it overlaps horizontally. Two digits on one
   line never sit one above the other, so horizontal overlap is strong evidence.
3. Touching or slightly overlapping digits form one wide piece: candidate cuts are seams, the
   top-to-bottom paths through the piece that cross the least ink (seam carving within a band,
   so a cut can lean with slanted writing); none of them has to be used.
4. The resulting atoms, left to right, are grouped into digits by recognition: every run of 1 to
   `MAX_RUN` neighbouring atoms is a candidate digit, preprocessed like any digit and classified in
   one batch. Each candidate scores the log-probability of its class plus a verifier's score
   that it is exactly one digit (width and height against the line and against the line's typical
   digit width, gaps to its neighbours, cuts it starts or ends at, pieces it joins, how confidently
   its two sides read as digits when cut, and what a small CNN trained on such cut-outs says: is
   this exactly one digit (the one-digit checker, benchmarks/train_checker.py); fitted on whole
   numbers made of validation digits by benchmarks/fit_segmenter.py), and dynamic programming
   picks the grouping with the best total. The digits are classified by the reading model
   (`Recognizer.reader`), larger than the one `predict` uses.
   Merging the halves of a "0" wins because half a "0" is too narrow and leans on a cut; cutting
   two touching digits wins because a double-width "digit" is implausible, however confident the
   classifier is about it (it reads a "41" as a "4" and a "77" as a "7" with near certainty, so
   its confidence counts for little). A short but wide atom may be a digit on its own: MNIST has
   "0"s twice as wide as tall, which come out half as tall as their neighbours.
5. `needs_review` is raised when a digit is below the reject threshold or when a segmentation
   giving a different number scores within `REVIEW_MARGIN` of the best.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from digitrec.reading import preprocess as pp
if TYPE_CHECKING:
    from digitrec.reading.recognize import Reading, Recognizer

READ_MAX_SIDE = 1600  # working resolution for a line: 20 digits keep ~50 pixels each
MAX_DIGITS = 20
MAX_RUN = 8  # atoms that may form one digit
FRAGMENT_HEIGHT = 0.6  # pieces shorter than this fraction of the line height are fragments
FRAGMENT_OVERLAP = 0.3  # ... and join the piece that covers this much of their width
OFF_LINE = 1.0  # pieces whose centre is this many line heights from the line's centre are off it
SPLIT_WIDTH = 0.45  # pieces wider than this (fraction of line height) get candidate cuts
CUT_MARGIN = 0.2  # no cut closer than this (fraction of line height) to a piece's side
CUT_SPACING = 0.1  # candidate cuts at least this far apart (fraction of line height)
CUT_EVERY = 0.15  # at most one candidate cut per this much width (fraction of line height)
INK_COST = 50.0  # a seam crossing one ink pixel costs as much as this many paper pixels
SEAM_DRIFT = 0.2  # a seam stays within this many line heights of its centre column
DIAGONAL = 0.4  # extra cost of a diagonal seam step: seams run straight unless ink is in the way
SEAM_STEP = 1  # columns a seam may move per row
SEAM_CELLS = 4_000_000  # rows x bands x band width carved at once (~40 MB of work arrays)
MIN_PART = 0.08  # each side of a cut keeps at least this fraction of the piece's ink
MAX_DIGIT_WIDTH = 1.8  # a candidate digit wider than this (line heights) is not considered
FLAT_WIDTH = 0.5  # a short atom at least this wide (line heights) may be a flat digit on its own
# (MNIST has "0"s twice as wide as tall; written no wider than the others, they come out short)
# log(width / height) of each MNIST training class is about normal with these (mean, std), e.g. a
# "1" is 0.4 as wide as tall, a "0" 0.9 (binarised at 0.5): half a "0" is too narrow for a "6",
# two touching digits too wide for any.
LOG_ASPECT = ((-0.118, 0.22), (-0.995, 0.48), (-0.082, 0.245), (-0.26, 0.228), (-0.269, 0.229),
              (-0.09, 0.288), (-0.359, 0.23), (-0.291, 0.233), (-0.312, 0.235), (-0.431, 0.216))
FULL_HEIGHT = 0.75  # pieces at least this tall (fraction of the line) are whole digits, usually
# The segment verifier: a score, linear in FEATURES, that a candidate is exactly one digit, fitted
# by `python benchmarks/fit_segmenter.py` (800 numbers to fit, 300 held out, all made of VALIDATION
# digits; a logistic regression refined by a structured perceptron on whole numbers) with the
# shipped reading model (fine-tuned on cut-outs, benchmarks/train_reader.py) and one-digit checker:
# the 300 held-out numbers read exactly 97.7% (97.3% with the constants fitted for the previous
# reading model, 95.7% with that model).
VERIFIER_BIAS = 4.6357
VERIFIER_WEIGHTS = {
    "log_p1": 0.7445,
    "log_margin": 0.1571,
    "log_width": 0.1674,
    "log_width_sq": -0.5055,
    "width_z_excess": -0.7382,
    "short": -4.6014,
    "internal_gap": -4.3300,
    "joined": -3.5025,
    "atoms": 0.0136,
    "cut_left": -1.1577,
    "cut_left_strokes": -0.9702,
    "cut_right": -1.4626,
    "cut_right_strokes": -0.7821,
    "gap_left": 1.3522,
    "gap_right": 0.8347,
    "off_centre": -17.9803,
    "rel_width": -0.3443,
    "rel_width_excess": 0.5184,
    "split_conf": 0.2171,
    "flat": -7.5765,
    "checker": 0.4186,
}
SKIP_PENALTY = math.log(0.05)  # leaving out a small stray mark costs this (log-probability)
# The best number must score log(200) above any other reading, else needs_review: the smallest margin
# that left at most 0.5% of the 1,100 validation numbers wrong and unflagged (fit_segmenter.py; 24%
# flagged; log(20) flags 9% and leaves 1.1% wrong and unflagged).
REVIEW_MARGIN = math.log(200.0)
K_BEST = 6  # segmentations kept per DP state (to find the best alternative number)


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


def line_height(found: list[pp.Piece]) -> float:
    """Typical digit height: the median height of the pieces at least half as tall as the tallest."""
    tallest = max(p.height for p in found)
    return float(np.median([p.height for p in found if p.height >= 0.5 * tallest]))


def x_overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> int:
    return max(0, min(a[2], b[2]) - max(a[0], b[0]))


def seams(mask: np.ndarray, centres: np.ndarray, drift: int) -> tuple[np.ndarray, np.ndarray]:
    """For each centre, the minimal-ink top-to-bottom path through a piece that stays within
    `drift` columns of it (seam carving in a band): it moves at most SEAM_STEP columns per row,
    each ink pixel crossed costs INK_COST, each step 1, a sideways step DIAGONAL more per column.
    All bands are carved together, one row at a time (the row loop is the cost, not the bands).
    Returns (costs (K,), columns (K, H))."""
    h, w = mask.shape
    width = 2 * drift + 1
    batch = max(1, SEAM_CELLS // (h * width))
    if len(centres) > batch:  # bound the memory on a huge piece: carve the bands in batches
        parts = [seams(mask, centres[i : i + batch], drift) for i in range(0, len(centres), batch)]
        return np.concatenate([c for c, _ in parts]), np.concatenate([x for _, x in parts])
    k = len(centres)
    cols = centres[:, None] - drift + np.arange(width)[None, :]  # (K, width), may leave the piece
    inside = (cols >= 0) & (cols < w)
    energy = np.where(mask[:, np.clip(cols, 0, w - 1)], INK_COST, 1.0)  # (H, K, width)
    energy[:, ~inside] = np.inf
    total = energy[0].copy()
    back = np.zeros(energy.shape, np.int8)
    shifts = range(-SEAM_STEP, SEAM_STEP + 1)
    padded = np.full((k, width + 2 * SEAM_STEP), np.inf)
    rows = np.arange(k)[:, None]
    for y in range(1, h):
        padded[:, SEAM_STEP : SEAM_STEP + width] = total
        options = np.stack([padded[:, SEAM_STEP + d : SEAM_STEP + d + width] + DIAGONAL * abs(d) for d in shifts])
        choice = options.argmin(axis=0)  # (K, width); ties go to the leftmost step, as argmin does
        back[y] = choice - SEAM_STEP
        total = energy[y] + np.take_along_axis(options, choice[None], axis=0)[0]
    xs = np.empty((k, h), np.int64)
    xs[:, -1] = total.argmin(axis=1)
    for y in range(h - 1, 0, -1):
        xs[:, y - 1] = xs[:, y] + back[y][rows[:, 0], xs[:, y]]
    return total.min(axis=1), xs + cols[:, :1]


def candidate_cuts(mask: np.ndarray, height: float) -> list[tuple[np.ndarray, float]]:
    """Seams along which a wide piece may hold two touching digits: the cheapest seams (least
    ink crossed) in bands across the piece, away from the sides and from each other. Returns
    (columns (H,) relative to the mask, ink pixels crossed) per seam, left to right."""
    h, w = mask.shape
    margin = max(1, int(CUT_MARGIN * height))
    if w <= 2 * margin:
        return []
    drift = max(1, int(SEAM_DRIFT * height))
    step = max(1, int(0.04 * height))
    total_ink = mask.sum()
    options = []
    centres = np.arange(margin, w - margin, step)
    costs, paths = seams(mask, centres, drift)
    for centre, cost, xs in zip(centres, costs, paths):
        left_ink = (np.arange(w)[None, :] < xs[:, None])[mask].sum()
        if min(left_ink, total_ink - left_ink) >= MIN_PART * total_ink:  # not a sliver off a side
            options.append((cost, abs(centre - w / 2), xs))
    cuts: list[tuple[np.ndarray, float]] = []
    for _, _, xs in sorted(options, key=lambda o: o[:2]):
        if all(abs(xs.mean() - c.mean()) >= CUT_SPACING * height for c, _ in cuts):
            cuts.append((xs, float(mask[np.arange(h), xs].sum())))
        if len(cuts) >= max(1, int(w / (CUT_EVERY * height)) - 1):
            break
    return sorted(cuts, key=lambda c: c[0].mean())


def build_atoms(labels: np.ndarray, found: list[pp.Piece], height: float) -> tuple[np.ndarray, list[Atom], str | None]:
    """Pieces -> atoms (merged fragments, wide pieces cut). Returns (atom labels (H, W), atoms
    left to right, reason to reject or None)."""
    full = [p for p in found if p.height >= FRAGMENT_HEIGHT * height]
    centre_y = float(np.median([(p.box[1] + p.box[3]) / 2 for p in full]))
    owner: dict[int, int] = {}  # piece label -> atom id
    groups: dict[int, list[pp.Piece]] = {}
    for p in sorted(found, key=lambda p: -p.height):
        off = abs((p.box[1] + p.box[3]) / 2 - centre_y) > OFF_LINE * height
        if off:
            if p.height >= FRAGMENT_HEIGHT * height:
                return labels, [], "more than one line of writing"
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
    lut = np.zeros(int(labels.max()) + 1, np.int32)
    for label, atom_id in owner.items():
        lut[label] = atom_id
    atom_labels = lut[labels]
    atoms: list[Atom] = []
    next_id = len(groups) + 1
    for atom_id, members in groups.items():
        box = pp.box_union([p.box for p in members])
        small = (box[3] - box[1]) < FRAGMENT_HEIGHT * height
        cuts = []
        if not small and box[2] - box[0] > SPLIT_WIDTH * height:
            region = atom_labels[box[1] : box[3], box[0] : box[2]] == atom_id
            cuts = candidate_cuts(region, height)
        if not cuts:
            atoms.append(Atom(atom_id, box, small, atom_id, (box[3] - box[1]) >= FULL_HEIGHT * height))
            continue
        region = atom_labels[box[1] : box[3], box[0] : box[2]]  # a view: relabelled in place
        columns = np.arange(region.shape[1])[None, :]
        part_of = sum((columns >= c[:, None]).astype(np.int32) for c, _ in cuts)  # (h, w): 0..len(cuts)
        stroke = max(1.0, pp.stroke_width(region == atom_id))
        own = region == atom_id
        for k in range(len(cuts) + 1):
            sel = own & (part_of == k)
            if not sel.any():
                continue
            new_id = atom_id if k == 0 else next_id
            if k:
                region[sel] = new_id
                next_id += 1
            rows, cols = np.nonzero(sel)
            part_box = (box[0] + int(cols.min()), box[1] + int(rows.min()), box[0] + int(cols.max()) + 1, box[1] + int(rows.max()) + 1)
            atoms.append(Atom(new_id, part_box, False, atom_id, (part_box[3] - part_box[1]) >= FULL_HEIGHT * height,
                              cuts[k - 1][1] / stroke if k else 0.0))
    atoms.sort(key=lambda a: a.centre_x)
    return atom_labels, atoms, None


@dataclass(frozen=True)
class Path:
    score: float
    digits: tuple[tuple[int, int, int], ...]  # (first atom, last atom, digit) per digit

    @property
    def text(self) -> str:
        return "".join(str(d) for _, _, d in self.digits)


def internal_gap(atoms: list[Atom]) -> int:
    """Widest horizontal stretch, inside the span of these atoms, covered by none of them."""
    spans = sorted((a.box[0], a.box[2]) for a in atoms)
    gap, reach = 0, spans[0][1]
    for x0, x1 in spans[1:]:
        gap = max(gap, x0 - reach)
        reach = max(reach, x1)
    return gap


def best_paths(n: int, candidates: dict[tuple[int, int], np.ndarray], skippable: list[bool]) -> list[Path]:
    """K-best segmentations of atoms 0..n-1 into digits. candidates maps (i, j) (atoms i..j) to
    class scores (10,) (log-probability plus width prior); a digit scores its class's score.
    Returns paths, best first (at most one per distinct number)."""
    states: list[list[Path]] = [[] for _ in range(n + 1)]
    states[0] = [Path(0.0, ())]
    for end in range(1, n + 1):
        options: list[Path] = []
        for start in range(max(0, end - MAX_RUN), end):
            logp = candidates.get((start, end - 1))
            if logp is None:
                continue
            for path in states[start]:
                for digit in np.argsort(-logp)[:2]:  # the runner-up class makes alternatives too
                    options.append(Path(path.score + float(logp[digit]), path.digits + ((start, end - 1, int(digit)),)))
        if skippable[end - 1]:
            options += [Path(p.score + SKIP_PENALTY, p.digits) for p in states[end - 1]]
        options.sort(key=lambda p: -p.score)
        states[end] = options[:K_BEST]
    seen, unique = set(), []
    for path in states[n]:
        if path.text not in seen:
            seen.add(path.text)
            unique.append(path)
    return unique


@dataclass
class LineAnalysis:
    """Everything about a line that does not depend on the decoding weights: the atoms and every
    candidate digit (a run of atoms) with its box, class probabilities and geometry."""

    ink: pp.Ink
    height: float
    atoms: list[Atom]
    spans: list[tuple[int, int]]  # candidate digits: atoms i..j
    boxes: list[tuple[int, int, int, int]]  # working pixels, per span
    probs: np.ndarray  # (len(spans), 10)
    reason: str | None = None  # why the line is rejected before decoding
    one_digit: np.ndarray | None = None  # (len(spans),) the checker's log-odds of exactly one digit
    digits28: list[np.ndarray] | None = None  # (28, 28) per span, when asked for (training the checker)


def cut_line(image: pp.ImageInput) -> LineAnalysis:
    """The model-free part of reading a line: find the ink, build the atoms, and make every
    candidate digit (a run of atoms) into its 28x28 image (`digits28`); `probs` is left empty.
    The candidates' images depend on the picture alone, so training data for the reading model
    and the checker is cut out with this (benchmarks/train_reader.py)."""
    ink = pp.extract_ink(image, READ_MAX_SIDE)
    empty = np.zeros((0, 10))
    if not ink.found:
        return LineAnalysis(ink, 0.0, [], [], [], empty, "no ink found")
    labels, found = pp.pieces(ink.mask)
    if not found:
        return LineAnalysis(ink, 0.0, [], [], [], empty, "no ink found")
    height = line_height(found)
    atom_labels, atoms, reason = build_atoms(labels, found, height)
    if reason:
        return LineAnalysis(ink, height, [], [], [], empty, reason)
    if len({a.piece for a in atoms if not a.small}) > 3 * MAX_DIGITS:  # pieces: cuts make many atoms
        return LineAnalysis(ink, height, [], [], [], empty, f"far more than {MAX_DIGITS} digits")
    n = len(atoms)
    spans, boxes, images = [], [], []
    for i in range(n):
        for j in range(i, min(n, i + MAX_RUN)):
            box = pp.box_union([a.box for a in atoms[i : j + 1]])
            if j > i and box[2] - box[0] > MAX_DIGIT_WIDTH * height:
                break
            if (all(a.small for a in atoms[i : j + 1]) and (box[3] - box[1]) < FRAGMENT_HEIGHT * height
                    and box[2] - box[0] < FLAT_WIDTH * height):
                continue  # stray marks alone are not a digit (but a flat "0" may be)
            crop, _ = pp.digit_ink(ink.ink, atom_labels, [a.id for a in atoms[i : j + 1]], box)
            spans.append((i, j))
            boxes.append(box)
            images.append(pp.digit_to_mnist(crop))
    return LineAnalysis(ink, height, atoms, spans, boxes, empty, digits28=images)


def analyse_line(recognizer: "Recognizer", image: pp.ImageInput, keep_digits: bool = False) -> LineAnalysis:
    """`cut_line`, then classify every candidate digit in one batch (with the recognizer's reading
    model) and check it is one digit (the one-digit checker). `keep_digits` keeps each
    candidate's 28x28 image."""
    line = cut_line(image)
    if line.reason:
        return line
    images = line.digits28 or []
    line.probs = recognizer.reader.probabilities(images) if images else np.zeros((0, 10))
    line.one_digit = one_digit_log_odds(recognizer, images)
    if not keep_digits:
        line.digits28 = None
    return line


CHECKER_CLIP = 12.0  # log-odds beyond this say nothing more (and keep one odd crop from dominating)


def one_digit_log_odds(recognizer: "Recognizer", images: list[np.ndarray]) -> np.ndarray | None:
    """(len(images),) the one-digit checker's log-odds that each candidate is exactly one digit,
    None when no checker is installed."""
    checker = recognizer.checker
    if checker is None or not images:
        return None
    logits = checker.logits(images)  # (B, 2): [not one digit, one digit]
    return np.clip(logits[:, 1] - logits[:, 0], -CHECKER_CLIP, CHECKER_CLIP)


FEATURES = (
    "log_p1",  # log-probability of the top class
    "log_margin",  # log p1 - log p2: how clearly it is that class
    "log_width",  # log(width / line height)
    "log_width_sq",
    "width_z_excess",  # how far outside MNIST's widths for the top class (std beyond 1)
    "short",  # how much shorter than 0.8 line heights
    "internal_gap",  # widest horizontal gap between its atoms, line heights
    "joined",  # separate full-height pieces it joins
    "atoms",  # atoms it is made of, minus one
    "cut_left",  # its left side is a cut through a piece (1/0) ...
    "cut_left_strokes",  # ... crossing this many strokes
    "cut_right",
    "cut_right_strokes",
    "gap_left",  # free space to the nearest ink on the left, line heights (capped at 1)
    "gap_right",
    "off_centre",  # vertical distance of its centre from the line's centre, line heights
    "rel_width",  # log(width / the line's typical digit width)
    "rel_width_excess",  # how far beyond 1.5x the typical digit width (log units)
    "split_conf",  # 5 + the weaker log p1 of its two sides at its most convincing internal cut
    "flat",  # "short", for a short candidate at least FLAT_WIDTH wide (a flat digit, not a fragment)
    "checker",  # the one-digit checker's log-odds (0 without a checker)
)
WIDE = math.log(1.5)


def typical_width(atoms: list[Atom], height: float) -> float:
    """The line's typical digit width: the median width of the whole (uncut, full-height) pieces
    no wider than the line is tall; 0.7 line heights when there are none."""
    cut = {a.piece for a in atoms if a.id != a.piece}
    widths = [a.box[2] - a.box[0] for a in atoms
              if a.full and a.piece not in cut and a.box[2] - a.box[0] <= height]
    return float(np.median(widths)) if widths else 0.7 * height


def split_confidence(line: "LineAnalysis", index: dict[tuple[int, int], int], i: int, j: int) -> float:
    """5 + max over the cuts inside atoms i..j of min(log p1 left side, log p1 right side), floored
    at 0 (0 also when it contains no cut): high when the candidate splits into two confident digits."""
    best = 0.0
    for k in range(i, j):
        if line.atoms[k + 1].piece != line.atoms[k].piece:
            continue
        left, right = index.get((i, k)), index.get((k + 1, j))
        if left is None or right is None:
            continue
        weaker = min(line.probs[left].max(), line.probs[right].max())
        best = max(best, 5.0 + math.log(max(weaker, 1e-12)))
    return max(0.0, best)


def candidate_features(line: LineAnalysis) -> np.ndarray:
    """(len(spans), len(FEATURES)) description of every candidate digit, for the verifier."""
    atoms, height = line.atoms, line.height
    centre_y = float(np.median([(a.box[1] + a.box[3]) / 2 for a in atoms if a.full] or [0.0]))
    mean, std = np.array(LOG_ASPECT).T
    typical = typical_width(atoms, height)
    index = {span: k for k, span in enumerate(line.spans)}
    checker = line.one_digit if line.one_digit is not None else np.zeros(len(line.spans))
    rows = []
    for (i, j), box, p, one in zip(line.spans, line.boxes, line.probs, checker):
        run = atoms[i : j + 1]
        order = np.argsort(-p)
        log_p = np.log(np.maximum(p[order[:2]], 1e-12))
        log_w = math.log(max(box[2] - box[0], 1) / height)
        z = abs(log_w - mean[order[0]]) / std[order[0]]
        cut_left = i > 0 and atoms[i].piece == atoms[i - 1].piece
        cut_right = j + 1 < len(atoms) and atoms[j + 1].piece == atoms[j].piece
        others_left = [a.box[2] for a in atoms[:i]]
        others_right = [a.box[0] for a in atoms[j + 1 :]]
        gap_left = min(1.0, (box[0] - max(others_left)) / height) if others_left else 1.0
        gap_right = min(1.0, (min(others_right) - box[2]) / height) if others_right else 1.0
        short = max(0.0, 0.8 - (box[3] - box[1]) / height)
        rel_w = math.log(max(box[2] - box[0], 1) / typical)
        rows.append((
            log_p[0], log_p[0] - log_p[1], log_w, log_w * log_w, max(0.0, z - 1.0),
            short, internal_gap(run) / height,
            max(0, len({a.piece for a in run if a.full}) - 1), j - i,
            float(cut_left), atoms[i].cut_strokes if cut_left else 0.0,
            float(cut_right), atoms[j + 1].cut_strokes if cut_right else 0.0,
            gap_left, gap_right, abs((box[1] + box[3]) / 2 - centre_y) / height,
            rel_w, max(0.0, rel_w - WIDE), split_confidence(line, index, i, j),
            short if box[2] - box[0] >= FLAT_WIDTH * height else 0.0, float(one),
        ))
    return np.asarray(rows, dtype=np.float64).reshape(-1, len(FEATURES))


def candidate_scores(line: LineAnalysis) -> dict[tuple[int, int], np.ndarray]:
    """(i, j) -> (10,) score per class: the class's log-probability plus the verifier's log-odds
    that atoms i..j are exactly one digit (a logistic regression on `candidate_features`, fitted on
    numbers made of validation digits by benchmarks/fit_segmenter.py)."""
    if not line.spans:
        return {}
    weights = np.array([VERIFIER_WEIGHTS[name] for name in FEATURES])
    log_odds = candidate_features(line) @ weights + VERIFIER_BIAS
    return {span: np.log(np.maximum(row, 1e-12)) + lo for span, row, lo in zip(line.spans, line.probs, log_odds)}


def decode_line(line: LineAnalysis, reject_threshold: float, name: str | None = None) -> "Reading":
    """The best segmentation of an analysed line as a Reading."""
    from digitrec.reading.recognize import Reading, scale_box

    if line.reason:
        return Reading(name, "", [], False, True, line.reason)
    paths = best_paths(len(line.atoms), candidate_scores(line), [a.small for a in line.atoms])
    if not paths or not paths[0].digits:
        return Reading(name, "", [], False, True, "no digit found")
    best = paths[0]
    index = {span: k for k, span in enumerate(line.spans)}
    digits = [{"digit": d, "confidence": float(line.probs[index[(i, j)], d]),
               "box": list(scale_box(line.boxes[index[(i, j)]], line.ink.scale, line.ink.input_size))}
              for i, j, d in best.digits]
    uncertain = sum(d["confidence"] < reject_threshold for d in digits)
    ambiguous = len(paths) > 1 and best.score - paths[1].score < REVIEW_MARGIN
    if len(digits) > MAX_DIGITS:
        return Reading(name, "", digits, True, True, f"more than {MAX_DIGITS} digits")
    if uncertain * 2 > len(digits):
        return Reading(name, "", digits, True, True, "low confidence")
    return Reading(name, best.text, digits, bool(uncertain or ambiguous), False, None)


def read_number(recognizer: "Recognizer", image: pp.ImageInput, name: str | None = None) -> "Reading":
    return decode_line(analyse_line(recognizer, image), recognizer.reader.reject_threshold, name)


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType: fixed-size bitmap font
        return ImageFont.load_default()


def draw_reading(image: Image.Image, reading: "Reading", threshold: float) -> Image.Image:
    """The (upright) input in RGB under a header band with the reading; each digit's box drawn with
    the digit above it and its confidence below, green when confident, orange when a person should
    look (below the reject threshold, or the whole reading rejected)."""
    source = image.convert("RGB")
    w, h = source.size
    header = max(16, min(48, round(0.08 * max(w, h))))
    canvas = Image.new("RGB", (w, h + header), (255, 255, 255))
    canvas.paste(source, (0, header))
    draw = ImageDraw.Draw(canvas)
    line = max(1, round(max(w, h) / 400))
    for item in reading.digits:
        x0, y0, x1, y1 = item["box"]
        y0, y1 = y0 + header, y1 + header
        ok = item["confidence"] >= threshold and not reading.rejected
        colour = (0, 150, 0) if ok else (230, 110, 0)
        draw.rectangle([x0, y0, max(x0, x1 - 1), max(y0, y1 - 1)], outline=colour, width=line)
        big = _font(max(10, int(0.4 * (y1 - y0))))
        small = _font(max(8, int(0.22 * (y1 - y0))))
        for text, font, top in ((str(item["digit"]), big, None), (f"{item['confidence']:.2f}", small, y1 + line)):
            left, t, right, bottom = draw.textbbox((0, 0), text, font=font)
            y = top if top is not None else y0 - (bottom - t) - 2 * line - t
            x = (x0 + x1) / 2 - (right - left) / 2
            draw.text((x, y), text, fill=colour, font=font)
    if reading.rejected:
        summary = f"rejected: {reading.reason}"
    else:
        summary = reading.text + ("   (needs review)" if reading.needs_review else "")
    draw.text((4, max(0, header // 2 - header * 0.35)), summary, fill=(0, 0, 0), font=_font(int(header * 0.7)))
    return canvas
