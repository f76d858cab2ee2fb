"""The service end to end: a real uvicorn process, real encoded videos, every refusal checked."""

from __future__ import annotations

import concurrent.futures
import json
import time

import numpy as np
import pytest

from dcf.data.synthetic import CLASS_NAMES, render_video
from dcf.testing import media
from dcf.testing.server import Server, loopback_listener, start_server, stop_server


def synthetic(label: str, seed: int = 0, frames: int = 24, size: int = 96) -> np.ndarray:
    return render_video(CLASS_NAMES.index(label), np.random.default_rng(seed), num_frames=frames, size=size)


def error_of(response) -> dict:
    body = response.json()
    assert set(body) == {"error"} and {"code", "message"} <= set(body["error"]), body
    return body["error"]


def test_health_ready_models_docs(server: Server) -> None:
    assert server.get("/healthz").json() == {"status": "ok"}
    assert server.get("/readyz").json() == {"status": "ready"}
    (model,) = server.get("/v1/models").json()["models"]
    assert model["name"] == "demo" and model["architecture"] == "x3d_xs_dcf" and model["backend"] == "torch"
    assert len(model["classes"]) == 12 and model["input_spec"]["num_frames"] == 8
    schema = server.get("/openapi.json").json()
    assert "/v1/predict" in schema["paths"] and server.get("/docs").status_code == 200


@pytest.mark.parametrize("suffix", [".mp4", ".webm", ".avi", ".mkv"])
@pytest.mark.parametrize("label", ["moving left", "receding"])
def test_predicts_the_motion_in_every_container(server: Server, suffix: str, label: str) -> None:
    response = server.predict(media.encoded(suffix, synthetic(label, seed=7)), f"clip{suffix}", top_k=3)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "demo"
    assert body["predictions"][0]["label"] == label
    assert len(body["predictions"]) == 3 and body["predictions"][0]["score"] > 0.5
    assert body["video"]["frames"] == 24 and body["video"]["frames_used"] == 8
    assert (body["video"]["width"], body["video"]["height"]) == (96, 96)
    assert set(body["timings_ms"]) >= {"decode", "queue", "inference", "total"}
    assert response.headers["x-request-id"] == body["request_id"]


def test_views_and_sampling_options(server: Server) -> None:
    data = media.encoded(".mp4", synthetic("moving left", seed=3, frames=40))
    body = server.predict(data, clips=2, crops=3, sampling="interval", top_k=1).json()
    assert body["views"] == {"clips": 2, "crops": 3, "total": 6}
    assert body["predictions"][0]["label"] == "moving left"
    form = server.predict(data, top_k=1)  # the same options also work as form fields
    assert form.status_code == 200


@pytest.mark.parametrize(
    ("make", "check"),
    [
        (media.single_frame_mp4, lambda v: v["frames"] == 1),
        (lambda: media.encoded(".mp4", synthetic("falling", frames=3)), lambda v: v["frames"] == 3),
        (media.portrait_mp4, lambda v: (v["width"], v["height"]) == (96, 160)),
        (media.variable_frame_rate_mp4, lambda v: v["frames"] == 24),
        (media.long_mp4, lambda v: v["frames"] == 1200 and abs(v["duration_s"] - 120) < 0.5),
        (
            lambda: media.rotated_mp4(90),
            lambda v: v["rotation"] == 270 and (v["width"], v["height"]) == (48, 80),
        ),
        (
            lambda: media.rotated_mp4(-90),
            lambda v: v["rotation"] == 90 and (v["width"], v["height"]) == (48, 80),
        ),
    ],
    ids=[
        "one-frame",
        "three-frames",
        "portrait",
        "variable-frame-rate",
        "two-minutes",
        "rotated-ccw",
        "rotated-cw",
    ],
)
def test_odd_videos_get_answers(server: Server, make, check) -> None:
    response = server.predict(make())
    assert response.status_code == 200, response.text
    video = response.json()["video"]
    assert check(video), video


def test_timeline_over_a_long_video(server: Server) -> None:
    response = server.predict(media.long_mp4(seconds=30), timeline="true", window_s=5, top_k=2)
    assert response.status_code == 200, response.text
    body = response.json()
    windows = body["timeline"]
    assert len(windows) == 6 and windows[0]["start_s"] == 0 and abs(windows[-1]["end_s"] - 30) < 0.2
    assert all(len(w["predictions"]) == 2 for w in windows) and len(body["predictions"]) == 2
    # A window too short for max_views clips is lengthened rather than refused.
    many = server.predict(media.long_mp4(seconds=120), timeline="true", window_s=0.5).json()
    assert len(many["timeline"]) <= 32  # max_views


@pytest.mark.parametrize(
    ("make", "status", "code"),
    [
        (lambda: b"", 400, "empty_file"),
        (lambda: b"just some text, not a video\n" * 10, 415, "not_a_video"),
        (lambda: np.random.default_rng(0).bytes(50_000), 415, "not_a_video"),
        (lambda: media.audio_only(".wav"), 415, "not_a_video"),
        (lambda: media.audio_only(".m4a"), 415, "not_a_video"),
        (lambda: media.huge_resolution_y4m(16000, 16000), 413, "video_too_large"),
        (lambda: np.random.default_rng(1).bytes(3 * 2**20), 413, "upload_too_large"),
    ],
    ids=["empty", "text", "random-bytes", "audio-wav", "audio-m4a", "huge-resolution", "too-big"],
)
def test_bad_uploads_are_refused_with_json(server: Server, make, status: int, code: str) -> None:
    response = server.predict(make())
    assert response.status_code == status, response.text
    assert error_of(response)["code"] == code
    assert server.get("/healthz").status_code == 200


def test_truncated_videos(server: Server) -> None:
    mp4 = media.encoded(".mp4", synthetic("moving up", frames=30))
    cut = server.predict(media.truncated(mp4, 0.5))  # the index (moov) is at the end: unreadable
    assert cut.status_code in (400, 415) and error_of(cut)["code"] in ("undecodable_video", "not_a_video")
    mkv = media.encoded(".mkv", synthetic("moving up", frames=30))
    partial = server.predict(media.truncated(mkv, 0.5), top_k=1)  # what decodes is used
    assert partial.status_code == 200, partial.text
    assert 0 < partial.json()["video"]["frames"] < 30


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"top_k": 0}, "top_k must be >= 1, got 0"),
        ({"top_k": 13}, "top_k must be between 1 and 12, got 13"),
        ({"top_k": "many"}, "top_k"),
        ({"crops": 2}, "crops must be 1 or 3"),
        ({"clips": 11, "crops": 3}, "clips x crops must be at most 32"),
        ({"sampling": "random"}, "sampling"),
        ({"window_s": -1}, "window_s must be > 0"),
    ],
)
def test_bad_parameters_are_422(server: Server, params: dict, message: str) -> None:
    response = server.predict(media.single_frame_mp4(), **params)
    assert response.status_code == 422
    assert message in error_of(response)["message"]


def test_malformed_requests_are_refused(server: Server) -> None:
    import httpx

    no_file = httpx.post(f"{server.url}/v1/predict", files={"video": ("a.mp4", b"x")}, timeout=30)
    assert no_file.status_code == 422 and error_of(no_file)["code"] == "missing_file"
    not_multipart = httpx.post(f"{server.url}/v1/predict", content=json.dumps({"file": "x"}), timeout=30)
    assert not_multipart.status_code == 415 and error_of(not_multipart)["code"] == "unsupported_media_type"
    assert "multipart/form-data" in error_of(not_multipart)["message"]
    unknown = httpx.post(
        f"{server.url}/v1/predict",
        files={"file": ("a.mp4", media.single_frame_mp4())},
        data={"topk": "3"},
        timeout=30,
    )
    assert unknown.status_code == 422 and "topk" in error_of(unknown)["message"]
    assert (
        server.get("/nowhere").status_code == 404 and error_of(server.get("/nowhere"))["code"] == "not_found"
    )


def test_request_id_is_echoed(server: Server) -> None:
    import httpx

    response = httpx.get(f"{server.url}/healthz", headers={"X-Request-ID": "trace-42"}, timeout=30)
    assert response.headers["x-request-id"] == "trace-42"
    bad = httpx.get(f"{server.url}/healthz", headers={"X-Request-ID": "no spaces\tor tabs"}, timeout=30)
    assert bad.headers["x-request-id"] != "no spaces\tor tabs" and len(bad.headers["x-request-id"]) == 32


def test_metrics_count_requests_and_batches(server: Server) -> None:
    server.predict(media.single_frame_mp4())
    server.predict(b"")
    text = server.get("/metrics").text
    assert 'dcf_requests_total{route="/v1/predict",status="200"}' in text
    assert 'dcf_requests_total{route="/v1/predict",status="400"}' in text
    for name in (
        "dcf_decode_seconds_bucket",
        "dcf_queue_seconds_bucket",
        "dcf_inference_seconds_bucket",
        "dcf_batch_size_bucket",
    ):
        assert name in text


def test_memory_stays_bounded_across_repeats(server: Server) -> None:
    good = media.encoded(".mp4", synthetic("moving down", frames=48, size=128))
    bad = [b"", media.audio_only(".wav"), media.truncated(good, 0.3), np.random.default_rng(2).bytes(100_000)]
    for _ in range(5):  # warm-up: allocator pools, decoder threads
        server.predict(good)
    before = server.rss_mb()
    for _ in range(10):
        assert server.predict(good).status_code == 200
        for data in bad:
            assert server.predict(data).status_code >= 400
    growth = server.rss_mb() - before
    assert growth < 40, f"server memory grew by {growth:.1f} MB over 50 requests"


def test_overload_answers_503_with_retry_after(tmp_path) -> None:
    small = start_server(tmp_path, "--max-queue", "4", "--max-batch", "2")
    try:
        data = media.encoded(".mp4", synthetic("falling", frames=24))
        with concurrent.futures.ThreadPoolExecutor(12) as pool:
            responses = list(pool.map(lambda _: small.predict(data, clips=4, crops=3), range(12)))
        statuses = sorted(r.status_code for r in responses)
        assert set(statuses) <= {200, 503} and 200 in statuses and 503 in statuses, statuses
        busy = next(r for r in responses if r.status_code == 503)
        assert int(busy.headers["retry-after"]) >= 1 and error_of(busy)["code"] == "overloaded"
        assert small.predict(data).status_code == 200  # and it recovers
    finally:
        stop_server(small)


def test_deadline_answers_503(tmp_path) -> None:
    hurried = start_server(tmp_path, "--request-timeout-s", "0.001")
    try:
        response = hurried.predict(media.encoded(".mp4", synthetic("falling", frames=24)))
        assert response.status_code == 503 and error_of(response)["code"] == "deadline_exceeded"
        assert response.headers["retry-after"] == "1"
        assert hurried.get("/healthz").status_code == 200
    finally:
        stop_server(hurried)


def test_truncated_multipart_body_is_400(server: Server) -> None:
    import httpx

    body = (
        b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="a.mp4"\r\n\r\n'
        + media.single_frame_mp4()
    )
    response = httpx.post(
        f"{server.url}/v1/predict",
        content=body,
        headers={"content-type": "multipart/form-data; boundary=XyZ"},
        timeout=30,
    )
    assert response.status_code == 400 and "closing boundary" in error_of(response)["message"]


def test_playlists_and_list_files_are_refused_and_never_followed(server: Server, tmp_path) -> None:
    """HLS, DASH and ffconcat uploads whose entries point at a loopback listener or a local video."""
    local = tmp_path / "real.mp4"
    local.write_bytes(media.encoded(".mp4", synthetic("falling")))
    with loopback_listener() as listener:
        for name, data in media.nested_references(listener.url, local).items():
            response = server.predict(data, filename=name)
            assert response.status_code == 415, (name, response.text)
            assert error_of(response)["code"] == "not_a_video"
        time.sleep(0.3)
    assert listener.connections == []
