"""Load test for `digitrec serve`: requests/s and latency of POST /v1/predict under concurrency.

Starts the real server (`python -m digitrec serve`) on 127.0.0.1 and sends a bounded number of
requests (default 5,000) from 16 concurrent keep-alive clients, each a small PNG of a handwritten
digit (MNIST test digits re-drawn as ink on paper, about 0.8 KB). Each server is measured twice:

- as fast as answered (closed loop: a client sends its next request when the last answer is in):
  the capacity in requests/s. With 16 clients the latency here is mostly queueing
  (Little's law: mean latency = 16 / throughput).
- offered at a fixed rate (open loop, default 300 requests/s spread over the 16 clients, latency
  counted from when each request was due, so a server that falls behind is charged for the wait):
  the latency a user sees at that load.

It prints requests/s, p50, p90, p99, max, errors, the mean micro-batch size from /metrics, and the
CPU time the server (all its processes: "srv cpu ms"; its busiest process: "1 proc ms") and the
load generator spent per request. CPU per request does not depend on what else runs on the
machine, so it is the figure to compare when the machine is shared: a server whose busiest process
spends P ms per request serves at most about 1000 / P requests/s with a core free for each of its
processes. A reference line gives the recognizer's own CPU per image, in process, without HTTP.

Configurations run side by side in the same invocation, interleaved over `--repeats` rounds: by
default `digitrec serve` as shipped (one worker, micro-batching up to 32 images per model call, and
on a multi-core machine one preprocessing process beside it; judged against the target), the
same with preprocessing on the worker's inference thread (`1:32:0`, how it shipped before),
`--workers 2` (one process per core), the reference without micro-batching (`--micro-batch 1`:
one model call per request), and the service alone (`noop`: the same app with a recognizer that
reads nothing), which shows what HTTP costs next to recognition.

The load generator is a minimal HTTP/1.1 client on asyncio streams with pre-built request bytes,
like wrk: on a 2-core machine a full client library (httpx) spends as much CPU per request as the
server, and the figure would measure the client. Every response is still checked (status 200 and
a JSON body with a "digit" field); anything else counts as an error.

    python benchmarks/serve_load.py                      # 5000 requests, 16 clients, 3 rounds
    python benchmarks/serve_load.py --requests 20000 --configs 1:32 1:32:0 --check

Target on a 2-core CPU: >= 300 requests/s, p99 < 30 ms at 300 requests/s offered, 0 errors
(`--check` exits 1 if the first configuration misses it).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import math
import os
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

import httpx
import numpy as np
from common import machine
from PIL import Image

TARGET_RPS = 300.0
TARGET_P99_MS = 30.0


@dataclass
class Result:
    config: str
    requests: int
    errors: int
    seconds: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    mean_batch: float
    server_cpu_ms: float  # server CPU time (all its processes) per request: independent of other load
    client_cpu_ms: float  # the load generator's CPU time per request
    busiest_cpu_ms: float  # CPU per request of the server's busiest process: what one core must do


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def digit_pngs(n: int) -> list[bytes]:
    """n small PNGs (about 1 KB): MNIST test digits as dark ink on light paper, 2x size."""
    from digitrec.training.data import load_mnist

    images = load_mnist().test_images[:n].numpy()
    out = []
    for digit in images:
        ink = np.asarray(Image.fromarray(digit).resize((56, 56), Image.BILINEAR))
        paper = np.full((72, 72), 240, np.uint8)
        paper[8:-8, 8:-8] = 240 - (ink.astype(np.int32) * 220 // 255)
        buffer = io.BytesIO()
        Image.fromarray(paper).save(buffer, "PNG", optimize=True)
        out.append(buffer.getvalue())
    return out


def build_request(host: str, port: int, png: bytes, name: str) -> bytes:
    boundary = "digitrecbenchboundary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            f"Content-Type: image/png\r\n\r\n"
        ).encode()
        + png
        + f"\r\n--{boundary}--\r\n".encode()
    )
    head = (
        f"POST /v1/predict HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: multipart/form-data; "
        f"boundary={boundary}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    return head + body


async def client(
    host: str,
    port: int,
    requests: list[bytes],
    jobs: list[int],
    start: float,
    interval: float | None,
    latencies: list[float],
    errors: list[str],
) -> None:
    """Send the requests numbered in `jobs` on one keep-alive connection.

    Closed loop (`interval` None): the next request goes as soon as the answer is in. Open loop:
    request k is due at start + k * interval, and its latency counts from when it was due, so a
    server that falls behind is charged for the wait (no coordinated omission)."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        for k in jobs:
            due = time.perf_counter() if interval is None else start + k * interval
            if interval is not None and due > time.perf_counter():
                await asyncio.sleep(due - time.perf_counter())
            writer.write(requests[k % len(requests)])
            try:
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head[9:12])
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                body = await reader.readexactly(length)
            except (asyncio.IncompleteReadError, ConnectionError, StopIteration, ValueError) as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
                continue
            latencies.append(time.perf_counter() - due)
            if status != 200 or b'"digit"' not in body:
                errors.append(f"HTTP {status}: {body[:200]!r}")
    finally:
        writer.close()


async def load(
    host: str, port: int, requests: list[bytes], total: int, concurrency: int, rate: float | None = None
) -> tuple[float, list[float], list[str]]:
    """`total` requests from `concurrency` clients; as fast as answered, or offered at `rate` per second."""
    latencies: list[float] = []
    errors: list[str] = []
    interval = None if rate is None else 1.0 / rate
    start = time.perf_counter() + 0.05
    await asyncio.gather(
        *(
            client(host, port, requests, list(range(j, total, concurrency)), start, interval, latencies, errors)
            for j in range(concurrency)
        )
    )
    return time.perf_counter() - start, latencies, errors


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# The service alone: the same app and server, with a recognizer that answers every image as
# rejected without decoding it or calling the model. What it costs is HTTP, multipart, routing,
# JSON, metrics and micro-batching; the difference to a real server is the recognizer.
NOOP_SERVER = """
import sys, torch, uvicorn
from digitrec.reading.recognize import Prepared, Recognizer
from digitrec.server import create_app
torch.set_num_threads(1)
class NoOp(Recognizer):
    def prepare(self, image, name=None):
        return Prepared(name, None, "service-only benchmark: image not read")
app = create_app(recognizer=NoOp.load(sys.argv[2] or None), micro_batch=32)
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
"""


class Config(NamedTuple):
    workers: int
    micro_batch: int
    noop: bool = False  # the service alone (NOOP_SERVER)
    preprocess: int | None = None  # --preprocess-processes; None: digitrec serve's default


def start_server(port: int, config: Config, model: str | None, log: Path) -> subprocess.Popen:
    if config.noop:
        cmd = [sys.executable, "-c", NOOP_SERVER, str(port), model or ""]
    else:
        cmd = [
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
            str(config.workers),
            "--micro-batch",
            str(config.micro_batch),
        ]
        if config.preprocess is not None:
            cmd += ["--preprocess-processes", str(config.preprocess)]
        if model:
            cmd += ["--model", model]
    with open(log, "ab") as out:
        process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited with {process.returncode}; see {log}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    process.kill()
    raise SystemExit(f"server not ready after 120 s; see {log}")


def batch_totals(port: int) -> tuple[float, float]:
    """(images, model calls) so far, from the server's micro-batch histogram."""
    values = {"digitrec_inference_batch_size_sum": 0.0, "digitrec_inference_batch_size_count": 0.0}
    for line in httpx.get(f"http://127.0.0.1:{port}/metrics").text.splitlines():
        name, _, value = line.rpartition(" ")
        if name in values:
            values[name] = float(value)
    return values["digitrec_inference_batch_size_sum"], values["digitrec_inference_batch_size_count"]


def tree_cpu_by_process(pid: int) -> dict[int, float]:
    """User + system CPU seconds of a process and of each of its descendants, by pid (Linux /proc)."""
    try:
        stats = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                stats[int(entry.name)] = (int(fields[1]), int(fields[11]) + int(fields[12]))  # ppid, utime+stime
    except OSError:
        return {}
    tree, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        for child, (ppid, _) in stats.items():
            if ppid == parent and child not in tree:
                tree.add(child)
                frontier.append(child)
    return {p: stats[p][1] / os.sysconf("SC_CLK_TCK") for p in tree if p in stats}


def summarise(
    config: str,
    total: int,
    seconds: float,
    latencies: list[float],
    errors: list[str],
    batch: float,
    server_cpu: float,
    client_cpu: float,
    busiest_cpu: float,
) -> Result:
    ms = np.array(latencies) * 1000 if latencies else np.array([float("nan")])
    return Result(
        config,
        total,
        len(errors),
        seconds,
        len(latencies) / seconds,
        float(np.percentile(ms, 50)),
        float(np.percentile(ms, 90)),
        float(np.percentile(ms, 99)),
        float(ms.max()),
        batch,
        1000 * server_cpu / total,
        1000 * client_cpu / total,
        1000 * busiest_cpu / total,
    )


def parse_config(text: str) -> Config:
    """'W:M' or 'W:M:P' -> Config(workers, micro_batch, preprocess processes P); 'noop' -> the
    service alone."""
    if text == "noop":
        return Config(1, 32, noop=True)
    try:
        parts = [int(part) for part in text.split(":")]
        if len(parts) not in (2, 3):
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected WORKERS:MICRO_BATCH[:PREPROCESS_PROCESSES] such as 1:32 or 1:32:0, or noop; got {text!r}"
        ) from None
    return Config(parts[0], parts[1], preprocess=parts[2] if len(parts) == 3 else None)


def config_name(config: Config) -> str:
    if config.noop:
        return "service only (no-op recognizer)"
    batching = f"micro-batch {config.micro_batch}" if config.micro_batch > 1 else "no micro-batching"
    name = f"{config.workers} worker{'s' if config.workers > 1 else ''}, {batching}"
    if config.preprocess is not None:
        name += f", {config.preprocess} prep. proc." if config.preprocess else ", prep. in-thread"
    return name


def run_server(config: Config, args: argparse.Namespace, pngs: list[bytes], log: Path) -> list[Result]:
    """One server; a closed-loop run (its capacity) then an open-loop run at the target rate."""
    port = free_port()
    server = start_server(port, config, args.model, log)
    name = config_name(config)
    results = []
    try:
        requests = [build_request("127.0.0.1", port, png, f"digit{i}.png") for i, png in enumerate(pngs)]
        # Warm-up: first calls allocate buffers and fill caches; not measured.
        asyncio.run(load("127.0.0.1", port, requests, args.warmup, args.concurrency))
        for label, rate in (("as fast as answered", None), (f"offered {args.rate:.0f}/s", args.rate)):
            if rate is not None and not rate:
                continue
            images0, calls0 = batch_totals(port)
            server0, client0 = tree_cpu_by_process(server.pid), time.process_time()
            seconds, latencies, errors = asyncio.run(
                load("127.0.0.1", port, requests, args.requests, args.concurrency, rate)
            )
            server1, client_cpu = tree_cpu_by_process(server.pid), time.process_time() - client0
            spent = [seconds - server0.get(pid, 0.0) for pid, seconds in server1.items()]
            server_cpu, busiest_cpu = sum(spent), max(spent, default=float("nan"))
            images1, calls1 = batch_totals(port)
            # With several workers /metrics answers from whichever worker takes the connection.
            one_process = config.workers == 1 and calls1 > calls0
            batch = (images1 - images0) / (calls1 - calls0) if one_process else float("nan")
            results.append(
                summarise(
                    f"{name}, {label}",
                    args.requests,
                    seconds,
                    latencies,
                    errors,
                    batch,
                    server_cpu,
                    client_cpu,
                    busiest_cpu,
                )
            )
            if errors:
                print(f"  first error: {errors[0]}", file=sys.stderr)
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
    return results


def recognizer_cpu_ms(pngs: list[bytes], model: str | None, batch: int = 8, rounds: int = 3) -> float:
    """Reference without HTTP: CPU ms per image of Recognizer.predict_many in this process (torch
    with 1 thread, as the server runs it), batches of `batch`. Server CPU minus this is the cost
    of the service itself (HTTP, multipart, JSON, metrics, batching)."""
    import torch

    from digitrec.reading.recognize import Recognizer

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        recognizer = Recognizer.load(model)
        recognizer.predict_many(pngs[:batch])  # warm-up
        start = time.process_time()
        for _ in range(rounds):
            for i in range(0, len(pngs), batch):
                recognizer.predict_many(pngs[i : i + batch])
        return 1000 * (time.process_time() - start) / (rounds * len(pngs))
    finally:
        torch.set_num_threads(threads)


def row(config: str, r: dict) -> str:
    batch = "  n/a" if math.isnan(r["mean_batch"]) else f"{r['mean_batch']:5.1f}"
    return (
        f"{config:64s} {r['rps']:6.0f} {r['p50_ms']:7.2f} {r['p90_ms']:7.2f} {r['p99_ms']:7.2f} {r['max_ms']:7.1f} "
        f"{r['errors']:6d} {batch} {r['server_cpu_ms']:10.2f} {r['busiest_cpu_ms']:10.2f} {r['client_cpu_ms']:10.2f}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000, help="measured requests per run (default 5000)")
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent clients (default 16)")
    parser.add_argument("--warmup", type=int, default=300, help="unmeasured requests first (default 300)")
    parser.add_argument("--repeats", type=int, default=3, help="rounds; configurations interleaved (default 3)")
    parser.add_argument(
        "--configs",
        type=parse_config,
        nargs="+",
        default=[Config(1, 32), Config(1, 32, preprocess=0), Config(2, 32), Config(1, 1), Config(1, 32, noop=True)],
        metavar="W:M[:P]",
        help="server configurations to compare, as --workers:--micro-batch"
        "[:--preprocess-processes], or noop for the service alone; the first real one is judged "
        "against the target (default: 1:32 1:32:0 2:32 1:1 noop)",
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=TARGET_RPS,
        help=f"offered load of the open-loop run, requests/s (default {TARGET_RPS:.0f}; 0 skips it)",
    )
    parser.add_argument("--model", help="checkpoint to serve (default: the shipped model)")
    parser.add_argument("--images", type=int, default=100, help="distinct digit images cycled through (default 100)")
    parser.add_argument("--json", metavar="FILE", help="also write all runs as JSON")
    parser.add_argument("--check", action="store_true", help="exit 1 if the first configuration misses the target")
    args = parser.parse_args(argv)

    pngs = digit_pngs(args.images)
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"digitrec-serve-load-{os.getpid()}.log"
    print(f"machine: {machine()}")
    print(f"load average before: {load_average()}  (the machine may be shared; figures are wall-clock)")
    print(
        f"{args.requests} requests x {args.repeats} rounds, {args.concurrency} concurrent clients, "
        f"POST /v1/predict with a {statistics.mean(map(len, pngs)):.0f}-byte PNG on average\n"
    )
    reference = recognizer_cpu_ms(pngs, args.model)
    print(f"reference, no HTTP: Recognizer.predict_many in process, batches of 8: {reference:.2f} ms CPU per image\n")
    header = (
        f"{'configuration':64s} {'req/s':>6s} {'p50 ms':>7s} {'p90 ms':>7s} {'p99 ms':>7s} {'max ms':>7s} "
        f"{'errors':>6s} {'batch':>5s} {'srv cpu ms':>10s} {'1 proc ms':>10s} {'cli cpu ms':>10s}"
    )
    print(header)
    runs: dict[str, list[Result]] = {}
    for _ in range(args.repeats):
        for config in args.configs:
            for r in run_server(config, args, pngs, log):
                runs.setdefault(r.config, []).append(r)
                print(row(r.config, asdict(r)), flush=True)

    print(f"\nmedian over {args.repeats} round(s):")
    print(header)
    summary = {}
    for config, results in runs.items():
        med = {
            k: statistics.median(getattr(r, k) for r in results)
            for k in (
                "rps",
                "p50_ms",
                "p90_ms",
                "p99_ms",
                "max_ms",
                "mean_batch",
                "server_cpu_ms",
                "busiest_cpu_ms",
                "client_cpu_ms",
            )
        }
        summary[config] = {**med, "errors": sum(r.errors for r in results)}
        print(row(config, summary[config]))
    print(f"load average after: {load_average()}")

    # The target, for the first configuration: it serves >= 300 requests/s flat out,
    # and with 300 requests/s offered, 99% of answers come within 30 ms; no errors anywhere.
    shipped = config_name(next((c for c in args.configs if not c.noop), args.configs[0]))
    capacity = summary[f"{shipped}, as fast as answered"]["rps"]
    p99 = summary[f"{shipped}, offered {args.rate:.0f}/s"]["p99_ms"] if args.rate else float("nan")
    met = capacity >= TARGET_RPS and p99 < TARGET_P99_MS and all(v["errors"] == 0 for v in summary.values())
    at_rate = f"{p99:.1f}" if args.rate else "not measured (--rate 0)"
    print(
        f"\ntarget for {shipped}: >= {TARGET_RPS:.0f} req/s (got {capacity:.0f}), p99 < {TARGET_P99_MS:.0f} ms "
        f"at {args.rate:.0f}/s offered (got {at_rate}), 0 errors: {'met' if met else 'MISSED'}"
    )
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "machine": machine(),
                    "args": vars(args),
                    "summary": summary,
                    "recognizer_cpu_ms_per_image": reference,
                    "runs": {k: [asdict(r) for r in v] for k, v in runs.items()},
                },
                indent=2,
            )
        )
    return 1 if args.check and not met else 0


if __name__ == "__main__":
    sys.exit(main())
