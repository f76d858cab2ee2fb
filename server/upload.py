"""Reading one uploaded file from a multipart body, in memory and within a size limit.

The body is streamed through python-multipart's parser as it arrives; the request is refused
(413) as soon as it exceeds the limit, and nothing is written to disk.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from dcf.server.pipeline import RequestError


@dataclass
class Upload:
    data: bytes
    filename: str | None
    content_type: str | None
    fields: dict[str, str] = field(default_factory=dict)  # other form fields (options)


@dataclass
class _Part:
    headers: dict[str, str] = field(default_factory=dict)
    data: bytearray = field(default_factory=bytearray)
    complete: bool = False  # its closing boundary arrived


async def read_upload(request: Request, file_field: str, max_bytes: int) -> Upload:
    """The multipart field ``file_field`` of ``request`` and its other (small) form fields."""
    content_type, params = parse_options_header(request.headers.get("content-type", ""))
    if content_type != b"multipart/form-data" or b"boundary" not in params:
        raise RequestError(
            422,
            "invalid_request",
            f"expected a multipart/form-data body with the video in the field {file_field!r}",
        )
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes + 64 * 1024:
        raise _too_large(max_bytes)

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
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > max_bytes + 64 * 1024:  # the file plus a little room for the form around it
                raise _too_large(max_bytes)
            parser.write(chunk)
        parser.finalize()
    except RequestError:
        raise
    except ClientDisconnect:
        raise RequestError(
            400, "client_disconnected", "the client went away before the upload ended"
        ) from None
    except Exception as exc:  # python-multipart's parse errors
        raise RequestError(400, "invalid_request", f"the multipart body could not be parsed: {exc}") from None

    if any(not part.complete for part in parts):
        raise RequestError(
            400, "invalid_request", "the multipart body ended before its closing boundary (truncated upload?)"
        )
    upload: Upload | None = None
    fields: dict[str, str] = {}
    for part in parts:
        _, disposition = parse_options_header(part.headers.get("content-disposition", ""))
        name = disposition.get(b"name", b"").decode("utf-8", "replace")
        if name == file_field:
            filename = disposition.get(b"filename")
            upload = Upload(
                bytes(part.data),
                filename.decode("utf-8", "replace") if filename is not None else None,
                part.headers.get("content-type"),
            )
        elif len(part.data) <= 1024:
            fields[name] = part.data.decode("utf-8", "replace")
    if upload is None:
        raise RequestError(422, "missing_file", f"no file in the multipart field {file_field!r}")
    if len(upload.data) > max_bytes:
        raise _too_large(max_bytes)
    upload.fields = fields
    return upload


def _too_large(max_bytes: int) -> RequestError:
    return RequestError(
        413, "upload_too_large", f"the upload exceeds the limit of {max_bytes / 2**20:.0f} MiB"
    )
