"""The app factory: `create_app()` builds the FastAPI app for `digitrec serve` and for tests.

The model is loaded once, in the lifespan handler (or handed in ready-made as `recognizer=`, which
is how tests swap in a tiny model), and reaches the routes through the `get_service` dependency.
The settings and the `Service` the routes are handed live in service.py, below this module and the
routes, so that the routes never import the app that includes them.
All model work runs on one inference thread behind a micro-batcher, so the event loop only
parses and writes HTTP; `preprocess_processes=1` moves the preprocessing of /v1/predict images
to a process of its own (a second core), which `digitrec serve` does on a multi-core machine.
That process starts after the service is ready (a second interpreter importing the reading stack
takes seconds on a busy machine) and takes over once warm; until then the inference thread
preprocesses, with the same answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from fastapi import FastAPI
from fastapi.routing import APIRoute

from digitrec import __version__
from digitrec.runtime.backends import DEFAULT_BACKEND
from digitrec.runtime.threads import set_inference_threads
from digitrec.server.batching import MicroBatcher, PreprocessPool
from digitrec.server.limits import UploadLimitMiddleware
from digitrec.server.metrics import MetricsMiddleware, ServiceMetrics
from digitrec.server.problems import install_problem_handlers
from digitrec.server.routes import api, health, page
from digitrec.server.service import (
    DEFAULT_MAX_UPLOAD_BYTES,
    ENV_THREADS,
    ServerSettings,
    Service,
    load_recognizer,
    model_info,
    settings_from_env,
)

if TYPE_CHECKING:
    from digitrec.reading.recognize import Recognizer

log = logging.getLogger("digitrec.server")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    service: Service = app.state.service
    service.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="digitrec-infer")
    try:
        if service.recognizer is None:
            # Loaded once per process, before the server accepts its first request.
            service.recognizer = await service.run_model(load_recognizer, service.settings)
        recognizer = service.loaded_recognizer()
        service.batcher = MicroBatcher(
            recognizer, service.executor, service.settings.micro_batch, on_batch=service.metrics.batch_size.observe
        )
        await service.batcher.start()
        service.preprocess_joining = asyncio.create_task(join_preprocess_pool(service, recognizer))
        info = model_info(service)
        service.metrics.model_info.labels(info["arch"], info["weights_sha256"] or "", __version__).set(1)
        service.ready = True
        service.metrics.ready.set(1)
        log.info("digitrec model %s (%s) ready", info["arch"], info["model_path"])
        yield
    finally:
        service.ready = False
        service.metrics.ready.set(0)
        if service.preprocess_joining is not None:
            service.preprocess_joining.cancel()  # still starting: it closes its process itself
            with contextlib.suppress(asyncio.CancelledError):
                await service.preprocess_joining
        if service.batcher is not None:
            await service.batcher.stop()
        if service.preprocess is not None:
            service.preprocess.close()
        service.executor.shutdown(wait=True)


async def join_preprocess_pool(service: Service, recognizer: Recognizer) -> None:
    """Start the preprocessing process the settings ask for and, once it is warm, hand it the
    preprocessing of /v1/predict images (until then, and if it cannot start, the inference thread
    does it)."""
    pool = await start_preprocess_pool(service.settings, recognizer)
    if pool is not None:
        service.preprocess = pool
        if service.batcher is not None:
            service.batcher.use_process(pool)


async def start_preprocess_pool(settings: ServerSettings, recognizer: Recognizer) -> PreprocessPool | None:
    """The preprocessing process(es) the settings ask for, started and ready; None when
    preprocessing stays on the inference thread. The process loads the recognizer from its file,
    so a recognizer handed in ready-made (tests) or with its own `prepare` keeps it in-process."""
    if settings.preprocess_processes == 0:
        return None
    # Imported here, not at the top: only a process that serves a model needs the reading stack.
    from digitrec.reading.recognize import Recognizer

    path = settings.model_path or getattr(getattr(recognizer, "model", None), "path", None)
    if type(recognizer).prepare is not Recognizer.prepare or path is None:
        log.warning("preprocessing stays in the server process: the recognizer is not one loaded from a file")
        return None
    pool = PreprocessPool(str(path), settings.preprocess_processes, backend=settings.backend)
    try:
        await pool.start()
    except Exception:  # noqa: BLE001 - the service works without it, on one core
        log.exception("the preprocessing process did not start; preprocessing in the server process")
        pool.close()
        return None
    except BaseException:
        pool.close()
        raise
    return pool


def create_app(
    model_path: str | os.PathLike | None = None,
    recognizer: Recognizer | None = None,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
    *,
    backend: str = DEFAULT_BACKEND,
    max_batch_files: int = 64,
    micro_batch: int = 32,
    preprocess_processes: int = 0,
) -> FastAPI:
    """Build the app. Pass `recognizer` to serve an already loaded model (tests), else the
    checkpoint at `model_path` (default: the shipped model) is loaded at start-up.
    `preprocess_processes` > 0 preprocesses /v1/predict images in that many processes of their own."""
    settings = ServerSettings(
        model_path=str(model_path) if model_path is not None else None,
        backend=backend,
        max_upload_bytes=max_upload_bytes,
        max_batch_files=max_batch_files,
        micro_batch=micro_batch,
        preprocess_processes=preprocess_processes,
    )
    return build_app(settings, recognizer)


def build_app(settings: ServerSettings, recognizer: Recognizer | None = None) -> FastAPI:
    """The app serving with `settings`: `recognizer` when given, else the model loaded at start-up."""
    app = FastAPI(
        title="digitrec",
        version=__version__,
        summary="Recognise handwritten digits and whole numbers on an ordinary CPU.",
        description="Upload an image as multipart/form-data. Errors are RFC 9457 problem details "
        "(`application/problem+json`): 413 too large, 415 not an image, 422 unusable image.",
        lifespan=lifespan,
        redoc_url=None,
    )
    app.state.service = Service(settings=settings, metrics=ServiceMetrics(), recognizer=recognizer)
    install_problem_handlers(app)
    app.include_router(api.router)
    app.include_router(health.router)
    page.mount(app)
    known = frozenset(
        route.path for router in (api.router, health.router) for route in router.routes if isinstance(route, APIRoute)
    )
    # Added last = outermost: metrics see every request, including those refused for size.
    app.add_middleware(UploadLimitMiddleware, body_limit=settings.body_limit)
    app.add_middleware(MetricsMiddleware, metrics=app.state.service.metrics, known_paths=known)
    return app


def set_server_threads(n: int) -> None:
    """The backend's intra-op threads for this whole process (a server process only: tests and
    training keep their own setting). A small CNN on one image gains nothing from more threads,
    and on a busy machine extra threads wait for each other: one 28x28 image took 47 ms with 2
    threads and 0.2 ms with 1 on the shared 2-core test machine (torch)."""
    set_inference_threads(n)


def create_app_from_env() -> FastAPI:
    """Factory for `uvicorn --factory` (one call per worker process with `--workers N`)."""
    env = os.environ
    if env.get(ENV_THREADS):
        set_server_threads(int(env[ENV_THREADS]))
    return build_app(settings_from_env(env))
