"""``POST /v1/visualize``: one uploaded video in, its correlation field drawn as motion out (PNG or
MP4; :mod:`dcf.inference.fields`)."""

from __future__ import annotations

import asyncio
import functools
import time
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import ConfigDict

from dcf.inference.fields import Visualization, VisualizeOptions, correlations, draw, stage_volume
from dcf.inference.pipeline import PredictOptions, prepare
from dcf.server.batching import Overloaded
from dcf.server.errors import RequestError, responses
from dcf.server.intake import UPLOAD_ERRORS, options_of, receive, run_decode
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
        **responses(*UPLOAD_ERRORS, "visualize_unavailable"),
    },
)
async def visualize(
    request: Request,
    query: Annotated[QueryOptions, Query()],
    service: Annotated[Service, Depends(get_service)],
    settings: Annotated[ServerSettings, Depends(get_settings)],
) -> Response:
    """Upload the video as the multipart field `file`; options as query parameters or form fields,
    as for predictions. The centre clip is sampled and cropped as a one-view prediction on a decode
    thread; the forward pass and the drawing run on the model's own thread, queued as one clip."""
    backend = service.ready_backend()
    model = dcf_model(backend)
    upload = await receive(request, service, settings)
    deadline = time.perf_counter() + settings.request_timeout_s
    options = options_of(request, upload, query, VisualizeOptions.parse)
    stage = options.stage_of(model)
    decode = functools.partial(
        prepare,
        upload.data,
        backend.info.input_spec,
        PredictOptions(),  # one view: the centre clip, centre crop
        settings.video_limits(),
        max_views=1,
        threads=settings.decode_threads,
    )
    del upload
    clip = (
        await run_decode(request, service, settings, lambda cancel: decode(cancel=cancel), deadline)
    ).views[0]
    assert service.batcher is not None
    correlation = correlations(model)[stage]
    spec = backend.info.input_spec

    def picture_of_clip() -> Visualization:
        return draw(stage_volume(model, clip, stage), correlation, clip, spec, options, stage)

    try:
        picture = await asyncio.wait_for(
            service.batcher.run_on_model_thread(picture_of_clip), max(0.0, deadline - time.perf_counter())
        )
    except Overloaded as exc:
        raise RequestError("overloaded", str(exc), retry_after=exc.retry_after) from None
    except TimeoutError:
        raise RequestError(
            "deadline_exceeded", f"no picture within {settings.request_timeout_s:g} s"
        ) from None
    headers = {"X-DCF-Stage": str(picture.stage), "X-DCF-Full-Colour-Px": f"{picture.max_magnitude:.2f}"}
    return Response(picture.data, media_type=picture.media_type, headers=headers)
