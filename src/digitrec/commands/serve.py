"""digitrec serve: the web page and the HTTP API under uvicorn."""

from __future__ import annotations

import argparse
import os
import socket
import sys

from digitrec.commands.arguments import add_model_argument
from digitrec.errors import ConfigError
from digitrec.runtime.backends import BACKENDS, DEFAULT_BACKEND

NAME = "serve"
HELP = "serve the web page and the HTTP API (upload or draw a digit or a number)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1; 0.0.0.0 exposes it to the network)",
    )
    parser.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    add_model_argument(parser, "checkpoint to serve (default: the shipped model)")
    parser.add_argument(
        "--backend", choices=BACKENDS, default=DEFAULT_BACKEND, help=f"inference backend (default {DEFAULT_BACKEND})"
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="worker processes, each with its own copy of the model (default 1)"
    )
    parser.add_argument(
        "--max-upload-mb",
        type=float,
        default=5.0,
        metavar="MB",
        help="largest accepted upload per file, in MiB (default 5)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        metavar="N",
        help="inference threads per worker (default 1: concurrent requests are the parallelism, "
        "and more threads than free cores make every model call wait)",
    )
    parser.add_argument(
        "--micro-batch",
        type=int,
        default=32,
        metavar="N",
        help="most concurrent /v1/predict images answered by one model call; 1 turns micro-batching off (default 32)",
    )
    parser.add_argument(
        "--preprocess-processes",
        type=int,
        default=None,
        metavar="N",
        help="processes that preprocess /v1/predict images beside each worker, so HTTP and "
        "preprocessing use different cores (default: 1 with one worker on a multi-core "
        "machine, else 0: preprocessing on the worker's inference thread)",
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=("critical", "error", "warning", "info", "debug"),
        help="uvicorn log level; below info there is no access log (default info)",
    )


def check_args(args: argparse.Namespace) -> int:
    """Validate the flags; return the upload limit in bytes."""
    if not 0 < args.port < 65536:
        raise ConfigError(f"--port must be between 1 and 65535, got {args.port}")
    if args.workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {args.workers}")
    if not 1 <= args.threads <= 256:
        raise ConfigError(f"--threads must be between 1 and 256, got {args.threads}")
    if not 1 <= args.micro_batch <= 1024:
        raise ConfigError(f"--micro-batch must be between 1 and 1024, got {args.micro_batch}")
    if args.preprocess_processes is not None and not 0 <= args.preprocess_processes <= 64:
        raise ConfigError(f"--preprocess-processes must be between 0 and 64, got {args.preprocess_processes}")
    if not 0 < args.max_upload_mb <= 1024:
        raise ConfigError(f"--max-upload-mb must be above 0 and at most 1024, got {args.max_upload_mb}")
    return max(1, int(args.max_upload_mb * 1024 * 1024))


def preprocess_processes(args: argparse.Namespace) -> int:
    """--preprocess-processes, or its default: one preprocessing process when a single worker
    leaves a core free (measured with benchmarks/serve_load.py: the HTTP work and the
    preprocessing then run side by side instead of taking turns on one core), else none."""
    if args.preprocess_processes is not None:
        return args.preprocess_processes
    return 1 if args.workers == 1 and (os.cpu_count() or 1) >= 2 else 0


def check_port_free(host: str, port: int) -> None:
    """Fail with one line now, before loading the model, when the address is taken or unknown."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ConfigError(f"cannot resolve --host {host!r}: {exc.strerror}") from None
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from None


def run(args: argparse.Namespace) -> int:
    # Imported here, not at the top: the web stack is for this command only, and every other
    # command (and `digitrec --help`) imports this module to build the parser.
    import uvicorn

    from digitrec.server.app import build_app, set_server_threads
    from digitrec.server.service import ServerSettings, load_recognizer, worker_env

    max_upload_bytes = check_args(args)
    check_port_free(args.host, args.port)
    set_server_threads(args.threads)
    settings = ServerSettings(
        model_path=args.model,
        backend=args.backend,
        max_upload_bytes=max_upload_bytes,
        micro_batch=args.micro_batch,
        preprocess_processes=preprocess_processes(args),
    )
    # Load once here so a bad --model fails with one line before anything listens. With one
    # worker this is the model the server uses; with several, each worker loads its own copy.
    recognizer = load_recognizer(settings)
    url = f"http://{'[' + args.host + ']' if ':' in args.host else args.host}:{args.port}"
    print(f"digitrec: serving {recognizer.model.path} on {url}/ (API docs at {url}/docs)", file=sys.stderr)
    common = dict(
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        access_log=args.log_level in ("info", "debug"),
        timeout_graceful_shutdown=10,
    )
    if args.workers == 1:
        uvicorn.run(build_app(settings, recognizer), **common)
    else:
        # Worker processes import the app by name, so the settings travel in the environment.
        os.environ.update(worker_env(settings, args.threads))
        del recognizer
        uvicorn.run("digitrec.server.app:create_app_from_env", factory=True, workers=args.workers, **common)
    return 0
