"""Why a video got no answer, as a stable code: the same codes wherever the inference layer runs
(``POST /v1/predict`` answers them with their HTTP status, ``dcf predict --out`` writes them on the
video's line)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from dcf.data.video import (
    DecodeWorkError,
    EmptyFile,
    NotAVideo,
    UnreadableFile,
    VideoDecodeError,
    VideoLimitError,
)

VideoErrorCode = Literal[
    "empty_file",
    "unreadable_file",  # a local file only: an upload is always readable
    "not_a_video",
    "undecodable_video",
    "video_too_large",
    "too_much_decoding",
]
# What a bulk run records besides the video's own refusals: a failure of ours (logged in full).
BulkErrorCode = VideoErrorCode | Literal["internal_error"]


def video_error_code(exc: VideoDecodeError | VideoLimitError) -> VideoErrorCode:
    """The code of a video the decoder would not (or could not) decode."""
    if isinstance(exc, DecodeWorkError):
        return "too_much_decoding"
    if isinstance(exc, VideoLimitError):
        return "video_too_large"
    if isinstance(exc, EmptyFile):
        return "empty_file"
    if isinstance(exc, UnreadableFile):
        return "unreadable_file"
    if isinstance(exc, NotAVideo):
        return "not_a_video"
    return "undecodable_video"


class VideoError(BaseModel):
    """Why one video has no answer (``error`` on its line of a bulk run)."""

    code: BulkErrorCode = Field(description="stable, for programs: the server's code for the same refusal")
    message: str = Field(description="for people")
