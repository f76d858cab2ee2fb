"""``POST /v1/predict``: one uploaded video in, action labels out.

The upload is admitted by count and reserved bytes, read within its budget, decoded off the event
loop (stopped on the deadline or when the client leaves) and its clips queued for the batcher.
"""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from dcf.data.video import DecodeCancelled, VideoDecodeError, VideoLimitError
from dcf.inference.answer import Answer
from dcf.inference.pipeline import PredictOptions, PreparedVideo, prepare, summarize
from dcf.server.batching import DeadlineExceeded, Overloaded
from dcf.server.errors import RequestError, responses, video_error
from dcf.server.service import Service, get_service, get_settings
from dcf.server.settings import ServerSettings
from dcf.server.upload import Upload, declared_length, read_upload

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
    responses=responses(
        "invalid_request",
        "empty_file",
        "undecodable_video",
        "upload_timeout",
        "upload_too_large",
        "video_too_large",
        "too_much_decoding",
        "not_a_video",
        "unsupported_media_type",
        "invalid_parameters",
        "missing_file",
        "client_disconnected",
        "overloaded",
        "not_ready",
        "deadline_exceeded",
    ),
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
    request.state.body_read = False
    backend = service.ready_backend()
    upload = await _receive(request, service, settings)
    request.state.body_read = True
    started = time.perf_counter()
    deadline = started + settings.request_timeout_s
    service.metrics.upload_bytes.observe(len(upload.data))
    # Each is valid on its own (an invalid form field is refused even where the query overrides it).
    form = PredictOptions.parse(upload.fields)
    given = {name: value for name, value in query.model_dump().items() if name in request.query_params}
    options = form.model_copy(update=given)
    options.check(len(backend.info.classes), settings.max_views)
    if not upload.data:
        raise RequestError("empty_file", "the uploaded file is empty")
    if service.decoding >= settings.max_pending_decodes:
        raise RequestError("overloaded", "too many uploads are being decoded; retry shortly")
    prepared = await _decode(request, service, settings, upload.data, options, deadline)
    del upload  # the body is freed once decoded
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


async def _receive(request: Request, service: Service, settings: ServerSettings) -> Upload:
    """The body, admitted first: what it may take is reserved before reading it (its declared
    length, limited by the budget, or for a chunked body the largest upload)."""
    reserved = min(declared_length(request) or settings.max_upload_bytes, settings.max_upload_bytes)
    if (
        service.uploading >= settings.max_uploads
        or service.upload_bytes + reserved > settings.max_upload_buffer_bytes
    ):
        raise RequestError("overloaded", "too many uploads are in progress; retry shortly")
    service.uploading += 1
    service.upload_bytes += reserved
    try:
        return await read_upload(request, "file", settings.upload_budget())
    finally:
        service.uploading -= 1
        service.upload_bytes -= reserved


async def _decode(
    request: Request,
    service: Service,
    settings: ServerSettings,
    data: bytearray,
    options: PredictOptions,
    deadline: float,
) -> PreparedVideo:
    """``prepare`` on a decode thread, stopped when the deadline passes or the client goes away."""
    cancel = threading.Event()
    service.decoding += 1
    decoding = asyncio.get_running_loop().run_in_executor(
        service.decoder,
        functools.partial(
            prepare,
            data,
            service.ready_backend().info.input_spec,
            options,
            settings.video_limits(),
            settings.max_views,
            threads=settings.decode_threads,
            cancel=cancel,
        ),
    )

    def decoded(future: asyncio.Future[PreparedVideo]) -> None:
        service.decoding -= 1  # only now is the worker free again
        if not future.cancelled():
            future.exception()  # retrieved: a cancelled decode's error is expected

    decoding.add_done_callback(decoded)
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        waited: set[asyncio.Future[Any]] = {decoding, gone}
        done, _ = await asyncio.wait(
            waited, timeout=max(0.0, deadline - time.perf_counter()), return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        gone.cancel()
    if decoding not in done:
        cancel.set()
        if gone in done:
            raise RequestError("client_disconnected", "the client went away while the video was decoded")
        raise RequestError("deadline_exceeded", f"decoding took longer than {settings.request_timeout_s:g} s")
    try:
        return decoding.result()
    except (VideoDecodeError, VideoLimitError) as exc:
        raise video_error(exc) from None
    except DecodeCancelled:  # only we set it, and only above
        raise AssertionError("decode cancelled without a reason") from None


async def _disconnected(request: Request) -> None:
    """Returns when the client closes the connection (the body has been read: nothing else arrives)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass
