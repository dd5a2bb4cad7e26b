"""The cheaper implementations preprocessing uses (`digitrec.reading.ndexact`, and the fills,
distances and openings of `digitrec.reading.ink` and `digitrec.reading.pieces` built on them)
compute exactly what scipy / numpy would.

Preprocessing runs once per request in the server, so its steps use cheaper equivalents of
scipy.ndimage and numpy calls. "Equivalent" means bit for bit: the digit a user gets must not
depend on these shortcuts. Arrays: noise, blobs, mostly-equal values (paper), every size parity.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from scipy import ndimage

from digitrec.reading import decode as dc
from digitrec.reading import ink as ik
from digitrec.reading import ndexact as nx
from digitrec.reading import pieces as pc
from digitrec.reading import preprocess as pp


def random_masks(seed: int, count: int = 60):
    rng = np.random.default_rng(seed)
    for i in range(count):
        h, w = (int(v) for v in rng.integers(8, 70, 2))
        kind = i % 4
        if kind == 0:
            yield rng.random((h, w)) < rng.uniform(0.05, 0.95)
        elif kind == 1:  # thick blobs with holes
            yield ndimage.binary_dilation(rng.random((h, w)) < 0.02, iterations=int(rng.integers(1, 6)))
        elif kind == 2:  # nearly all ink
            mask = np.ones((h, w), bool)
            mask[rng.integers(0, h), rng.integers(0, w)] = rng.random() < 0.5
            yield mask
        else:  # smooth shapes: rings and loops
            yield ndimage.gaussian_filter(rng.random((h, w)), 2) > 0.5


def random_values(seed: int, count: int = 200):
    rng = np.random.default_rng(seed)
    for i in range(count):
        n = int(rng.integers(1, 3000))
        values = rng.random(n).astype(np.float32 if i % 4 else np.float64)
        if i % 3 == 0:  # mostly equal values, like paper after background removal
            values[rng.random(n) < 0.8] = 0
        yield values


def test_filters_are_scipys_to_the_bit():
    rng = np.random.default_rng(0)
    for mask in random_masks(1, 20):
        image = rng.random(mask.shape).astype(np.float32) * mask
        for sigma in (0.7, 1.0, 2.5, float(rng.uniform(0.3, 6))):
            assert np.array_equal(nx.gaussian_filter(image, sigma), ndimage.gaussian_filter(image, sigma=sigma))
        for size in (3, 4, 9, int(rng.integers(2, 40))):
            assert np.array_equal(nx.uniform_filter(image, size), ndimage.uniform_filter(image, size=size))


def test_fill_holes_and_thickness_bound_agree_with_scipy():
    for mask in random_masks(2):
        assert np.array_equal(ik.fill_holes(mask), ndimage.binary_fill_holes(mask))
        assert ik.thickest_bound(mask) >= ik.thickest(mask)


def test_order_statistics_are_numpys_to_the_bit():
    for values in random_values(3):
        n = values.size
        median = nx.median(values)
        assert median == np.median(values) and median.dtype == np.median(values).dtype
        part = nx.ordered(values)
        for q in (0.005, 0.5, 50, 90, 99.95, 100):
            i, j, t = nx.percentile_ranks(n, q)
            assert nx.lerp(part[i], part[j], t, in_dtype=True) == float(np.percentile(values, q))
            assert nx.lerp(part[i], part[j], t, in_dtype=False) == float(np.percentile(values, [q, 50])[0])


def test_selection_by_rank_is_numpys_sort_to_the_bit():
    """Large float32 arrays are not sorted but selected from (`nx.Ranked`): the value at every rank
    asked for is the sorted array's, with negatives, zeros, and paper of one grey level (a bucket
    of the first histogram holding most values)."""
    rng = np.random.default_rng(13)
    for kind in range(5):
        n = nx.SELECT_MIN + int(rng.integers(0, 60_000))
        if kind == 0:  # residual ink: mostly zero
            values = np.where(rng.random(n) < 0.8, 0.0, rng.random(n))
        elif kind == 1:
            values = rng.normal(0, 1, n)
        elif kind == 2:  # paper at one grey level, a little noise
            values = np.round(0.8 + rng.normal(0, 0.002, n), 5)
        elif kind == 3:  # tiny values of both signs
            values = rng.normal(0, 1e-3, n)
        else:  # a few values repeated
            values = rng.choice(np.array([-1.5, 0.0, 0.25, 0.5, 3.0]), n)
        values = values.astype(np.float32)
        part, expected = nx.ranked(values), np.sort(values)
        assert isinstance(part, nx.Ranked)
        for rank in [0, 1, n // 2 - 1, n // 2, n - 2, n - 1, -1, *rng.integers(0, n, 50)]:
            got = part[int(rank)]
            assert got == expected[int(rank)] and got.dtype == np.float32
        assert nx.median(values) == np.median(values)
        for q in (0.005, 90, 99.95):
            i, j, t = nx.percentile_ranks(n, q)
            assert nx.lerp(part[i], part[j], t, in_dtype=True) == float(np.percentile(values, q))


def test_small_integers_are_ordered_as_numpys_sort():
    """8- and 16-bit values (a JPEG's block extremes) go through numpy's radix sort: the same values."""
    rng = np.random.default_rng(12)
    for dtype in (np.uint8, np.uint16, np.int16):
        info = np.iinfo(dtype)
        values = rng.integers(info.min, info.max, size=7395, endpoint=True).astype(dtype)
        part = nx.ordered(values)
        assert part.dtype == dtype and np.array_equal(part, np.sort(values))


def test_block_minimum_is_the_reshaped_minimum():
    rng = np.random.default_rng(10)
    for mask in random_masks(11, 30):
        image = rng.random(mask.shape).astype(np.float32) * mask
        h, w = image.shape
        for factor in (1, 2, 3, int(rng.integers(4, min(h, w) + 1))):
            hs, ws = h // factor, w // factor
            expected = image[: hs * factor, : ws * factor].reshape(hs, factor, ws, factor).min(axis=(1, 3))
            assert np.array_equal(nx.block_min(image, factor), expected)


def test_disk_dilation_is_scipys_grey_dilation():
    rng = np.random.default_rng(12)
    for mask in random_masks(13, 30):
        ink = (rng.random(mask.shape).astype(np.float32) * mask).astype(np.float32)
        for radius in (0.5, 1.0, 1.5, 2.1, float(rng.uniform(0.5, 9))):
            footprint = pp._disk(radius)
            r = footprint.shape[0] // 2
            padded = np.pad(ink, r)
            assert np.array_equal(nx.grey_dilate(padded, footprint), ndimage.grey_dilation(padded, footprint=footprint))


def test_digit_ink_is_the_isin_and_dilation_it_replaces():
    rng = np.random.default_rng(4)
    for mask in random_masks(5, 40):
        labels, n = ndimage.label(mask, structure=pc.EIGHT)
        ink = rng.random(mask.shape).astype(np.float32)
        ids = sorted({int(v) for v in rng.integers(1, n + 2, size=int(rng.integers(1, 4)))})
        h, w = mask.shape
        box = (
            int(rng.integers(0, w // 2)),
            int(rng.integers(0, h // 2)),
            int(rng.integers(w // 2 + 1, w + 1)),
            int(rng.integers(h // 2 + 1, h + 1)),
        )
        for halo in (0, 1, 2):
            x0, y0 = max(0, box[0] - halo), max(0, box[1] - halo)
            x1, y1 = min(w, box[2] + halo), min(h, box[3] + halo)
            lab = labels[y0:y1, x0:x1]
            want = np.isin(lab, ids)
            keep = ndimage.binary_dilation(want, structure=pc.EIGHT, iterations=halo) if halo else want.copy()
            keep &= ~((lab > 0) & ~want)
            crop, got = pc.digit_ink(ink, labels, ids, box, halo)
            assert np.array_equal(got, want)
            assert np.array_equal(crop, np.where(keep, ink[y0:y1, x0:x1], 0).astype(np.float32))


def test_padding_and_square_dilation_are_numpys_and_scipys():
    rng = np.random.default_rng(6)
    for mask in random_masks(7, 30):
        image = rng.random(mask.shape).astype(np.float32)
        for pad in (1, 9, 27):
            assert np.array_equal(nx.edge_pad(image, pad), np.pad(image, pad, mode="edge"))
        for radius in (1, 2, 3):
            assert np.array_equal(
                nx.dilate_square(mask, radius), ndimage.binary_dilation(mask, structure=pc.EIGHT, iterations=radius)
            )


def test_background_opening_is_scipys_to_the_bit():
    rng = np.random.default_rng(8)
    for mask in random_masks(9, 40):
        image = (np.round(rng.random(mask.shape) * 65536) / 65536).astype(np.float32) * (0.5 + 0.5 * mask)
        k = int(rng.integers(3, 30))  # odd and even widths
        pad, smooth = k + k // 2, max(3, k // 2)
        expected = ndimage.uniform_filter(
            ndimage.grey_opening(np.pad(image, pad, mode="edge"), size=(k, k)), size=smooth
        )[pad:-pad, pad:-pad]
        assert np.array_equal(ik._smooth_opening(image, k, pad, smooth), expected)


def test_grey_of_a_colour_picture_and_its_grid_are_the_float_formulas():
    rng = np.random.default_rng(14)
    for h, w in ((8, 8), (31, 17), (120, 90)):
        rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        rgb[0, :3] = [[0, 0, 0], [255, 255, 255], [1, 254, 128]]
        floats = np.asarray(rgb, dtype=np.float32) / 255.0
        want = (floats[..., 0] * 0.299 + floats[..., 1] * 0.587 + floats[..., 2] * 0.114).astype(np.float32)
        gray = dc.to_gray(Image.fromarray(rgb, "RGB"))
        assert gray.dtype == np.float32 and np.array_equal(gray, want)
        for bright in (gray, 1.0 - gray):
            assert np.array_equal(ik.on_grid(bright), (np.round(bright * 65536.0) / 65536.0).astype(np.float32))
