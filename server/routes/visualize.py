"""``POST /v1/visualize``: one uploaded video in, its correlation field drawn as motion out (PNG or
MP4; :mod:`dcf.inference.fields`)."""

from __future__ import annotations

import functools
import time
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import ConfigDict

from dcf.inference.fields import VisualizeOptions, visualize_video
from dcf.server.errors import RequestError, responses
from dcf.server.intake import options_of, receive, run_decode
from dcf.server.service import Service, dcf_model, get_service, get_settings
from dcf.server.settings import ServerSettings

router = APIRouter()

PICTURE = {"schema": {"type": "string", "format": "binary"}}


class QueryOptions(VisualizeOptions):
    """The options as query parameters (unknown ones are ignored, as for predictions)."""

    model_config = ConfigDict(extra="ignore")


@router.post(
    "/v1/visualize",
    summary="The correlation field of one uploaded video, drawn as motion",
    response_class=Response,
    responses={
        200: {
            "description": "format=png: the frames the model saw above their fields, and a legend; "
            "format=mp4: the fields as a video. X-DCF-Stage and X-DCF-Full-Colour-Px say what was drawn.",
            "content": {"image/png": PICTURE, "video/mp4": PICTURE},
            "headers": {
                "X-DCF-Stage": {"description": "the stage drawn", "schema": {"type": "integer"}},
                "X-DCF-Full-Colour-Px": {
                    "description": "the displacement drawn in full colour (input pixels over |tau| frames)",
                    "schema": {"type": "number"},
                },
            },
        },
        **responses(
            "invalid_request",
            "empty_file",
            "undecodable_video",
            "upload_timeout",
            "upload_too_large",
            "video_too_large",
            "too_much_decoding",
            "not_a_video",
            "unsupported_media_type",
            "invalid_parameters",
            "missing_file",
            "client_disconnected",
            "visualize_unavailable",
            "overloaded",
            "not_ready",
            "deadline_exceeded",
        ),
    },
)
async def visualize(
    request: Request,
    query: Annotated[QueryOptions, Query()],
    service: Annotated[Service, Depends(get_service)],
    settings: Annotated[ServerSettings, Depends(get_settings)],
) -> Response:
    """Upload the video as the multipart field `file`; options as query parameters or form fields,
    as for predictions. The centre clip is sampled and cropped as a one-view prediction."""
    backend = service.ready_backend()
    model = dcf_model(backend)
    upload = await receive(request, service, settings)
    deadline = time.perf_counter() + settings.request_timeout_s
    options = options_of(request, upload, query, VisualizeOptions.parse)
    options.stage_of(model)
    if not upload.data:
        raise RequestError("empty_file", "the uploaded file is empty")
    work = functools.partial(
        visualize_video,
        model,
        upload.data,
        backend.info.input_spec,
        options,
        settings.video_limits(),
        threads=settings.decode_threads,
    )
    del upload
    picture = await run_decode(request, service, settings, lambda cancel: work(cancel=cancel), deadline)
    headers = {"X-DCF-Stage": str(picture.stage), "X-DCF-Full-Colour-Px": f"{picture.max_magnitude:.2f}"}
    return Response(picture.data, media_type=picture.media_type, headers=headers)
