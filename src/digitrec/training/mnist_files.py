"""MNIST from the four published IDX files, without torch: find them, verify them, parse them.

Where the files come from, in order: an explicit directory (``--data-dir`` or the
``DIGITREC_DATA`` environment variable), the repository's own ``data/mnist/``, the user cache
directory, and finally a download from the public mirrors into the cache. Every file is checked
against the MD5 of its uncompressed content as published with MNIST, so a corrupt or foreign
file is refused instead of silently training on garbage.

`read_mnist` gives numpy arrays, all a base install (`digitrec evaluate --backend onnx`) needs;
`digitrec.training.data.load_mnist` wraps the same arrays as torch tensors for training.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from digitrec.atomic import atomic_write_bytes
from digitrec.errors import DataError

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


@dataclass(frozen=True)
class MnistArrays:
    """The whole data set in memory as numpy: uint8 images (N, 28, 28) and int64 labels (N,)."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    checksums: dict[str, str]  # file name -> MD5 of uncompressed content
    source: str  # where the files were found (for the checkpoint and the logs)


def read_mnist(
    data_dir: str | os.PathLike | None = None,
    allow_download: bool = True,
    mirrors: Iterable[str] | None = None,
) -> MnistArrays:
    """Locate, verify and parse MNIST into memory."""
    paths = locate(data_dir, allow_download, mirrors)
    arrays = {}
    for name, (_md5, shape) in FILES.items():
        raw = _read_verified(paths[name], name)
        try:
            arrays[name] = parse_idx(raw, shape)
        except DataError as exc:  # only reachable with a forged MD5 match, but stay graceful
            raise DataError(f"{paths[name]}: {exc}") from None
    return MnistArrays(
        train_images=arrays["train-images-idx3-ubyte.gz"].copy(),  # writable, not a view of the bytes
        train_labels=arrays["train-labels-idx1-ubyte.gz"].astype(np.int64),
        test_images=arrays["t10k-images-idx3-ubyte.gz"].copy(),
        test_labels=arrays["t10k-labels-idx1-ubyte.gz"].astype(np.int64),
        checksums={name: md5 for name, (md5, _) in FILES.items()},
        source=str(paths["train-images-idx3-ubyte.gz"].parent),
    )
