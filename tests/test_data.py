"""MNIST loading: IDX parsing, checksum refusal, search order, downloads from a local server."""

from __future__ import annotations

import gzip
import http.server
import shutil
import threading
from pathlib import Path

import pytest
import torch

from digitrec.errors import DataError
from digitrec.training import mnist_files as data
from digitrec.training.data import FILES, REPO_DATA_DIR, checkpoint_split, load_mnist, parse_idx, stratified_split


def test_repo_carries_the_four_files():
    for name in FILES:
        assert (REPO_DATA_DIR / name).is_file(), name
    assert "CC BY-SA" in (REPO_DATA_DIR / "README.md").read_text()


def test_loaded_shapes_and_class_counts(mnist):
    assert mnist.train_images.shape == (60000, 28, 28) and mnist.train_images.dtype == torch.uint8
    assert mnist.test_images.shape == (10000, 28, 28)
    # published class counts (../shared/data/mnist/README.md)
    assert torch.bincount(mnist.train_labels).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert torch.bincount(mnist.test_labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_parse_idx_rejects_wrong_magic_and_shape():
    header = bytes([0, 0, 8, 1]) + (3).to_bytes(4, "big")
    assert parse_idx(header + b"\x01\x02\x03", (3,)).tolist() == [1, 2, 3]
    with pytest.raises(DataError, match="shape"):
        parse_idx(header + b"\x01\x02\x03", (4,))
    with pytest.raises(DataError, match="IDX"):
        parse_idx(b"\x00\x00\x0d\x01" + b"\x00" * 8, (3,))


def _copy_repo_data(target: Path) -> Path:
    target.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        shutil.copy(REPO_DATA_DIR / name, target / name)
    return target


def _corrupt(path: Path) -> None:
    raw = bytearray(gzip.decompress(path.read_bytes()))
    raw[-1] ^= 0xFF  # one pixel of one image: the content changes, the format does not
    path.write_bytes(gzip.compress(bytes(raw)))


def test_checksum_mismatch_is_refused_with_clear_message(tmp_path):
    directory = _copy_repo_data(tmp_path / "mnist")
    _corrupt(directory / "t10k-labels-idx1-ubyte.gz")
    with pytest.raises(DataError, match="checksum mismatch") as info:
        load_mnist(directory, allow_download=False)
    assert "t10k-labels-idx1-ubyte.gz" in str(info.value) and "\n" not in str(info.value)


def test_not_gzip_is_refused(tmp_path):
    directory = _copy_repo_data(tmp_path / "mnist")
    (directory / "train-labels-idx1-ubyte.gz").write_bytes(b"<html>not found</html>")
    with pytest.raises(DataError, match="not a readable gzip"):
        load_mnist(directory, allow_download=False)


def test_explicit_directory_comes_first(tmp_path, monkeypatch):
    directory = _copy_repo_data(tmp_path / "explicit")
    assert load_mnist(directory, allow_download=False).source == str(directory)
    monkeypatch.setenv("DIGITREC_DATA", str(directory))
    assert data.candidate_dirs()[0] == directory
    assert load_mnist(allow_download=False).source == str(directory)


def test_missing_files_offline_gives_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "REPO_DATA_DIR", tmp_path / "no-repo-data")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(DataError) as info:
        load_mnist(tmp_path / "empty", allow_download=False)
    message = str(info.value)
    assert "--data-dir" in message and str(tmp_path / "empty") in message and "\n" not in message


class _Mirror:
    """A local HTTP server on 127.0.0.1 serving the files of a directory (404 for the rest)."""

    def __init__(self, root: Path) -> None:
        handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(root), **k)  # noqa: E731
        http.server.SimpleHTTPRequestHandler.log_message = lambda *a: None
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        return self.url

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def no_local_data(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "REPO_DATA_DIR", tmp_path / "no-repo-data")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("DIGITREC_DATA", raising=False)


def test_download_from_mirror_verifies_and_caches(tmp_path, no_local_data):
    good = _copy_repo_data(tmp_path / "good")
    with _Mirror(good) as url:
        mnist = load_mnist(mirrors=[url])
    cache = tmp_path / "cache" / "digitrec" / "mnist"
    assert mnist.source == str(cache)
    assert sorted(p.name for p in cache.iterdir()) == sorted(FILES)  # no temp files left behind
    assert mnist.test_labels.numel() == 10000


def test_download_skips_404_and_corrupt_mirrors(tmp_path, no_local_data):
    empty = tmp_path / "empty"
    empty.mkdir()
    corrupt = _copy_repo_data(tmp_path / "corrupt")
    _corrupt(corrupt / "train-images-idx3-ubyte.gz")
    good = _copy_repo_data(tmp_path / "good")
    with _Mirror(empty) as url_404, _Mirror(corrupt) as url_bad, _Mirror(good) as url_good:
        path = data.download("train-images-idx3-ubyte.gz", tmp_path / "out", [url_404, url_bad, url_good])
    assert path.read_bytes() == (good / "train-images-idx3-ubyte.gz").read_bytes()


def test_download_failure_leaves_nothing_and_explains(tmp_path, no_local_data):
    corrupt = _copy_repo_data(tmp_path / "corrupt")
    _corrupt(corrupt / "t10k-labels-idx1-ubyte.gz")
    target = tmp_path / "target"
    with _Mirror(tmp_path / "corrupt") as url_bad, _Mirror(tmp_path / "nothing") as url_404:
        with pytest.raises(DataError) as info:
            load_mnist(target, mirrors=[url_404, url_bad])
    message = str(info.value)
    assert "404" in message and "checksum mismatch" in message and "\n" not in message
    assert not (target / "t10k-labels-idx1-ubyte.gz").exists()
    assert not any(p.name.endswith(".tmp") for p in target.rglob("*"))


def test_stratified_split_is_seeded_disjoint_and_balanced(mnist):
    train, val = stratified_split(mnist.train_labels, 5000, seed=0)
    assert len(train) == 55000 and len(val) == 5000
    assert len(set(train.tolist()) & set(val.tolist())) == 0
    val_counts = torch.bincount(mnist.train_labels[val], minlength=10).double()
    expected = torch.bincount(mnist.train_labels, minlength=10).double() * 5000 / 60000
    assert (val_counts - expected).abs().max() <= 1
    again, val_again = stratified_split(mnist.train_labels, 5000, seed=0)
    assert torch.equal(val, val_again)
    assert not torch.equal(val, stratified_split(mnist.train_labels, 5000, seed=1)[1])


def test_every_shipped_checkpoint_rebuilds_its_recorded_split(mnist):
    """The default model, the reading model and the checker were chosen on the same validation
    digits; `checkpoint_split` rebuilds them and proves it with the recorded checksum."""
    from digitrec.models.checkpoint import load_checkpoint
    from digitrec.weights import CHECKER_PATH, READER_PATH

    splits = [
        checkpoint_split(load_checkpoint(path).meta, mnist.train_labels) for path in (None, READER_PATH, CHECKER_PATH)
    ]
    train, val = splits[0]
    assert len(train) == 55000 and len(val) == 5000 and not set(train.tolist()) & set(val.tolist())
    assert all(torch.equal(val, other[1]) and torch.equal(train, other[0]) for other in splits[1:])


def test_checkpoint_split_of_a_sliced_run_is_the_slice_it_used(mnist, tmp_path):
    """A run on a slice (limit_train, limit_eval) records enough to rebuild exactly its indices;
    another labelling of the same images (different data) is refused in one clear line."""
    from digitrec.errors import CheckpointError
    from digitrec.training.config import TrainConfig
    from digitrec.training.task import mnist_task

    config = TrainConfig(limit_train=300, limit_eval=200, n_val=4000, split_seed=3)
    task = mnist_task(config, mnist)
    meta = {"split": dict(task.meta["split"]), "config": {"n_val": 99}}  # the split's own record wins
    train, val = checkpoint_split(meta, mnist.train_labels)
    assert len(train) == 300 and len(val) == 200
    assert torch.equal(mnist.train_labels[train], task.train.labels)
    assert torch.equal(mnist.train_images[val], task.val.images)
    with pytest.raises(CheckpointError, match="checksum differs") as info:
        checkpoint_split(meta, mnist.train_labels.flip(0))
    assert "\n" not in str(info.value)
