"""Steps 3-6 of preprocessing: from a grey picture to its ink at working resolution.

``working_scale`` shrinks a large photo; ``ink_is_dark`` tells dark ink on light paper from light
ink on a dark board, so the ink can be made bright; ``remove_background`` subtracts the (unevenly
lit, shadowed) paper; ``find_ink`` finds the noise level, the ink's contrast, the confident ink mask
and a soft ink map (0 on the paper, 1 in the stroke core). ``extract_ink`` runs them all, widening
the background estimate when the strokes turn out thicker than it allows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

from digitrec.reading import ndexact as nx
from digitrec.reading.decode import Decoded, ImageInput, decode, decode_reduced, to_gray

WORK_MAX_SIDE = 1024  # pixels: long side of the working image for one digit
LEVEL_GRID = 24  # pixels: long side of the copy the paper's local level is found on, for the polarity
POLARITY_SIDE = 256  # pixels: under uneven light the polarity is judged on blocks of a copy this large
UNEVEN_EDGE = 0.06  # light varying this much along the frame's edge (0-1) is a shadow or a gradient

# --- ink detection ---
MIN_CONTRAST = 0.15  # ink must differ from the paper by at least this much (0-1 scale)
NOISE_SIGMAS = 8.0  # ... and by this many standard deviations of the paper's noise and texture
INK_FRACTION = 0.3  # the ink mask keeps what is at least this fraction of the ink contrast
THICKEST_PER_OPENING = 1.5  # the background opening is this many times wider than the thickest ink
CORE_PERCENTILE = 90  # ink at or above this percentile of the masked ink counts as full ink (1.0)


def working_scale(gray: np.ndarray, max_side: int = WORK_MAX_SIDE) -> tuple[np.ndarray, float]:
    """Shrink so the long side is at most `max_side` (area averaging). Returns (image, scale)
    where scale = input pixels per working pixel (>= 1)."""
    h, w = gray.shape
    scale = max(h, w) / max_side
    if scale <= 1:
        return gray, 1.0
    size = (max(1, round(w / scale)), max(1, round(h / scale)))
    small = np.asarray(Image.fromarray(gray, "F").resize(size, Image.Resampling.BOX))
    return small, w / size[0]


def _level_grid(means: np.ndarray) -> np.ndarray:
    """`paper_under` on its coarse grid (at most LEVEL_GRID pixels on the long side)."""
    step = max(1, math.ceil(max(means.shape) / LEVEL_GRID))
    small = np.asarray(Image.fromarray(np.ascontiguousarray(means, np.float32), "F").reduce(step))
    return ndimage.median_filter(small, size=(max(3, small.shape[0] // 2), max(3, small.shape[1] // 2)), mode="nearest")


def paper_under(means: np.ndarray, shape: tuple[int, int] | None = None) -> np.ndarray:
    """The paper's local brightness under a grey picture, on either polarity: the median of a
    window half the frame wide and half its height (a line of digits fills a wide frame's height,
    not its width), taken on a copy of `means` (H, W) at most LEVEL_GRID pixels on its
    long side and scaled back to `shape` (default: `means`'s). Written strokes are the minority of
    every such window, so the median follows the paper; and a median keeps the step of a hard
    shadow where a mean or an opening would blur it into a dark or a bright band."""
    h, w = shape or means.shape
    return np.asarray(Image.fromarray(_level_grid(means), "F").resize((w, h), Image.Resampling.BILINEAR))


def uneven_light(means: np.ndarray) -> bool:
    """Does the paper's light vary along the frame's edge (`means` (H, W), 0-1) by more than
    UNEVEN_EDGE (between the 10th and the 90th percentile of the edge's pixels)? The edge is paper
    almost everywhere, so this is a shadow or a light gradient, not the ink."""
    if min(means.shape) < 2:
        return False
    edge = np.concatenate([means[0], means[-1], means[1:-1, 0], means[1:-1, -1]])
    low, high = np.percentile(edge, [10, 90])
    return bool(high - low > UNEVEN_EDGE)


def ink_is_dark(gray: np.ndarray) -> bool:
    """True for dark ink on light paper. The paper is the bulk of the pixels (the median); ink is
    the minority on one side of it: whichever tail reaches further from the median. A small digit
    in a large frame is a tiny minority, so ever rarer tails are looked at until one side is
    clearly further out; when neither is (a blank page), dark ink, the common case. Under uneven
    light (`uneven_light`) the tails are taken from the paper's local level (`paper_under`)
    instead: taken against one level, the lit side of a shadowed page would look like light ink."""
    smooth = nx.uniform_filter(gray, 3)  # a hot pixel is not ink
    if uneven_light(smooth):
        # on blocks, as the fast path does: a local level for every pixel of a large frame costs
        # more than the whole test did
        step = max(1, math.ceil(max(smooth.shape) / POLARITY_SIDE))
        if step == 1:
            return _dark_on_local_paper(smooth, smooth, smooth)
        means = np.asarray(Image.fromarray(np.ascontiguousarray(smooth, np.float32), "F").reduce(step))
        return _dark_on_local_paper(nx.block_min(smooth, step), nx.block_min(smooth, step, np.maximum), means)
    part = nx.ranked(smooth.ravel())  # one selection finds the paper and every tail
    return _darker_tail(part, part, float(nx.median_of(part, smooth.size)))


def ink_is_dark_in_blocks(darkest: np.ndarray, lightest: np.ndarray, means: np.ndarray, white: float = 1.0) -> bool:
    """`ink_is_dark` for a picture shrunk by blocks, from the darkest and the lightest pixel of each
    block (on a 0-`white` scale) and the block means (`means`, 0-1, whose median is the paper, or
    under uneven light their `paper_under`): a stroke thinner than a block is averaged away in its
    mean, not in its block's extreme on the stroke's side. Noise darkens the darkest and lightens
    the lightest alike, so neither side gains."""
    if uneven_light(means):
        return _dark_on_local_paper(darkest, lightest, means, white)
    # ordered in their own dtype (8-bit values sort fastest), then on the 0-1 scale
    lows, highs = nx.ordered(darkest.ravel()) / white, nx.ordered(lightest.ravel()) / white
    return _darker_tail(lows, highs, float(nx.median(means.ravel())))


def _dark_on_local_paper(darkest: np.ndarray, lightest: np.ndarray, means: np.ndarray, white: float = 1.0) -> bool:
    """The tails of `ink_is_dark_in_blocks`, each block's extremes taken from the paper's local
    level under it (`paper_under` of the block means) instead of one level for the frame."""
    paper = paper_under(means, darkest.shape)  # (a partial block at an edge may be in one only)
    lows = (darkest / np.float32(white) - paper).astype(np.float32).ravel()
    highs = (lightest / np.float32(white) - paper).astype(np.float32).ravel()
    return _darker_tail(nx.ranked(lows), nx.ranked(highs), 0.0)


def _darker_tail(lows: np.ndarray | nx.Ranked, highs: np.ndarray | nx.Ranked, median: float) -> bool:
    """Does the dark tail (of the ordered `lows`) reach further from the paper (`median`) than the
    light tail (of the ordered `highs`), looking at ever rarer tails? True when neither does."""
    n = lows.size
    for tail in (0.5, 0.05, 0.005):
        (i, j, t), (k, m, u) = nx.percentile_ranks(n, tail), nx.percentile_ranks(n, 100 - tail)
        # np.percentile(values, [tail, 100 - tail])
        lo, hi = nx.lerp(lows[i], lows[j], t, in_dtype=False), nx.lerp(highs[k], highs[m], u, in_dtype=False)
        dark, light = median - lo, hi - median
        if max(dark, light) > 0.1 and max(dark, light) > 1.5 * min(dark, light):
            return bool(dark > light)
    return True


def background_size(shape: tuple[int, int]) -> int:
    """Width (pixels) of the grey opening that estimates the paper: a quarter of the frame, far
    wider than a stroke (about 1/8 of a digit's height), narrow enough to follow shading.
    `extract_ink` widens it when the ink found turns out to have thicker strokes."""
    return max(7, int(min(shape) / 4))


def _smooth_opening(small: np.ndarray, k: int, pad: int, smooth: int) -> np.ndarray:
    """`nx.uniform_filter(ndimage.grey_opening(np.pad(small, pad, "edge"), size=(k, k)), smooth)`
    cropped back to `small`'s frame, bit for bit: the same scipy 1-D passes in the same order
    (erosion: minimum along rows then columns; dilation: maximum, its window one pixel back for an
    even k, as grey_dilation places it), skipping work whose result is a copy or is cut away.
    The first pass runs on the picture's own columns (the padding's columns are copies of the
    edge ones, and so are their minima), the last only on the rows that are kept."""
    h, w = small.shape
    tall = nx.edge_pad(small, pad)[:, pad : pad + w]  # (h + 2 pad, w)
    eroded = ndimage.minimum_filter1d(tall, k, axis=0)
    wide = np.empty((h + 2 * pad, w + 2 * pad), eroded.dtype)
    wide[:, pad : pad + w] = eroded
    wide[:, :pad] = eroded[:, :1]
    wide[:, pad + w :] = eroded[:, -1:]
    eroded = ndimage.minimum_filter1d(wide, k, axis=1)
    back = -1 if k % 2 == 0 else 0
    opened = ndimage.maximum_filter1d(eroded, k, axis=0, origin=back)
    opened = ndimage.maximum_filter1d(opened, k, axis=1, origin=back)
    level = ndimage.uniform_filter1d(opened, smooth, axis=0)[pad : pad + h]
    return ndimage.uniform_filter1d(level, smooth, axis=1)[:, pad : pad + w]


def paper_level(ink_bright: np.ndarray, size: int | None = None) -> np.ndarray:
    """Ink-bright image (H, W) -> the level of its paper (H, W), from which `remove_background`
    measures the ink; as slowly varying as the light, so it can be sampled at any resolution.

    The paper level is a grey opening (erosion then dilation) with a square wider than any stroke:
    it removes the strokes and keeps the slowly varying light. It is computed on a shrunken copy
    (cheap even for a wide opening), smoothed and scaled back."""
    h, w = ink_bright.shape
    size = size or background_size((h, w))
    factor = max(1, min(size // 12, h, w))  # (a block no larger than the frame)
    small = ink_bright
    if factor > 1:
        # Shrink by the minimum of each block (of a lightly smoothed copy: noise is not paper):
        # a block with any paper in it is paper, exactly as the opening's own erosion would say,
        # so no trace of the ink leaks into the paper estimate wherever the digit falls.
        smooth = nx.gaussian_filter(ink_bright, factor / 2)
        small = nx.block_min(smooth, factor)
    k = max(3, size // factor)
    # Pad explicitly: scipy applies the edge mode to each of erosion and dilation separately,
    # which would underestimate paper that gets brighter towards the border (vignetting).
    paper = _smooth_opening(small, k, pad=k + k // 2, smooth=max(3, k // 2))
    if factor > 1:
        paper = np.asarray(Image.fromarray(paper, "F").resize((w, h), Image.Resampling.BILINEAR))
    return paper


def above_paper(ink_bright: np.ndarray, paper: np.ndarray) -> np.ndarray:
    """Ink contrast above the paper level (both (H, W), ink-bright). Light falls on ink and paper
    alike, so the contrast is taken relative to 1 - paper level: for dark ink on paper that is the
    local paper brightness (a shadowed stroke is as black, relative to its paper, as a lit one).
    Light ink on a dark board gets the same formula, so a picture and its negative give the same ink."""
    paper = np.minimum(paper, ink_bright)
    return (ink_bright - paper) / np.maximum(1.0 - paper, 0.05)


def remove_background(ink_bright: np.ndarray, size: int | None = None) -> np.ndarray:
    """Ink-bright image (H, W) -> residual (H, W): ink contrast above the local paper level
    (`paper_level`, `above_paper`)."""
    return above_paper(ink_bright, paper_level(ink_bright, size))


@dataclass
class Ink:
    """The ink of a picture at working resolution.

    ink: (H, W) float32, 0 on the paper, 1 in the stroke core. mask: (H, W) bool, the confident
    ink. scale: input pixels per working pixel. contrast and noise are on the 0-1 scale.
    found is False when nothing stands out of the paper (a blank page).
    """

    ink: np.ndarray
    mask: np.ndarray
    scale: float
    input_size: tuple[int, int]  # (width, height) of the upright input image
    dark_ink: bool
    contrast: float
    noise: float
    found: bool
    paper: np.ndarray | None = None  # (H, W) the paper level (`paper_level`, ink-bright), for refining a crop


def ink_blur(shape: tuple[int, int]) -> float:
    """The Gaussian sigma (pixels) `find_ink` smooths a frame of `shape` with: about a stroke's
    edge, to average out sensor noise and JPEG blocks."""
    return max(0.7, min(shape) / 400)


def find_ink(residual: np.ndarray, blur: float | None = None) -> tuple[np.ndarray, np.ndarray, float, float, bool]:
    """Residual (ink above paper) -> (ink map, mask, contrast, noise, found). `blur`: the
    smoothing's sigma, `ink_blur` of the residual's shape unless given (a crop of a frame)."""
    smooth = nx.gaussian_filter(residual, ink_blur(residual.shape) if blur is None else blur)
    n = smooth.size
    top = nx.percentile_ranks(n, 99.95)
    part = nx.ranked(smooth.ravel())  # (n,) by rank
    floor = float(nx.median_of(part, n))
    peak = float(part[n - 1]) - floor
    # Ink contrast: a high percentile (robust to a hot pixel), but a small digit in a large frame
    # is < 0.05% of the pixels, hence also half the peak.
    contrast = max(nx.lerp(part[top[0]], part[top[1]], top[2], in_dtype=True) - floor, 0.5 * peak)
    # Noise (sensor noise and paper texture): robust spread of the pixels that are clearly paper.
    paper = smooth[smooth < floor + INK_FRACTION * contrast]  # (m,)
    noise = 0.0
    if paper.size:
        centre = nx.median(paper)  # np.median(paper)
        noise = 1.4826 * float(nx.median(np.abs(paper - centre)))
    found = contrast >= MIN_CONTRAST and contrast >= NOISE_SIGMAS * noise
    threshold = floor + max(INK_FRACTION * contrast, 0.5 * NOISE_SIGMAS * noise)
    mask = smooth > threshold
    if not found or not mask.any():
        zeros = np.zeros_like(residual)
        return zeros, np.zeros(residual.shape, bool), contrast, noise, False
    # Soft ink: 0 at the paper's noise floor, 1 at the stroke core (90th percentile of the mask).
    low = floor + max(0.05 * contrast, 3 * noise)
    inked = nx.ranked(smooth[mask])
    i, j, t = nx.percentile_ranks(int(mask.sum()), CORE_PERCENTILE)
    core = nx.lerp(inked[i], inked[j], t, in_dtype=True)  # np.percentile(smooth[mask], CORE_PERCENTILE)
    ink = np.clip((residual - low) / max(core - low, 1e-6), 0, 1).astype(np.float32)
    return ink, mask, contrast, noise, True


def _ink_box(mask: np.ndarray, ring: bool) -> tuple[np.ndarray, tuple[slice, slice]] | None:
    """The mask cropped to its ink's box (None without ink), with a one-pixel ring of paper around
    it: on every side (`ring` True: the frame's outside counts as paper), or only where the box
    stops short of the frame's edge (the frame's outside is not paper). Every pixel outside the box
    is paper that reaches the edge in a straight line, and no piece of ink is nearer its paper than
    the ring, so fills and distances of the ink computed on the crop are those of the whole mask."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    h, w = mask.shape
    y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    if not ring:  # keep the frame's edges where the ink touches them
        y0, y1, x0, x1 = max(y0 - 1, 0), min(y1 + 1, h), max(x0 - 1, 0), min(x1 + 1, w)
    crop = mask[y0:y1, x0:x1]
    if ring:
        crop = np.pad(crop, 1) if min(crop.shape) == 0 else nx.zero_ring(crop)
    return crop, (slice(y0, y1), slice(x0, x1))


def thickest(mask: np.ndarray) -> float:
    """Width (pixels) of the thickest part of a shape: twice its largest inscribed radius."""
    box = _ink_box(mask, ring=False)
    return 2.0 * float(ndimage.distance_transform_edt(box[0]).max()) if box is not None else 0.0


def thickest_bound(mask: np.ndarray) -> float:
    """An upper bound of `thickest(mask)`, several times cheaper: the city-block distance to the
    paper is never shorter than the straight one. Where it already settles a comparison, the
    Euclidean distance map need not be computed."""
    box = _ink_box(mask, ring=False)
    if box is None:
        return 0.0
    city = ndimage.distance_transform_cdt(box[0], metric="taxicab")  # int32; -1: no paper at all
    return 2.0 * float(city.max()) if city.min() >= 0 else float("inf")


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """`ndimage.binary_fill_holes(mask)`, exactly, in one labelling pass instead of a dilation
    repeated until nothing changes: paper that does not reach the frame's edge (4-connected,
    as there) is a hole. Labelled within the ink's box, ringed by paper that reaches the edge."""
    filled = np.zeros(mask.shape, bool)
    box = _ink_box(mask, ring=True)
    if box is None:
        return filled
    paper, _ = ndimage.label(~box[0])  # (h + 2, w + 2) int32, 0 on the ink; the ring is one piece
    filled[box[1]] = (paper != paper[0, 0])[1:-1, 1:-1]
    return filled


def _strokes_too_wide(bright: np.ndarray, mask: np.ndarray, size: int) -> bool:
    """Did an opening of `size` miss part of the strokes? Either the thickest ink found is too close
    to the opening's width (then how much of it the opening keeps depends on where it falls), or
    the mask is a stroke's outline around ink-coloured "holes"."""
    # thickest <= bound, and x -> 1.5 * x is monotonic in floating point: the bound rules out most masks.
    if THICKEST_PER_OPENING * thickest_bound(mask) > size and THICKEST_PER_OPENING * thickest(mask) > size:
        return True
    filled = fill_holes(mask)
    holes = filled & ~mask
    if holes.sum() <= 0.05 * mask.sum() or filled.all():
        return False
    paper = nx.median(bright[~filled])
    return bool(nx.median(bright[holes]) - paper > 0.5 * (nx.median(bright[mask]) - paper))


def on_grid(bright: np.ndarray) -> np.ndarray:
    """`(np.round(bright * 65536.0) / 65536.0).astype(np.float32)`, in place on one copy: the ink
    brightness on a 2^-16 grid, so that a picture and its negative (1 - x, rounded differently in
    float32) become the very same array and give the very same digit."""
    if bright.dtype != np.float32:
        return (np.round(bright * 65536.0) / 65536.0).astype(np.float32)
    out = bright * np.float32(65536.0)
    np.round(out, out=out)
    out /= np.float32(65536.0)
    return out


def ink_of_gray(work: np.ndarray, scale: float, size: tuple[int, int], dark: bool | None = None) -> Ink:
    """Steps 4-6 on a grey picture at working resolution (`scale` input pixels per pixel, `size` the
    input's (width, height)): its ink. `dark`: the polarity, when already known (`ink_is_dark_in_blocks`)."""
    dark = ink_is_dark(work) if dark is None else dark
    bright = on_grid(1.0 - work if dark else work)
    opening, largest = background_size(bright.shape), max(bright.shape)
    while True:
        paper = paper_level(bright, opening)
        ink, mask, contrast, noise, found = find_ink(above_paper(bright, paper))
        if not found or opening >= largest or not _strokes_too_wide(bright, mask, opening):
            break
        # Strokes about as wide as the opening are partly taken for paper: widen it (at the
        # limit, one paper level for the whole frame) and look again.
        opening = min(max(2 * opening, int(THICKEST_PER_OPENING * thickest(fill_holes(mask))) + 1), largest)
    found_ink = Ink(
        ink=ink, mask=mask, scale=scale, input_size=size, dark_ink=dark, contrast=contrast, noise=noise, found=found
    )
    found_ink.paper = paper  # what a crop of this frame is refined against
    return found_ink


def ink_of_crop(gray: np.ndarray, paper: np.ndarray, dark: bool, blur: float) -> tuple[np.ndarray, np.ndarray, bool]:
    """The ink (map, mask, found) of a crop (grey (H, W)) of a frame whose polarity and paper level
    (`paper_level`, sampled at the crop's pixels) were found on a small copy of it: the paper is as
    slowly varying as the light, the ink is measured at the crop's own resolution. `blur`: the
    frame's `ink_blur`, in pixels of the crop."""
    bright = on_grid(1.0 - gray if dark else gray)
    ink, mask, _, _, found = find_ink(above_paper(bright, paper), blur)
    return ink, mask, found


def extract_ink(image: ImageInput | Image.Image, max_side: int = WORK_MAX_SIDE, reduce: bool = True) -> Ink:
    """Steps 1-6: an image as handed to us -> its ink at working resolution. `reduce`: a JPEG far
    larger than the working resolution is decoded at a fraction of its size (`decode_reduced`),
    otherwise it is decoded whole first."""
    if reduce:
        decoded = decode_reduced(image, max_side)
    else:
        pil = decode(image)
        decoded = Decoded(image=pil, size=pil.size)
    work, scale = working_scale(to_gray(decoded.image), max_side)
    return ink_of_gray(work, scale * decoded.factor, decoded.size)
