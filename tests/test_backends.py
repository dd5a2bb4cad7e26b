"""Backends: ONNX Runtime and torch give the same answers; the ONNX export is cached safely."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from digitrec.errors import CheckpointError, ConfigError
from digitrec.models import create_model, list_models
from digitrec.models.checkpoint import Checkpoint, load_checkpoint
from digitrec.models.inputs import Normalization, to_model_input
from digitrec.runtime.backends import BACKENDS, OnnxBackend, TorchBackend, create_backend
from digitrec.runtime.export import export_model

N_DIGITS = 300
TOLERANCE = 1e-4  # logits, absolute: different kernels and folded BatchNorm, same answers


@pytest.fixture(scope="module")
def checkpoint() -> Checkpoint:
    return load_checkpoint()


@pytest.fixture(scope="module")
def digits(mnist, checkpoint) -> np.ndarray:
    return to_model_input(mnist.test_images[:N_DIGITS], checkpoint.normalization).numpy()  # (300, 1, 28, 28)


@pytest.fixture(scope="module")
def onnx_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("onnx-cache")


@pytest.fixture(scope="module")
def onnx_backend(checkpoint, onnx_cache) -> OnnxBackend:
    return OnnxBackend.from_checkpoint(checkpoint, cache_dir=onnx_cache)


def eager(checkpoint: Checkpoint, x: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return checkpoint.model(torch.from_numpy(x)).numpy()


@pytest.mark.parametrize("name", BACKENDS)
def test_every_backend_answers_like_the_eager_model(name, checkpoint, digits, onnx_backend):
    backend = onnx_backend if name == "onnx" else TorchBackend(checkpoint)
    assert backend.name == name
    want = eager(checkpoint, digits)
    got = backend.logits(digits)
    assert got.shape == (N_DIGITS, 10) and got.dtype == np.float32
    assert np.array_equal(got.argmax(1), want.argmax(1))
    assert np.abs(got - want).max() <= TOLERANCE
    one = np.concatenate([backend.logits(digits[i : i + 1]) for i in range(10)])  # batch 1, as predict uses it
    assert np.abs(one - want[:10]).max() <= TOLERANCE


def test_onnx_and_torch_backends_agree(checkpoint, digits, onnx_backend):
    torch_logits = TorchBackend(checkpoint).logits(digits)
    onnx_logits = onnx_backend.logits(digits)
    assert np.array_equal(onnx_logits.argmax(1), torch_logits.argmax(1))
    assert np.abs(onnx_logits - torch_logits).max() <= TOLERANCE


def test_torch_backend_leaves_the_checkpoint_model_alone(checkpoint, digits):
    before = {k: v.clone() for k, v in checkpoint.model.state_dict().items()}
    backend = TorchBackend(checkpoint)
    backend.logits(digits[:5])
    assert backend.model is checkpoint.model
    after = checkpoint.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    plain = TorchBackend(checkpoint, optimize=False).logits(digits)
    assert np.array_equal(plain, eager(checkpoint, digits))


def test_onnx_export_is_cached_by_weights(checkpoint, onnx_backend, onnx_cache, digits):
    cached = list(onnx_cache.glob("*.onnx"))
    assert len(cached) == 1 and checkpoint.arch in cached[0].name
    stamp = cached[0].stat().st_mtime_ns
    again = OnnxBackend.from_checkpoint(checkpoint, cache_dir=onnx_cache)  # reuses the file
    assert cached[0].stat().st_mtime_ns == stamp
    assert again.metadata == onnx_backend.metadata
    assert np.array_equal(again.logits(digits), onnx_backend.logits(digits))


def test_corrupt_cache_file_is_replaced(checkpoint, onnx_backend, onnx_cache, tmp_path, digits):
    (good,) = onnx_cache.glob("*.onnx")
    cached = tmp_path / good.name
    cached.write_bytes(b"truncated")
    backend = OnnxBackend.from_checkpoint(checkpoint, cache_dir=tmp_path)
    assert cached.stat().st_size > 1000
    assert np.array_equal(backend.logits(digits[:3]).argmax(1), eager(checkpoint, digits[:3]).argmax(1))


def test_unwritable_cache_still_gives_a_backend(checkpoint, tmp_path, digits):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache directory should be")
    backend = OnnxBackend.from_checkpoint(checkpoint, cache_dir=blocker / "onnx")
    assert backend.logits(digits[:2]).shape == (2, 10)


def test_create_backend_by_name(checkpoint, onnx_backend, onnx_cache, monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    (good,) = onnx_cache.glob("*.onnx")
    cached = tmp_path / "digitrec" / "onnx" / good.name  # the user cache directory, pre-filled
    cached.parent.mkdir(parents=True)
    cached.write_bytes(good.read_bytes())
    stamp = cached.stat().st_mtime_ns
    backend = create_backend("onnx", checkpoint)
    assert isinstance(backend, OnnxBackend) and backend.metadata == onnx_backend.metadata
    assert cached.stat().st_mtime_ns == stamp  # found there, not exported again
    assert isinstance(create_backend("torch", checkpoint), TorchBackend)
    with pytest.raises(ConfigError, match="unknown backend 'tflite'"):
        create_backend("tflite", checkpoint)


def test_onnx_backend_from_an_exported_file(checkpoint, tmp_path, digits):
    path = export_model(checkpoint, tmp_path / "m.onnx").path
    backend = OnnxBackend.from_file(path, threads=1)
    assert backend.metadata.mean == checkpoint.normalization.mean
    want = eager(checkpoint, digits)
    got = backend.logits(digits)
    assert np.array_equal(got.argmax(1), want.argmax(1)) and np.abs(got - want).max() <= TOLERANCE


@pytest.mark.parametrize("content", [None, b"", b"\x08\x01garbage"])
def test_onnx_backend_refuses_missing_or_broken_files(tmp_path, content):
    path = tmp_path / "m.onnx"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(CheckpointError) as exc:
        OnnxBackend.from_file(path)
    assert "\n" not in str(exc.value) and str(path) in str(exc.value)


def test_backends_check_input_shape_and_accept_empty_batches(checkpoint, onnx_backend):
    for backend in (onnx_backend, TorchBackend(checkpoint)):
        assert backend.logits(np.zeros((0, 1, 28, 28), np.float32)).shape == (0, 10)
        assert backend.logits(np.zeros((2, 1, 28, 28), np.float64)).dtype == np.float32  # cast, not refused
        with pytest.raises(ValueError, match=r"\(B, 1, 28, 28\)"):
            backend.logits(np.zeros((2, 28, 28), np.float32))


def test_onnx_session_uses_the_configured_threads(checkpoint, onnx_cache):
    backend = OnnxBackend.from_checkpoint(checkpoint, cache_dir=onnx_cache, threads=1)
    options = backend.session.get_session_options()
    assert options.intra_op_num_threads == 1
    assert "ORT_ENABLE_ALL" in str(options.graph_optimization_level)


@pytest.mark.slow
@pytest.mark.parametrize("arch", list_models())
def test_every_registered_architecture_runs_on_both_backends(arch, tmp_path):
    """A new architecture must survive BatchNorm folding and the ONNX export (about 3 s each)."""
    torch.manual_seed(0)
    ckpt = Checkpoint(create_model(arch).eval(), arch, {}, Normalization(), {})
    x = np.random.default_rng(0).standard_normal((33, 1, 28, 28)).astype(np.float32)
    want = eager(ckpt, x)
    for backend in (TorchBackend(ckpt), OnnxBackend.from_checkpoint(ckpt, cache_dir=tmp_path)):
        assert np.abs(backend.logits(x) - want).max() <= TOLERANCE, backend.name
