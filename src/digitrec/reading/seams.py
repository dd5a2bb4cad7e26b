"""Candidate cuts through a wide piece of ink that may hold touching digits: seam carving.

A seam is the top-to-bottom path through the piece that crosses the least ink, within a band of
columns, so a cut can lean with slanted writing. The cheapest seams, away from the piece's sides
and from each other, are the candidate cuts; segmentation decides which of them to use.
"""

from __future__ import annotations

import numpy as np

CUT_MARGIN = 0.2  # no cut closer than this (fraction of line height) to a piece's side
CUT_SPACING = 0.1  # candidate cuts at least this far apart (fraction of line height)
CUT_EVERY = 0.15  # at most one candidate cut per this much width (fraction of line height)
INK_COST = 50.0  # a seam crossing one ink pixel costs as much as this many paper pixels
SEAM_DRIFT = 0.2  # a seam stays within this many line heights of its centre column
DIAGONAL = 0.4  # extra cost of a diagonal seam step: seams run straight unless ink is in the way
SEAM_STEP = 1  # columns a seam may move per row
SEAM_CELLS = 4_000_000  # rows x bands x band width carved at once (~40 MB of work arrays)
MIN_PART = 0.08  # each side of a cut keeps at least this fraction of the piece's ink


def seams(mask: np.ndarray, centres: np.ndarray, drift: int, cells: int = SEAM_CELLS) -> tuple[np.ndarray, np.ndarray]:
    """For each centre, the minimal-ink top-to-bottom path through a piece that stays within
    `drift` columns of it (seam carving in a band): it moves at most SEAM_STEP columns per row,
    each ink pixel crossed costs INK_COST, each step 1, a sideways step DIAGONAL more per column.
    All bands are carved together, one row at a time (the row loop is the cost, not the bands),
    at most `cells` (rows x bands x band width) at once. Returns (costs (K,), columns (K, H))."""
    h, w = mask.shape
    width = 2 * drift + 1
    batch = max(1, cells // (h * width))
    if len(centres) > batch:  # bound the memory on a huge piece: carve the bands in batches
        parts = [seams(mask, centres[i : i + batch], drift, cells) for i in range(0, len(centres), batch)]
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
