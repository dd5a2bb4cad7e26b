"""The architectures and their registry: `create_model(name, **kwargs)`, `list_models()`.

The registry's names are imported on first use, with every architecture module (which registers
its builders, `digitrec.models.registry`), so that `digitrec.models.inputs` (how pixels become
model inputs) is importable without torch: inference runs on ONNX Runtime alone.
`digitrec.models.checkpoint` says how a model is saved and loaded, self-described.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["create_model", "list_models", "model_description", "register_model"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        for module in ("baselines", "cnn", "residual"):  # registers the builders
            importlib.import_module(f"digitrec.models.{module}")
        return getattr(importlib.import_module("digitrec.models.registry"), name)
    raise AttributeError(f"module 'digitrec.models' has no attribute {name!r}")
