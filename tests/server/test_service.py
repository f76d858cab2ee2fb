"""The app in-process: routes read the service and the settings through dependencies."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from dcf.inference.backends import TorchBackend
from dcf.server.app import create_app
from dcf.server.service import get_settings
from dcf.server.settings import ServerSettings
from dcf.testing import media
from tests.support.checkpoints import tiny_checkpoint


def test_routes_apply_the_settings_dependency_that_a_test_overrides() -> None:
    """Also: how query parameters and form fields are checked, in-process."""
    app = create_app(ServerSettings(max_batch=2, memory_release_s=0))
    app.dependency_overrides[get_settings] = lambda: ServerSettings(max_views=2, max_upload_mb=0.004)
    video = media.single_frame_mp4()

    async def requests() -> list[httpx.Response]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://dcf.test") as client:
                post = client.post
                return [
                    await post("/v1/predict?clips=3", files={"file": ("a.mp4", video)}),
                    await post("/v1/predict", files={"file": ("a.mp4", video + bytes(4096))}),
                    await post("/v1/predict?top_k=1&_=17", files={"file": ("a.mp4", video)}),
                    await post("/v1/predict?crops=2", files={"file": ("a.mp4", video)}),
                    await post("/v1/predict", files={"file": ("a.mp4", video)}, data={"topk": "3"}),
                ]

    too_many_views, too_large, ok, bad_query, bad_field = asyncio.run(requests())
    assert too_many_views.status_code == 422
    assert "clips must be between 1 and 2, got 3" in too_many_views.json()["error"]["message"]
    assert too_large.status_code == 413  # 4 KiB uploads at most, under the override
    # An unknown query parameter (a cache buster) is ignored; an unknown form field is refused.
    assert ok.status_code == 200 and len(ok.json()["predictions"]) == 1 and ok.json()["model"] == "demo"
    assert bad_field.status_code == 422 and "unknown option 'topk'" in bad_field.json()["error"]["message"]
    # A bad query parameter is refused before the body is read, which the connection's close drops.
    assert (
        bad_query.status_code == 422 and "crops must be 1 or 3, got 2" in bad_query.json()["error"]["message"]
    )
    assert bad_query.headers["connection"] == "close"


def test_refusals_before_the_body_is_read_close_the_connection(tmp_path: Path) -> None:
    """A network without DCF blocks cannot draw its field: 501, said before reading the upload."""
    tiny_checkpoint(tmp_path, "x3d_xs")
    backend = TorchBackend(str(tmp_path / "x3d_xs.safetensors"), "tiny")
    app = create_app(ServerSettings(max_batch=1, memory_release_s=0), backend=backend)

    async def requests() -> tuple[httpx.Response, httpx.Response]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://dcf.test") as client:
                files = {"file": ("a.mp4", media.single_frame_mp4())}
                return await client.post("/v1/visualize", files=files), await client.get("/v1/models")

    refused, models = asyncio.run(requests())
    assert refused.status_code == 501 and refused.json()["error"]["code"] == "visualize_unavailable"
    assert refused.headers["connection"] == "close"
    assert models.json()["models"][0]["correlation_stages"] == []
