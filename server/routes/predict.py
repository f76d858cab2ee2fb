"""``POST /v1/predict``: one uploaded video in, action labels out.

The upload is admitted, read and decoded by :mod:`dcf.server.intake`; its clips are queued for the
batcher.
"""

from __future__ import annotations

import asyncio
import functools
import time
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from dcf.inference.answer import Answer
from dcf.inference.pipeline import PredictOptions, prepare, summarize
from dcf.server.batching import DeadlineExceeded, Overloaded
from dcf.server.errors import RequestError, responses
from dcf.server.intake import UPLOAD_ERRORS, options_of, receive, run_decode
from dcf.server.service import Service, get_service, get_settings
from dcf.server.settings import ServerSettings

router = APIRouter()


class Timings(BaseModel):
    decode: float = Field(ge=0, description="ms reading the frames needed and preprocessing them")
    queue: float = Field(ge=0, description="ms waiting for the batcher")
    inference: float = Field(ge=0, description="ms in the model (the batch this video's clips were in)")
    batch_clips: int = Field(ge=1, description="clips in that batch, from this and other requests")
    total: float = Field(ge=0, description="ms from the end of the upload to the answer")


class PredictResponse(Answer):
    timings_ms: Timings
    request_id: str = Field(description="as in the X-Request-ID header")


class QueryOptions(PredictOptions):
    """The options as query parameters: unknown ones are ignored (caches and proxies add some),
    while an unknown form field beside the file is refused."""

    model_config = ConfigDict(extra="ignore")


@router.post(
    "/v1/predict",
    summary="Action labels of one uploaded video",
    response_model_exclude_none=True,
    responses=responses(*UPLOAD_ERRORS),
)
async def predict(
    request: Request,
    query: Annotated[QueryOptions, Query()],
    service: Annotated[Service, Depends(get_service)],
    settings: Annotated[ServerSettings, Depends(get_settings)],
) -> PredictResponse:
    """Upload the video as the multipart field `file`. Options come as query parameters or as form
    fields beside the file (both are checked; the query wins); the API document's request body is made from the same
    options (:mod:`dcf.server.openapi`)."""
    backend = service.ready_backend()
    upload = await receive(request, service, settings)
    started = time.perf_counter()
    deadline = started + settings.request_timeout_s
    options = options_of(request, upload, query, PredictOptions.parse)
    options.check(len(backend.info.classes), settings.max_views)
    work = functools.partial(
        prepare,
        upload.data,
        backend.info.input_spec,
        options,
        settings.video_limits(),
        settings.max_views,
        threads=settings.decode_threads,
    )
    del upload  # the body is freed once decoded
    prepared = await run_decode(request, service, settings, lambda cancel: work(cancel=cancel), deadline)
    service.metrics.decode_seconds.observe(prepared.decode_s)

    assert service.batcher is not None
    try:
        logits, timing = await asyncio.wait_for(
            service.batcher.submit(prepared.views, deadline), deadline - time.perf_counter()
        )
    except Overloaded as exc:
        raise RequestError("overloaded", str(exc), retry_after=exc.retry_after) from None
    except (DeadlineExceeded, TimeoutError):
        raise RequestError(
            "deadline_exceeded", f"no answer within {settings.request_timeout_s:g} s"
        ) from None
    service.metrics.queue_seconds.observe(timing.queue_s)

    answer = summarize(logits, prepared, backend.info, options)
    total = time.perf_counter() - started
    service.metrics.request_seconds.observe(total)
    timings = Timings(
        decode=round(prepared.decode_s * 1e3, 2),
        queue=round(timing.queue_s * 1e3, 2),
        inference=round(timing.inference_s * 1e3, 2),
        batch_clips=timing.batch_views,
        total=round(total * 1e3, 2),
    )
    return PredictResponse(**dict(answer), timings_ms=timings, request_id=request.state.request_id)
