"""Exact, cheaper stand-ins for the scipy.ndimage and numpy calls preprocessing makes.

Preprocessing one small upload (a 72x72 PNG) makes some forty filter, padding and percentile
calls on arrays of a few thousand pixels, where each call's set-up costs more than its arithmetic,
and the server does that once per request. Each function here returns exactly what the call it
stands for returns, bit for bit (tests/test_preprocess.py checks them against scipy and numpy):
the same 1-D filter passes in the same order, the same order statistics, the same interpolation.
"""

from __future__ import annotations

import functools
import math
from typing import cast

import numpy as np
from scipy import ndimage

# The filters below are exactly scipy.ndimage's (same 1-D passes, same order, same float32 output
# between passes), called without the per-call set-up that dominates on a small image: the
# preprocessing of a 72x72 upload is ~40 filter calls, and the server does one per request.


@functools.lru_cache(maxsize=64)
def gaussian_weights(sigma: float) -> np.ndarray:
    """The 1-D kernel `ndimage.gaussian_filter(x, sigma)` correlates with along each axis (truncate
    4, reflect), read off the filter's own response to an impulse, so it is scipy's to the bit."""
    radius = int(4.0 * float(sigma) + 0.5)
    impulse = np.zeros(2 * radius + 1)
    impulse[radius] = 1.0
    weights = ndimage.gaussian_filter1d(impulse, sigma, mode="constant")  # (2r+1,), symmetric
    weights.setflags(write=False)
    return weights


def gaussian_filter(image: np.ndarray, sigma: float) -> np.ndarray:
    """`ndimage.gaussian_filter(image, sigma)` for a 2-D float image, bit for bit, cheaper."""
    weights = gaussian_weights(float(sigma))
    out = ndimage.correlate1d(image, weights, axis=0, mode="reflect")
    return ndimage.correlate1d(out, weights, axis=1, output=out, mode="reflect")


def uniform_filter(image: np.ndarray, size: int) -> np.ndarray:
    """`ndimage.uniform_filter(image, size)` for a 2-D image, bit for bit (the same two passes)."""
    out = ndimage.uniform_filter1d(image, size, axis=0)
    return ndimage.uniform_filter1d(out, size, axis=1, output=out)


# Order statistics read off one sorted copy, each exactly the value np.median / np.percentile
# (linear interpolation) return, so that one sort serves several of them. numpy's vectorised sort
# is several times quicker than np.partition asked for a handful of ranks (numpy's own route),
# whatever the size, and the k-th smallest value is the same whichever way it is found.


def ordered(values: np.ndarray) -> np.ndarray:
    """The values (1-D) in ascending order: every rank's order statistic at once."""
    if values.dtype.kind in "ui" and values.dtype.itemsize <= 2:
        # numpy's radix sort: for 8- and 16-bit integers 20-30x quicker than its default
        # (introsort: 200 us for 7,000 bytes), and sorted values are the same whichever sort
        return np.sort(values, kind="stable")
    return np.sort(values)


SELECT_MIN = 16_384  # values: from this many float32 on, `ranked` selects instead of sorting
SORTED_BUCKET_MAX = 4096  # a bucket of at most this many values is sorted, a larger one histogrammed


class Ranked:
    """Order statistics of a 1-D float32 array, each exactly `np.sort(values)[rank]`, found by radix
    selection instead of a sort: one histogram of the top 16 bits of the values (as order-keeping
    integers), then only the bucket holding a rank is looked at: sorted when it is small, and
    otherwise histogrammed again on the low 16 bits, where a bucket holds one value only. Linear in
    the number of values; a sort is not, and numpy's vectorised sort is not vectorised on every
    CPU (on an AVX-512 AMD EPYC it takes 2.3 ms for 100,000 values, this 0.3 ms)."""

    def __init__(self, values: np.ndarray) -> None:
        bits = values.view(np.uint32)
        # IEEE floats order as their bits do once negative ones have all their bits flipped and
        # the others their sign bit (NaN is not expected here)
        if values.size and bits.max() >= np.uint32(0x80000000):
            bits = np.where(bits >> 31 == 1, ~bits, bits | np.uint32(0x80000000))
        else:
            bits = bits | np.uint32(0x80000000)
        self.values, self.keys = values, bits
        self.size = values.size
        self.high = (bits >> 16).astype(np.uint16)
        self.ends = np.cumsum(np.bincount(self.high, minlength=1 << 16))  # (65536,) ranks below each bucket's end
        # per bucket looked at: its values sorted, or the ends of its low-bit buckets
        self.buckets: dict[int, tuple[np.ndarray | None, np.ndarray | None]] = {}

    def __getitem__(self, rank: int) -> np.floating:
        if rank < 0:
            rank += self.size
        if not 0 <= rank < self.size:
            raise IndexError(f"rank {rank} of {self.size} values")
        b = int(np.searchsorted(self.ends, rank, side="right"))
        start = int(self.ends[b - 1]) if b else 0
        if b not in self.buckets:
            inside = self.high == b
            if int(self.ends[b]) - start <= SORTED_BUCKET_MAX:
                self.buckets[b] = (np.sort(self.values[inside]), None)
            else:  # a large bucket (paper of one grey level): its low 16 bits tell its values apart
                low = (self.keys[inside] & np.uint32(0xFFFF)).astype(np.uint16)
                self.buckets[b] = (None, np.cumsum(np.bincount(low, minlength=1 << 16)))
        values, low_ends = self.buckets[b]
        within = rank - start
        if values is not None:
            return cast(np.floating, values[within])
        assert low_ends is not None
        # every value in one low bucket is the same: the one whose key is (b, that bucket)
        c = int(np.searchsorted(low_ends, within, side="right"))
        key = np.uint32((b << 16) | c)
        bits = key ^ np.uint32(0x80000000) if key >= np.uint32(0x80000000) else ~key
        return cast(np.floating, np.array([bits], np.uint32).view(np.float32)[0])


def ranked(values: np.ndarray) -> np.ndarray | Ranked:
    """The values (1-D) indexable by rank (0 = smallest), each exactly `np.sort(values)[rank]`: the
    sorted values, or for many float32 ones a `Ranked` selection, which finds a few ranks in a
    fraction of a sort's time."""
    if values.dtype == np.float32 and values.size >= SELECT_MIN:
        return Ranked(np.ascontiguousarray(values))
    return ordered(values)


def median(values: np.ndarray) -> np.floating:
    """np.median of a 1-D float array, exactly (a scalar of the array's dtype, as np.median's)."""
    return cast(np.floating, median_of(ranked(values), values.size))


def median_ranks(n: int) -> tuple[int, ...]:
    """Ranks (0 = smallest) whose mean np.median takes for n values."""
    return (n // 2 - 1, n // 2) if n % 2 == 0 else ((n - 1) // 2,)


def median_of(part: np.ndarray | Ranked, n: int) -> np.generic:
    """np.median of n values, `part` holding them ordered (or partitioned at `median_ranks(n)`):
    the middle value, or the mean of the middle two in the array's own dtype (as np.mean computes it)."""
    ranks = median_ranks(n)
    if len(ranks) == 1:
        return part[ranks[0]]
    a = part[ranks[0]]
    return type(a)(float(a + part[ranks[1]]) / 2)


def percentile_ranks(n: int, q: float) -> tuple[int, int, float]:
    """(rank below, rank above, weight) of np.percentile's linear method for n values, q in percent."""
    virtual = (n - 1) * (q / 100)
    if virtual >= n - 1:
        return n - 1, n - 1, 0.0
    below = math.floor(virtual)
    return below, below + 1, virtual - below


def lerp(a: np.floating, b: np.floating, t: float, in_dtype: bool) -> float:
    """np.percentile's interpolation between ranks a and b (numpy's `lerp`): in the array's dtype
    for a scalar q (`in_dtype`), in float64 for a list of q."""
    if in_dtype:
        step = b - a  # in the array's dtype
        return float(b - step * type(a)(1 - t) if t >= 0.5 else a + step * type(a)(t))
    diff = float(b - a)
    return float(b) - diff * (1 - t) if t >= 0.5 else float(a) + diff * t


# Padding and dilation by slice copies: np.pad's and ndimage's set-up cost more than copying a
# small image.


def edge_pad(image: np.ndarray, pad: int) -> np.ndarray:
    """`np.pad(image, pad, mode="edge")` for a 2-D array, by slice copies (np.pad's set-up costs
    more than the copying on a small image)."""
    h, w = image.shape
    out = np.empty((h + 2 * pad, w + 2 * pad), image.dtype)
    out[pad : pad + h, pad : pad + w] = image
    out[pad : pad + h, :pad] = image[:, :1]
    out[pad : pad + h, pad + w :] = image[:, -1:]
    out[:pad] = out[pad]
    out[pad + h :] = out[pad + h - 1]
    return out


def zero_ring(image: np.ndarray) -> np.ndarray:
    """`np.pad(image, 1)`: a ring of zeros (False) around a 2-D array."""
    out = np.zeros((image.shape[0] + 2, image.shape[1] + 2), image.dtype)
    out[1:-1, 1:-1] = image
    return out


def dilate_square(mask: np.ndarray, radius: int) -> np.ndarray:
    """`ndimage.binary_dilation(mask, structure=EIGHT, iterations=radius)` (nothing beyond the
    frame): `radius` dilations by the 3x3 square are one by the (2 radius + 1) square, done as
    shifted ORs along rows, then along columns."""
    rows = mask.copy()
    for d in range(1, radius + 1):
        rows[d:] |= mask[:-d]
        rows[:-d] |= mask[d:]
    out = rows.copy()
    for d in range(1, radius + 1):
        out[:, d:] |= rows[:, :-d]
        out[:, :-d] |= rows[:, d:]
    return out


def block_min(image: np.ndarray, factor: int, op: np.ufunc = np.minimum) -> np.ndarray:
    """`image[:h * f, :w * f].reshape(h, f, w, f).min(axis=(1, 3))` (h, w = shape // f): the minimum of
    each f x f block (`op` np.maximum: the maximum), as the running minimum of strided slices (a
    reduction over two strided axes is numpy's slowest path, 5-30x slower)."""
    hs, ws = image.shape[0] // factor, image.shape[1] // factor
    image = image[: hs * factor, : ws * factor]
    rows = image[0::factor].copy()
    for i in range(1, factor):
        op(rows, image[i::factor], out=rows)
    out = rows[:, 0::factor].copy()
    for i in range(1, factor):
        op(out, rows[:, i::factor], out=out)
    return out


def grey_dilate(image: np.ndarray, footprint: np.ndarray) -> np.ndarray:
    """`ndimage.grey_dilation(image, footprint=footprint)` for a non-negative 2-D image whose border,
    as wide as the footprint's reach, is zero, and a footprint (odd square, symmetric) whose rows are
    each one run centred on the middle column (a disk): the maximum over its rows of the image's
    running maxima along rows, shifted. Each running maximum is the previous one widened by a
    pixel on either side (two shifted maxima), the rows' maxima a shifted maximum each: a few
    whole-array passes instead of a pass over the footprint for every pixel."""
    r = footprint.shape[0] // 2
    reach = footprint.sum(axis=1) // 2  # (2r + 1,) half-width of each row (an empty one: skipped)
    wanted = {int(a) for a in reach[footprint.any(axis=1)]}
    runs, run = {0: image}, image
    for a in range(1, max(wanted) + 1):  # run: the maximum over [x - a, x + a] of each row
        run = run.copy()
        np.maximum(run[:, a:], image[:, :-a], out=run[:, a:])
        np.maximum(run[:, :-a], image[:, a:], out=run[:, :-a])
        if a in wanted:
            runs[a] = run
    out = runs[int(reach[r])].copy()
    for dy in range(1, r + 1):
        for row in (r - dy, r + dy):
            if footprint[row].any():
                shift = row - r  # out[y] takes the run at y + shift
                if shift > 0:
                    np.maximum(out[:-shift], runs[int(reach[row])][shift:], out=out[:-shift])
                else:
                    np.maximum(out[-shift:], runs[int(reach[row])][:shift], out=out[-shift:])
    return out
