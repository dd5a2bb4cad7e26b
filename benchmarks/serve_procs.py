"""The servers benchmarks/serve_load.py measures, and what they and the machine spend.

A configuration is `digitrec serve` with some flags, or the service alone (NOOP_SERVER). CPU time
is read from /proc (Linux): per server process, and the machine's total, so what other jobs on a
shared machine took is known. `hey` (Debian's package of the Go load generator) is the
independent cross-check of the Python load generator.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import httpx
from serve_bodies import BOUNDARY, Body, multipart


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def machine_busy_seconds() -> float:
    """CPU seconds all processes on the machine have spent (Linux /proc/stat; 0 elsewhere)."""
    try:
        with open("/proc/stat") as handle:
            fields = [int(x) for x in handle.readline().split()[1:]]
    except (OSError, ValueError):
        return 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# The service alone: the same app and server, with a recognizer that answers every image as
# rejected without decoding it or calling the model. What it costs is HTTP, the upload, multipart,
# routing, JSON, metrics and micro-batching; the difference to a real server is the recognizer.
NOOP_SERVER = """
import sys, torch, uvicorn
from digitrec.reading.recognize import Prepared, Recognizer
from digitrec.reading.results import Reading
from digitrec.server import create_app
torch.set_num_threads(1)
REASON = "service-only benchmark: image not read"
class NoOp(Recognizer):
    def prepare(self, image, name=None, fast=True):
        return Prepared(name, None, REASON)
    def read(self, image, name=None):
        return Reading(name, "", rejected=True, reason=REASON)
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


def hey(name: str, port: int, body: Body, args: argparse.Namespace) -> dict:
    """`hey` sends the body's first file `args.requests` times from `args.concurrency` workers."""
    with tempfile.NamedTemporaryFile(suffix=".multipart") as payload:
        payload.write(multipart(body.images[0], f"{body.name}.bin", body.content_type))
        payload.flush()
        command = ["hey", "-n", str(args.requests), "-c", str(args.concurrency), "-m", "POST", "-D", payload.name]
        command += ["-T", f"multipart/form-data; boundary={BOUNDARY}", f"http://127.0.0.1:{port}{body.path}"]
        out = subprocess.run(command, capture_output=True, text=True, timeout=3600).stdout
    figures = {"config": name, "rps": float("nan"), "p50_ms": float("nan"), "p99_ms": float("nan"), "errors": 0}
    section = ""
    for line in out.splitlines():
        text, words = line.strip(), line.split()
        if text.endswith("distribution:"):
            section = text.split()[0]  # Latency, Status code or Error
        elif text.startswith("Requests/sec:"):
            figures["rps"] = float(words[1])
        elif section == "Latency" and words[:1] in (["50%"], ["99%"]):
            figures[f"p{words[0][:-1]}_ms"] = 1000 * float(words[2])
        elif section == "Status" and text.startswith("[") and not text.startswith("[200]"):
            figures["errors"] += int(words[1])  # [code] count responses
        elif section == "Error" and text.startswith("["):
            figures["errors"] += int(text[1 : text.index("]")])  # [count] message
    return figures
