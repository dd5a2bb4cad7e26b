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


# Order statistics read off np.partition, each exactly the value np.median / np.percentile (linear
# interpolation) return, so that one partial sort serves several of them: on a small image, the
# set-up of each np.percentile call costs more than the partial sort itself.


def partition(values: np.ndarray, ranks) -> np.ndarray:
    """np.partition(values, ranks) with the largest value's rank added, as np.median does: numpy's
    partial sort around a single rank can be a hundred times slower when most values are equal
    (paper is mostly exactly 0 after background removal)."""
    return np.partition(values, sorted({*ranks, values.size - 1}))


def median_ranks(n: int) -> tuple[int, ...]:
    """Ranks (0 = smallest) whose mean np.median takes for n values."""
    return (n // 2 - 1, n // 2) if n % 2 == 0 else ((n - 1) // 2,)


def median_of(part: np.ndarray, n: int) -> np.generic:
    """np.median of the n smallest values of `part`, partitioned at `median_ranks(n)`: the middle
    value, or the mean of the middle two in the array's own dtype (as np.mean computes it)."""
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
