"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from dcf.server.errors import error_response
from dcf.server.service import Service, get_service

router = APIRouter()


@router.get("/healthz", summary="The process is alive")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="The model is loaded and warm", responses={503: {"description": "not ready"}})
async def readyz(request: Request, service: Annotated[Service, Depends(get_service)]) -> Response:
    if not service.ready:
        return error_response(503, "not_ready", "the model is still loading", request.state.request_id)
    return JSONResponse({"status": "ready"})


@router.get("/metrics", summary="Prometheus metrics")
async def metrics(service: Annotated[Service, Depends(get_service)]) -> Response:
    if service.batcher is not None:
        service.metrics.queued_clips.set(service.batcher.queued_views)
    service.metrics.decoding.set(service.decoding)
    service.metrics.uploading.set(service.uploading)
    return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)
