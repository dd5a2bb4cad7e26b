"""Untrusted checkpoints, beyond tests/test_checkpoint.py: forged payloads that unpickle safely
(weights_only) but lie about their contents. Each must be refused at load time with a one-line
CheckpointError naming the file (the CLI prints it and exits 2), never a traceback, never a model
that loads and then answers NaN or crashes at the first request, and never a huge allocation
because the metadata asks for one.
"""

from __future__ import annotations

import pytest
import torch

from digitrec.cli import main as cli_main
from digitrec.errors import CheckpointError
from digitrec.models import create_model
from digitrec.models.checkpoint import load_checkpoint, read_payload, save_checkpoint, save_payload
from digitrec.models.inputs import Normalization, to_model_input
from digitrec.reading.recognize import Recognizer


@pytest.fixture(scope="module")
def payload(tmp_path_factory):
    torch.manual_seed(0)
    model = create_model("seed_cnn", hidden=64).eval()
    path = save_checkpoint(
        tmp_path_factory.mktemp("ckpt") / "m.pt", model, "seed_cnn", {"hidden": 64}, Normalization(), {"metrics": {}}
    )
    return read_payload(path)


def first(state: dict) -> str:
    return next(k for k, v in state.items() if v.is_floating_point() and v.dim() > 1)


def with_tensor(payload: dict, make) -> dict:
    state = dict(payload["state_dict"])
    name = first(state)
    state[name] = make(state[name])
    return dict(payload, state_dict=state)


FORGED = {
    "wrong shape": lambda p: with_tensor(p, lambda t: torch.zeros(t.shape[0] + 1, *t.shape[1:])),
    "integer weights": lambda p: with_tensor(p, lambda t: t.round().to(torch.int64)),
    "boolean weights": lambda p: with_tensor(p, lambda t: t > 0),
    "complex weights": lambda p: with_tensor(p, lambda t: t.to(torch.complex64)),
    "sparse weights": lambda p: with_tensor(p, lambda t: t.to_sparse()),
    "infinite weights": lambda p: with_tensor(p, lambda t: torch.full_like(t, float("inf"))),
    "non-string weight names": lambda p: dict(p, state_dict={i: v for i, v in enumerate(p["state_dict"].values())}),
    "arch is not a name": lambda p: dict(p, arch=["seed_cnn"]),
    "arch_kwargs is not a mapping": lambda p: dict(p, arch_kwargs=[64]),
    "arch_kwargs impossible": lambda p: dict(p, arch_kwargs={"hidden": -5}),
    # A model of 2**40 x 3136 weights (petabytes) from a few bytes of metadata: refused, not allocated.
    "arch_kwargs absurd": lambda p: dict(p, arch_kwargs={"hidden": 2**40}),
    "normalisation mean NaN": lambda p: dict(p, normalization={"mean": float("nan"), "std": 0.3}),
    "normalisation std infinite": lambda p: dict(p, normalization={"mean": 0.1, "std": float("inf")}),
    "calibration is not a mapping": lambda p: dict(p, calibration="hot"),
    "temperature is text": lambda p: dict(p, calibration={"temperature": "hot"}),
    "temperature negative": lambda p: dict(p, calibration={"temperature": -1.0}),
    "temperature NaN": lambda p: dict(p, calibration={"temperature": float("nan")}),
    "reject threshold out of range": lambda p: dict(p, calibration={"temperature": 1.0, "reject_threshold": 7}),
}


@pytest.mark.parametrize("case", sorted(FORGED))
def test_forged_checkpoint_is_refused_in_one_line(payload, tmp_path, case):
    path = save_payload(FORGED[case](payload), tmp_path / "forged.pt")
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert "\n" not in message and len(message) < 500 and str(path) in message, message


@pytest.mark.parametrize("case", ["integer weights", "arch_kwargs absurd", "temperature is text"])
def test_cli_refuses_a_forged_checkpoint_in_one_line(payload, tmp_path, capsys, case):
    path = save_payload(FORGED[case](payload), tmp_path / "forged.pt")
    assert cli_main(["evaluate", "--model", str(path), "--max", "10"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1 and "forged.pt" in err


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_other_float_precisions_still_load(payload, tmp_path, mnist, dtype):
    # A checkpoint stored in another floating precision is legitimate: it loads into the float32 model.
    state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in payload["state_dict"].items()}
    path = save_payload(dict(payload, state_dict=state), tmp_path / "precision.pt")
    reference = load_checkpoint(save_payload(payload, tmp_path / "float32.pt"))
    loaded = load_checkpoint(path)
    x = to_model_input(mnist.test_images[:64], loaded.normalization)
    with torch.inference_mode():
        tolerance = 1e-5 if dtype == torch.float64 else 0.1
        torch.testing.assert_close(loaded.model(x), reference.model(x), atol=tolerance, rtol=0.05)
    Recognizer(loaded)  # and it serves
