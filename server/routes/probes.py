"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel

from dcf.server.errors import responses
from dcf.server.service import Service, get_service

router = APIRouter()


class Alive(BaseModel):
    status: Literal["ok"] = "ok"


class Ready(BaseModel):
    status: Literal["ready"] = "ready"


@router.get("/healthz", summary="The process is alive")
async def healthz() -> Alive:
    return Alive()


@router.get("/readyz", summary="The model is loaded and warm", responses=responses("not_ready"))
async def readyz(service: Annotated[Service, Depends(get_service)]) -> Ready:
    service.ready_backend()
    return Ready()


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={
        200: {
            "description": "Prometheus text exposition format",
            "content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}},
        }
    },
)
async def metrics(service: Annotated[Service, Depends(get_service)]) -> Response:
    if service.batcher is not None:
        service.metrics.queued_clips.set(service.batcher.queued_views)
    service.metrics.decoding.set(service.decoding)
    service.metrics.uploading.set(service.uploading)
    return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)
