"""MNIST from the four published IDX files: find them, verify them, parse them.

Where the files come from, in order: an explicit directory (``--data-dir`` or the
``DIGITREC_DATA`` environment variable), the repository's own ``data/mnist/``, the user cache
directory, and finally a download from the public mirrors into the cache. Every file is checked
against the MD5 of its uncompressed content as published with MNIST, so a corrupt or foreign
file is refused instead of silently training on garbage.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from digitrec.atomic import atomic_write_bytes
from digitrec.errors import CheckpointError, DataError

# name -> (MD5 of the uncompressed IDX content, expected shape)
FILES: dict[str, tuple[str, tuple[int, ...]]] = {
    "train-images-idx3-ubyte.gz": ("6bbc9ace898e44ae57da46a324031adb", (60000, 28, 28)),
    "train-labels-idx1-ubyte.gz": ("a25bea736e30d166cdddb491f175f624", (60000,)),
    "t10k-images-idx3-ubyte.gz": ("2646ac647ad5339dbf082846283269ea", (10000, 28, 28)),
    "t10k-labels-idx1-ubyte.gz": ("27ae3e4e09519cfbb04c329615203637", (10000,)),
}

# The mirrors torchvision uses; yann.lecun.com is last because it often refuses robots.
MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)

REPO_DATA_DIR = Path(__file__).resolve().parents[3] / "data" / "mnist"
DOWNLOAD_TIMEOUT_S = 30


@dataclass(frozen=True)
class Mnist:
    """The whole data set in memory: uint8 images (N, 28, 28) and int64 labels (N,)."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    checksums: dict[str, str]  # file name -> MD5 of uncompressed content
    source: str  # where the files were found (for the checkpoint and the logs)


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "digitrec" / "mnist"


def candidate_dirs(data_dir: str | os.PathLike | None = None) -> list[Path]:
    """The directories searched for the files, in order."""
    dirs: list[Path] = []
    explicit = data_dir if data_dir is not None else os.environ.get("DIGITREC_DATA")
    if explicit:
        dirs.append(Path(explicit).expanduser())
    dirs += [REPO_DATA_DIR, cache_dir()]
    return dirs


def _read_verified(path: Path, name: str) -> bytes:
    """Decompress `path` and check its content against the published MD5."""
    expected_md5 = FILES[name][0]
    try:
        raw = gzip.decompress(path.read_bytes())
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DataError(
            f"{path}: not a readable gzip file ({exc}); delete it or replace it with the published file"
        ) from None
    actual = hashlib.md5(raw).hexdigest()
    if actual != expected_md5:
        raise DataError(
            f"{path}: checksum mismatch (MD5 of content {actual}, expected {expected_md5}); "
            "the file is corrupt or not MNIST, replace it with the published file"
        )
    return raw


def parse_idx(raw: bytes, shape: Sequence[int]) -> np.ndarray:
    """Parse an uncompressed IDX file of unsigned bytes and check its shape."""
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError("not an IDX file of unsigned bytes")
    ndim = raw[3]
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if dims != tuple(shape):
        raise DataError(f"IDX file has shape {dims}, expected {tuple(shape)}")
    offset = 4 + 4 * ndim
    return np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(dims)


def download(name: str, target_dir: Path, mirrors: Iterable[str] = MIRRORS) -> Path:
    """Fetch `name` from the first mirror that serves a verified copy; write it atomically."""
    errors = []
    for mirror in mirrors:
        url = mirror.rstrip("/") + "/" + name
        try:
            with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
                payload = response.read()
            raw = gzip.decompress(payload)
        except urllib.error.HTTPError as exc:
            errors.append(f"{url}: HTTP {exc.code}")
            continue
        except (urllib.error.URLError, OSError, EOFError, ValueError) as exc:
            errors.append(f"{url}: {getattr(exc, 'reason', exc)}")
            continue
        if hashlib.md5(raw).hexdigest() != FILES[name][0]:
            errors.append(f"{url}: checksum mismatch")
            continue
        target_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(target_dir / name, payload)
        return target_dir / name
    raise DataError(f"could not download {name}: " + "; ".join(errors))


def locate(
    data_dir: str | os.PathLike | None = None,
    allow_download: bool = True,
    mirrors: Iterable[str] | None = None,
) -> dict[str, Path]:
    """Find (or fetch) each of the four files; returns name -> path. Does not verify."""
    dirs = candidate_dirs(data_dir)
    found: dict[str, Path] = {}
    for name in FILES:
        for directory in dirs:
            if (directory / name).is_file():
                found[name] = directory / name
                break
    missing = [name for name in FILES if name not in found]
    if missing and allow_download:
        target = Path(data_dir).expanduser() if data_dir else cache_dir()
        try:
            for name in missing:
                found[name] = download(name, target, MIRRORS if mirrors is None else mirrors)
        except DataError as exc:
            searched = ", ".join(str(d) for d in dirs)
            raise DataError(
                f"MNIST files not found (looked in {searched}) and the download failed ({exc}); "
                f"put the four .gz files in one of those directories or pass --data-dir"
            ) from None
    elif missing:
        raise DataError(
            f"MNIST files missing: {', '.join(missing)}; put them in "
            f"{dirs[0]} or pass --data-dir DIR (or set DIGITREC_DATA)"
        )
    return found


def load_mnist(
    data_dir: str | os.PathLike | None = None,
    allow_download: bool = True,
    mirrors: Iterable[str] | None = None,
) -> Mnist:
    """Locate, verify and parse MNIST into memory."""
    paths = locate(data_dir, allow_download, mirrors)
    arrays = {}
    for name, (_md5, shape) in FILES.items():
        raw = _read_verified(paths[name], name)
        try:
            arrays[name] = parse_idx(raw, shape)
        except DataError as exc:  # only reachable with a forged MD5 match, but stay graceful
            raise DataError(f"{paths[name]}: {exc}") from None
    tensor = lambda name, dtype: torch.from_numpy(arrays[name].copy()).to(dtype)  # noqa: E731
    return Mnist(
        train_images=tensor("train-images-idx3-ubyte.gz", torch.uint8),
        train_labels=tensor("train-labels-idx1-ubyte.gz", torch.int64),
        test_images=tensor("t10k-images-idx3-ubyte.gz", torch.uint8),
        test_labels=tensor("t10k-labels-idx1-ubyte.gz", torch.int64),
        checksums={name: md5 for name, (md5, _) in FILES.items()},
        source=str(paths["train-images-idx3-ubyte.gz"].parent),
    )


def stratified_split(labels: torch.Tensor, n_val: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Split indices into (train, val) with each class represented in proportion.

    Each class gives round(n_val * class_share) validation items (largest remainders fix the
    total), drawn with a seeded permutation, so the same seed always gives the same split.
    """
    n = labels.numel()
    if not 0 < n_val < n:
        raise DataError(f"validation size must be between 1 and {n - 1}, got {n_val}")
    generator = torch.Generator().manual_seed(seed)
    classes, counts = torch.unique(labels, return_counts=True)
    exact = counts.double() * n_val / n
    quota = exact.floor().long()
    short = n_val - int(quota.sum())
    quota[torch.argsort(exact - quota, descending=True)[:short]] += 1
    val_parts, train_parts = [], []
    for cls, k in zip(classes.tolist(), quota.tolist()):
        idx = torch.nonzero(labels == cls).flatten()
        idx = idx[torch.randperm(idx.numel(), generator=generator)]
        val_parts.append(idx[:k])
        train_parts.append(idx[k:])
    return torch.cat(train_parts).sort().values, torch.cat(val_parts).sort().values


def slice_stratified(indices: torch.Tensor, labels: torch.Tensor, limit: int, seed: int) -> torch.Tensor:
    """A class-balanced subset of `indices` of size `limit` (for quick runs on a slice)."""
    if limit >= indices.numel():
        return indices
    keep, _ = stratified_split(labels[indices], indices.numel() - limit, seed)
    return indices[keep]


def split_indices(
    labels: torch.Tensor, n_val: int, seed: int, limit_train: int | None = None, limit_eval: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, val) indices as `digitrec train` uses them: the stratified split, then a stratified
    slice of `limit_train` training images and the first `limit_eval` validation images."""
    train, val = stratified_split(labels, n_val, seed)
    if limit_train is not None:
        train = slice_stratified(train, labels, limit_train, seed)
    return train, (val[:limit_eval] if limit_eval else val)


def indices_sha256(indices: torch.Tensor) -> str:
    """The checksum a checkpoint records of its validation indices (`meta["split"]`)."""
    return hashlib.sha256(indices.numpy().tobytes()).hexdigest()


def split_record(
    train: torch.Tensor, val: torch.Tensor, seed: int, n_val_drawn: int, limit_train: int | None
) -> dict[str, Any]:
    """`meta["split"]` of a checkpoint trained on these indices: enough to rebuild them
    (`checkpoint_split`) and a checksum to prove it."""
    return {
        "seed": seed,
        "n_train": int(len(train)),
        "n_val": int(len(val)),
        "val_indices_sha256": indices_sha256(val),
        "stratified": True,
        "n_val_drawn": n_val_drawn,
        "limit_train": limit_train,
    }


def split_parameters(meta: Mapping[str, Any]) -> dict[str, Any]:
    """The recorded split of a checkpoint, completed: what its own `split` does not say (older
    checkpoints) comes from its training config. A checkpoint trained from another one's split
    copies this, so the record stands on its own."""
    split = meta.get("split")
    if not isinstance(split, Mapping) or not {"n_val", "seed"} <= set(split):
        raise CheckpointError("checkpoint records no validation split (meta['split'] with n_val and seed)")
    if not split.get("val_indices_sha256"):
        raise CheckpointError(
            "checkpoint records no checksum of its validation split (val_indices_sha256); "
            "cannot check which images it was trained on"
        )
    config = meta.get("config")
    config = config if isinstance(config, Mapping) else {}
    n_val = int(split["n_val"])
    return {
        **split,
        "n_val": n_val,
        "seed": int(split["seed"]),
        # a run with limit_eval kept the first n_val of a larger split
        "n_val_drawn": int(split.get("n_val_drawn") or config.get("n_val") or n_val),
        "limit_train": split["limit_train"] if "limit_train" in split else config.get("limit_train"),
    }


def checkpoint_split(meta: Mapping[str, Any], train_labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The (train, val) indices into the official training set that a checkpoint was trained and
    chosen on, rebuilt from its recorded split and checked against the recorded checksum of the
    validation indices, so a temperature, a threshold or another model's training data is never
    taken from images the model was trained on. Raises CheckpointError when they differ."""
    split = split_parameters(meta)
    try:
        train, val = split_indices(
            train_labels, split["n_val_drawn"], split["seed"], split["limit_train"], split["n_val"]
        )
    except DataError as exc:
        raise CheckpointError(f"cannot rebuild the checkpoint's validation split: {exc}") from None
    n_train = split.get("n_train")
    if indices_sha256(val) != split["val_indices_sha256"] or (n_train is not None and int(n_train) != len(train)):
        raise CheckpointError(
            "cannot reproduce the checkpoint's validation split (index checksum differs); "
            "was it trained on different data?"
        )
    return train, val
