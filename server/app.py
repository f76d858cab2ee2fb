"""The FastAPI application (DESIGN.md section 6).

``create_app(settings)`` builds the app; its lifespan loads the model once, warms it, and starts
the batcher and the decode threads. The routes live in :mod:`dcf.server.routes` and get the
service and the settings through dependencies (:mod:`dcf.server.service`); every refusal is a JSON
error (:mod:`dcf.server.errors`); the API document and its page are :mod:`dcf.server.openapi`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import Response

from dcf import __version__
from dcf.inference.backends import Backend
from dcf.server.batching import DynamicBatcher
from dcf.server.errors import error_response, install_error_handlers
from dcf.server.memory import release_free_memory, resident_bytes
from dcf.server.openapi import install_docs
from dcf.server.routes import models, page, predict, probes, visualize
from dcf.server.service import Service, load_backend_for
from dcf.server.settings import ServerSettings

log = logging.getLogger("dcf.server")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def create_app(settings: ServerSettings | None = None, backend: Backend | None = None) -> FastAPI:
    """The app; it loads ``settings.model`` at startup unless given a loaded ``backend``."""
    settings = settings or ServerSettings()
    service = Service(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await _start(service, backend)
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
            assert service.batcher is not None and service.decoder is not None
            await service.batcher.stop()
            service.decoder.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(
        title="DCF action recognition",
        version=__version__,
        description="Upload a video, get action labels from a Dense Correlation Fields network.",
        lifespan=lifespan,
        docs_url=None,  # served offline by install_docs
        redoc_url=None,
    )
    app.state.service = service

    @app.middleware("http")
    async def request_id_and_metrics(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        given = request.headers.get("x-request-id", "")
        request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
        request.state.request_id = request_id
        service.metrics.in_progress.inc()
        try:
            response = await call_next(request)
        except Exception:  # never expected: the error handlers turn errors into JSON
            log.exception("request %s failed", request_id)
            response = error_response(500, "internal_error", "the server failed on this request", request_id)
        finally:
            service.metrics.in_progress.dec()
        response.headers["X-Request-ID"] = request_id
        route = request.scope.get("route")
        service.metrics.requests.labels(getattr(route, "path", "unmatched"), str(response.status_code)).inc()
        return response

    install_error_handlers(app)
    for module in (page, probes, models, predict, visualize):
        app.include_router(module.router)
    install_docs(app, service)
    return app


async def _start(service: Service, backend: Backend | None) -> None:
    """Loads (unless given) and warms the model, then starts the batcher and the decode threads."""
    settings = service.settings
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


async def _release_free_memory_every(seconds: float) -> None:
    """Keeps the RSS near what is in use (``dcf.server.memory``): the allocator's free pages go back."""
    while True:
        await asyncio.sleep(seconds)
        await asyncio.to_thread(release_free_memory)
