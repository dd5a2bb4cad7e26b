"""What the server runs on: its settings, the `Service` the routes are handed, and the model.

This module sits below the app factory (app.py) and the routes (routes/*.py): both import it, it
imports neither, so the routes can name `Service` without importing the app that includes them.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from digitrec import __version__
from digitrec.runtime.backends import DEFAULT_BACKEND
from digitrec.server.batching import MicroBatcher, PreprocessPool
from digitrec.server.limits import MULTIPART_OVERHEAD
from digitrec.server.metrics import ServiceMetrics
from digitrec.server.problems import format_bytes

if TYPE_CHECKING:
    # Only types here: the modules themselves (and the backend behind them) are imported when a
    # model is loaded, so importing the server package stays light.
    from digitrec.reading.forms.results import FieldReading
    from digitrec.reading.forms.template import Template
    from digitrec.reading.recognize import Recognizer

DEFAULT_MAX_UPLOAD_BYTES = 5 * 1024 * 1024
# Pages of one form upload (PDF, TIFF) read per request: each takes a second or two on the one
# inference thread, which every other request waits for. The CLI reads up to 100.
MAX_FORM_PAGES = 10
# Environment variables through which `digitrec serve --workers N` configures each worker process.
ENV_MODEL = "DIGITREC_SERVE_MODEL"
ENV_BACKEND = "DIGITREC_SERVE_BACKEND"
ENV_MAX_UPLOAD = "DIGITREC_SERVE_MAX_UPLOAD_BYTES"
ENV_MICRO_BATCH = "DIGITREC_SERVE_MICRO_BATCH"
ENV_THREADS = "DIGITREC_SERVE_THREADS"
ENV_PREPROCESS = "DIGITREC_SERVE_PREPROCESS_PROCESSES"


@dataclass(frozen=True)
class ServerSettings:
    model_path: str | None = None  # None: the shipped default model
    backend: str = DEFAULT_BACKEND
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES  # per file
    max_batch_files: int = 64  # files per POST /v1/predict/batch
    micro_batch: int = 32  # most images per model call; 1 turns micro-batching off
    preprocess_processes: int = 0  # processes preprocessing /v1/predict images; 0: the inference thread

    def __post_init__(self) -> None:
        if self.max_upload_bytes < 1:
            raise ValueError("max_upload_bytes must be positive")
        if self.max_batch_files < 1 or self.micro_batch < 1:
            raise ValueError("max_batch_files and micro_batch must be at least 1")
        if self.preprocess_processes < 0:
            raise ValueError("preprocess_processes must be 0 or more")

    def body_limit(self, path: str) -> tuple[int, str] | None:
        """Largest request body per route (the per-file limit plus the multipart envelope)."""
        per_file = f"an upload may be at most {format_bytes(self.max_upload_bytes)} per file"
        if path == "/v1/predict/batch":
            return (
                self.max_batch_files * (self.max_upload_bytes + MULTIPART_OVERHEAD),
                f"{per_file} and {self.max_batch_files} files per batch",
            )
        if path in ("/v1/predict", "/v1/read"):
            return self.max_upload_bytes + MULTIPART_OVERHEAD, per_file
        return MULTIPART_OVERHEAD, "this route takes no upload"


def worker_env(settings: ServerSettings, threads: int) -> dict[str, str]:
    """The environment variables through which `digitrec serve --workers N` hands its settings
    (and torch's thread count) to the worker processes, which import the app by name and so take
    no arguments; `settings_from_env` reads them back in each worker."""
    return {
        ENV_MODEL: os.path.abspath(settings.model_path) if settings.model_path else "",
        ENV_BACKEND: settings.backend,
        ENV_MAX_UPLOAD: str(settings.max_upload_bytes),
        ENV_MICRO_BATCH: str(settings.micro_batch),
        ENV_THREADS: str(threads),
        ENV_PREPROCESS: str(settings.preprocess_processes),
    }


def settings_from_env(env: Mapping[str, str]) -> ServerSettings:
    """A worker's settings from `worker_env`'s variables; the defaults where one is unset or empty."""
    return ServerSettings(
        model_path=env.get(ENV_MODEL) or None,
        backend=env.get(ENV_BACKEND) or DEFAULT_BACKEND,
        max_upload_bytes=int(env.get(ENV_MAX_UPLOAD) or DEFAULT_MAX_UPLOAD_BYTES),
        micro_batch=int(env.get(ENV_MICRO_BATCH) or 32),
        preprocess_processes=int(env.get(ENV_PREPROCESS) or 0),
    )


class NotLoadedError(RuntimeError):
    """The model was asked for before the lifespan loaded it: a bug, since the routes that use the
    model only get a service that is ready (`get_ready_service`)."""


@dataclass
class Service:
    """What the routes need, held on `app.state.service` and handed out by `get_service`."""

    settings: ServerSettings
    metrics: ServiceMetrics
    recognizer: Recognizer | None = None  # loaded in the lifespan, or handed to create_app
    executor: ThreadPoolExecutor | None = None
    batcher: MicroBatcher | None = None
    preprocess: PreprocessPool | None = None  # set once the preprocessing process is warm
    preprocess_joining: asyncio.Task | None = None  # starting it, after the service is ready
    ready: bool = False

    def loaded_recognizer(self) -> Recognizer:
        if self.recognizer is None:
            raise NotLoadedError("the model is not loaded")
        return self.recognizer

    def loaded_batcher(self) -> MicroBatcher:
        if self.batcher is None:
            raise NotLoadedError("the micro-batcher is not running")
        return self.batcher

    async def run_model(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run a model call on the inference thread."""
        if self.executor is None:
            raise NotLoadedError("the inference thread is not running")
        return await asyncio.get_running_loop().run_in_executor(self.executor, lambda: fn(*args, **kwargs))

    async def read_form(self, data: bytes, template: Template, name: str | None) -> list[FieldReading]:
        """Every field of `template` on each page of an image, PDF or TIFF, on the inference thread."""
        from digitrec.reading.forms.page import read_document  # the reading stack, as load_recognizer does

        return await self.run_model(
            read_document, self.loaded_recognizer(), data, template, name=name, max_pages=MAX_FORM_PAGES
        )


def load_recognizer(settings: ServerSettings) -> Recognizer:
    # Imported here, not at the top: only a process that serves a model needs the reading stack.
    from digitrec.reading.recognize import Recognizer

    return Recognizer.load(settings.model_path, backend=settings.backend, device="cpu")


def model_info(service: Service) -> dict[str, Any]:
    """What GET /v1/model reports, from the model's own metadata."""
    recognizer = service.loaded_recognizer()
    return {
        **recognizer.model.info(),
        "version": __version__,
        "backend": getattr(getattr(recognizer, "backend", None), "name", service.settings.backend),
    }
