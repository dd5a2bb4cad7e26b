"""Checkpoints: identical logits after a round trip; anything broken is refused in one line."""

from __future__ import annotations

import pytest
import torch

from digitrec.errors import CheckpointError
from digitrec.models import create_model
from digitrec.models.checkpoint import load_checkpoint, read_payload, save_checkpoint, save_payload
from digitrec.models.inputs import Normalization, to_model_input
from digitrec.weights import DEFAULT_MODEL_PATH


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    model = create_model("seed_cnn", hidden=64).eval()
    path = save_checkpoint(tmp_path / "m.pt", model, "seed_cnn", {"hidden": 64}, Normalization(), {"metrics": {"x": 1}})
    return model, path


def test_round_trip_gives_identical_logits(saved, mnist):
    model, path = saved
    ckpt = load_checkpoint(path)
    x = to_model_input(mnist.test_images[:200], ckpt.normalization)
    with torch.inference_mode():
        assert torch.equal(model(x), ckpt.model(x))
    assert ckpt.arch == "seed_cnn" and ckpt.arch_kwargs == {"hidden": 64}
    assert ckpt.meta["metrics"] == {"x": 1} and len(ckpt.meta["weights_sha256"]) == 64
    assert not ckpt.model.training
    assert not list(path.parent.glob(".*.tmp"))  # atomic write leaves no temp file


def _assert_one_line(exc: pytest.ExceptionInfo, *words: str) -> None:
    message = str(exc.value)
    assert "\n" not in message and len(message) < 500, message
    for word in words:
        assert word in message


def test_truncated_file_is_refused(saved, tmp_path):
    _, path = saved
    data = path.read_bytes()
    for cut in (0, 10, len(data) // 2, len(data) - 20):
        broken = tmp_path / f"cut{cut}.pt"
        broken.write_bytes(data[:cut])
        with pytest.raises(CheckpointError) as info:
            load_checkpoint(broken)
        _assert_one_line(info, str(broken))


def test_garbage_and_missing_files_are_refused(tmp_path):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"PK\x03\x04 this is not a checkpoint" * 10)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(garbage)
    _assert_one_line(info, "garbage.pt")
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")


def test_foreign_torch_file_is_refused(tmp_path):
    foreign = tmp_path / "foreign.pt"
    torch.save(create_model("seed_cnn").state_dict(), foreign)  # a bare state dict, no metadata
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(foreign)
    _assert_one_line(info, "not a digitrec checkpoint")


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_pickled_code_is_never_executed(tmp_path, capsys):
    evil = tmp_path / "evil.pt"
    torch.save({"format": "digitrec-checkpoint", "payload": _Evil()}, evil)
    with pytest.raises(CheckpointError):
        load_checkpoint(evil)
    assert "pwned" not in capsys.readouterr().out


def test_inconsistent_checkpoints_are_refused(saved, tmp_path):
    _, path = saved
    payload = read_payload(path)
    cases = {
        "mismatch": dict(payload, arch="fast_ref_cnn"),
        "missing": dict(payload, state_dict={k: v for k, v in payload["state_dict"].items() if "0." not in k}),
        "nan": dict(
            payload,
            state_dict={
                k: v.float().fill_(float("nan")) if k == "0.weight" else v for k, v in payload["state_dict"].items()
            },
        ),
        "unknown": dict(payload, arch="no_such_arch"),
    }
    for name, bad in cases.items():
        save_payload(bad, tmp_path / f"{name}.pt")
        with pytest.raises(CheckpointError) as info:
            load_checkpoint(tmp_path / f"{name}.pt")
        _assert_one_line(info)
    with pytest.raises(CheckpointError, match="NaN"):
        load_checkpoint(tmp_path / "nan.pt")


def test_shipped_default_model_is_small_and_good():
    assert DEFAULT_MODEL_PATH.stat().st_size < 5 * 1024 * 1024
    ckpt = load_checkpoint()
    command = " ".join(ckpt.meta["command"])
    # trained by the project's own CLI, then fine-tuned on written pages by it (`build-default`),
    # which records the command its base was trained with
    assert "digitrec build-default" in command
    base_command = " ".join(ckpt.meta["pens"]["base_command"])
    assert "digitrec" in base_command and "train --recipe any_pen" in base_command
    assert ckpt.meta["metrics"]["test"]["accuracy"] > 0.99
