"""How a run is set up: starting weights, optimiser schedule, mixed precision, weight EMA, class weights."""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import nn

from digitrec.errors import ConfigError
from digitrec.models.checkpoint import load_checkpoint
from digitrec.models.inputs import Normalization
from digitrec.training.config import TrainConfig


def start_weights(config: TrainConfig, model: nn.Module) -> Normalization:
    """Load `config.init_from`'s weights into `model` where names and shapes match; returns the
    normalisation the model is trained with (the starting checkpoint's, else MNIST's)."""
    if config.init_from is None:
        return Normalization()
    base = load_checkpoint(config.init_from)
    if base.arch != config.model:
        raise ConfigError(
            f"{config.init_from} is a {base.arch}, not a {config.model}: start from a checkpoint "
            "of the architecture being trained"
        )
    own = model.state_dict()
    shared = {k: v for k, v in base.model.state_dict().items() if k in own and v.shape == own[k].shape}
    if not shared:
        raise ConfigError(f"{config.init_from} shares no weights with {config.model} {config.model_kwargs}")
    model.load_state_dict({**own, **shared})
    return base.normalization


def class_weights(config: TrainConfig, labels: torch.Tensor, classes: int) -> torch.Tensor | None:
    """Cross-entropy class weights n / (classes * count): every class weighs as much in the loss
    as if the classes were equally frequent (`balance_classes`); None otherwise."""
    if not config.balance_classes:
        return None
    counts = torch.bincount(labels, minlength=classes).double()
    if (counts == 0).any():
        raise ConfigError(f"balance_classes needs examples of every class, got counts {counts.long().tolist()}")
    return (len(labels) / (classes * counts)).float()


def make_scheduler(config: TrainConfig, optimizer: torch.optim.Optimizer, steps: int) -> Any:
    if config.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=config.lr, total_steps=steps, pct_start=config.warmup
        )
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    return None


def resolve_amp(mode: str, device: torch.device) -> str:
    """The mixed-precision mode actually used: "auto" becomes bf16 only where bf16 is native.

    On a CPU without AVX512-BF16 or AMX, bf16 is emulated and slower than float32.
    """
    if mode != "auto":
        return mode
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "none"
    if device.type == "cpu":
        try:
            native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
        except AttributeError:  # private helpers; older or newer torch may lack them
            native = False
        return "bf16" if native else "none"
    return "none"


def autocast(config: TrainConfig, device: torch.device) -> Any:
    amp = resolve_amp(config.amp, device)
    if amp == "none":
        return contextlib.nullcontext()
    if amp == "fp16" and device.type != "cuda":
        raise ConfigError("amp = fp16 needs a CUDA device; use bf16 on the CPU")
    return torch.autocast(device.type, dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


def ema_update(decay: float) -> Any:
    """EMA with warm-up: decay min(decay, (1+n)/(10+n)) after n updates (as timm's ModelEmaV2 and
    TensorFlow do), so short runs are not dominated by the random initial weights."""

    @torch.no_grad()
    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], num_averaged: torch.Tensor) -> None:
        n = float(num_averaged)
        weight = 1 - min(decay, (1 + n) / (10 + n))
        for avg, cur in zip(averaged, current):
            avg.lerp_(cur, weight) if avg.is_floating_point() else avg.copy_(cur)

    return update
