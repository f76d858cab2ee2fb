"""Soak of the HTTP server: minutes of mixed, partly hostile traffic against a real ``dcf serve``.

A ``dcf serve`` process of the bundled demo model (server defaults, bound to 127.0.0.1) is started;
for ``--minutes``, ``--concurrency`` client threads (httpx, one keep-alive connection each) loop:
draw an upload from a mixed corpus (seeded, per thread) and ``POST /v1/predict`` it.

* good (55 % of draws): synthetic motion clips of all 12 classes in MP4/H.264, WebM/VP9, MKV/H.264
  and AVI/MJPEG; expect 200 and, for most, the right top-1 label.
* odd (20 %): one frame, three frames, portrait, rotated +-90 degrees, variable frame rate, a
  2-minute 10 fps 64x48 clip (also with ``timeline=true&window_s=1``), ``clips=2&crops=3``; expect 200.
* bad (15 %): an empty file, text, random bytes, a truncated MP4, audio-only WAV; expect a 4xx.
* hostile (10 %): a 3840x2160 10 fps 60 s H.264 clip with ``timeline=true&window_s=1`` (expect 413:
  reading it decodes about 5000 Mpixels, over the server's default limit of 3000; a server without
  such a limit decodes it, slowly, or answers 503), and playlists, manifests and list files (HLS,
  DASH, ffconcat; ``dcf.testing.media.nested_references``) whose entries name a loopback listener
  of this benchmark or a video on the server's disk (expect 415 or 400, and no connection to the
  listener, ever). At most one 4K upload is in flight at a time (a client that draws it while
  another is in flight draws again), so that a server without the limit loses one decode thread to
  it, not all of them. The clip (6 MB) is encoded once, in under a minute (PyAV libx264 preset
  ultrafast), and cached in the system's temporary folder.

Two slow clients run on raw sockets next to the ``--concurrency`` ones (not among them, so that the
others keep their slots; the server sees concurrency + 2 connections): one declares a 4 MiB upload,
sends 64 KiB of it and stalls for up to 30 s before closing; one trickles a small clip at 400
bytes/s. For each we record what the server did: its status, closing the connection, or nothing.

Measured: the server's RSS (``/proc/<pid>/status`` VmRSS) every second; per class and per item,
status counts and client-side latency p50/p99 of the requests that got an answer; 5xx other than
503 (503 is the server's own load shedding); connections to the listener; ``/healthz`` after the
run. The RSS after warm-up (the first minute, or the first half of a shorter run) should stay
flat: the verdict asks the least-squares slope of its floor (the minimum of each 30 s window) to be
under 3 MB/min (a leak) and no sample to be over 1.5 x the floor of the first 30 s after warm-up
(a transient, such as the frames of a 4K video). The exit status is 0 whatever the verdict: this is a
measurement, and the verdict is its summary line.

Every client has a 60 s timeout, so a run ends within about ``--minutes`` + 1 minute, plus setup
(the corpus, and the server's start).

    python -m bench.server_soak                                     # 10 min, bench/results/server_soak.md
    python -m bench.server_soak --minutes 1 --results /tmp/soak.md  # a quick look
"""

from __future__ import annotations

import argparse
import datetime
import math
import select
import socket
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import av
import httpx
import numpy as np

from bench.common import machine_description, write_results
from dcf.data.synthetic import CLASS_NAMES, render_video
from dcf.testing import media
from dcf.testing.media import CODECS, moving_square
from dcf.testing.server import Server, loopback_listener, start_server, stop_server

CLASS_SHARE = {"good": 0.55, "odd": 0.2, "bad": 0.15, "hostile": 0.1}
CONTAINERS = {".mp4": "MP4/H.264", ".webm": "WebM/VP9", ".mkv": "MKV/H.264", ".avi": "AVI/MJPEG"}
CLIENT_TIMEOUT_S = 60.0
RSS_WINDOW_S = 30.0
RSS_FLAT_MB_PER_MIN = 3.0  # largest slope of the RSS floor (30 s minima) that still counts as flat
RSS_SWING = 0.5  # largest rise above the floor just after warm-up that still counts as flat
# 60 s: reading the clip at all means decoding ~5000 Mpixels, well over the default max_decode_mpixels.
HOSTILE_SIZE, HOSTILE_FPS, HOSTILE_SECONDS = (3840, 2160), 10, 60
STALL_DECLARED, STALL_SENT, STALL_WAIT_S = 4 * 2**20, 64 * 2**10, 30.0
TRICKLE_BYTES_PER_S, TRICKLE_CHUNK = 400, 100
UNFINISHED = "unfinished at the end of the run"
FOUR_XX = frozenset(str(status) for status in range(400, 500))


@dataclass(frozen=True)
class Item:
    """One upload of the corpus; items with the same ``group`` share a row of the results."""

    group: str
    kind: str  # good, odd, bad or hostile
    data: bytes
    filename: str
    expect: frozenset[str]
    expect_text: str
    params: dict[str, str] = field(default_factory=dict)
    label: str | None = None  # the top-1 label a 200 should carry
    exclusive: bool = False  # at most one in flight


@dataclass
class Tally:
    """What one group of uploads got: outcomes (a status code, or what happened instead)."""

    kind: str
    expect: frozenset[str]
    expect_text: str
    outcomes: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)  # of requests the server answered
    expected: int = 0
    labelled: int = 0
    right: int = 0


def _hostile_clip() -> bytes:
    """The 4K H.264 clip, encoded once and cached (the encode takes tens of seconds)."""
    width, height = HOSTILE_SIZE
    cache = (
        Path(tempfile.gettempdir())
        / "dcf-bench"
        / f"soak_{width}x{height}_{HOSTILE_FPS}fps_{HOSTILE_SECONDS}s.mp4"
    )
    if cache.exists():
        return cache.read_bytes()
    cache.parent.mkdir(parents=True, exist_ok=True)
    # A still noisy background (drawn at 1/8 size and blown up) and a moving square: every frame is a
    # full 4K picture to decode, yet the file stays small (fresh noise in every frame would make it a GB).
    scale = 8
    background = moving_square(1, height // scale, width // scale, seed=6)[0]
    background = background.repeat(scale, axis=0).repeat(scale, axis=1)
    part = cache.with_suffix(".part.mp4")
    with av.open(str(part), mode="w") as container:
        stream = container.add_stream("libx264", rate=HOSTILE_FPS, options={"preset": "ultrafast"})
        assert isinstance(stream, av.video.stream.VideoStream)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for t in range(HOSTILE_FPS * HOSTILE_SECONDS):
            frame = background.copy()
            x = (16 * t) % (width - 256)
            frame[height // 3 : height // 3 + 256, x : x + 256] = 240
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    part.replace(cache)  # an interrupted encode never leaves a truncated clip in the cache
    return cache.read_bytes()


def corpus(seed: int, listener_url: str, local_video: Path) -> list[Item]:
    """Every upload the clients draw from."""

    def clip(label: str, k: int, frames: int = 24) -> np.ndarray:
        rng = np.random.default_rng([seed, CLASS_NAMES.index(label), k])
        return render_video(CLASS_NAMES.index(label), rng, num_frames=frames, size=96)

    ok = frozenset({"200"})
    items = [
        Item(
            f"12 classes, 96x96, 24 frames, {CONTAINERS[suffix]}",
            "good",
            data,
            f"clip{suffix}",
            ok,
            "200",
            label=label,
        )
        for k, suffix in enumerate(CODECS)
        for label in CLASS_NAMES
        for data in [media.encoded(suffix, clip(label, k))]
    ]
    long = media.long_mp4()
    items += [
        Item("1 frame", "odd", media.single_frame_mp4(), "clip.mp4", ok, "200"),
        Item("3 frames", "odd", media.encoded(".mp4", clip("falling", 10, frames=3)), "clip.mp4", ok, "200"),
        Item("portrait 96x160", "odd", media.portrait_mp4(), "clip.mp4", ok, "200"),
        Item("rotated +-90 degrees", "odd", media.rotated_mp4(90), "clip.mp4", ok, "200"),
        Item("rotated +-90 degrees", "odd", media.rotated_mp4(-90), "clip.mp4", ok, "200"),
        Item("variable frame rate", "odd", media.variable_frame_rate_mp4(), "clip.mp4", ok, "200"),
        Item("2 min, 10 fps, 64x48", "odd", long, "clip.mp4", ok, "200"),
        Item(
            "2 min, 10 fps, timeline=true&window_s=1",
            "odd",
            long,
            "clip.mp4",
            ok,
            "200",
            {"timeline": "true", "window_s": "1"},
        ),
        Item(
            "40 frames, clips=2&crops=3",
            "odd",
            media.encoded(".mp4", clip("moving left", 11, frames=40)),
            "clip.mp4",
            ok,
            "200",
            {"clips": "2", "crops": "3"},
            label="moving left",
        ),
    ]
    mp4 = media.encoded(".mp4", clip("moving up", 12, frames=30))
    items += [
        Item("empty file", "bad", b"", "clip.mp4", FOUR_XX, "4xx"),
        Item("text", "bad", b"just some text, not a video\n" * 10, "clip.mp4", FOUR_XX, "4xx"),
        Item(
            "random bytes", "bad", np.random.default_rng([seed, 99]).bytes(50_000), "clip.mp4", FOUR_XX, "4xx"
        ),
        Item("truncated MP4 (first half)", "bad", media.truncated(mp4), "clip.mp4", FOUR_XX, "4xx"),
        Item("audio-only WAV", "bad", media.audio_only(".wav"), "clip.wav", FOUR_XX, "4xx"),
    ]
    width, height = HOSTILE_SIZE
    items += [
        Item(
            f"{width}x{height} H.264, {HOSTILE_FPS} fps, {HOSTILE_SECONDS} s, timeline=true&window_s=1",
            "hostile",
            _hostile_clip(),
            "clip.mp4",
            frozenset({"413"}),
            "413",
            {"timeline": "true", "window_s": "1"},
            exclusive=True,
        ),
    ]
    # Playlists, manifests and list files naming the listener or a video on the server's own disk:
    # a server that follows any entry opens a connection or a file for the uploader.
    refused = frozenset({"400", "415"})
    items += [
        Item(f"nested references: {name}", "hostile", data, name, refused, "400/415")
        for name, data in media.nested_references(listener_url, local_video).items()
    ]
    return items


class Soak:
    """One run: the clients, the slow clients, the RSS samples, and what they all recorded."""

    def __init__(self, server: Server, items: list[Item], trickle_clip: bytes, seed: int) -> None:
        self.server, self.items, self.trickle_clip, self.seed = server, items, trickle_clip, seed
        self.tallies: dict[str, Tally] = {}
        for item in items:
            self.tallies.setdefault(item.group, Tally(item.kind, item.expect, item.expect_text))
        self.stall_group = (
            f"stalled upload ({STALL_DECLARED >> 20} MiB declared, {STALL_SENT >> 10} KiB sent)"
        )
        self.trickle_group = (
            f"trickling upload ({len(trickle_clip) / 1000:.1f} kB clip at {TRICKLE_BYTES_PER_S} B/s)"
        )
        # A server should hang up on a stalled upload (or answer 408) rather than wait for it forever.
        self.tallies[self.stall_group] = Tally(
            "slow", frozenset({"400", "408", "closed by server"}), "400/408/closed"
        )
        self.tallies[self.trickle_group] = Tally("slow", frozenset({"200", "408"}), "200/408")
        self.rss: list[tuple[float, float]] = []  # (seconds since the start, MB)
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self._exclusive = threading.Lock()

    def record(self, group: str, outcome: str, latency_ms: float | None, right: bool | None = None) -> None:
        with self._lock:
            tally = self.tallies[group]
            tally.outcomes[outcome] += 1
            if latency_ms is not None:
                tally.latencies_ms.append(latency_ms)
            tally.expected += outcome in tally.expect
            if right is not None:
                tally.labelled += 1
                tally.right += right

    def run(self, concurrency: int, seconds: float) -> float:
        """Runs the soak for ``seconds``; returns the RSS after every client stopped."""
        start = time.monotonic()
        end = start + seconds
        threads = [
            threading.Thread(target=self._client, args=(i, end), name=f"client-{i}", daemon=True)
            for i in range(concurrency)
        ]
        slow = [
            (self.stall_group, self._stall, f"no answer in {STALL_WAIT_S:g} s (client closed)"),
            (self.trickle_group, self._trickle, f"no answer in {CLIENT_TIMEOUT_S:g} s"),
        ]
        threads += [
            threading.Thread(target=self._slow_client, args=client, name=client[0], daemon=True)
            for client in slow
        ]
        for thread in threads:
            thread.start()
        next_sample = time.monotonic()
        while (now := time.monotonic()) < end and self.server.process.poll() is None:
            self.rss.append((now - start, self.server.rss_mb()))
            if len(self.rss) % 30 == 1:
                with self._lock:
                    done = sum(tally.outcomes.total() for tally in self.tallies.values())
                print(
                    f"[{now - start:5.0f} s] {done} requests, server RSS {self.rss[-1][1]:.0f} MB", flush=True
                )
            next_sample += 1.0
            time.sleep(max(0.0, next_sample - time.monotonic()))
        self.stop.set()
        for thread in threads:
            # A client is at most one timeout away from noticing the end; the slow ones watch ``stop``.
            thread.join(timeout=max(1.0, end + CLIENT_TIMEOUT_S + 10 - time.monotonic()))
        return self.server.rss_mb() if self.server.process.poll() is None else math.nan

    def _client(self, index: int, end: float) -> None:
        rng = np.random.default_rng([self.seed, 1000 + index])
        per_kind = Counter(item.kind for item in self.items)
        weights = np.array([CLASS_SHARE[item.kind] / per_kind[item.kind] for item in self.items])
        url = f"{self.server.url}/v1/predict"
        with httpx.Client(timeout=httpx.Timeout(CLIENT_TIMEOUT_S, connect=10.0)) as client:
            while time.monotonic() < end and not self.stop.is_set():
                item = self.items[rng.choice(len(self.items), p=weights)]
                if item.exclusive and not self._exclusive.acquire(blocking=False):
                    continue
                try:
                    self._post(client, url, item)
                finally:
                    if item.exclusive:
                        self._exclusive.release()

    def _post(self, client: httpx.Client, url: str, item: Item) -> None:
        started = time.perf_counter()
        try:
            response = client.post(
                url,
                files={"file": (item.filename, item.data, "application/octet-stream")},
                params=item.params,
            )
        except httpx.TimeoutException:
            self.record(item.group, f"no answer in {CLIENT_TIMEOUT_S:g} s", None)
            return
        except httpx.TransportError as exc:  # the server dropped the connection: worth its own line
            self.record(item.group, f"transport error ({type(exc).__name__})", None)
            return
        latency_ms = (time.perf_counter() - started) * 1e3
        right = None
        if item.label is not None and response.status_code == 200:
            right = response.json()["predictions"][0]["label"] == item.label
        self.record(item.group, str(response.status_code), latency_ms, right)

    def _connect(self) -> socket.socket:
        address = urlsplit(self.server.url)
        assert address.hostname == "127.0.0.1" and address.port is not None  # loopback only
        return socket.create_connection((address.hostname, address.port), timeout=10)

    def _request(self, body: bytes, boundary: str) -> bytes:
        netloc = urlsplit(self.server.url).netloc
        return (
            f"POST /v1/predict HTTP/1.1\r\nHost: {netloc}\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode("ascii")

    def _answer(self, sock: socket.socket, wait_s: float, watch_stop: bool) -> str | None:
        """The server's status on ``sock``, or how it hung up, within ``wait_s``; None if nothing came."""
        deadline = time.monotonic() + wait_s
        received = b""
        while time.monotonic() < deadline and not (watch_stop and self.stop.is_set()):
            readable, _, _ = select.select([sock], [], [], 0.25)
            if not readable:
                continue
            try:
                chunk = sock.recv(4096)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                break
            received += chunk
            if b"\r\n" in received:
                break
        else:
            return None
        if received.startswith(b"HTTP/"):
            return received.split(b" ", 2)[1].decode("ascii", "replace")
        return "closed by server" if not received else f"not HTTP: {received[:20]!r}"

    def _slow_client(self, group: str, attempt: Callable[[socket.socket], str | None], silence: str) -> None:
        """Repeats ``attempt`` on a fresh connection until the run ends, recording what each got."""
        while not self.stop.is_set():
            started = time.perf_counter()
            try:
                with self._connect() as sock:
                    outcome = attempt(sock)
            except OSError as exc:  # refused, or a send that timed out: the server is not reading
                self.record(group, f"socket error ({type(exc).__name__})", None)
                continue
            if outcome is not None:
                self.record(group, outcome, (time.perf_counter() - started) * 1e3)
            else:
                self.record(group, UNFINISHED if self.stop.is_set() else silence, None)

    def _stall(self, sock: socket.socket) -> str | None:
        head, tail, boundary = _multipart("stalled.mp4")
        body = head + bytes(STALL_DECLARED - len(head) - len(tail)) + tail
        sock.sendall(self._request(body, boundary) + body[:STALL_SENT])
        return self._answer(sock, STALL_WAIT_S, watch_stop=True)

    def _trickle(self, sock: socket.socket) -> str | None:
        head, tail, boundary = _multipart("trickle.mp4")
        body = head + self.trickle_clip + tail
        sock.sendall(self._request(body, boundary))
        for offset in range(0, len(body), TRICKLE_CHUNK):
            # Waiting for an answer is the pause between chunks: an early refusal is seen at once.
            answer = self._answer(sock, TRICKLE_CHUNK / TRICKLE_BYTES_PER_S, watch_stop=True)
            if answer is not None or self.stop.is_set():
                return answer
            try:
                sock.sendall(body[offset : offset + TRICKLE_CHUNK])
            except (BrokenPipeError, ConnectionResetError):
                return "closed by server"
        return self._answer(sock, CLIENT_TIMEOUT_S, watch_stop=False)


def _multipart(filename: str) -> tuple[bytes, bytes, str]:
    """The bytes before and after a file in a multipart body with one field ``file``, and the boundary."""
    boundary = "dcf-soak-boundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode("ascii")
    return head, f"\r\n--{boundary}--\r\n".encode("ascii"), boundary


def _percentiles(values: list[float]) -> tuple[str, str]:
    if not values:
        return "-", "-"
    p50, p99 = np.percentile(values, [50, 99])
    return f"{p50:.0f}", f"{p99:.0f}"


def _outcomes(counts: Counter[str]) -> str:
    return ", ".join(f"{outcome}: {n}" for outcome, n in sorted(counts.items())) or "-"


def _table_row(name: str, tallies: list[Tally]) -> str:
    outcomes: Counter[str] = sum((t.outcomes for t in tallies), Counter())
    latencies = [ms for t in tallies for ms in t.latencies_ms]
    labelled, right = sum(t.labelled for t in tallies), sum(t.right for t in tallies)
    p50, p99 = _percentiles(latencies)
    top1 = f"{right}/{labelled} ({100 * right / labelled:.0f} %)" if labelled else "-"
    expected = f"{sum(t.expected for t in tallies)}"
    return f"| {name} | {outcomes.total()} | {_outcomes(outcomes)} | {p50} | {p99} | {expected} | {top1} |"


def _slope(mb_per_min: float) -> str:
    return "n/a" if math.isnan(mb_per_min) else f"{mb_per_min:+.2f} MB/min"


def rss_summary(samples: list[tuple[float, float]], seconds: float) -> dict[str, float]:
    """RSS after warm-up, max (and when), at the end, and least-squares slopes after warm-up: of every
    sample, and of the floor (the minimum of each whole 30 s window).

    Requests in flight make the RSS swing by tens of MB from second to second; what they leave
    behind raises the floor, which is the steadier sign of a leak.
    """
    warmup = min(60.0, seconds / 2)
    times = np.array([t for t, _ in samples] or [math.nan])  # no samples: the server died at once
    mb = np.array([m for _, m in samples] or [math.nan])
    after = times >= warmup
    fitted = int(after.sum())
    floor_times, floor_mb = [], []
    for start in np.arange(warmup, seconds - RSS_WINDOW_S + 1e-9, RSS_WINDOW_S):  # whole windows only
        in_window = (times >= start) & (times < start + RSS_WINDOW_S)
        if in_window.any():
            floor_times.append((start + RSS_WINDOW_S / 2) / 60)
            floor_mb.append(mb[in_window].min())
    return {
        "warmup_s": warmup,
        "after_warmup": float(mb[after][0]) if fitted else math.nan,
        "first_floor": float(floor_mb[0]) if floor_mb else math.nan,
        "max": float(mb.max()),
        "max_at": float(times[np.argmax(mb)]),
        "max_after_warmup": float(mb[after].max()) if fitted else math.nan,
        "end": float(mb[-1]),
        "slope": float(np.polyfit(times[after] / 60, mb[after], 1)[0]) if fitted >= 2 else math.nan,
        "fitted": fitted,
        "floor_slope": float(np.polyfit(floor_times, floor_mb, 1)[0]) if len(floor_mb) >= 2 else math.nan,
        "windows": len(floor_mb),
    }


def report(
    soak: Soak,
    args: argparse.Namespace,
    final_rss: float,
    healthz: str,
    connections: list[bytes],
    log_text: str,
) -> list[str]:
    seconds = args.minutes * 60
    rss = rss_summary(soak.rss, seconds)
    tallies = soak.tallies
    errors_5xx = sum(
        n
        for t in tallies.values()
        for outcome, n in t.outcomes.items()
        if outcome[:1] == "5" and outcome != "503"
    )
    # A leak shows as a slope (which a short run cannot measure); a transient, as a swing.
    swing = rss["max_after_warmup"] / rss["first_floor"]
    leak = rss["floor_slope"] >= RSS_FLAT_MB_PER_MIN  # False when there were too few windows (NaN)
    flat = swing <= 1 + RSS_SWING and not leak
    total = sum(t.outcomes.total() for t in tallies.values())
    shares = ", ".join(f"{kind} {100 * share:.0f} %" for kind, share in CLASS_SHARE.items())
    step = int(RSS_WINDOW_S)
    short = "; too short a run to tell a slow leak" if rss["windows"] < 4 else ""
    lines = [
        "# Server soak (loopback)",
        "",
        f"`python -m bench.server_soak --minutes {args.minutes:g} --concurrency {args.concurrency} "
        f"--seed {args.seed}`, {datetime.date.today()}: one `dcf serve` process (the demo model, server "
        f"defaults, 127.0.0.1), {args.concurrency} httpx clients (keep-alive, {CLIENT_TIMEOUT_S:g} s "
        f"timeout) posting uploads drawn from the corpus ({shares}; at most one 4K upload in flight), "
        "plus one stalled and one trickling upload client on raw sockets; clients in this "
        f"process. {total} requests in {args.minutes:g} min ({total / seconds:.1f}/s).",
        "",
        f"Machine: {machine_description()}.",
        "",
        "Latency: client side, of the requests the server answered. *As expected*: requests that got the "
        "expected status (or, for slow clients, outcome). *Top-1 right*: 200s carrying the clip's own label.",
        "",
        "| class | requests | statuses | p50 ms | p99 ms | as expected | top-1 right |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    for kind in [*CLASS_SHARE, "slow"]:
        lines.append(_table_row(kind, [t for t in tallies.values() if t.kind == kind]))
    lines += [
        "",
        "| item | class | expected | requests | statuses | p50 ms | p99 ms | as expected | top-1 right |",
        "|---|---|---|---:|---|---:|---:|---:|---:|",
    ]
    for group, tally in tallies.items():
        row = _table_row(group, [tally])
        lines.append(row.replace(f"| {group} |", f"| {group} | {tally.kind} | {tally.expect_text} |", 1))
    seen = "; ".join(repr(first[:60]) for first in connections) or "none, as it must be"
    lines += [
        "",
        f"Connections to the loopback listener that the nested references name: {len(connections)} ({seen}).",
        "",
        f"`/healthz` after the run: {healthz}. Server log: {log_text.count('Traceback')} tracebacks.",
        "",
        f"RSS (MB): after warm-up (t = {rss['warmup_s']:.0f} s) {rss['after_warmup']:.0f} (the floor of the "
        f"{step} s after it: {rss['first_floor']:.0f}), max "
        f"{rss['max']:.0f} (t = {rss['max_at']:.0f} s; after warm-up {rss['max_after_warmup']:.0f}), "
        f"at the end {rss['end']:.0f}, after the clients stopped {final_rss:.0f}; slope after warm-up "
        f"{_slope(rss['slope'])} (least squares over {rss['fitted']} one-second samples), of the "
        f"floor (the minima of {rss['windows']} whole {step} s windows) {_slope(rss['floor_slope'])}.",
        "",
        f"| t s | RSS MB at t | min, {step} s before t | max, {step} s before t |",
        "|---:|---:|---:|---:|",
    ]
    for end in range(step, math.ceil(seconds / step) * step + 1, step):
        window = [mb for t, mb in soak.rss if end - step <= t < end]
        if window:
            lines.append(
                f"| {min(end, seconds):.0f} | {window[-1]:.0f} | {min(window):.0f} | {max(window):.0f} |"
            )
    lines += [
        "",
        f"**RSS flat after warm-up: {'yes' if flat else 'no'}** (criterion: after the first "
        f"{rss['warmup_s']:.0f} s, a least-squares slope of the floor under {RSS_FLAT_MB_PER_MIN:g} "
        f"MB/min and no sample over {1 + RSS_SWING:g} x the floor of the first {step} s after warm-up; here "
        f"{_slope(rss['floor_slope'])} and {swing:.2f} x{short})",
        "",
        f"**5xx other than 503: {errors_5xx}**",
    ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.server_soak",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--minutes",
        type=float,
        default=10.0,
        help="how long the clients post (default: 10; 1 for a quick look)",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=8,
        help="client threads posting the corpus, besides the 2 slow clients (default: 8)",
    )
    parser.add_argument(
        "--results",
        type=Path,
        default=Path(__file__).parent / "results" / "server_soak.md",
        help="where the Markdown results go (default: bench/results/server_soak.md; short runs: /tmp/...)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=1234,
        help="seeds the corpus and each client's draws (default: 1234; the demo model trained on seed 0's "
        "videos and never saw these)",
    )
    args = parser.parse_args()
    if args.minutes <= 0 or args.concurrency < 1:
        parser.error("--minutes must be positive and --concurrency at least 1")

    with tempfile.TemporaryDirectory(prefix="dcf-soak-") as tmp_name, loopback_listener() as listener:
        tmp = Path(tmp_name)
        started = time.perf_counter()
        local_video = tmp / "local.mp4"  # what the file references of the nested-reference uploads name
        local_video.write_bytes(media.single_frame_mp4())
        items = corpus(args.seed, listener.url, local_video)
        trickle_clip = media.encoded(
            ".mp4", render_video(0, np.random.default_rng([args.seed, 98]), num_frames=8, size=64)
        )
        print(f"corpus: {len(items)} uploads in {time.perf_counter() - started:.0f} s", flush=True)
        # An explicit --host: DCF_HOST in the environment must not move the server off loopback.
        server = start_server(tmp, "--host", "127.0.0.1")
        try:
            soak = Soak(server, items, trickle_clip, args.seed)
            final_rss = soak.run(args.concurrency, args.minutes * 60)
            try:
                started = time.perf_counter()
                health = server.get("/healthz")
                healthz = f"{health.status_code} in {(time.perf_counter() - started) * 1e3:.0f} ms"
            except httpx.TransportError as exc:
                healthz = f"no answer ({type(exc).__name__})"
            if server.process.poll() is not None:
                healthz += f"; the server had exited with {server.process.returncode}"
            log_text = server.log.read_text(errors="replace")
        finally:
            stop_server(server)
        connections = list(listener.connections)
    write_results(args.results, report(soak, args, final_rss, healthz, connections, log_text))


if __name__ == "__main__":
    main()
