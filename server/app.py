"""The FastAPI application (DESIGN.md section 6).

``create_app(settings)`` builds the app; its lifespan loads the model once, warms it, and starts
the batcher and the decode threads. Uploads are decoded off the event loop while earlier clips
run through the model; every refusal is a JSON ``{"error": {"code", "message"}}`` with its status.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any, Literal

import numpy as np
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException

from dcf import __version__
from dcf.data.video import DecodeCancelled, DecodeWorkError, NotAVideo, VideoDecodeError, VideoLimitError
from dcf.inference.backends import Backend, load_backend
from dcf.server.batching import DeadlineExceeded, DynamicBatcher, Overloaded
from dcf.server.memory import release_free_memory, resident_bytes
from dcf.server.metrics import Metrics
from dcf.server.pipeline import PredictOptions, PreparedVideo, RequestError, prepare, summarize
from dcf.server.settings import MemoryBound, ServerSettings
from dcf.server.upload import UploadBudget, declared_length, read_upload

log = logging.getLogger("dcf.server")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

PREDICT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary", "description": "the video"}
                    },
                }
            }
        },
    }
}


class _Service:
    """What the lifespan sets up and the routes use."""

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.limits = settings.video_limits()
        self.upload_budget = UploadBudget(
            max_bytes=settings.max_upload_bytes,
            timeout_s=settings.upload_timeout_s,
            idle_s=settings.upload_idle_s,
            min_rate=settings.min_upload_rate_kib_s * 1024,
        )
        self.backend: Backend | None = None
        self.batcher: DynamicBatcher | None = None
        self.decoder: ThreadPoolExecutor | None = None
        self.memory: MemoryBound | None = None
        self.uploading = 0  # requests receiving their body
        self.upload_bytes = 0  # bytes reserved by them
        self.decoding = 0  # requests decoding or waiting for a decoder
        self.ready = False


def _error(
    status: int, code: str, message: str, request_id: str | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    body: dict[str, Any] = {"error": {"code": code, "message": message}}
    if request_id:
        body["error"]["request_id"] = request_id
    return JSONResponse(body, status_code=status, headers=headers)


def create_app(settings: ServerSettings | None = None, backend: Backend | None = None) -> FastAPI:
    """The app; it loads ``settings.model`` at startup unless given a loaded ``backend``."""
    settings = settings or ServerSettings()
    service = _Service(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        model = backend if backend is not None else await asyncio.to_thread(load_backend_for, settings)
        spec = model.info.input_spec
        warm = np.zeros((settings.max_batch, 3, spec.num_frames, spec.crop_size, spec.crop_size), np.float32)
        started = time.perf_counter()
        await asyncio.to_thread(model, warm[:1])
        await asyncio.to_thread(model, warm)
        del warm
        service.memory = settings.memory_bound(spec, resident_bytes())
        service.metrics.memory_bound.set(service.memory.total)
        log.info(
            "serving %s (%s, %d classes) with %s on %s; warm-up %.2f s; worst-case memory %s",
            model.info.name,
            model.info.architecture,
            len(model.info.classes),
            model.info.backend,
            model.info.device,
            time.perf_counter() - started,
            service.memory.describe(),
        )
        service.backend = model
        service.batcher = DynamicBatcher(
            model,
            max_batch=settings.max_batch,
            max_wait_s=settings.max_wait_ms / 1000,
            max_queue=settings.max_queue,
            on_batch=service.metrics.observe_batch,
        )
        service.batcher.start()
        service.decoder = ThreadPoolExecutor(settings.decode_workers, thread_name_prefix="decode")
        releasing = (
            asyncio.create_task(_release_free_memory_every(settings.memory_release_s))
            if settings.memory_release_s > 0
            else None
        )
        service.ready = True
        try:
            yield
        finally:
            service.ready = False
            if releasing is not None:
                releasing.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await releasing
            await service.batcher.stop()
            service.decoder.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(
        title="DCF action recognition",
        version=__version__,
        description="Upload a video, get action labels from a Dense Correlation Fields network.",
        lifespan=lifespan,
    )
    app.state.service = service

    @app.middleware("http")
    async def request_id_and_metrics(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        given = request.headers.get("x-request-id", "")
        request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
        request.state.request_id = request_id
        try:
            response = await call_next(request)
        except Exception:  # never expected: the handlers below turn errors into JSON
            log.exception("request %s failed", request_id)
            response = _error(500, "internal_error", "the server failed on this request", request_id)
        response.headers["X-Request-ID"] = request_id
        route = request.scope.get("route")
        service.metrics.requests.labels(getattr(route, "path", "unmatched"), str(response.status_code)).inc()
        return response

    @app.exception_handler(RequestError)
    async def request_error(request: Request, exc: RequestError) -> JSONResponse:
        headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else {}
        if getattr(request.state, "body_read", True) is False:
            headers["Connection"] = "close"  # the rest of the body is not wanted: free the connection now
        return _error(exc.status, exc.code, exc.message, getattr(request.state, "request_id", None), headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:])}: {e['msg']}" for e in exc.errors())
        return _error(422, "invalid_parameters", problems, getattr(request.state, "request_id", None))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return _error(exc.status_code, code, str(exc.detail), getattr(request.state, "request_id", None))

    @app.get("/healthz", summary="The process is alive")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", summary="The model is loaded and warm", responses={503: {"description": "not ready"}})
    async def readyz(request: Request) -> Response:
        if not service.ready:
            return _error(503, "not_ready", "the model is still loading", request.state.request_id)
        return JSONResponse({"status": "ready"})

    @app.get("/metrics", summary="Prometheus metrics")
    async def metrics() -> Response:
        if service.batcher is not None:
            service.metrics.queued_clips.set(service.batcher.queued_views)
        service.metrics.decoding.set(service.decoding)
        service.metrics.uploading.set(service.uploading)
        return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/models", summary="The served model: labels, input spec, backend")
    async def models() -> dict[str, Any]:
        backend = _backend(service)
        info = backend.info
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
                    "max_batch": settings.max_batch,
                }
            ]
        }

    @app.post("/v1/predict", summary="Action labels of one uploaded video", openapi_extra=PREDICT_BODY)
    async def predict(
        request: Request,
        top_k: int | None = Query(None, description="labels to return (default 5)"),
        clips: int | None = Query(None, description="clips per video or window, evenly spread (default 1)"),
        crops: int | None = Query(None, description="1 (centre) or 3 crops per clip (default 1)"),
        sampling: Literal["segment", "interval"] | None = Query(None, description="default: the model's own"),
        timeline: bool | None = Query(None, description="also answer per window over the whole video"),
        window_s: float | None = Query(None, description="timeline window in seconds (default 2)"),
    ) -> dict[str, Any]:
        request.state.body_read = False
        backend, batcher = _backend(service), service.batcher
        assert batcher is not None and service.decoder is not None
        # What the body may take is reserved before reading it: its declared length (limited by the
        # budget) or, for a chunked body, the largest upload.
        reserved = min(declared_length(request) or settings.max_upload_bytes, settings.max_upload_bytes)
        if (
            service.uploading >= settings.max_uploads
            or service.upload_bytes + reserved > settings.max_upload_buffer_bytes
        ):
            raise RequestError(503, "overloaded", "too many uploads are in progress; retry shortly")
        service.uploading += 1
        service.upload_bytes += reserved
        try:
            upload = await read_upload(request, "file", service.upload_budget)
        finally:
            service.uploading -= 1
            service.upload_bytes -= reserved
        request.state.body_read = True
        started = time.perf_counter()
        deadline = started + settings.request_timeout_s
        service.metrics.upload_bytes.observe(len(upload.data))
        options = _options(
            {
                "top_k": top_k,
                "clips": clips,
                "crops": crops,
                "sampling": sampling,
                "timeline": timeline,
                "window_s": window_s,
            },
            upload.fields,
        )
        options.check(len(backend.info.classes), settings.max_views)
        if not upload.data:
            raise RequestError(400, "empty_file", "the uploaded file is empty")
        if service.decoding >= settings.max_pending_decodes:
            raise RequestError(503, "overloaded", "too many uploads are being decoded; retry shortly")
        prepared = await _decode(service, request, upload.data, options, deadline)
        del upload  # the body is freed once decoded
        service.metrics.decode_seconds.observe(prepared.decode_s)

        try:
            logits, timing = await asyncio.wait_for(
                batcher.submit(prepared.views, deadline), deadline - time.perf_counter()
            )
        except Overloaded as exc:
            raise RequestError(503, "overloaded", str(exc), retry_after=exc.retry_after) from None
        except (DeadlineExceeded, TimeoutError):
            raise RequestError(
                503, "deadline_exceeded", f"no answer within {settings.request_timeout_s:g} s"
            ) from None
        service.metrics.queue_seconds.observe(timing.queue_s)

        answer = summarize(logits, prepared, backend.info.classes, options)
        total = time.perf_counter() - started
        service.metrics.request_seconds.observe(total)
        return {
            "model": backend.info.name,
            **answer,
            "timings_ms": {
                "decode": round(prepared.decode_s * 1e3, 2),
                "queue": round(timing.queue_s * 1e3, 2),
                "inference": round(timing.inference_s * 1e3, 2),
                "batch_clips": timing.batch_views,
                "total": round(total * 1e3, 2),
            },
            "request_id": request.state.request_id,
        }

    return app


async def _decode(
    service: _Service, request: Request, data: bytearray, options: PredictOptions, deadline: float
) -> PreparedVideo:
    """``prepare`` on a decode thread, stopped when the deadline passes or the client goes away."""
    settings, backend = service.settings, _backend(service)
    cancel = threading.Event()
    service.decoding += 1
    decoding = asyncio.get_running_loop().run_in_executor(
        service.decoder,
        functools.partial(
            prepare,
            data,
            backend.info.input_spec,
            options,
            service.limits,
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
            waited,
            timeout=max(0.0, deadline - time.perf_counter()),
            return_when=asyncio.FIRST_COMPLETED,
        )
    finally:
        gone.cancel()
    if decoding not in done:
        cancel.set()
        if gone in done:
            raise RequestError(499, "client_disconnected", "the client went away while the video was decoded")
        raise RequestError(
            503, "deadline_exceeded", f"decoding took longer than {settings.request_timeout_s:g} s"
        )
    try:
        return decoding.result()
    except DecodeWorkError as exc:
        raise RequestError(413, "too_much_decoding", f"{exc} (DCF_MAX_DECODE_MPIXELS)") from None
    except VideoLimitError as exc:
        raise RequestError(413, "video_too_large", str(exc)) from None
    except NotAVideo as exc:
        raise RequestError(
            415, "not_a_video", f"{exc} (upload an MP4, WebM, MKV, AVI, MOV ... video)"
        ) from None
    except VideoDecodeError as exc:
        raise RequestError(400, "undecodable_video", str(exc)) from None
    except DecodeCancelled:  # only we set it, and only above
        raise AssertionError("decode cancelled without a reason") from None


async def _release_free_memory_every(seconds: float) -> None:
    """Keeps the RSS near what is in use (``dcf.server.memory``): the allocator's free pages go back."""
    while True:
        await asyncio.sleep(seconds)
        await asyncio.to_thread(release_free_memory)


async def _disconnected(request: Request) -> None:
    """Returns when the client closes the connection (the body has been read: nothing else arrives)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def load_backend_for(settings: ServerSettings) -> Backend:
    return load_backend(
        settings.model,
        settings.backend,
        device=settings.device,
        threads=settings.threads,
        plugin=settings.plugin,
        name=settings.name,
    )


def _backend(service: _Service) -> Backend:
    if not service.ready or service.backend is None:
        raise RequestError(503, "not_ready", "the model is still loading")
    return service.backend


def _options(query: dict[str, Any], form: dict[str, str]) -> PredictOptions:
    """Query parameters, else form fields of the same name, else the defaults."""
    known = {"top_k", "clips", "crops", "sampling", "timeline", "window_s"}
    unknown = set(form) - known
    if unknown:
        raise RequestError(
            422, "invalid_parameters", f"unknown fields {sorted(unknown)}; expected some of {sorted(known)}"
        )
    values: dict[str, Any] = {}
    for name in known:
        value = query[name] if query[name] is not None else form.get(name)
        if value is None:
            continue
        try:
            if name in ("top_k", "clips", "crops"):
                values[name] = int(value)
            elif name == "window_s":
                values[name] = float(value)
            elif name == "timeline":
                values[name] = (
                    value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes", "on")
                )
            else:
                values[name] = value
        except ValueError:
            raise RequestError(422, "invalid_parameters", f"{name}: not a valid value: {value!r}") from None
    return PredictOptions(**values)
