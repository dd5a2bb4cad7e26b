"""`digitrec evaluate` on ONNX Runtime answers as on torch, ensembles report their members, and
the numpy MNIST reader equals the torch one it stands in for."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from digitrec.cli import main
from digitrec.evaluation.members import load_member, resolve_backend
from digitrec.evaluation.scoring import disagreement, score
from digitrec.training.mnist_files import read_mnist
from digitrec.weights import DEFAULT_MODEL_PATH, READER_PATH, onnx_twin

SLICE = 1500  # test images: enough to hold mistakes, quick on two busy cores


def evaluate_json(capsys, *argv: str) -> dict:
    assert main(["evaluate", "--json", "--limit", str(SLICE), *argv]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("extra", [[], ["--tta"], ["--split", "val"]], ids=["plain", "tta", "val"])
def test_onnx_evaluate_equals_torch_evaluate_on_the_shipped_model(capsys, extra):
    on_torch = evaluate_json(capsys, "--backend", "torch", *extra)
    on_onnx = evaluate_json(capsys, "--backend", "onnx", *extra)
    assert on_onnx["model"] == str(onnx_twin(DEFAULT_MODEL_PATH)) and on_torch["model"] == str(DEFAULT_MODEL_PATH)
    split = on_torch["split"]
    for key in ("split", "n", f"{split}_accuracy", "temperature", "macro_f1", "most_confused", "arch"):
        assert on_onnx[key] == on_torch[key], key
    for key in (f"{split}_loss", "ece"):
        assert on_onnx[key] == pytest.approx(on_torch[key], abs=1e-4), key


def test_onnx_and_torch_make_the_same_mistakes(mnist):
    images = mnist.test_images[:SLICE].numpy()
    labels = mnist.test_labels[:SLICE].numpy()
    answers = {b: score([load_member(None, b).scorer], images).logits.argmax(1) for b in ("torch", "onnx")}
    assert np.array_equal(answers["torch"], answers["onnx"])
    assert (answers["onnx"] != labels).sum() > 0  # the slice holds mistakes, so "the same" means something


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_ensemble_dir_reports_members_and_disagreement(tmp_path, capsys, backend):
    for name, path in (("a", DEFAULT_MODEL_PATH), ("b", READER_PATH)):
        shutil.copy(path, tmp_path / f"{name}.pt")
        shutil.copy(onnx_twin(path), tmp_path / f"{name}.onnx")
    out = evaluate_json(capsys, "--ensemble", str(tmp_path), "--backend", backend)
    suffix = ".pt" if backend == "torch" else ".onnx"
    assert [m["model"] for m in out["members"]] == [str(tmp_path / f"a{suffix}"), str(tmp_path / f"b{suffix}")]
    assert out["arch"] == "+".join(m["arch"] for m in out["members"]) and out["temperature"] == 1.0
    singles = [evaluate_json(capsys, "--model", m["model"], "--backend", backend) for m in out["members"]]
    assert [m["accuracy"] for m in out["members"]] == [s["test_accuracy"] for s in singles]
    assert 0 < out["disagreement"] < 0.05  # two good models, different architectures: a few images
    # repeated --model is the same ensemble
    pair = evaluate_json(capsys, *(f for m in out["members"] for f in ("--model", m["model"])), "--backend", backend)
    assert pair == out


def test_two_copies_never_disagree(tmp_path, capsys):
    for name in ("a", "b"):
        shutil.copy(onnx_twin(DEFAULT_MODEL_PATH), tmp_path / f"{name}.onnx")
    out = evaluate_json(capsys, "--ensemble", str(tmp_path))  # auto: only .onnx there
    single = evaluate_json(capsys, "--backend", "onnx")
    assert out["disagreement"] == 0 and out["test_accuracy"] == single["test_accuracy"]
    assert [m["accuracy"] for m in out["members"]] == [single["test_accuracy"]] * 2


def test_disagreement_counts_images_where_any_member_differs():
    answers = np.array([[1, 2, 3, 4], [1, 2, 0, 4], [1, 5, 3, 4]])
    assert disagreement(answers) == 0.5
    assert disagreement(answers[:1]) == 0.0


def test_bad_ensembles_and_models_are_one_line_errors(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "m.onnx").write_bytes(b"not a model")
    shutil.copy(DEFAULT_MODEL_PATH, tmp_path / "lone.pt")
    cases = [
        (["--ensemble", str(tmp_path / "empty"), "--backend", "onnx"], "no .onnx files"),
        (["--ensemble", str(tmp_path / "nowhere")], "no such directory"),
        (["--ensemble", str(tmp_path / "bad"), "--backend", "onnx"], "not a usable ONNX model"),
        (["--ensemble", str(tmp_path / "empty"), "--model", str(DEFAULT_MODEL_PATH)], "one or the other"),
        (["--model", str(tmp_path / "lone.pt"), "--backend", "onnx"], "no ONNX twin beside it"),
        (["--model", str(onnx_twin(DEFAULT_MODEL_PATH)), "--backend", "torch"], "--backend onnx only"),
        (["--model", str(onnx_twin(READER_PATH).with_name("checker.onnx"))], "not the digits 0-9"),
        (["--limit", "0"], "--limit"),
    ]
    for argv, message in cases:
        assert main(["evaluate", *argv]) == 2, argv
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, (argv, err)


def test_val_split_of_an_onnx_file_needs_its_checkpoint_beside_it(tmp_path, capsys):
    shutil.copy(onnx_twin(DEFAULT_MODEL_PATH), tmp_path / "m.onnx")
    assert main(["evaluate", "--model", str(tmp_path / "m.onnx"), "--limit", "10", "--json"]) == 0  # test: fine
    capsys.readouterr()
    assert main(["evaluate", "--model", str(tmp_path / "m.onnx"), "--split", "val"]) == 2
    assert "no m.pt beside it" in capsys.readouterr().err
    shutil.copy(READER_PATH, tmp_path / "m.pt")  # a checkpoint, but not the one m.onnx was made from
    assert main(["evaluate", "--model", str(tmp_path / "m.onnx"), "--split", "val"]) == 2
    assert "not the checkpoint it was made from" in capsys.readouterr().err


def test_auto_backend_follows_the_models(tmp_path):
    assert resolve_backend("auto") == "torch"  # torch is installed here (see test_light for without)
    assert resolve_backend("auto", [str(tmp_path / "m.onnx")]) == "onnx"
    assert resolve_backend("auto", [str(tmp_path / "m.onnx"), str(tmp_path / "m.pt")]) == "torch"
    (tmp_path / "m.onnx").write_bytes(b"")
    assert resolve_backend("auto", ensemble=str(tmp_path)) == "onnx"
    (tmp_path / "m.pt").write_bytes(b"")
    assert resolve_backend("auto", ensemble=str(tmp_path)) == "torch"
    assert resolve_backend("onnx", [str(tmp_path / "m.pt")]) == "onnx"


def test_numpy_reader_gives_the_training_tensors(mnist):
    arrays = read_mnist(allow_download=False)
    for name in ("train_images", "train_labels", "test_images", "test_labels"):
        tensor = getattr(mnist, name)
        assert (
            np.array_equal(getattr(arrays, name), tensor.numpy())
            and getattr(arrays, name).dtype == tensor.numpy().dtype
        )
    assert arrays.checksums == mnist.checksums and arrays.source == mnist.source
