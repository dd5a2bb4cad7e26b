"""How many threads inference uses, set once for both backends without importing torch.

ONNX Runtime takes its thread count when a session is made, torch whenever it runs; a process that
never imports torch must still be able to say "one thread" (a server worker, a `--jobs` worker).
The count chosen here is handed to each new ONNX Runtime session and to torch when it is loaded
(or now, when it already is).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

_threads: int | None = None  # chosen by set_inference_threads; None: each library's default


def inference_threads() -> int:
    """The intra-op threads inference runs on: the count set here, else torch's (when torch is
    loaded: physical cores, or OMP_NUM_THREADS / torch.set_num_threads), else OMP_NUM_THREADS,
    else 0, which lets ONNX Runtime take one thread per physical core, as torch does."""
    if _threads is not None:
        return _threads
    torch = sys.modules.get("torch")
    if torch is not None:
        return max(1, int(torch.get_num_threads()))
    with contextlib.suppress(ValueError):
        return max(0, int(os.environ.get("OMP_NUM_THREADS", "0")))
    return 0


def set_inference_threads(n: int) -> None:
    """Use `n` threads from now on: in ONNX Runtime sessions made after this, and in torch."""
    global _threads
    if n < 1:
        raise ValueError("threads must be at least 1")
    _threads = n
    apply_to_torch()


def apply_to_torch() -> None:
    """Hand the chosen count to torch, if torch is loaded (the torch backend calls this when it loads)."""
    torch = sys.modules.get("torch")
    if torch is not None and _threads is not None and torch.get_num_threads() != _threads:
        torch.set_num_threads(_threads)


@contextlib.contextmanager
def inference_threads_set(n: int) -> Iterator[None]:
    """`n` threads while the block runs (models loaded in it keep them), then what it was before."""
    global _threads
    before = _threads
    torch = sys.modules.get("torch")
    torch_before = torch.get_num_threads() if torch is not None else None
    set_inference_threads(n)
    try:
        yield
    finally:
        _threads = before
        if torch is not None and torch_before is not None:
            torch.set_num_threads(torch_before)  # torch loaded inside the block keeps n: its own default is unknown
