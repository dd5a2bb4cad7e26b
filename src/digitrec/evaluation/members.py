"""The models `digitrec evaluate` scores, on the backend it runs them with.

`--backend onnx` runs `.onnx` files with ONNX Runtime and numpy alone (a base install): a `.pt`
path stands for the `.onnx` twin beside it (the shipped models have theirs). `--backend torch`
loads `.pt` checkpoints in PyTorch. `auto`, the default, is torch when it is installed, so a
checkpoint of one's own needs no export, and ONNX when it is not or when the models are `.onnx`.

The validation split of a model is rebuilt from the split its checkpoint records; for an `.onnx`
file that is the `.pt` beside it (the ONNX metadata does not carry it), and rebuilding it needs
torch's seeded generator either way.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from digitrec.errors import CheckpointError, ConfigError
from digitrec.evaluation.scoring import Scorer
from digitrec.models.inputs import Normalization
from digitrec.runtime.backends import OnnxBackend
from digitrec.weights import DEFAULT_MODEL_PATH

if TYPE_CHECKING:
    import torch

    from digitrec.models.checkpoint import Checkpoint

BACKEND_CHOICES = ("auto", "torch", "onnx")
SUFFIX = {"torch": ".pt", "onnx": ".onnx"}  # what a member file of `--ensemble DIR` is called


@dataclass(frozen=True)
class Member:
    """One model to evaluate: how to score it, what identifies it, and where its split is recorded."""

    scorer: Scorer
    arch: str
    info: dict[str, Any]  # path, arch, arch_kwargs, weights_sha256, calibration (the report's "model")
    split_meta: Callable[[], Mapping[str, Any]] = field(repr=False)  # the checkpoint meta with "split"

    @property
    def path(self) -> str:
        return self.scorer.name


def torch_installed() -> bool:
    """Is the `[train]` extra's torch importable? Asked without importing it (that takes seconds)."""
    try:
        return importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):  # a blocked or half-installed torch counts as absent
        return False


def resolve_backend(name: str, models: Sequence[str | None] = (), ensemble: str | None = None) -> str:
    """`auto` -> "onnx" without torch, with only `.onnx` models, or with an ensemble directory
    holding `.onnx` files and no `.pt`; "torch" otherwise. "torch" and "onnx" stay as given."""
    if name not in BACKEND_CHOICES:
        raise ConfigError(f"unknown backend {name!r}; choose one of {', '.join(BACKEND_CHOICES)}")
    if name != "auto":
        return name
    if not torch_installed():
        return "onnx"
    if models and all(m is not None and Path(m).suffix.lower() == ".onnx" for m in models):
        return "onnx"
    if ensemble is not None and not _files(Path(ensemble), ".pt") and _files(Path(ensemble), ".onnx"):
        return "onnx"
    return "torch"


def _files(directory: Path, suffix: str) -> list[Path]:
    return sorted(p for p in directory.glob(f"*{suffix}") if p.is_file()) if directory.is_dir() else []


def ensemble_paths(directory: str | os.PathLike, backend: str) -> list[str]:
    """The member files of an ensemble directory for `backend` (`*.pt` or `*.onnx`), in name order."""
    folder, suffix = Path(directory), SUFFIX[backend]
    if not folder.is_dir():
        raise ConfigError(f"{folder}: no such directory for --ensemble")
    paths = _files(folder, suffix)
    if not paths:
        raise ConfigError(f"{folder}: no {suffix} files to ensemble (--backend {backend})")
    return [str(p) for p in paths]


def onnx_file(path: str | os.PathLike | None) -> Path:
    """The `.onnx` file that `--backend onnx` runs for `path` (None: the shipped default model)."""
    source = Path(path) if path is not None else DEFAULT_MODEL_PATH
    if source.suffix.lower() == ".onnx":
        return source
    twin = source.with_suffix(".onnx")
    if twin.is_file():
        return twin
    if not source.is_file():
        raise CheckpointError(f"{source}: no such checkpoint file")
    raise CheckpointError(
        f"{source}: no ONNX twin beside it ({twin.name}); make one with "
        f"`digitrec export --model {source} --out {twin}` or use --backend torch"
    )


def load_member(path: str | os.PathLike | None, backend: str, device: torch.device | str = "cpu") -> Member:
    """The model at `path` (None: the shipped default) ready to score on `backend`."""
    if backend == "onnx":
        return _onnx_member(onnx_file(path))
    if path is not None and Path(path).suffix.lower() == ".onnx":
        raise ConfigError(f"{path}: an ONNX model runs on --backend onnx only")
    from digitrec.models.checkpoint import load_checkpoint

    return torch_member(load_checkpoint(path, device))


DIGITS = tuple(str(d) for d in range(10))


def _require_digits(path: str, labels: Sequence[str]) -> None:
    """Evaluation scores digit classifiers on MNIST: refuse another model (the checker, the marks)."""
    if tuple(labels) != DIGITS:
        raise CheckpointError(
            f"{path}: classifies {', '.join(labels)}, not the digits 0-9; cannot evaluate it on MNIST"
        )


def _onnx_member(path: Path) -> Member:
    runner = OnnxBackend.from_file(path)
    meta = runner.metadata
    _require_digits(str(path), meta.class_labels)
    temperature = 1.0 if meta.temperature is None else float(meta.temperature)
    calibration = None if meta.temperature is None else {"temperature": temperature}
    if calibration is not None and meta.reject_threshold is not None:
        calibration["reject_threshold"] = meta.reject_threshold
    info = {
        "path": str(path),
        "arch": meta.arch,
        "arch_kwargs": dict(meta.arch_kwargs),
        "weights_sha256": meta.weights_sha256,
        "calibration": calibration,
    }
    scorer = Scorer(str(path), Normalization(meta.mean, meta.std), temperature, runner.logits)
    return Member(scorer=scorer, arch=meta.arch, info=info, split_meta=lambda: _split_beside(path, meta.weights_sha256))


def _split_beside(path: Path, weights_sha256: str) -> Mapping[str, Any]:
    """The meta of the checkpoint an `.onnx` file was made from, which records its split."""
    checkpoint = path.with_suffix(".pt")
    if not checkpoint.is_file():
        raise CheckpointError(
            f"{path}: --split val needs the validation split its checkpoint records, and there is no "
            f"{checkpoint.name} beside it"
        )
    from digitrec.models.checkpoint import read_payload

    payload = read_payload(checkpoint)
    if payload.get("weights_sha256") not in (None, weights_sha256):
        raise CheckpointError(f"{checkpoint}: other weights than {path.name}; not the checkpoint it was made from")
    return payload


def torch_member(checkpoint: Checkpoint) -> Member:
    """A loaded torch checkpoint as a member: its own module in eval mode, channels-last on the CPU."""
    import torch

    from digitrec.evaluation.report import model_info
    from digitrec.training.metrics import channels_last_copy

    _require_digits(str(checkpoint.path), [str(c) for c in checkpoint.meta.get("class_labels") or DIGITS])
    model = checkpoint.model.eval()
    net = channels_last_copy(model)
    device = next(model.parameters()).device

    def logits(x: np.ndarray) -> np.ndarray:  # (B, 1, 28, 28) -> (B, 10)
        with torch.inference_mode():
            return net(torch.from_numpy(x).to(device)).float().cpu().numpy()

    scorer = Scorer(
        checkpoint.path or str(DEFAULT_MODEL_PATH), checkpoint.normalization, checkpoint.temperature, logits
    )
    return Member(scorer=scorer, arch=checkpoint.arch, info=model_info(checkpoint), split_meta=lambda: checkpoint.meta)
