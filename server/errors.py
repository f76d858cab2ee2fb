"""HTTP errors: every refusal is ``{"error": {"code", "message", "request_id"}}`` with its status.

Domain code raises its own errors (:class:`~dcf.inference.pipeline.InvalidOptions`, the video
errors of :mod:`dcf.data.video`); here they become statuses and stable codes.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from dcf.data.video import DecodeWorkError, NotAVideo, VideoDecodeError, VideoLimitError
from dcf.inference.pipeline import InvalidOptions, describe_errors


class RequestError(Exception):
    """A request the service refuses: HTTP ``status``, a stable ``code`` and a message for people."""

    def __init__(self, status: int, code: str, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.retry_after = retry_after if retry_after is not None else (1 if status == 503 else None)


def video_error(exc: VideoDecodeError | VideoLimitError) -> RequestError:
    """The refusal of a video the decoder would not (or could not) decode."""
    if isinstance(exc, DecodeWorkError):
        return RequestError(413, "too_much_decoding", f"{exc} (DCF_MAX_DECODE_MPIXELS)")
    if isinstance(exc, VideoLimitError):
        return RequestError(413, "video_too_large", str(exc))
    if isinstance(exc, NotAVideo):
        return RequestError(415, "not_a_video", f"{exc} (upload an MP4, WebM, MKV, AVI, MOV ... video)")
    return RequestError(400, "undecodable_video", str(exc))


def error_response(
    status: int, code: str, message: str, request_id: str | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    body: dict[str, Any] = {"error": {"code": code, "message": message}}
    if request_id:
        body["error"]["request_id"] = request_id
    return JSONResponse(body, status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    """Request errors, invalid options, validation errors and Starlette's HTTP errors as JSON."""

    @app.exception_handler(RequestError)
    async def request_error(request: Request, exc: RequestError) -> JSONResponse:
        headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else {}
        if getattr(request.state, "body_read", True) is False:
            headers["Connection"] = "close"  # the rest of the body is not wanted: free the connection now
        return error_response(exc.status, exc.code, exc.message, _request_id(request), headers)

    @app.exception_handler(InvalidOptions)
    async def invalid_options(request: Request, exc: InvalidOptions) -> JSONResponse:
        return error_response(422, "invalid_parameters", str(exc), _request_id(request))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        # Parameters are checked before the route runs: a body sent along was not read (or wanted).
        sent_body = "content-length" in request.headers or "transfer-encoding" in request.headers
        headers = {"Connection": "close"} if sent_body else None
        message = describe_errors(exc.errors())
        return error_response(422, "invalid_parameters", message, _request_id(request), headers)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail), _request_id(request))


def _request_id(request: Request) -> str | None:
    return getattr(request.state, "request_id", None)
