"""The real `digitrec serve` (uvicorn) on 127.0.0.1, for tests that need a socket, not an ASGI call.

Used by test_server_e2e.py (the browser, raw sockets, urllib) and test_schemathesis.py (the
schemathesis CLI against a live server). Only the loopback interface is bound.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def digitrec_serve(log_dir: Path, *flags: str) -> Iterator[str]:
    """`python -m digitrec serve` with the shipped model on a free port; yields its base URL and
    stops the server afterwards. Fails the test with the server's log if it does not come up."""
    port = free_port()
    log = log_dir / "serve.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "digitrec", "serve", "--host", "127.0.0.1", "--port", str(port)]
            + ["--log-level", "warning", *flags],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                pytest.fail(f"digitrec serve exited with {process.returncode}:\n{log.read_text()}")
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"digitrec serve not ready after 120 s:\n{log.read_text()}")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
