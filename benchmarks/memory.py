"""Memory over many requests: does recognising or serving grow the process?

Sends `--requests` (default 10,000) requests after a warm-up (default 500), and prints the
resident memory (RSS) after the warm-up, every 2,000 requests, and at the end, for each way the
model is used, side by side in one run:

- ``library``: `Recognizer.predict` / `Recognizer.read` called directly (what `digitrec predict`
  and an embedding application do), RSS of this process;
- ``asgi``: POST /v1/predict and /v1/read through FastAPI's TestClient, the app in this process;
- ``server``: the real `digitrec serve` on 127.0.0.1 (one worker, its own process), over
  keep-alive HTTP; its RSS is read from its own /metrics (`process_resident_memory_bytes`),
  which is what an operator would watch.

The request mix is what a public service sees: mostly digits (100 different MNIST test digits
drawn as ink on paper, PNG and JPEG, each upload with a new file name), one request in 10 a
hostile file from the fuzz corpus (text, truncated, bombs, animations: the 415/422 paths must not
leak either), one in 20 a whole number sent to /v1/read. A leak shows as a steady slope in the
checkpoints; a one-off step after warm-up (allocator pools, caches filling) is not a leak.

    python benchmarks/memory.py                          # 10,000 requests x 3 modes
    python benchmarks/memory.py --modes server --requests 50000
    python benchmarks/memory.py --check                  # exit 1 if any mode grows > --limit MB

Linux only for the in-process modes (RSS from /proc/self/statm).
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import os
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
from common import machine
from PIL import Image

CORPUS = Path(__file__).resolve().parent.parent / "tests" / "fuzz" / "corpus"
CHECKPOINT_EVERY = 2000
MB = 1024 * 1024


def rss_self() -> int:
    """Resident memory of this process, bytes (the current value, not the peak)."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


# ---- the requests ---------------------------------------------------------------------------------


def workload(n_digits: int = 100) -> tuple[list[tuple[str, bytes]], list[tuple[str, bytes]], list[tuple[str, bytes]]]:
    """(digits, numbers, hostile files) as (name, bytes)."""
    from digitrec.training.data import load_mnist

    mnist = load_mnist(allow_download=False)
    digits, numbers = [], []
    for i in range(n_digits):
        ink = np.asarray(Image.fromarray(mnist.test_images[i].numpy()).resize((56, 56), Image.BILINEAR))
        paper = np.full((80, 80), 245, np.uint8)
        paper[12:-12, 12:-12] = 245 - (ink.astype(np.int32) * 225 // 255)
        fmt = "PNG" if i % 2 else "JPEG"
        buffer = io.BytesIO()
        Image.fromarray(paper).save(buffer, fmt)
        digits.append((f"digit.{fmt.lower()}", buffer.getvalue()))
    for i in range(0, 30, 3):
        line = np.concatenate([255 - mnist.test_images[j].numpy() for j in range(i, i + 3)], axis=1)
        line = np.pad(line, 10, constant_values=255)
        buffer = io.BytesIO()
        Image.fromarray(line).resize((line.shape[1] * 2, line.shape[0] * 2)).save(buffer, "PNG")
        numbers.append(("number.png", buffer.getvalue()))
    manifest = json.loads((CORPUS / "MANIFEST.json").read_text())
    hostile = [(name, (CORPUS / name).read_bytes()) for name in sorted(manifest)]
    return digits, numbers, hostile


def plan(k: int, digits: list, numbers: list, hostile: list) -> tuple[str, str, bytes]:
    """Request number k -> (endpoint, file name, bytes). Every name is new (f"{k}-..."), as
    uploads from many users are."""
    if k % 10 == 9:
        name, data = hostile[(k // 10) % len(hostile)]
        return "predict", f"{k}-{name}", data
    if k % 20 == 10:
        name, data = numbers[(k // 20) % len(numbers)]
        return "read", f"{k}-{name}", data
    name, data = digits[k % len(digits)]
    return "predict", f"{k}-{name}", data


# ---- the three ways of using the model -------------------------------------------------------------

Sender = Callable[[str, str, bytes], None]


def library_mode() -> tuple[Sender, Callable[[], int], Callable[[], None]]:
    from digitrec.errors import ImageError
    from digitrec.reading.recognize import Recognizer

    recognizer = Recognizer.load()

    def send(endpoint: str, name: str, data: bytes) -> None:
        try:
            (recognizer.predict if endpoint == "predict" else recognizer.read)(data, name=name).to_dict()
        except ImageError:
            pass

    return send, rss_self, lambda: None


def asgi_mode() -> tuple[Sender, Callable[[], int], Callable[[], None]]:
    from fastapi.testclient import TestClient

    from digitrec.server import create_app

    client = TestClient(create_app())
    client.__enter__()  # runs the lifespan: loads the model, starts the inference thread

    def send(endpoint: str, name: str, data: bytes) -> None:
        response = client.post(f"/v1/{endpoint}", files={"file": (name, data, "application/octet-stream")})
        if response.status_code >= 500:
            raise SystemExit(f"HTTP {response.status_code} for {name}: {response.text[:200]}")

    return send, rss_self, lambda: client.__exit__(None, None, None)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def server_mode() -> tuple[Sender, Callable[[], int], Callable[[], None]]:
    import httpx

    port = free_port()
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"digitrec-memory-{os.getpid()}.log"
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "digitrec",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "warning",
                "--workers",
                "1",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
    deadline = time.monotonic() + 120
    while True:
        if process.poll() is not None:
            raise SystemExit(f"server exited with {process.returncode}; see {log}")
        try:
            if client.get("/readyz").status_code == 200:
                break
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            raise SystemExit(f"server not ready after 120 s; see {log}")
        time.sleep(0.2)

    def send(endpoint: str, name: str, data: bytes) -> None:
        response = client.post(f"/v1/{endpoint}", files={"file": (name, data, "application/octet-stream")})
        if response.status_code >= 500:
            raise SystemExit(f"HTTP {response.status_code} for {name}: {response.text[:200]}")

    def rss() -> int:
        for line in client.get("/metrics").text.splitlines():
            if line.startswith("process_resident_memory_bytes "):
                return int(float(line.split()[1]))
        raise SystemExit("the server's /metrics has no process_resident_memory_bytes")

    def stop() -> None:
        client.close()
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()

    return send, rss, stop


MODES = {"library": library_mode, "asgi": asgi_mode, "server": server_mode}


def measure(mode: str, requests: int, warmup: int, work: tuple) -> dict:
    send, rss, stop = MODES[mode]()
    try:
        for k in range(warmup):
            send(*plan(k, *work))
        gc.collect()
        start, points, t0 = rss(), [], time.perf_counter()
        for k in range(requests):
            send(*plan(warmup + k, *work))
            if (k + 1) % CHECKPOINT_EVERY == 0 or k + 1 == requests:
                gc.collect()
                points.append((k + 1, rss()))
        seconds = time.perf_counter() - t0
    finally:
        stop()
    end = points[-1][1]
    # Slope of a least-squares line through the checkpoints: a leak is a trend, not a step.
    xs, ys = np.array([p[0] for p in points], float), np.array([p[1] for p in points], float)
    slope = float(np.polyfit(xs, ys, 1)[0]) * 1000 / MB if len(points) > 1 else float("nan")
    return {
        "mode": mode,
        "requests": requests,
        "seconds": seconds,
        "rss_start_mb": start / MB,
        "rss_end_mb": end / MB,
        "growth_mb": (end - start) / MB,
        "slope_mb_per_1000": slope,
        "checkpoints_mb": [(n, round(b / MB, 1)) for n, b in points],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10_000, help="measured requests per mode (default 10000)")
    parser.add_argument("--warmup", type=int, default=500, help="requests before the first measurement (default 500)")
    parser.add_argument("--modes", nargs="+", choices=sorted(MODES), default=["library", "asgi", "server"])
    parser.add_argument("--threads", type=int, default=1, help="torch threads in this process (default 1, as serve)")
    parser.add_argument("--limit", type=float, default=50.0, help="--check: largest growth allowed, MB (default 50)")
    parser.add_argument("--check", action="store_true", help="exit 1 if any mode grows more than --limit MB")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args(argv)
    if not Path("/proc/self/statm").exists() and set(args.modes) - {"server"}:
        parser.error("the in-process modes read /proc/self/statm (Linux); use --modes server")

    import torch

    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", "Corrupt EXIF data")  # Pillow, on a corpus file: expected
    work = workload()
    print(f"machine: {machine()}")
    print(
        f"{args.warmup} warm-up + {args.requests} measured requests per mode; mix: 85% digits to /v1/predict, "
        f"5% numbers to /v1/read, 10% hostile files from the fuzz corpus; RSS after gc.collect()\n"
    )
    print(
        f"{'mode':8s} {'RSS start MB':>12s} {'RSS end MB':>10s} {'growth MB':>9s} {'MB/1000 req':>11s} "
        f"{'req/s':>6s}  checkpoints (requests: MB)"
    )
    results = []
    for mode in args.modes:
        r = measure(mode, args.requests, args.warmup, work)
        results.append(r)
        points = ", ".join(f"{n}: {mb}" for n, mb in r["checkpoints_mb"])
        print(
            f"{mode:8s} {r['rss_start_mb']:12.1f} {r['rss_end_mb']:10.1f} {r['growth_mb']:9.1f} "
            f"{r['slope_mb_per_1000']:11.2f} {r['requests'] / r['seconds']:6.0f}  {points}",
            flush=True,
        )
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine(), "args": vars(args), "results": results}, indent=2))
    worst = max(r["growth_mb"] for r in results)
    print(
        f"\nlargest growth: {worst:.1f} MB (limit {args.limit:.0f} MB): {'ok' if worst <= args.limit else 'TOO MUCH'}"
    )
    return 1 if args.check and worst > args.limit else 0


if __name__ == "__main__":
    sys.exit(main())
