"""What every upload route does before its own work: admit and read the upload, read its options
(query and form), and run the CPU-heavy part (decoding, drawing) on a decode thread, stopped when
the deadline passes or the client goes away."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel

from dcf.data.video import DecodeCancelled, EmptyFile, VideoDecodeError, VideoLimitError
from dcf.server.errors import ErrorCode, RequestError, video_error
from dcf.server.service import Service
from dcf.server.settings import ServerSettings
from dcf.server.upload import Upload, declared_length, read_upload

# What an upload route can answer besides its own refusals: the upload, the video, the options and
# the service's bounds (for its ``responses=``, :func:`dcf.server.errors.responses`).
UPLOAD_ERRORS: tuple[ErrorCode, ...] = (
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
)

Options = TypeVar("Options", bound=BaseModel)
Result = TypeVar("Result")


async def receive(request: Request, service: Service, settings: ServerSettings) -> Upload:
    """The body, admitted first: what it may take is reserved before reading it (its declared
    length, limited by the budget, or for a chunked body the largest upload). Until it is read,
    a refusal closes the connection (:mod:`dcf.server.errors`)."""
    reserved = min(declared_length(request) or settings.max_upload_bytes, settings.max_upload_bytes)
    if (
        service.uploading >= settings.max_uploads
        or service.upload_bytes + reserved > settings.max_upload_buffer_bytes
    ):
        raise RequestError("overloaded", "too many uploads are in progress; retry shortly")
    service.uploading += 1
    service.upload_bytes += reserved
    try:
        upload = await read_upload(request, "file", settings.upload_budget())
    finally:
        service.uploading -= 1
        service.upload_bytes -= reserved
    request.state.body_read = True
    service.metrics.upload_bytes.observe(len(upload.data))
    if not upload.data:  # refused here, before it takes a decode slot
        raise video_error(EmptyFile("the uploaded file is empty"))
    return upload


def options_of(
    request: Request, upload: Upload, query: BaseModel, model: Callable[[dict[str, Any]], Options]
) -> Options:
    """The options from the form fields and the query parameters: each is checked on its own (an
    invalid form field is refused even where the query gives that option too); the query wins."""
    form = model(dict(upload.fields))
    given = {name: value for name, value in query.model_dump().items() if name in request.query_params}
    return form.model_copy(update=given)


async def run_decode(
    request: Request,
    service: Service,
    settings: ServerSettings,
    work: Callable[[threading.Event], Result],
    deadline: float,
) -> Result:
    """``work(cancel)`` on a decode thread, admitted by the count of pending decodes; ``cancel`` is
    set when the deadline passes or the client goes away.

    Raises:
        RequestError: 503 overloaded or past the deadline, 499 the client left, or the video's refusal.
    """
    if service.decoding >= settings.max_pending_decodes:
        raise RequestError("overloaded", "too many uploads are being decoded; retry shortly")
    cancel = threading.Event()
    service.decoding += 1
    running = asyncio.get_running_loop().run_in_executor(service.decoder, work, cancel)

    def finished(future: asyncio.Future[Result]) -> None:
        service.decoding -= 1  # only now is the worker free again
        if not future.cancelled():
            future.exception()  # retrieved: a cancelled decode's error is expected

    running.add_done_callback(finished)
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        waited: set[asyncio.Future[Any]] = {running, gone}
        done, _ = await asyncio.wait(
            waited, timeout=max(0.0, deadline - time.perf_counter()), return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        gone.cancel()
    if running not in done:
        cancel.set()
        if gone in done:
            raise RequestError("client_disconnected", "the client went away while the video was decoded")
        raise RequestError("deadline_exceeded", f"decoding took longer than {settings.request_timeout_s:g} s")
    try:
        return running.result()
    except (VideoDecodeError, VideoLimitError) as exc:
        raise video_error(exc) from None
    except DecodeCancelled:  # only we set it, and only above
        raise AssertionError("decode cancelled without a reason") from None


async def _disconnected(request: Request) -> None:
    """Returns when the client closes the connection (the body has been read: nothing else arrives)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass
