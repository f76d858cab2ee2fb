"""The answer for one video, typed: what ``POST /v1/predict`` returns (its API document is made from
these models), what ``dcf predict --json`` prints, one line of a bulk run."""

from __future__ import annotations

from pydantic import BaseModel, Field


class Label(BaseModel):
    label: str
    index: int = Field(ge=0, description="the class index in the model's head")
    score: float = Field(ge=0, le=1, description="softmax probability, averaged over the views")


class VideoSummary(BaseModel):
    """What was decoded."""

    duration_s: float = Field(ge=0)
    fps: float = Field(ge=0)
    frames: int = Field(ge=0, description="frames in the video")
    frames_used: int = Field(ge=0, description="frames the model saw (over all clips and windows)")
    width: int = Field(ge=0, description="as displayed (after rotation)")
    height: int = Field(ge=0)
    rotation: int = Field(description="display rotation in degrees, applied before sampling")


class ViewCount(BaseModel):
    clips: int = Field(ge=1, description="per timeline window, or for the whole video")
    crops: int = Field(ge=1)
    total: int = Field(ge=1, description="clips x crops (x windows): the model's inputs")


class Window(BaseModel):
    start_s: float = Field(ge=0)
    end_s: float = Field(ge=0)
    predictions: list[Label]


class Answer(BaseModel):
    model: str = Field(description="the served model's name")
    predictions: list[Label] = Field(description="top-k labels, best first")
    video: VideoSummary
    views: ViewCount
    timeline: list[Window] | None = Field(
        None, description="with timeline=true: top-k per window, in order (absent otherwise)"
    )
