"""From uploaded bytes to labels: decode and preprocess (:func:`prepare`), then scores to the
answer (:func:`summarize`). The server runs ``prepare`` in its decode threads and the model in
its batcher; ``dcf predict`` runs the same three steps in a row."""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from dcf.data.datasets import eval_views
from dcf.data.spec import InputSpec
from dcf.data.video import EncodedVideo, VideoInfo, VideoLimits


class RequestError(ValueError):
    """A request the service refuses: HTTP ``status``, a stable ``code`` and a message for people."""

    def __init__(self, status: int, code: str, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.retry_after = retry_after if retry_after is not None else (1 if status == 503 else None)


@dataclass(frozen=True)
class PredictOptions:
    """Per-request options (query parameters or form fields of ``POST /v1/predict``)."""

    top_k: int = 5
    clips: int = 1  # clips per video (or per timeline window), evenly spread
    crops: int = 1  # 1 (centre) or 3 spatial crops per clip
    sampling: Literal["segment", "interval"] | None = None  # default: the model's own
    timeline: bool = False  # per-window answers over the whole video, plus the video-level one
    window_s: float = 2.0  # timeline window length in seconds (lengthened to fit max_views)

    def check(self, num_classes: int, max_views: int) -> None:
        """Raises a 422 :class:`RequestError` for values out of range."""
        problems = []
        if not 1 <= self.top_k <= num_classes:
            problems.append(f"top_k must be between 1 and {num_classes}, got {self.top_k}")
        if self.clips < 1:
            problems.append(f"clips must be >= 1, got {self.clips}")
        if self.crops not in (1, 3):
            problems.append(f"crops must be 1 or 3, got {self.crops}")
        if self.sampling not in (None, "segment", "interval"):
            problems.append(f"sampling must be 'segment' or 'interval', got {self.sampling!r}")
        if not math.isfinite(self.window_s) or self.window_s <= 0:
            problems.append(f"window_s must be > 0, got {self.window_s}")
        if self.clips * self.crops > max_views:
            problems.append(f"clips x crops must be at most {max_views}, got {self.clips * self.crops}")
        if problems:
            raise RequestError(422, "invalid_parameters", "; ".join(problems))


@dataclass
class PreparedVideo:
    views: np.ndarray  # (V, 3, T, S, S) float32
    windows: list[tuple[float, float]]  # (start_s, end_s) of each window; V = windows x clips x crops
    info: VideoInfo
    frames_used: int
    decode_s: float


def _windows(info: VideoInfo, options: PredictOptions, max_views: int) -> tuple[list[tuple[int, int]], float]:
    """Frame ranges of the timeline windows, and the effective frames per second."""
    fps = info.num_frames / info.duration if info.duration > 0 else (info.fps or 25.0)
    per_window = options.clips * options.crops
    length = max(1, round(options.window_s * fps))
    count = math.ceil(info.num_frames / length)
    if count * per_window > max_views:  # lengthen the windows rather than refuse a long video
        count = max(1, max_views // per_window)
        length = math.ceil(info.num_frames / count)
    ranges = [(start, min(start + length, info.num_frames)) for start in range(0, info.num_frames, length)]
    return ranges, fps


def prepare(
    data: bytes | bytearray,
    spec: InputSpec,
    options: PredictOptions,
    limits: VideoLimits,
    max_views: int,
    *,
    threads: int = 0,
    cancel: threading.Event | None = None,
) -> PreparedVideo:
    """Decodes the frames the sampling needs and preprocesses them with the model's input spec.

    ``threads`` are FFmpeg's decoding threads (0: one per core); ``cancel`` stops the work between
    packets and frames.

    Raises:
        VideoDecodeError: Not a decodable video.
        VideoLimitError: Beyond ``limits`` (:class:`~dcf.data.video.DecodeWorkError`: too much to decode).
        DecodeCancelled: ``cancel`` was set.
    """
    start = time.perf_counter()
    video = EncodedVideo(data, limits, threads=threads, cancel=cancel)
    if options.sampling is not None:
        spec = dataclasses.replace(spec, sampling=options.sampling)
    info = video.info
    if options.timeline:
        ranges, fps = _windows(info, options, max_views)
        windows = [(a / fps, b / fps) for a, b in ranges]
    else:
        ranges, windows = [(0, info.num_frames)], [(0.0, info.duration)]
    views = eval_views(video, spec, options.clips, options.crops, ranges, cancel)
    frames_used = len(ranges) * options.clips * spec.num_frames
    return PreparedVideo(views.numpy(), windows, info, frames_used, time.perf_counter() - start)


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _top(scores: np.ndarray, classes: tuple[str, ...], k: int) -> list[dict[str, Any]]:
    order = np.argsort(-scores, kind="stable")[:k]
    return [{"label": classes[i], "index": int(i), "score": round(float(scores[i]), 6)} for i in order]


def summarize(
    logits: np.ndarray, prepared: PreparedVideo, classes: tuple[str, ...], options: PredictOptions
) -> dict[str, Any]:
    """Top-k of the softmax scores averaged over views (and per timeline window)."""
    scores = _softmax(logits).reshape(len(prepared.windows), -1, len(classes)).mean(axis=1)
    info = prepared.info
    answer: dict[str, Any] = {
        "predictions": _top(scores.mean(axis=0), classes, options.top_k),
        "video": {
            "duration_s": round(info.duration, 3),
            "fps": round(info.fps, 3),
            "frames": info.num_frames,
            "frames_used": prepared.frames_used,
            "width": info.width,
            "height": info.height,
            "rotation": info.rotation,
        },
        "views": {"clips": options.clips, "crops": options.crops, "total": int(logits.shape[0])},
    }
    if options.timeline:
        answer["timeline"] = [
            {"start_s": round(a, 3), "end_s": round(b, 3), "predictions": _top(s, classes, options.top_k)}
            for (a, b), s in zip(prepared.windows, scores, strict=True)
        ]
    return answer
