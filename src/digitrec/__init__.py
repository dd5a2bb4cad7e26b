"""digitrec: recognise handwritten digits and whole numbers, on an ordinary CPU.

The names most users need are available from the package itself, imported on first use so that
`import digitrec` stays cheap (the CLI's start-up imports it):

    from digitrec import Recognizer      # digitrec.reading.recognize
    from digitrec import create_app      # digitrec.server
    from digitrec import create_model    # digitrec.models
    from digitrec import load_checkpoint # digitrec.models.checkpoint
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_PUBLIC = {
    "Recognizer": "digitrec.reading.recognize",
    "Prediction": "digitrec.reading.results",
    "Reading": "digitrec.reading.results",
    "create_app": "digitrec.server",
    "create_model": "digitrec.models",
    "list_models": "digitrec.models",
    "load_checkpoint": "digitrec.models.checkpoint",
}
__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'digitrec' has no attribute {name!r}")
