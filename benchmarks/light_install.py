"""The base (inference-only) install against the full (torch) one, measured side by side in one run.

What the Dockerfile at the repository root does, without Docker: a fresh `python3 -m venv` and
`pip install .` (the base install: ONNX Runtime, no torch), then, for it and for a full install
(the environment running this script, which has torch; its `digitrec` is run with `--backend
torch`, today's stack):

- the virtualenv's size on disk (the full one: this environment's);
- `digitrec predict` on one image: wall time and peak RSS of the whole command (`/usr/bin/time`),
  the median of `--runs` runs after one untimed run that warms the disk cache;
- `digitrec serve` (one worker and its preprocessing process): time from start to the first
  200 from /readyz, requests/s of `--requests` POST /v1/predict over `--clients` keep-alive
  connections, and the RSS of the server and all its processes after them.

    python benchmarks/light_install.py                       # builds /tmp/digitrec-light-venv
    python benchmarks/light_install.py --reuse --requests 10000
    python benchmarks/light_install.py --check               # exit 1 when a target of issue 17 is missed

Targets (issue 17): venv <= 400 MB and no torch; predict <= 1.5 s and <= 250 MB; serve ready in
<= 2 s, <= 300 MB after 10,000 requests, requests/s no lower than the torch server's.
Linux only (/proc, /usr/bin/time). Needs the package index for `pip install .`.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

from common import machine

ROOT = Path(__file__).resolve().parent.parent
IMAGES = [ROOT / "examples" / name for name in ("digit_4_scan.png", "digit_7_photo.jpg", "digit_2_chalk.jpg")]
MB = 1024 * 1024
TARGETS = {"venv_mb": 400, "predict_s": 1.5, "predict_rss_mb": 250, "ready_s": 2.0, "serve_rss_mb": 300}


@dataclass
class Figures:
    name: str
    command: list[str]
    flags: list[str] = field(default_factory=list)  # appended to predict and serve: the backend
    venv_mb: float | None = None
    torch_installed: bool | None = None
    install_s: float | None = None
    predict_s: float | None = None
    predict_rss_mb: float | None = None
    ready_s: float | None = None
    ready_cpu_s: float | None = None  # CPU seconds its processes used until ready: what a busy machine does not inflate
    requests_per_s: float | None = None
    serve_rss_mb: float | None = None
    serve_processes: int | None = None
    notes: list[str] = field(default_factory=list)


def dir_mb(path: Path) -> float:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            file = Path(root) / name
            if not file.is_symlink():
                total += file.stat().st_size
    return total / MB


def build_venv(venv: Path, reuse: bool) -> float | None:
    """A fresh venv with `pip install .` (the base install); the seconds pip took, None when reused."""
    if reuse and (venv / "bin" / "digitrec").exists():
        return None
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run(["python3", "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    start = time.perf_counter()
    subprocess.run([*pip, str(ROOT)], check=True)
    return time.perf_counter() - start


def has_torch(python: str) -> bool:
    code = "import importlib.util, sys; sys.exit(0 if importlib.util.find_spec('torch') else 1)"
    return subprocess.run([python, "-c", code], env=clean_env()).returncode == 0


def clean_env() -> dict[str, str]:
    """This environment without PYTHONPATH: the base venv must run its own installed digitrec."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def timed_predict(figures: Figures, env: dict[str, str], runs: int) -> tuple[float, float]:
    """Median wall seconds and peak RSS (MB) of `digitrec predict IMAGE`, after one warm-up run."""
    command = figures.command
    walls, peaks = [], []
    for i in range(runs + 1):
        result = subprocess.run(
            ["/usr/bin/time", "-f", "TIME %e %M", *command, "predict", str(IMAGES[0]), *figures.flags],
            capture_output=True,
            text=True,
            env=env,
        )
        if result.returncode != 0:
            raise SystemExit(f"{' '.join(command)} predict failed: {result.stderr.strip()[-500:]}")
        wall, kb = result.stderr.strip().splitlines()[-1].split()[1:]
        if i:  # the first run only warms the disk cache
            walls.append(float(wall))
            peaks.append(int(kb) / 1024)
    return statistics.median(walls), statistics.median(peaks)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def tree_cpu_s(pid: int) -> float:
    """User + system CPU seconds of `pid` and its descendants so far."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for current in tree(pid):
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    return total


def tree(pid: int) -> list[int]:
    """`pid` and all its descendants."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo += children.get(current, [])
    return found


def tree_rss_mb(pid: int) -> tuple[float, int]:
    """RSS of `pid` and all its descendants (MB), and how many processes that is."""
    total, count = 0.0, 0
    for current in tree(pid):
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) / 1024
                    count += 1
        except OSError:
            continue
    return total, count


def multipart(data: bytes, name: str) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


def load(port: int, requests: int, clients: int) -> float:
    """POST /v1/predict `requests` times over `clients` keep-alive connections; requests/s."""
    bodies = [multipart(path.read_bytes(), path.name) for path in IMAGES]
    counter = iter(range(requests))
    lock = threading.Lock()
    failures: list[str] = []

    def client() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                break
            body, content_type = bodies[i % len(bodies)]
            connection.request("POST", "/v1/predict", body=body, headers={"Content-Type": content_type})
            response = connection.getresponse()
            response.read()
            if response.status != 200:
                failures.append(str(response.status))
        connection.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    if failures:
        raise SystemExit(f"{len(failures)} requests failed, e.g. HTTP {failures[0]}")
    return requests / elapsed


def ready(port: int, process: subprocess.Popen, deadline: float) -> bool:
    while time.perf_counter() < deadline and process.poll() is None:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            connection.request("GET", "/readyz")
            if connection.getresponse().status == 200:
                return True
        except OSError:
            pass
        time.sleep(0.01)
    return False


def serve(figures: Figures, env: dict[str, str], requests: int, clients: int) -> tuple[float, float, float, float, int]:
    """Time to ready (s) and the CPU seconds it took, requests/s, RSS of all the server's
    processes (MB) after the requests and how many there are."""
    command = figures.command
    port = free_port()
    start = time.perf_counter()
    process = subprocess.Popen(
        [*command, "serve", "--port", str(port), "--log-level", "warning", *figures.flags],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        if not ready(port, process, start + 120):
            error = process.stderr.read()[-500:] if process.stderr else ""
            raise SystemExit(f"{' '.join(command)} serve did not become ready: {error}")
        ready_s = time.perf_counter() - start
        ready_cpu = tree_cpu_s(process.pid)
        rate = load(port, requests, clients)
        rss, count = tree_rss_mb(process.pid)
        return ready_s, ready_cpu, rate, rss, count
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()


def measure(figures: Figures, env: dict[str, str], args: argparse.Namespace) -> Figures:
    figures.predict_s, figures.predict_rss_mb = timed_predict(figures, env, args.runs)
    figures.ready_s, figures.ready_cpu_s, figures.requests_per_s, figures.serve_rss_mb, figures.serve_processes = serve(
        figures, env, args.requests, args.clients
    )
    return figures


def table(rows: list[Figures]) -> str:
    lines = [
        "| install | venv MB | torch | predict s | predict peak MB | serve ready s (CPU s) | requests/s | serve RSS MB (processes) |",
        "|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.name} | {r.venv_mb:.0f} | {'yes' if r.torch_installed else 'no'} | {r.predict_s:.2f} | "
            f"{r.predict_rss_mb:.0f} | {r.ready_s:.2f} ({r.ready_cpu_s:.2f}) | {r.requests_per_s:.0f} | {r.serve_rss_mb:.0f} ({r.serve_processes}) |"
        )
    return "\n".join(lines)


def misses(light: Figures, full: Figures) -> list[str]:
    checks = [
        (light.torch_installed is False, "torch is installed in the base venv"),
        ((light.venv_mb or 0) <= TARGETS["venv_mb"], f"venv {light.venv_mb:.0f} MB > {TARGETS['venv_mb']}"),
        ((light.predict_s or 0) <= TARGETS["predict_s"], f"predict {light.predict_s:.2f} s > {TARGETS['predict_s']}"),
        (
            (light.predict_rss_mb or 0) <= TARGETS["predict_rss_mb"],
            f"predict {light.predict_rss_mb:.0f} MB > {TARGETS['predict_rss_mb']}",
        ),
        ((light.ready_s or 0) <= TARGETS["ready_s"], f"serve ready in {light.ready_s:.2f} s > {TARGETS['ready_s']}"),
        (
            (light.serve_rss_mb or 0) <= TARGETS["serve_rss_mb"],
            f"serve RSS {light.serve_rss_mb:.0f} MB > {TARGETS['serve_rss_mb']}",
        ),
        ((light.requests_per_s or 0) >= (full.requests_per_s or 0), "fewer requests/s than the torch server"),
    ]
    return [text for ok, text in checks if not ok]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", type=Path, default=Path("/tmp/digitrec-light-venv"), help="where the base venv goes")
    parser.add_argument("--reuse", action="store_true", help="measure an existing --venv instead of rebuilding it")
    parser.add_argument("--runs", type=int, default=5, help="timed predict runs per install (default 5)")
    parser.add_argument("--requests", type=int, default=10_000, help="POST /v1/predict per server (default 10,000)")
    parser.add_argument("--clients", type=int, default=4, help="concurrent keep-alive connections (default 4)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args()

    install_s = build_venv(args.venv, args.reuse)
    light = Figures("base: pip install .", [str(args.venv / "bin" / "digitrec")], install_s=install_s)
    light.venv_mb = dir_mb(args.venv)
    light.torch_installed = has_torch(str(args.venv / "bin" / "python"))
    # The full install: the environment running this script, its digitrec on torch. PYTHONPATH is
    # kept for it, so pointing it at a checkout measures that checkout's code.
    full = Figures("full: [train], --backend torch", [sys.executable, "-m", "digitrec"], ["--backend", "torch"])
    full.venv_mb = dir_mb(Path(sys.prefix))
    full.torch_installed = True
    measure(light, clean_env(), args)
    measure(full, dict(os.environ), args)

    print(f"machine: {machine()}; cpu flags: {cpu_flags()}")
    print(f"load average (1, 5, 15 min) at the end: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(f"requests: {args.requests} POST /v1/predict over {args.clients} connections; predict: median of {args.runs}")
    if light.install_s is not None:
        print(f"pip install . took {light.install_s:.0f} s")
    print(table([light, full]))
    if args.json:
        args.json.write_text(json.dumps([asdict(light), asdict(full)], indent=1) + "\n")
    missed = misses(light, full)
    for text in missed:
        print(f"target missed: {text}")
    return 1 if args.check and missed else 0


def cpu_flags() -> str:
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        return "unknown"
    wanted = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags.split()]
    return ", ".join(wanted) or "none of avx2/avx512/amx"


if __name__ == "__main__":
    sys.exit(main())
