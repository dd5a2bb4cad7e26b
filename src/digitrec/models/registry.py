"""Model registry (timm's pattern): each architecture is a decorated builder.

    @register_model
    def seed_cnn(**kw) -> nn.Module: ...

`create_model(name, **kwargs)` fails loudly on an unknown name and lists the known ones; tests,
CLI choices and comparisons iterate `list_models()`. Builders take only JSON-serialisable
keyword arguments so a checkpoint can rebuild the model from its name and kwargs alone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from digitrec.errors import ConfigError

if TYPE_CHECKING:
    from torch import nn

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register_model(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    name = builder.__name__
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} registered twice")
    _REGISTRY[name] = builder
    return builder


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def model_description(name: str) -> str:
    """First line of the builder's docstring, for `--help` and tables."""
    doc = (_REGISTRY[name].__doc__ or "").strip()
    return doc.splitlines()[0] if doc else ""


def create_model(name: str, **kwargs) -> nn.Module:
    if name not in _REGISTRY:
        raise ConfigError(f"unknown model {name!r}; known models: {', '.join(list_models())}")
    try:
        return _REGISTRY[name](**kwargs)
    except TypeError as exc:
        raise ConfigError(f"bad arguments for model {name!r}: {exc}") from None
