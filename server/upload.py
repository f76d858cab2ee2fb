"""Reading one uploaded file from a multipart body, in memory, within a size limit and a time budget.

The body is streamed through python-multipart's parser as it arrives, into one buffer (the file's
bytes are never copied again: the decoder reads that buffer). The request is refused as soon as it
exceeds the size limit (413), and dropped (408) when the client pauses longer than ``idle_s``,
falls behind ``min_rate`` bytes per second (with ``idle_s`` of grace), or takes longer than
``timeout_s`` in all. Nothing is written to disk.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from dcf.server.errors import RequestError

_FORM_ROOM = 64 * 1024  # the multipart framing and the small option fields around the file
_MAX_FIELD = 1024  # bytes of one option field


@dataclass
class Upload:
    data: bytearray  # the file's bytes
    fields: dict[str, str] = field(default_factory=dict)  # other form fields (options)


@dataclass(frozen=True)
class UploadBudget:
    """How big and how slow one upload may be."""

    max_bytes: int
    timeout_s: float  # the whole body
    idle_s: float  # the longest pause between two chunks
    min_rate: float  # bytes per second on average, ``idle_s`` of grace included (0: any)


@dataclass
class _Part:
    headers: dict[str, str] = field(default_factory=dict)
    data: bytearray = field(default_factory=bytearray)
    complete: bool = False  # its closing boundary arrived


class _Clock:
    """When the next chunk must have arrived, and which rule says so."""

    def __init__(self, budget: UploadBudget) -> None:
        self.budget, self.start = budget, time.monotonic()
        self.last = self.start

    def wait(self, received: int) -> tuple[float, str]:
        b = self.budget
        rules = [
            (self.start + b.timeout_s, f"the upload took longer than {b.timeout_s:g} s"),
            (self.last + b.idle_s, f"the upload paused for more than {b.idle_s:g} s"),
        ]
        if b.min_rate > 0:
            rules.append(
                (
                    self.start + b.idle_s + received / b.min_rate,
                    f"the upload is slower than {b.min_rate / 1024:g} KiB/s",
                )
            )
        when, reason = min(rules)
        return when - time.monotonic(), reason


async def read_upload(request: Request, file_field: str, budget: UploadBudget) -> Upload:
    """The multipart field ``file_field`` of ``request`` and its other (small) form fields.

    Raises:
        RequestError: 415 not multipart, 422 no file or an option field over 1 KiB, 413 too
            large, 408 too slow, 400 malformed, 499 the client went away.
    """
    content_type, params = parse_options_header(request.headers.get("content-type", ""))
    if content_type != b"multipart/form-data":
        raise RequestError(
            "unsupported_media_type",
            f"expected a multipart/form-data body with the video in the field {file_field!r}",
        )
    if b"boundary" not in params:
        raise RequestError("invalid_request", "the multipart/form-data Content-Type has no boundary")
    declared = declared_length(request)
    if declared is not None and declared > budget.max_bytes + _FORM_ROOM:
        raise _too_large(budget.max_bytes)

    parts: list[_Part] = []
    header_field, header_value = bytearray(), bytearray()

    def on_part_begin() -> None:
        parts.append(_Part())

    def on_part_data(data: bytes, start: int, end: int) -> None:
        parts[-1].data += data[start:end]

    def on_part_end() -> None:
        parts[-1].complete = True

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header_field.extend(data[start:end])

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header_value.extend(data[start:end])

    def on_header_end() -> None:
        parts[-1].headers[header_field.decode("latin-1").lower()] = header_value.decode("latin-1")
        header_field.clear()
        header_value.clear()

    parser = MultipartParser(
        params[b"boundary"],
        {
            "on_part_begin": on_part_begin,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
        },
    )
    received = 0
    clock = _Clock(budget)
    try:
        more = True
        while more:
            remaining, reason = clock.wait(received)
            try:
                message = await asyncio.wait_for(request.receive(), max(0.0, remaining))
            except TimeoutError:
                raise RequestError("upload_timeout", f"{reason}; the request was dropped") from None
            if message["type"] == "http.disconnect":
                raise ClientDisconnect()
            chunk, more = message.get("body", b""), message.get("more_body", False)
            clock.last = time.monotonic()
            received += len(chunk)
            if received > budget.max_bytes + _FORM_ROOM:
                raise _too_large(budget.max_bytes)
            if declared is not None and received > declared:
                raise RequestError("invalid_request", "the body is longer than its Content-Length")
            parser.write(chunk)
        parser.finalize()
    except RequestError:
        raise
    except ClientDisconnect:
        raise RequestError("client_disconnected", "the client went away before the upload ended") from None
    except Exception as exc:  # python-multipart's parse errors
        raise RequestError("invalid_request", f"the multipart body could not be parsed: {exc}") from None

    if any(not part.complete for part in parts):
        raise RequestError(
            "invalid_request", "the multipart body ended before its closing boundary (truncated upload?)"
        )
    upload: Upload | None = None
    fields: dict[str, str] = {}
    for part in parts:
        _, disposition = parse_options_header(part.headers.get("content-disposition", ""))
        name = disposition.get(b"name", b"").decode("utf-8", "replace")
        if name == file_field:
            upload = Upload(part.data)
        elif len(part.data) > _MAX_FIELD:
            raise RequestError(
                "invalid_parameters",
                f"form field {name[:64]!r} has {len(part.data)} bytes; at most {_MAX_FIELD}",
            )
        else:
            fields[name] = part.data.decode("utf-8", "replace")
    if upload is None:
        raise RequestError("missing_file", f"no file in the multipart field {file_field!r}")
    if len(upload.data) > budget.max_bytes:
        raise _too_large(budget.max_bytes)
    upload.fields = fields
    return upload


def declared_length(request: Request) -> int | None:
    """The body's Content-Length, or None (chunked, or not a number)."""
    declared = request.headers.get("content-length", "")
    return int(declared) if declared.isdigit() else None


def _too_large(max_bytes: int) -> RequestError:
    return RequestError("upload_too_large", f"the upload exceeds the limit of {max_bytes / 2**20:.0f} MiB")
