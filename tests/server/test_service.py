"""The app in-process: routes read the service and the settings through dependencies."""

from __future__ import annotations

import asyncio

import httpx

from dcf.server.app import create_app
from dcf.server.service import get_settings
from dcf.server.settings import ServerSettings
from dcf.testing import media


def test_routes_apply_the_settings_dependency_that_a_test_overrides() -> None:
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
                    await post("/v1/predict?top_k=1", files={"file": ("a.mp4", video)}),
                ]

    too_many_views, too_large, ok = asyncio.run(requests())
    assert too_many_views.status_code == 422
    assert "clips x crops must be at most 2, got 3" in too_many_views.json()["error"]["message"]
    assert too_large.status_code == 413  # 4 KiB uploads at most, under the override
    assert ok.status_code == 200 and len(ok.json()["predictions"]) == 1 and ok.json()["model"] == "demo"
