"""Server settings: environment variables ``DCF_*`` (or a ``.env`` file), overridden by ``dcf serve``
flags. Defaults accept ordinary clips and bound everything else."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

Backend = Literal["auto", "torch", "onnxruntime", "tensorrt"]


class ServerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DCF_", env_file=".env", extra="ignore")

    # What to serve
    model: str = Field(
        "demo", description="checkpoint (.safetensors or 'demo'), ONNX file or TensorRT engine (.plan)"
    )
    backend: Backend = Field(
        "auto", description="auto: torch for checkpoints, onnxruntime for .onnx, tensorrt for .plan"
    )
    device: Literal["cpu", "cuda"] = "cpu"
    plugin: str | None = Field(None, description="DCFCorrelation TensorRT plugin library (tensorrt backend)")
    threads: int = Field(0, ge=0, description="inference threads (0: the runtime's default)")
    name: str | None = Field(None, description="model name reported by the API (default: the file's stem)")

    # Network
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)

    # Batching and load
    max_batch: int = Field(8, ge=1, le=256, description="clips per inference call")
    max_wait_ms: float = Field(5.0, ge=0, description="how long a batch waits to fill")
    max_queue: int = Field(64, ge=1, description="clips waiting for inference before 503")
    decode_workers: int = Field(2, ge=1, description="threads decoding uploads")
    max_pending_decodes: int = Field(
        16, ge=1, description="uploads being decoded or waiting to be, before 503"
    )
    request_timeout_s: float = Field(30.0, gt=0, description="per-request deadline")

    # Limits on what is accepted
    max_upload_mb: float = Field(100.0, gt=0)
    max_duration_s: float = Field(600.0, gt=0)
    max_frames: int = Field(36_000, ge=1)
    max_width: int = Field(4096, ge=16)
    max_height: int = Field(4096, ge=16)
    max_pixels: int = Field(4096 * 2304, ge=256, description="width x height")
    # 30 is the paper's densest test protocol (10 clips x 3 crops); views are float32 clips in memory.
    max_views: int = Field(32, ge=1, description="clips x crops (x windows) per request")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 2**20)
