"""``GET /v1/models``: what is served."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from dcf.data.spec import InputSpec
from dcf.inference.backends import BackendName, ComputePrecision, Device
from dcf.inference.fields import correlations
from dcf.server.errors import RequestError, responses
from dcf.server.service import Service, dcf_model, get_service

router = APIRouter()


class ModelCard(BaseModel):
    name: str
    architecture: str
    backend: BackendName
    device: Device
    precision: ComputePrecision = Field(description="compute precision (inputs and outputs are float32)")
    classes: list[str] = Field(description="labels, by class index")
    input_spec: InputSpec = Field(description="how clips are sampled and preprocessed")
    max_batch: int = Field(ge=1, description="clips per model call, as the batcher was started")
    correlation_stages: list[CorrelationStage] = Field(
        description="what POST /v1/visualize can draw (empty: not a DCF network served from PyTorch)"
    )


class CorrelationStage(BaseModel):
    stage: int = Field(description="the DCF block after this stage (2, 3 or 4)")
    kernel_size: int = Field(description="K: the window is K x K")
    temporal_range: int = Field(description="L: offsets tau are -L..-1, +1..+L")


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
        correlation_stages=_correlation_stages(service),
    )
    return ModelList(models=[card])


def _correlation_stages(service: Service) -> list[CorrelationStage]:
    try:
        model = dcf_model(service.ready_backend())
    except RequestError:
        return []
    return [
        CorrelationStage(stage=stage, kernel_size=c.kernel_size, temporal_range=c.temporal_range)
        for stage, c in sorted(correlations(model).items())
    ]
