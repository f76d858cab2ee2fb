"""What one request may cost, against a real server: hostile decodes and hostile uploads beside an
ordinary client, with the server's peak memory held to the bound its settings state."""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest

from dcf.checkpoint import checkpoint_of, load_checkpoint
from dcf.data.synthetic import CLASSES, render_video
from dcf.data.video import EncodedVideo
from dcf.data.views import eval_indices
from dcf.inference.pipeline import PredictOptions, _windows
from dcf.testing import media
from dcf.testing.server import Server, start_server, stop_server

ORDINARY_LABEL = "moving left"


@pytest.fixture(scope="module")
def hires() -> bytes:
    """100 frames of 4096x2304 H.264, one keyframe: 3 MB on the wire, 2.8 GB as RGB."""
    return media.high_resolution_mp4(frames=100)


@pytest.fixture(scope="module")
def ordinary() -> bytes:
    label = [name for name, _ in CLASSES].index(ORDINARY_LABEL)
    return media.encoded(".mp4", render_video(label, np.random.default_rng(3), num_frames=24, size=96))


def _decode_pixels(video: EncodedVideo, options: PredictOptions) -> int:
    """Decode work of a request, from the same sampling and plan the server uses."""
    spec = checkpoint_of(load_checkpoint("demo")).input_spec
    if options.sampling:
        spec = dataclasses.replace(spec, sampling=options.sampling)
    ranges = _windows(video.info, options, 32)[0] if options.timeline else None
    clips = eval_indices(spec, video.info.num_frames, options.clips, ranges)
    return video.plan([i for clip in clips for i in clip]).pixels


class _Watch:
    """Samples the server's resident memory every 20 ms (and reads its kernel-kept peak)."""

    def __init__(self, server: Server) -> None:
        self.server, self.peak_mb, self._stop = server, 0.0, threading.Event()
        server.reset_peak_rss()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak_mb = max(self.peak_mb, self.server.rss_mb())

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return max(self.peak_mb, self.server.rss_mb("VmHWM"))


def _ordinary_client(server: Server, data: bytes, stop: threading.Event) -> list[int]:
    statuses = []
    while not stop.is_set():
        response = server.predict(data, top_k=1)
        statuses.append(response.status_code)
        if response.status_code == 200:
            assert response.json()["predictions"][0]["label"] == ORDINARY_LABEL
    return statuses


@pytest.fixture
def guarded(tmp_path: Path, hires: bytes) -> Iterator[Server]:
    """Small limits, so that the hostile cases are cheap to reach; the decode budget admits the
    4K clip's interval sampling and refuses its segment sampling and its timeline."""
    video = EncodedVideo(hires)
    accepted = _decode_pixels(video, PredictOptions(sampling="interval"))
    refused = _decode_pixels(video, PredictOptions(timeline=True, window_s=1))
    assert accepted < refused and accepted < _decode_pixels(video, PredictOptions())
    budget = (accepted + min(refused, _decode_pixels(video, PredictOptions()))) / 2
    env = {
        "DCF_MAX_DECODE_MPIXELS": f"{budget / 1e6:.3f}",
        "DCF_DECODE_WORKERS": "2",
        "DCF_MAX_PENDING_DECODES": "4",
        "DCF_MAX_UPLOAD_MB": "20",
        "DCF_MAX_UPLOAD_BUFFER_MB": "70",
        "DCF_MAX_UPLOADS": "40",
        "DCF_UPLOAD_IDLE_S": "2",
        "DCF_UPLOAD_TIMEOUT_S": "20",
    }
    server = start_server(tmp_path, env=env)
    yield server
    stop_server(server)


def test_hostile_decodes_beside_an_ordinary_client(guarded: Server, hires: bytes, ordinary: bytes) -> None:
    bound_mb = guarded.metric("dcf_memory_bound_bytes") / 2**20
    watch = _Watch(guarded)
    stop = threading.Event()
    hostile_options = [{"sampling": "interval"}, {"timeline": "true", "window_s": 1}, {}]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        calm = pool.submit(_ordinary_client, guarded, ordinary, stop)
        hostile = list(
            pool.map(lambda k: guarded.predict(hires, **hostile_options[k % 3]), range(12))
        )  # three at a time: with the ordinary client, never more than the 4 pending decodes
        stop.set()
        statuses = calm.result()
    peak_mb = watch.stop()

    assert statuses and set(statuses) == {200}, statuses
    by_options: dict[int, set[int]] = {}
    for k, response in enumerate(hostile):
        by_options.setdefault(k % 3, set()).add(response.status_code)
        if response.status_code == 413:
            error = response.json()["error"]
            assert error["code"] == "too_much_decoding" and "DCF_MAX_DECODE_MPIXELS" in error["message"]
    assert by_options == {0: {200}, 1: {413}, 2: {413}}, by_options
    assert peak_mb <= bound_mb, f"peak RSS {peak_mb:.0f} MB over the stated bound {bound_mb:.0f} MB"
    assert guarded.get("/healthz").status_code == 200
    assert guarded.metric("dcf_decoding_uploads") == 0


@dataclass
class Outcome:
    status: int | None  # what the server answered (None: it closed without answering)
    retry_after: str | None
    seconds: float  # until the answer
    closed: bool  # the server closed the connection after answering


def _hostile_upload(url: str, declared: int, first: int, trickle: bool, hold_s: float = 15) -> Outcome:
    """A raw HTTP upload that declares ``declared`` body bytes, sends ``first`` of them, then stalls
    (or trickles 200 bytes every 0.2 s), and waits for the server to answer or close."""
    host, port = url.removeprefix("http://").split(":")
    started = time.monotonic()
    with socket.create_connection((host, int(port))) as sock:
        head = (
            f"POST /v1/predict HTTP/1.1\r\nHost: {host}\r\nContent-Length: {declared}\r\n"
            "Content-Type: multipart/form-data; boundary=B\r\n\r\n"
            '--B\r\nContent-Disposition: form-data; name="file"; filename="a.mp4"\r\n\r\n'
        ).encode()
        sock.settimeout(0.2)
        with contextlib.suppress(OSError):  # answered and closed before the body went out
            sock.sendall(head + b"\0" * first)
        answer, closed, answered_at = b"", False, None
        while time.monotonic() - started < hold_s:
            try:
                chunk = sock.recv(4096)
            except TimeoutError:
                if trickle:
                    with contextlib.suppress(OSError):
                        sock.sendall(b"\0" * 200)
                continue
            except OSError:
                closed = True
                break
            if not chunk:
                closed = True
                break
            answer += chunk
            answered_at = answered_at or time.monotonic() - started
    if not answer:
        return Outcome(None, None, time.monotonic() - started, closed)
    lines = answer.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:] if ": " in line)
    return Outcome(int(lines[0].split()[1]), headers.get("retry-after"), answered_at or 0.0, closed)


def test_stalled_and_trickling_uploads_beside_an_ordinary_client(guarded: Server, ordinary: bytes) -> None:
    bound_mb = guarded.metric("dcf_memory_bound_bytes") / 2**20
    watch = _Watch(guarded)
    stop = threading.Event()
    with concurrent.futures.ThreadPoolExecutor(36) as pool:
        calm = pool.submit(_ordinary_client, guarded, ordinary, stop)
        stalled = [pool.submit(_hostile_upload, guarded.url, 8 << 20, 4 << 20, False) for _ in range(30)]
        trickling = [pool.submit(_hostile_upload, guarded.url, 1 << 20, 1000, True) for _ in range(5)]
        outcomes = [f.result() for f in stalled + trickling]
        stop.set()
        statuses = calm.result()
    peak_mb = watch.stop()

    assert statuses and set(statuses) == {200}, statuses
    answered = {o.status for o in outcomes}
    assert answered <= {408, 503} and 408 in answered and 503 in answered, outcomes
    assert all(o.retry_after for o in outcomes if o.status == 503)
    # Dropped after the 2 s idle limit (stalled) or behind the 32 KiB/s rate (trickling), not held.
    assert max(o.seconds for o in outcomes) < 5 and all(o.closed for o in outcomes), outcomes
    assert peak_mb <= bound_mb, f"peak RSS {peak_mb:.0f} MB over the stated bound {bound_mb:.0f} MB"
    assert guarded.metric("dcf_receiving_uploads") == 0
    assert guarded.predict(ordinary).status_code == 200


def _seconds_until_idle(server: Server, limit_s: float = 5.0) -> float:
    """How long until no upload is decoding (polled every 10 ms)."""
    start = time.perf_counter()
    while server.metric("dcf_decoding_uploads") != 0:
        assert time.perf_counter() - start < limit_s, "a decode went on past the request's end"
        time.sleep(0.01)
    return time.perf_counter() - start


def test_decoding_stops_at_the_deadline_and_when_the_client_leaves(tmp_path: Path, hires: bytes) -> None:
    """A long job (every 4K frame, one decoder thread), timed here left alone, then cut short at
    0.2 s by the deadline and by a client leaving: the worker is free long before the job would
    have ended."""
    slow = {"DCF_DECODE_WORKERS": "1", "DCF_DECODE_THREADS": "1"}
    options = {"timeline": "true", "window_s": 1}
    server = start_server(tmp_path, env=slow)
    try:
        full = server.predict(hires, **options)  # the job left alone, on this machine
        assert full.status_code == 200, full.text
        job_s = full.json()["timings_ms"]["decode"] / 1000
        assert job_s > 0.3, f"the job takes {job_s:.2f} s: too short to tell a stop from an end"
        with pytest.raises(httpx.ReadTimeout):
            server.predict(hires, timeout=0.2, **options)  # the client gives up, closing
        assert 0.2 + _seconds_until_idle(server) < 0.9 * job_s
        counted = 'dcf_requests_total{route="/v1/predict",status="499"} 1.0'
        deadline = time.perf_counter() + 2  # counted once the handler has seen the client go
        while counted not in server.get("/metrics").text and time.perf_counter() < deadline:
            time.sleep(0.02)
        assert counted in server.get("/metrics").text
    finally:
        stop_server(server)
    server = start_server(tmp_path, "--request-timeout-s", "0.2", env=slow)
    try:
        late = server.predict(hires, **options)
        assert late.status_code == 503 and late.json()["error"]["code"] == "deadline_exceeded"
        assert 0.2 + _seconds_until_idle(server) < 0.9 * job_s  # the worker stopped, not finished
    finally:
        stop_server(server)
