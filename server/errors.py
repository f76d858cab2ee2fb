"""HTTP errors: every refusal is ``{"error": {"code", "message", "request_id"}}`` with its status.

Each error ``code`` has one HTTP status (:data:`STATUSES`); routes list the codes they may answer
(:func:`responses`), which is what the API document says. Domain code raises its own errors
(:class:`~dcf.inference.pipeline.InvalidOptions`, the video errors of :mod:`dcf.data.video`); here
they become codes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from dcf.data.video import VideoDecodeError, VideoLimitError
from dcf.inference.errors import video_error_code
from dcf.inference.pipeline import InvalidOptions, describe_errors

ErrorCode = Literal[
    "invalid_request",
    "empty_file",
    "undecodable_video",
    "not_found",
    "method_not_allowed",
    "upload_timeout",
    "upload_too_large",
    "video_too_large",
    "too_much_decoding",
    "not_a_video",
    "unsupported_media_type",
    "invalid_parameters",
    "missing_file",
    "client_disconnected",
    "internal_error",
    "visualize_unavailable",
    "overloaded",
    "not_ready",
    "deadline_exceeded",
    "http_error",
]

# The status of each code, and what it means (the API document's words).
STATUSES: dict[ErrorCode, tuple[int, str]] = {
    "invalid_request": (
        400,
        "the body is not a well-formed multipart upload (no boundary, truncated, malformed)",
    ),
    "empty_file": (400, "the uploaded file is empty"),
    "undecodable_video": (400, "the file is a video container, but its frames could not be decoded"),
    "not_found": (404, "no such path"),
    "method_not_allowed": (
        405,
        "the path does not answer this method (the Allow header lists those it does)",
    ),
    "upload_timeout": (408, "the upload took too long, paused too long, or was too slow"),
    "upload_too_large": (413, "the upload exceeds the size limit"),
    "video_too_large": (413, "the video exceeds the frame-size, frame-count or duration limits"),
    "too_much_decoding": (413, "decoding the frames needed would exceed the decode-work limit"),
    "not_a_video": (415, "the file is not a video in an allowed container format"),
    "unsupported_media_type": (415, "the body is not multipart/form-data"),
    "invalid_parameters": (422, "an option is unknown or out of range (the message says which)"),
    "missing_file": (422, "the multipart body has no `file` field"),
    "client_disconnected": (499, "the client went away before the answer (logged; no client sees it)"),
    "internal_error": (500, "the server failed on this request"),
    "visualize_unavailable": (
        501,
        "the served model cannot show its correlation field (not a PyTorch DCF network)",
    ),
    "overloaded": (503, "too many requests in progress or queued; retry after Retry-After seconds"),
    "not_ready": (503, "the model is not loaded (the server is starting or stopping)"),
    "deadline_exceeded": (503, "no answer within the request deadline"),
}
# "http_error": any other HTTP error of the framework, with its own status (none is expected).
_HTTP_CODES: dict[int, ErrorCode] = {404: "not_found", 405: "method_not_allowed"}


class ErrorDetail(BaseModel):
    code: ErrorCode = Field(description="stable, for programs")
    message: str = Field(description="for people: what was wrong and what was expected")
    request_id: str = Field(description="as in the X-Request-ID header, for the logs")


class ErrorResponse(BaseModel):
    error: ErrorDetail


class RequestError(Exception):
    """A request the service refuses with a stable ``code`` (its status from :data:`STATUSES`)
    and a message for people."""

    def __init__(self, code: ErrorCode, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.code, self.message = code, message
        self.status = STATUSES[code][0]
        self.retry_after = retry_after if retry_after is not None else (1 if self.status == 503 else None)


def responses(*codes: ErrorCode) -> dict[int | str, dict[str, Any]]:
    """The ``responses`` of a route that may answer ``codes``: one per status, with the error schema,
    the codes and their meaning (and ``Retry-After`` on 503)."""
    by_status: dict[int, list[ErrorCode]] = {}
    for code in codes:
        by_status.setdefault(STATUSES[code][0], []).append(code)
    documented: dict[int | str, dict[str, Any]] = {}
    for status, listed in sorted(by_status.items()):
        documented[status] = {
            "model": ErrorResponse,
            "description": "; ".join(f"`{code}`: {STATUSES[code][1]}" for code in listed),
        }
        if status == 503:
            documented[status]["headers"] = {
                "Retry-After": {"description": "seconds to wait", "schema": {"type": "integer", "minimum": 1}}
            }
    return documented


def video_error(exc: VideoDecodeError | VideoLimitError) -> RequestError:
    """The refusal of a video the decoder would not (or could not) decode."""
    code = video_error_code(exc)
    if code == "unreadable_file":  # only local files are opened by name, never an upload
        return RequestError("internal_error", str(exc))
    hint = {
        "too_much_decoding": " (DCF_MAX_DECODE_MPIXELS)",
        "not_a_video": " (upload an MP4, WebM, MKV, AVI, MOV ... video)",
    }.get(code, "")
    return RequestError(code, f"{exc}{hint}")


def error_response(
    status: int, code: ErrorCode, message: str, request_id: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    body = ErrorResponse(error=ErrorDetail(code=code, message=message, request_id=request_id))
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    """Request errors, invalid options, validation errors and Starlette's HTTP errors as JSON."""

    @app.exception_handler(RequestError)
    async def request_error(request: Request, exc: RequestError) -> JSONResponse:
        headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else {}
        if _body_unread(request):
            headers["Connection"] = "close"  # the rest of the body is not wanted: free the connection now
        return error_response(exc.status, exc.code, exc.message, _request_id(request), headers)

    @app.exception_handler(InvalidOptions)
    async def invalid_options(request: Request, exc: InvalidOptions) -> JSONResponse:
        return error_response(422, "invalid_parameters", str(exc), _request_id(request))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        # Parameters are checked before the route runs: a body sent along was not read (or wanted).
        headers = {"Connection": "close"} if _body_unread(request) else None
        message = describe_errors(exc.errors())
        return error_response(422, "invalid_parameters", message, _request_id(request), headers)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        # The exception's headers are kept: a 405 carries Allow (RFC 9110).
        return error_response(exc.status_code, code, str(exc.detail), _request_id(request), exc.headers)


def _body_unread(request: Request) -> bool:
    """Whether the request came with a body that was not read (an upload refused before or while
    it was received; :func:`dcf.server.intake.receive` marks it read)."""
    sent = "content-length" in request.headers or "transfer-encoding" in request.headers
    return sent and not getattr(request.state, "body_read", False)


def _request_id(request: Request) -> str:
    return str(request.state.request_id)  # set first thing by the app's middleware
