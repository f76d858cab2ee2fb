"""Server settings: environment variables ``DCF_*`` (or a ``.env`` file), overridden by ``dcf serve``
flags. Defaults accept ordinary clips and bound everything else.

What one request may cost is bounded by these settings, and so is the whole server's memory
(:meth:`ServerSettings.memory_bound`, written out in README "Serving"):

    RSS <= base                                                   (model, runtimes, warm-up activations)
         + (max_upload_buffer + max_pending_decodes * max_upload_bytes) * 9/8  (bodies; bytearray slack)
         + decode_workers * (DPB + 2 * decode_threads + 4) * max_pixels * 4  (FFmpeg's frame pool)
         + 2 * decode_workers * max_views * T * S * (S * max_aspect_ratio) * 3  (RGB frames at working size)
         + (2 * decode_workers * max_views + max_queue + 2 * max(max_batch, max_views)) * 12 T C^2  (views)

with T, S, C the model's frames, decode short side (``test_short_side``) and crop; the factors 2 are
a read's frames and their stacked copy, a request's views and their concatenation, a batch and its
input copy; DPB = 16 reference frames
(H.264/HEVC's maximum), 4 bytes per pixel covering 4:2:0 10-bit and 4:2:2 10-bit frames with padding.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from dcf.checkpoint import DEMO
from dcf.data.spec import InputSpec
from dcf.data.video import VideoLimits
from dcf.inference.backends import ComputePrecision, Device, ServedBackend
from dcf.inference.pipeline import MAX_BATCH, MAX_VIEWS
from dcf.server.upload import UploadBudget

# Reference frames a decoder may hold (H.264 and HEVC allow at most 16), and decoded bytes per pixel
# (yuv420p10 is 3, yuv422p10 4; FFmpeg pads lines): the decoder's frame pool, see memory_bound.
_DPB_FRAMES = 16
_DECODED_BYTES_PER_PIXEL = 4
_BYTEARRAY_SLACK = 9 / 8  # CPython grows a bytearray by an eighth


@dataclass(frozen=True)
class MemoryBound:
    """The server's worst-case resident memory, in bytes, by what holds it."""

    base: int  # the process after loading and warming the model
    uploads: int  # request bodies being received or waiting for a decoder
    decoders: int  # FFmpeg's decoded-frame pools
    frames: int  # RGB frames at the working size
    views: int  # float32 clips being made, queued or inferred

    @property
    def total(self) -> int:
        return self.base + self.uploads + self.decoders + self.frames + self.views

    def describe(self) -> str:
        parts = ("base", "uploads", "decoders", "frames", "views")
        return f"{self.total / 2**30:.2f} GiB = " + " + ".join(
            f"{name} {getattr(self, name) / 2**30:.2f}" for name in parts
        )


class ServerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DCF_", env_file=".env", extra="ignore")

    # What to serve
    model: str = Field(
        DEMO, description="checkpoint (.safetensors or 'demo'), ONNX file or TensorRT engine (.plan)"
    )
    backend: ServedBackend = Field(
        "auto",
        description="auto: torch for checkpoints, tensorrt for .plan, for .onnx openvino on CPU where "
        "installed (else onnxruntime); openvino on a checkpoint exports it at start-up",
    )
    precision: ComputePrecision = Field("fp32", description="compute precision: bf16 and fp16 are OpenVINO's")
    device: Device = "cpu"
    plugin: str | None = Field(None, description="DCFCorrelation TensorRT plugin library (tensorrt backend)")
    threads: int = Field(0, ge=0, description="inference threads (0: the runtime's default)")
    name: str | None = Field(None, description="model name reported by the API (default: the file's stem)")

    # Network
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)

    # Batching and load
    max_batch: int = Field(MAX_BATCH, ge=1, le=256, description="clips per inference call")
    max_wait_ms: float = Field(5.0, ge=0, description="how long a batch waits to fill")
    max_queue: int = Field(64, ge=1, description="clips waiting for inference before 503")
    decode_workers: int = Field(2, ge=1, description="threads decoding uploads")
    decode_threads: int = Field(2, ge=1, le=64, description="FFmpeg threads per decode")
    max_pending_decodes: int = Field(
        8, ge=1, description="uploads being decoded or waiting to be, before 503"
    )
    memory_release_s: float = Field(
        10.0,
        ge=0,
        description="seconds between giving malloc's free pages back (glibc malloc_trim; 0: never)",
    )
    request_timeout_s: float = Field(
        30.0, gt=0, description="deadline after the upload: decode and inference"
    )

    # Uploads in flight
    max_uploads: int = Field(64, ge=1, description="uploads being received at once, before 503")
    max_upload_buffer_mb: float = Field(
        256.0,
        gt=0,
        description="bytes being received across uploads (each counts its Content-Length), before 503",
    )
    upload_timeout_s: float = Field(120.0, gt=0, description="longest time to receive one upload")
    upload_idle_s: float = Field(10.0, gt=0, description="longest pause while receiving an upload")
    min_upload_rate_kib_s: float = Field(
        32.0, ge=0, description="slowest upload accepted, on average (after the first upload_idle_s)"
    )

    # Limits on what is accepted
    max_upload_mb: float = Field(100.0, gt=0)
    max_duration_s: float = Field(600.0, gt=0)
    max_frames: int = Field(36_000, ge=1)
    max_width: int = Field(4096, ge=16)
    max_height: int = Field(4096, ge=16)
    max_pixels: int = Field(4096 * 2304, ge=256, description="width x height")
    max_aspect_ratio: float = Field(4.0, ge=1, description="long side / short side")
    # About 4 s of H.264 decoding on one core of this project's VM (README, bench/results/prepare.md).
    max_decode_mpixels: float = Field(
        3000.0, gt=0, description="decode work per request: frames to decode x width x height, in millions"
    )
    max_views: int = Field(MAX_VIEWS, ge=1, description="clips x crops (x windows) per request")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 2**20)

    @property
    def max_upload_buffer_bytes(self) -> int:
        return int(self.max_upload_buffer_mb * 2**20)

    def upload_budget(self) -> UploadBudget:
        return UploadBudget(
            max_bytes=self.max_upload_bytes,
            timeout_s=self.upload_timeout_s,
            idle_s=self.upload_idle_s,
            min_rate=self.min_upload_rate_kib_s * 1024,
        )

    def video_limits(self) -> VideoLimits:
        return VideoLimits(
            max_width=self.max_width,
            max_height=self.max_height,
            max_pixels=self.max_pixels,
            max_aspect_ratio=self.max_aspect_ratio,
            max_frames=self.max_frames,
            max_duration=self.max_duration_s,
            max_decode_pixels=int(self.max_decode_mpixels * 1e6),
        )

    def memory_bound(self, spec: InputSpec, base: int) -> MemoryBound:
        """The formula of the module docstring for a model with input ``spec``, given the ``base``
        resident memory (bytes) of the process with the model loaded and warm."""
        t, s = spec.num_frames, spec.test_short_side
        frame_pool = (_DPB_FRAMES + 2 * self.decode_threads + 4) * self.max_pixels * _DECODED_BYTES_PER_PIXEL
        view = 3 * t * spec.crop_size**2 * 4
        views = (
            2 * self.decode_workers * self.max_views
            + self.max_queue
            + 2 * max(self.max_batch, self.max_views)
        )
        return MemoryBound(
            base=base,
            uploads=int(
                (self.max_upload_buffer_bytes + self.max_pending_decodes * self.max_upload_bytes)
                * _BYTEARRAY_SLACK
            ),
            decoders=self.decode_workers * frame_pool,
            frames=int(2 * self.decode_workers * self.max_views * t * s * s * self.max_aspect_ratio * 3),
            views=views * view,
        )
