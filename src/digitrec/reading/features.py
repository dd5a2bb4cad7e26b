"""What the segment verifier looks at: each candidate digit's features, by name.

A candidate (a run of atoms) is described by how confidently and as what it reads, its width and
height against the line and against MNIST's widths for its class, the gaps and cuts at its sides,
the pieces it joins, how well it splits into two digits, and what the one-digit checker says. The
verifier (`digitrec.reading.verifier.Verifier`) weighs them by name; the matrix the weights meet
(and that `digitrec.making.verifier_fit` fits on) has the columns in `FEATURES` order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from digitrec.reading.atoms import Atom, internal_gap, is_full
from digitrec.reading.candidates import FLAT_WIDTH, LineAnalysis
from digitrec.reading.pieces import box_union

# log(width / height) of each MNIST training class is about normal with these (mean, std), e.g. a
# "1" is 0.4 as wide as tall, a "0" 0.9 (binarised at 0.5): half a "0" is too narrow for a "6",
# two touching digits too wide for any.
LOG_ASPECT = (
    (-0.118, 0.22),
    (-0.995, 0.48),
    (-0.082, 0.245),
    (-0.26, 0.228),
    (-0.269, 0.229),
    (-0.09, 0.288),
    (-0.359, 0.23),
    (-0.291, 0.233),
    (-0.312, 0.235),
    (-0.431, 0.216),
)
ASPECT_MEAN, ASPECT_STD = np.array(LOG_ASPECT).T
WIDE = math.log(1.5)

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

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class LineScale:
    """What every candidate of a line is measured against."""

    height: float  # the line's digit height
    centre_y: float  # the line's centre: the median centre of its full-height atoms
    typical: float  # the line's typical digit width (`typical_width`)


def typical_width(atoms: list[Atom], height: float) -> float:
    """The line's typical digit width: the median width of the whole (uncut, full-height) pieces
    no wider than the line is tall; 0.7 line heights when there are none."""
    cut = {a.piece for a in atoms if a.id != a.piece}
    widths = [a.box[2] - a.box[0] for a in atoms if a.full and a.piece not in cut and a.box[2] - a.box[0] <= height]
    return float(np.median(widths)) if widths else 0.7 * height


def split_confidence(line: LineAnalysis, index: dict[tuple[int, int], int], i: int, j: int) -> float:
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


def class_features(probs: np.ndarray, log_w: float) -> dict[str, float]:
    """How it reads (class probabilities (10,)), and whether its width (`log_width`) suits the
    class it reads as."""
    order = np.argsort(-probs)
    log_p = np.log(np.maximum(probs[order[:2]], 1e-12))
    return {
        "log_p1": log_p[0],
        "log_margin": log_p[0] - log_p[1],
        "width_z_excess": width_z_excess(log_w)[order[0]],
    }


def log_width(box: Box, height: float) -> float:
    return math.log(max(box[2] - box[0], 1) / height)


def width_z_excess(log_w: float) -> np.ndarray:
    """(10,) how far a candidate's width lies outside MNIST's widths for each class (std beyond 1)."""
    return np.maximum(0.0, np.abs(log_w - ASPECT_MEAN) / ASPECT_STD - 1.0)


def shape_features(run: list[Atom], box: Box, scale: LineScale) -> dict[str, float]:
    """Its size and place against the line's, and how many atoms and pieces it is made of."""
    height = scale.height
    short = max(0.0, 0.8 - (box[3] - box[1]) / height)
    rel_w = math.log(max(box[2] - box[0], 1) / scale.typical)
    return {
        "short": short,
        "internal_gap": internal_gap(run) / height,
        "joined": max(0, len({a.piece for a in run if a.full}) - 1),
        "atoms": len(run) - 1,
        "off_centre": abs((box[1] + box[3]) / 2 - scale.centre_y) / height,
        "rel_width": rel_w,
        "rel_width_excess": max(0.0, rel_w - WIDE),
        "flat": short if box[2] - box[0] >= FLAT_WIDTH * height else 0.0,
    }


def side_features(atoms: list[Atom], i: int, j: int, box: Box, height: float) -> dict[str, float]:
    """Its sides (atoms i..j of the line): cuts through a piece, and free space to the neighbours."""
    cut_left = i > 0 and atoms[i].piece == atoms[i - 1].piece
    cut_right = j + 1 < len(atoms) and atoms[j + 1].piece == atoms[j].piece
    others_left = [a.box[2] for a in atoms[:i]]
    others_right = [a.box[0] for a in atoms[j + 1 :]]
    return {
        "cut_left": float(cut_left),
        "cut_left_strokes": atoms[i].cut_strokes if cut_left else 0.0,
        "cut_right": float(cut_right),
        "cut_right_strokes": atoms[j + 1].cut_strokes if cut_right else 0.0,
        "gap_left": min(1.0, (box[0] - max(others_left)) / height) if others_left else 1.0,
        "gap_right": min(1.0, (min(others_right) - box[2]) / height) if others_right else 1.0,
    }


def piece_boxes(atoms: list[Atom]) -> list[Box]:
    """The box of each connected piece the atoms were cut from (the union of its atoms' boxes)."""
    members: dict[int, list[Box]] = {}
    for a in atoms:
        members.setdefault(a.piece, []).append(a.box)
    return [box_union(boxes) for boxes in members.values()]


def line_centre(atoms: list[Atom], height: float) -> float:
    """The line's centre: the median centre of its full-height atoms. When every piece was cut
    and no part is full height (touching digits and a wide digit in one line: "87" touching, a
    slanted "1", a wide "5"), the median centre of the full-height pieces they were cut from, so
    that no candidate looks off the line (a centre of 0 made every candidate a line height off
    it, and the path with the fewest digits won: "8715" read "875")."""
    centres = [(a.box[1] + a.box[3]) / 2 for a in atoms if a.full]
    if not centres:
        boxes = piece_boxes(atoms)
        centres = [(b[1] + b[3]) / 2 for b in boxes if is_full(b, height)] or [(b[1] + b[3]) / 2 for b in boxes]
    return float(np.median(centres)) if centres else 0.0


def line_scale(line: LineAnalysis) -> LineScale:
    atoms, height = line.atoms, line.height
    return LineScale(height=height, centre_y=line_centre(atoms, height), typical=typical_width(atoms, height))


def geometry_features(line: LineAnalysis, k: int, scale: LineScale) -> dict[str, float]:
    """The features of candidate `k` (an index into `line.spans`) that no model is needed for."""
    (i, j), box = line.spans[k], line.boxes[k]
    log_w = log_width(box, line.height)
    return {
        "log_width": log_w,
        "log_width_sq": log_w * log_w,
        **shape_features(line.atoms[i : j + 1], box, scale),
        **side_features(line.atoms, i, j, box, line.height),
    }


def candidate_feature_dicts(line: LineAnalysis, which: Sequence[int] | None = None) -> list[dict[str, float]]:
    """{feature name: value} for every candidate digit of an analysed line, in `line.spans` order
    (`which`: of those candidates only, indices into `line.spans`); the model-free ones from
    `line.geometry` when it holds them."""
    scale = line_scale(line)
    index = {span: k for k, span in enumerate(line.spans)}
    checker = line.one_digit if line.one_digit is not None else np.zeros(len(line.spans))
    rows = []
    for k in range(len(line.spans)) if which is None else which:
        geometry = line.geometry[k] if line.geometry is not None else geometry_features(line, k, scale)
        rows.append(
            {
                **geometry,
                **class_features(line.probs[k], geometry["log_width"]),
                "split_conf": split_confidence(line, index, *line.spans[k]),
                "checker": float(checker[k]),
            }
        )
    return rows


def feature_matrix(rows: list[dict[str, float]]) -> np.ndarray:
    """(len(rows), len(FEATURES)), column k holding feature FEATURES[k] whatever order a row was
    built in. A row with a feature FEATURES does not name, or without one it names, is an error:
    never a silently shifted or dropped column."""
    names = set(FEATURES)
    for row in rows:
        if row.keys() != names:
            raise ValueError(f"candidate features and FEATURES differ in {sorted(row.keys() ^ names)}")
    return np.asarray([[row[name] for name in FEATURES] for row in rows], dtype=np.float64).reshape(-1, len(FEATURES))


def candidate_features(line: LineAnalysis, which: Sequence[int] | None = None) -> np.ndarray:
    """(len(spans), len(FEATURES)) description of every candidate digit, for the verifier
    (`which`: (len(which), len(FEATURES)), of those candidates only)."""
    return feature_matrix(candidate_feature_dicts(line, which))
