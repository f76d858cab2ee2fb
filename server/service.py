"""What the lifespan sets up and the routes use, and the dependencies that hand it to them."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from fastapi import Request

from dcf.inference.backends import Backend, TorchBackend, load_backend
from dcf.models.dcf_net import DCFNet
from dcf.server.batching import DynamicBatcher
from dcf.server.errors import RequestError
from dcf.server.metrics import Metrics
from dcf.server.settings import MemoryBound, ServerSettings


class Service:
    """One served model: its backend, batcher, decode threads, and the counts admission reads."""

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.backend: Backend | None = None
        self.batcher: DynamicBatcher | None = None
        self.decoder: ThreadPoolExecutor | None = None
        self.memory: MemoryBound | None = None
        self.uploading = 0  # requests receiving their body
        self.upload_bytes = 0  # bytes reserved by them
        self.decoding = 0  # requests decoding or waiting for a decoder
        self.ready = False

    def ready_backend(self) -> Backend:
        """The backend, once loaded and warm.

        Raises:
            RequestError: 503 while the model is loading (or the server stops).
        """
        if not self.ready or self.backend is None:
            raise RequestError("not_ready", "the model is not loaded yet (or the server is stopping)")
        return self.backend


def dcf_model(backend: Backend) -> DCFNet:
    """The served PyTorch DCF network (the volumes are not outputs of an exported model).

    Raises:
        RequestError: 501 for another backend or a network without DCF blocks.
    """
    if isinstance(backend, TorchBackend) and isinstance(backend.model, DCFNet):
        return backend.model
    raise RequestError(
        "visualize_unavailable",
        f"this server runs {backend.info.architecture} with {backend.info.backend}: drawing the "
        "correlation field needs a DCF network served from its PyTorch checkpoint",
    )


def load_backend_for(settings: ServerSettings) -> Backend:
    return load_backend(
        settings.model,
        settings.backend,
        device=settings.device,
        threads=settings.threads,
        plugin=settings.plugin,
        name=settings.name,
        precision=settings.precision,
    )


async def get_service(request: Request) -> Service:
    """Dependency: the app's service (a coroutine: FastAPI would run a plain function in a thread)."""
    service: Service = request.app.state.service
    return service


async def get_settings(request: Request) -> ServerSettings:
    """Dependency: the settings the routes apply per request: admission, upload and video bounds,
    deadlines (tests override it through ``app.dependency_overrides``). What the lifespan sized
    (the batcher, the decode threads, the memory bound) stays as the app was created."""
    return (await get_service(request)).settings
