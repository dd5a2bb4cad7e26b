"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from digitrec.server.deps import get_ready_service, get_service
from digitrec.server.schemas import Health, ProblemOut
from digitrec.server.service import Service

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=Health, summary="Alive: the process answers HTTP")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=Health,
    summary="Ready: the model is loaded",
    responses={503: {"model": ProblemOut, "content": {"application/problem+json": {}}}},
)
async def readyz(service: Service = Depends(get_ready_service)) -> dict[str, str]:
    return {"status": "ready"}


@router.get(
    "/metrics",
    summary="Prometheus metrics (text exposition format)",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}},
)
async def metrics(service: Service = Depends(get_service)) -> Response:
    return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)
