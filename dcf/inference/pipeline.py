"""From a video to labels: decode -> sample -> preprocess -> backend -> scores -> labels.

:func:`prepare` decodes and preprocesses, a backend gives the logits, :func:`summarize` turns them
into the answer; :func:`predict` runs the three in a row (``dcf predict``), while the server runs
``prepare`` in its decode threads and the backend in its batcher. The request options are declared
once, in :class:`PredictOptions`: they validate the HTTP query and form fields, make the OpenAPI
parameters and the ``dcf predict`` flags. Errors are domain errors (:class:`InvalidOptions`, the
video errors of :mod:`dcf.data.video`); callers map them (the server to HTTP statuses).
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from dcf.data.spec import InputSpec
from dcf.data.video import EncodedVideo, VideoInfo, VideoLimits
from dcf.data.views import eval_views
from dcf.inference.answer import Answer, Label, VideoSummary, ViewCount, Window
from dcf.inference.backends import Backend, ModelInfo

# 30 is the paper's densest test protocol (10 clips x 3 crops); views are float32 clips in memory.
MAX_VIEWS = 32  # clips x crops (x timeline windows) per video
MAX_BATCH = 8  # clips per backend call


class InvalidOptions(ValueError):
    """Options out of range for this model or these bounds; the message lists every problem."""


def _int_text(value: Any) -> Any:
    """Query and form values arrive as text: "3" is the integer 3 (for a choice among integers)."""
    return int(value) if isinstance(value, str) and value.strip().isdigit() else value


class PredictOptions(BaseModel):
    """How one video is looked at and answered (query parameters or form fields of
    ``POST /v1/predict``, flags of ``dcf predict``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    top_k: int = Field(5, ge=1, description="labels to return, best first (at most the model's classes)")
    clips: int = Field(
        1,
        ge=1,
        description="clips per video (or per timeline window), evenly spread; clips x crops <= max views",
    )
    crops: Annotated[Literal[1, 3], BeforeValidator(_int_text)] = Field(
        1, description="spatial crops per clip: 1 (centre) or 3 (along the long side)"
    )
    sampling: Literal["segment", "interval"] | None = Field(
        None, description="frame sampling: segment or interval (default: the model's own)"
    )
    timeline: bool = Field(False, description="also answer per window over the whole video")
    window_s: float = Field(
        2.0, gt=0, allow_inf_nan=False, description="timeline window in seconds (lengthened to fit max views)"
    )

    @classmethod
    def parse(cls, values: Mapping[str, Any]) -> PredictOptions:
        """Options from text or typed values.

        Raises:
            InvalidOptions: Unknown names or values out of their declared range.
        """
        try:
            return cls.model_validate(dict(values))
        except ValidationError as exc:
            raise InvalidOptions(describe_errors(exc.errors())) from None

    @staticmethod
    def bounds(num_classes: int, max_views: int = MAX_VIEWS) -> dict[str, dict[str, Any]]:
        """The bounds that depend on the model and the caller, as JSON Schema keywords: the served
        API document carries them, and :meth:`check` applies them. Beyond them, clips x crops
        must be at most ``max_views`` (no parameter schema can say that)."""
        return {"top_k": {"maximum": num_classes}, "clips": {"maximum": max_views}}

    def check(self, num_classes: int, max_views: int = MAX_VIEWS) -> None:
        """Applies :meth:`bounds`.

        Raises:
            InvalidOptions: ``top_k`` beyond the classes, or more views than ``max_views``.
        """
        problems = [
            f"{name} must be between 1 and {bound['maximum']}, got {getattr(self, name)}"
            for name, bound in self.bounds(num_classes, max_views).items()
            if getattr(self, name) > bound["maximum"]
        ]
        if self.clips <= max_views < self.clips * self.crops:
            problems.append(f"clips x crops must be at most {max_views}, got {self.clips * self.crops}")
        if problems:
            raise InvalidOptions("; ".join(problems))


_EXPECTED = {
    "greater_than_equal": "must be >= {ge}",
    "greater_than": "must be > {gt}",
    "less_than_equal": "must be <= {le}",
    "less_than": "must be < {lt}",
    "literal_error": "must be {expected}",
    "enum": "must be {expected}",
}


def describe_errors(errors: Iterable[Mapping[str, Any]]) -> str:
    """One line for people from pydantic's validation errors: each name, what it must be, what
    it got. Where a value came from (query, form, body) is left out."""
    fields = ", ".join(PredictOptions.model_fields)
    problems = []
    for error in errors:
        loc = [str(part) for part in error["loc"] if part not in ("query", "body", "form")]
        name = ".".join(loc) or "request"
        got = error.get("input")
        if error["type"] == "extra_forbidden":
            problems.append(f"unknown option {name!r}; expected some of {fields}")
        elif error["type"] in _EXPECTED:
            problems.append(f"{name} {_EXPECTED[error['type']].format(**error.get('ctx', {}))}, got {got}")
        else:
            problems.append(f"{name}: {error['msg'][:1].lower()}{error['msg'][1:]}, got {got!r}")
    return "; ".join(problems)


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
    length = max(1, round(min(options.window_s * fps, info.num_frames)))  # window_s may be huge
    count = math.ceil(info.num_frames / length)
    if count * per_window > max_views:  # lengthen the windows rather than refuse a long video
        count = max(1, max_views // per_window)
        length = math.ceil(info.num_frames / count)
    ranges = [(start, min(start + length, info.num_frames)) for start in range(0, info.num_frames, length)]
    return ranges, fps


def prepare(
    data: bytes | bytearray | Path,
    spec: InputSpec,
    options: PredictOptions,
    limits: VideoLimits,
    max_views: int,
    *,
    threads: int = 0,
    cancel: threading.Event | None = None,
) -> PreparedVideo:
    """Decodes the frames the sampling needs (of an encoded video, or a video file) and preprocesses
    them with the model's input spec.

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


def _top(scores: np.ndarray, classes: tuple[str, ...], k: int) -> list[Label]:
    order = np.argsort(-scores, kind="stable")[:k]
    return [Label(label=classes[i], index=int(i), score=round(float(scores[i]), 6)) for i in order]


def run_views(backend: Backend, views: np.ndarray, max_batch: int = MAX_BATCH) -> np.ndarray:
    """The backend's logits of ``views``, ``max_batch`` at a time."""
    return np.concatenate([backend(views[i : i + max_batch]) for i in range(0, len(views), max_batch)])


def predict(
    backend: Backend,
    data: bytes | bytearray,
    options: PredictOptions,
    limits: VideoLimits | None = None,
    *,
    max_views: int = MAX_VIEWS,
    max_batch: int = MAX_BATCH,
) -> Answer:
    """The answer for one encoded video, as ``POST /v1/predict`` gives it (without timings).

    Raises:
        InvalidOptions: Options beyond the model or ``max_views``.
        VideoDecodeError, VideoLimitError: As :func:`prepare`.
    """
    info = backend.info
    options.check(len(info.classes), max_views)
    prepared = prepare(data, info.input_spec, options, limits or VideoLimits(), max_views)
    logits = run_views(backend, prepared.views, max_batch)
    return summarize(logits, prepared, info, options)


def summarize(
    logits: np.ndarray, prepared: PreparedVideo, model: ModelInfo, options: PredictOptions
) -> Answer:
    """Top-k of the softmax scores averaged over views (and per timeline window)."""
    classes = model.classes
    scores = _softmax(logits).reshape(len(prepared.windows), -1, len(classes)).mean(axis=1)
    info = prepared.info
    timeline = None
    if options.timeline:
        timeline = [
            Window(start_s=round(a, 3), end_s=round(b, 3), predictions=_top(s, classes, options.top_k))
            for (a, b), s in zip(prepared.windows, scores, strict=True)
        ]
    return Answer(
        model=model.name,
        predictions=_top(scores.mean(axis=0), classes, options.top_k),
        video=VideoSummary(
            duration_s=round(info.duration, 3),
            fps=round(info.fps, 3),
            frames=info.num_frames,
            frames_used=prepared.frames_used,
            width=info.width,
            height=info.height,
            rotation=info.rotation,
        ),
        views=ViewCount(clips=options.clips, crops=options.crops, total=int(logits.shape[0])),
        timeline=timeline,
    )
