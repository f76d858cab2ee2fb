"""The page for people (``GET /``) in a real browser, and ``POST /v1/visualize`` behind it."""

from __future__ import annotations

import io
from pathlib import Path

import av
import httpx
from PIL import Image

from dcf.testing import media
from dcf.testing.server import Server
from tests.support.browser import chromium


def test_visualize_answers_a_png_or_an_mp4(server: Server) -> None:
    video = media.encoded(".mp4", media.moving_texture(24, 96, 160, step=3))
    files = {"file": ("clip.mp4", video, "video/mp4")}
    png = httpx.post(f"{server.url}/v1/visualize?stage=3&tau=-2", files=files, timeout=60)
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert png.headers["x-dcf-stage"] == "3" and float(png.headers["x-dcf-full-colour-px"]) > 0
    assert Image.open(io.BytesIO(png.content)).format == "PNG"
    mp4 = httpx.post(f"{server.url}/v1/visualize", files=files, data={"format": "mp4"}, timeout=60)
    assert mp4.status_code == 200 and mp4.headers["content-type"] == "video/mp4"
    with av.open(io.BytesIO(mp4.content)) as container:
        frames = list(container.decode(video=0))
    assert len(frames) == 8 and frames[0].width >= 360  # the legend's full width, scale included
    wrong = httpx.post(f"{server.url}/v1/visualize?stage=4&tau=2", files=files, timeout=60)
    assert wrong.status_code == 422 and "at stage 4" in wrong.json()["error"]["message"]
    text = httpx.post(f"{server.url}/v1/visualize", files={"file": ("a.txt", b"hello")}, timeout=60)
    assert text.status_code == 415 and text.json()["error"]["code"] == "not_a_video"
    card = server.get("/v1/models").json()["models"][0]
    assert [s["stage"] for s in card["correlation_stages"]] == [2, 3, 4]


def test_the_page_labels_a_video_and_shows_errors(server: Server, tmp_path: Path) -> None:
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(media.encoded(".mp4", media.moving_texture(24, 96, 160, step=3)))
    notes = tmp_path / "notes.txt"
    notes.write_text("not a video")
    requests: list[str] = []
    problems: list[str] = []
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        page.on("request", lambda request: requests.append(request.url))
        page.on("pageerror", lambda error: problems.append(str(error)))
        page.on(
            "console",
            lambda m: problems.append(m.text) if m.type == "error" and "415" not in m.text else None,
        )
        answer = page.goto(f"{server.url}/")
        assert answer is not None and answer.headers["content-type"].startswith("text/html")
        assert "default-src 'none'" in answer.headers["content-security-policy"]
        page.wait_for_function("document.getElementById('model-card').textContent.includes('12 classes')")
        # Keyboard only: focus the file input, choose a file, tick the timeline, submit with Enter.
        page.set_input_files("#file", str(clip))
        page.focus("input[name=timeline]")
        page.keyboard.press("Space")
        page.fill("input[name=window_s]", "0.5")
        page.focus("#go")
        page.keyboard.press("Enter")
        page.wait_for_selector("#labels li", timeout=60_000)
        page.wait_for_selector("#field-picture[src^='blob:']", timeout=60_000)
        labels = page.locator("#labels li .label").all_inner_texts()
        polylines = page.locator("#timeline polyline").count()
        caption = page.locator("#field-caption").inner_text()
        picture_width = page.evaluate("document.getElementById('field-picture').naturalWidth")
        page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
        page.set_input_files("#file", str(notes))
        page.click("#go")
        page.wait_for_selector("#error:not([hidden])")
        error = page.locator("#error").inner_text()
    assert len(labels) == 5 and all(labels)
    assert polylines == 1 + 5  # the axes and one line per label
    assert "stage 2" in caption and picture_width >= 8 * 128
    assert error.endswith("(not_a_video)") and "not a media container" in error
    assert all(url.startswith((server.url, "blob:", "data:")) for url in requests), requests
    assert not problems, problems
