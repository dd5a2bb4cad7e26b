"""Smoke test of the base install (no torch): run by .ci/run with the base venv's python.

    .venv-base/bin/python .ci/smoke_base.py

Checks that torch is not installed, that `digitrec predict` and `digitrec read` answer the
examples, that `digitrec evaluate` scores the shipped model's ONNX twin on 1,000 test digits, that
a command needing torch says so in one line (exit 2), and that `digitrec serve` becomes ready and
answers POST /v1/predict and /v1/read. Exit 1 with the reason otherwise.
"""

from __future__ import annotations

import http.client
import importlib.util
import json
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
DIGITREC = str(Path(sys.executable).parent / "digitrec")
# the installed package does not sit in the checkout, so name the MNIST files: the repository's, or the shared copy
MNIST = next((d for d in (ROOT / "data" / "mnist", ROOT.parent / "shared" / "data" / "mnist") if d.is_dir()), None)


def check(ok: bool, what: str) -> None:
    if not ok:
        sys.exit(f"smoke test of the base install failed: {what}")
    print(f"ok: {what}")


def run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([DIGITREC, *argv], capture_output=True, text=True, cwd=ROOT, timeout=120)


def post(port: int, route: str, path: Path) -> dict:
    boundary = uuid.uuid4().hex
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{path.name}"\r\n\r\n'.encode()
        + path.read_bytes()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("POST", route, body=body, headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    response = connection.getresponse()
    return {"status": response.status, **json.loads(response.read())}


def serve_and_ask() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([DIGITREC, "serve", "--port", str(port), "--log-level", "warning"], cwd=ROOT)
    try:
        start = time.monotonic()
        while time.monotonic() - start < 60:
            try:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
                connection.request("GET", "/readyz")
                if connection.getresponse().status == 200:
                    break
            except OSError:
                pass
            if server.poll() is not None:
                check(False, f"digitrec serve is running (it ended with exit code {server.returncode})")
            time.sleep(0.05)
        else:
            check(False, "digitrec serve became ready within 60 s")
        print(f"ok: digitrec serve ready in {time.monotonic() - start:.1f} s")
        answer = post(port, "/v1/predict", EXAMPLES / "digit_4_scan.png")
        check(answer["status"] == 200 and answer["digit"] == 4, f"POST /v1/predict answers 4 (HTTP {answer['status']})")
        answer = post(port, "/v1/read", EXAMPLES / "number_scan.png")
        check(
            answer["status"] == 200 and answer.get("text") == "20250317",
            f"POST /v1/read answers 20250317 (HTTP {answer['status']})",
        )
    finally:
        server.terminate()
        server.wait(20)


def main() -> None:
    check(importlib.util.find_spec("torch") is None, "torch is not installed")
    result = run("predict", str(EXAMPLES / "digit_4_scan.png"), str(EXAMPLES / "digit_7_photo.jpg"), "--json")
    digits = [json.loads(line)["digit"] for line in result.stdout.splitlines()]
    check(result.returncode == 0 and digits == [4, 7], f"digitrec predict answers 4 and 7 {result.stderr.strip()}")
    result = run("read", str(EXAMPLES / "number_scan.png"), "--json")
    check(result.returncode == 0 and json.loads(result.stdout)["text"] == "20250317", "digitrec read answers 20250317")
    check(MNIST is not None, "the MNIST files are at hand (data/mnist or ../shared/data/mnist)")
    result = run("evaluate", "--backend", "onnx", "--limit", "1000", "--json", "--data-dir", str(MNIST))
    answer = json.loads(result.stdout) if result.returncode == 0 else {}
    check(
        answer.get("n") == 1000 and answer.get("test_accuracy", 0) > 0.98 and answer["model"].endswith("default.onnx"),
        f"digitrec evaluate --backend onnx scores 1000 test digits above 98% {result.stderr.strip()}",
    )
    result = run("train", "--epochs", "1")
    hint = 'digitrec train: error: this needs digitrec[train]: pip install "digitrec[train]"'
    check((result.returncode, result.stderr.strip()) == (2, hint), "digitrec train asks for digitrec[train]")
    serve_and_ask()


if __name__ == "__main__":
    main()
