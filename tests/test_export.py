"""Export: every format answers like the eager model, carries its metadata, and fails cleanly."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from digitrec.cli import main
from digitrec.errors import CheckpointError, ConfigError
from digitrec.models import create_model
from digitrec.models.checkpoint import Checkpoint, load_checkpoint, weights_sha256
from digitrec.models.inputs import Normalization, to_model_input
from digitrec.runtime.backends import detect_format, load_export
from digitrec.runtime.convert import inference_model, onnx_bytes
from digitrec.runtime.export import FORMATS, TORCHSCRIPT_NOTE, export_model
from digitrec.runtime.metadata import metadata_for

SUFFIX = {"onnx": ".onnx", "exported-program": ".pt2", "torchscript": ".ts"}
N_DIGITS = 300


def parity_tolerance(reference: np.ndarray) -> float:
    """1e-5 absolute on logits. Float32 spacing is 1.9e-6 for |logit| in [16, 32) and doubles with
    every power of two, so beyond 32 the bound grows with the logits (a few float32 ulps)."""
    return 1e-5 * max(1.0, float(np.abs(reference).max()) / 32)


def random_bn_checkpoint(temperature: float | None = None) -> Checkpoint:
    """An untrained BN CNN whose BatchNorm statistics are far from identity, so folding matters."""
    torch.manual_seed(0)
    model = create_model("bn_cnn", width=8, hidden=32)
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    meta = {"calibration": {"temperature": temperature}} if temperature is not None else {}
    return Checkpoint(model.eval(), "bn_cnn", {"width": 8, "hidden": 32}, Normalization(0.1, 0.3), meta)


@pytest.fixture(scope="module")
def checkpoint() -> Checkpoint:
    return load_checkpoint()  # the shipped model, whatever architecture it has today


@pytest.fixture(scope="module")
def digits(mnist, checkpoint) -> np.ndarray:
    return to_model_input(mnist.test_images[:N_DIGITS], checkpoint.normalization).numpy()  # (300, 1, 28, 28)


@pytest.fixture(scope="module")
def exports(checkpoint, tmp_path_factory):
    """Each format exported once for the module: fmt -> ExportResult."""
    out = tmp_path_factory.mktemp("exports")
    return {fmt: export_model(checkpoint, out / f"model{SUFFIX[fmt]}", fmt) for fmt in FORMATS}


def eager_logits(model: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return model(torch.from_numpy(x)).numpy()


@pytest.mark.parametrize("fmt", FORMATS)
def test_exported_model_matches_eager_on_real_digits(fmt, exports, checkpoint, digits):
    loaded = load_export(exports[fmt].path)
    assert loaded.format == fmt
    # export used batch 2: the batch dimension must be dynamic
    for batch, n in ((N_DIGITS, N_DIGITS), (1, 20), (7, 21)):
        got = np.concatenate([loaded.logits(digits[i : i + batch]) for i in range(0, n, batch)])
        want = eager_logits(checkpoint.model, digits[: len(got)])
        assert got.shape == want.shape and got.dtype == np.float32
        assert np.abs(got - want).max() <= parity_tolerance(want), (fmt, batch, np.abs(got - want).max())
        assert np.array_equal(got.argmax(1), want.argmax(1))


@pytest.mark.parametrize("fmt", FORMATS)
def test_export_carries_preprocessing_metadata(fmt, exports, checkpoint):
    loaded = load_export(exports[fmt].path)
    meta = loaded.metadata
    assert meta == exports[fmt].metadata
    assert (meta.mean, meta.std) == (checkpoint.normalization.mean, checkpoint.normalization.std)
    assert meta.input_shape == (1, 28, 28) and meta.class_labels == tuple("0123456789")
    assert meta.arch == checkpoint.arch and meta.weights_sha256 == weights_sha256(checkpoint.model.state_dict())
    assert "ink" in meta.polarity and meta.digitrec_version
    assert detect_format(exports[fmt].path) == fmt


def test_onnx_metadata_is_readable_without_digitrec(exports, checkpoint):
    """A consumer with only `onnx` sees the preprocessing constants in metadata_props."""
    proto = onnx.load(str(exports["onnx"].path))
    props = {p.key: p.value for p in proto.metadata_props}
    assert float(props["mean"]) == checkpoint.normalization.mean
    assert float(props["std"]) == checkpoint.normalization.std
    assert json.loads(props["class_labels"]) == list("0123456789")
    assert props["arch"] == checkpoint.arch and props["producer"] == "digitrec"
    batch_dim = proto.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param and not batch_dim.dim_value  # symbolic, not fixed at export time


def test_temperature_and_folded_batchnorm_are_exported(tmp_path, mnist):
    ckpt = random_bn_checkpoint(temperature=1.7)
    result = export_model(ckpt, tmp_path / "bn.pt2")
    loaded = load_export(result.path)
    assert loaded.metadata.temperature == pytest.approx(1.7) and loaded.metadata.batchnorm_folded
    assert (loaded.metadata.mean, loaded.metadata.std) == (0.1, 0.3)
    x = to_model_input(mnist.test_images[:200], ckpt.normalization).numpy()
    want = eager_logits(ckpt.model, x)
    assert np.abs(loaded.logits(x) - want).max() <= parity_tolerance(want)
    assert metadata_for(random_bn_checkpoint()).temperature is None  # uncalibrated: no temperature


def test_batchnorm_folding_is_equivalent(mnist):
    ckpt = random_bn_checkpoint()
    folded = inference_model(ckpt.model)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in folded.modules())
    assert any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in ckpt.model.modules())  # original untouched
    x = to_model_input(mnist.test_images[:200], ckpt.normalization).numpy()
    want = eager_logits(ckpt.model, x)
    assert np.abs(eager_logits(folded, x) - want).max() <= parity_tolerance(want)


def test_torchscript_export_notes_the_deprecation(exports):
    assert exports["torchscript"].notes == [TORCHSCRIPT_NOTE]
    assert exports["onnx"].notes == [] and exports["exported-program"].notes == []


def test_cli_export_writes_file_and_json(tmp_path, capsys):
    out = tmp_path / "sub" / "m.pt2"  # missing parent directories are created
    assert main(["export", "--out", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["format"] == "exported-program" and report["bytes"] == out.stat().st_size
    assert report["metadata"]["weights_sha256"] == load_export(out).metadata.weights_sha256
    assert not list(out.parent.glob(".*.tmp"))


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--out", "{tmp}/m.bin"], ["cannot tell the export format", "--format"]),
        (["--out", "{tmp}"], ["is a directory"]),
        (["--out", "{tmp}/m.onnx", "--format", "tflite"], ["invalid choice"]),
        (["--out", "{tmp}/m.onnx", "--model", "{tmp}/missing.pt"], ["no such checkpoint"]),
        (["--out", "{tmp}/file.txt/m.onnx"], ["cannot create directory"]),
    ],
)
def test_cli_bad_paths_and_formats_give_one_line_and_exit_2(argv, words, tmp_path, capsys):
    (tmp_path / "file.txt").write_text("not a directory")
    try:
        code = main(["export", *[a.format(tmp=tmp_path) for a in argv]])
    except SystemExit as exc:  # argparse usage errors exit from inside the parser
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    for word in words:
        assert word in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt"]  # nothing written


def test_failed_export_keeps_the_previous_file(tmp_path, monkeypatch, checkpoint):
    out = tmp_path / "m.pt2"
    out.write_bytes(b"previous export")

    def broken_save(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch.export, "save", broken_save)
    with pytest.raises(ConfigError, match="No space left"):
        export_model(checkpoint, out)
    assert out.read_bytes() == b"previous export"
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt2"]  # the temporary file is gone


@pytest.mark.parametrize("content", [b"", b"garbage" * 100, b"PK\x03\x04 truncated zip"])
@pytest.mark.parametrize("suffix", [".onnx", ".pt2"])
def test_loading_a_broken_export_is_a_one_line_error(tmp_path, content, suffix):
    path = tmp_path / f"bad{suffix}"
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as exc:
        load_export(path)
    assert "\n" not in str(exc.value) and str(path) in str(exc.value)


def test_foreign_onnx_file_is_refused(tmp_path, checkpoint):
    """An ONNX model without digitrec metadata is not silently fed with guessed preprocessing."""
    model, metadata = inference_model(checkpoint.model), metadata_for(checkpoint)
    proto = onnx.load_from_string(onnx_bytes(model, metadata))
    del proto.metadata_props[:]
    path = tmp_path / "foreign.onnx"
    onnx.save(proto, str(path))
    with pytest.raises(CheckpointError, match="not a digitrec export"):
        load_export(path)
