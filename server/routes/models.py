"""``GET /v1/models``: what is served."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from dcf.data.spec import InputSpec
from dcf.inference.backends import BackendName, Device
from dcf.server.errors import responses
from dcf.server.service import Service, get_service

router = APIRouter()


class ModelCard(BaseModel):
    name: str
    architecture: str
    backend: BackendName
    device: Device
    precision: Literal["fp32", "fp16"]
    classes: list[str] = Field(description="labels, by class index")
    input_spec: InputSpec = Field(description="how clips are sampled and preprocessed")
    max_batch: int = Field(ge=1, description="clips per model call, as the batcher was started")


class ModelList(BaseModel):
    models: list[ModelCard]


@router.get(
    "/v1/models", summary="The served model: labels, input spec, backend", responses=responses("not_ready")
)
async def models(service: Annotated[Service, Depends(get_service)]) -> ModelList:
    info = service.ready_backend().info
    card = ModelCard(
        name=info.name,
        architecture=info.architecture,
        backend=info.backend,
        device=info.device,
        precision=info.precision,
        classes=list(info.classes),
        input_spec=info.input_spec,
        max_batch=service.settings.max_batch,
    )
    return ModelList(models=[card])
