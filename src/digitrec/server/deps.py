"""Dependencies the routes declare; tests may override them with `app.dependency_overrides`."""

from __future__ import annotations

from fastapi import Request, UploadFile

from digitrec.server.problems import Problem, format_bytes, upload_too_large
from digitrec.server.service import Service


# async, so FastAPI calls them on the event loop instead of hopping to a worker thread per request.
async def get_service(request: Request) -> Service:
    return request.app.state.service


async def get_ready_service(request: Request) -> Service:
    """The service, or 503 while the model is not loaded (start-up, shutdown)."""
    service: Service = request.app.state.service
    if not service.ready:
        raise Problem(503, "not-ready", "the model is not loaded yet; retry shortly", headers={"Retry-After": "1"})
    return service


async def read_upload(file: UploadFile, service: Service, endpoint: str) -> bytes:
    """The file's bytes, or 413 if it is over the per-file limit. The request body was already
    capped while streaming (UploadLimitMiddleware), so this read is bounded."""
    limit = service.settings.max_upload_bytes
    if file.size is None or file.size <= limit:
        data = await file.read(limit + 1)
        if len(data) <= limit:
            return data
    service.metrics.image_errors.labels(endpoint, "413").inc()
    raise upload_too_large(
        f"{file.filename or 'the upload'} is larger than the limit of {format_bytes(limit)} per file"
    )
