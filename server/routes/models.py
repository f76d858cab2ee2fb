"""``GET /v1/models``: what is served."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from dcf.server.service import Service, get_service

router = APIRouter()


@router.get("/v1/models", summary="The served model: labels, input spec, backend")
async def models(service: Annotated[Service, Depends(get_service)]) -> dict[str, Any]:
    info = service.ready_backend().info
    return {
        "models": [
            {
                "name": info.name,
                "architecture": info.architecture,
                "backend": info.backend,
                "device": info.device,
                "precision": info.precision,
                "classes": list(info.classes),
                "input_spec": info.input_spec.to_dict(),
                "max_batch": service.settings.max_batch,  # what the batcher was started with
            }
        ]
    }
