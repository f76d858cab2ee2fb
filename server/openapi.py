"""The API document as served, and the page that shows it (``/docs``), both offline.

FastAPI makes the document from the routes' declarations (parameters from
:class:`~dcf.inference.pipeline.PredictOptions`, answers from their response models, errors from
:func:`dcf.server.errors.responses`). :func:`install_docs` completes it with what only the running
service knows (the model's class count and DCF stages, the upload limit) and with what every answer carries
(``X-Request-ID``), and serves Swagger UI from assets inside the package: no CDN, so the page works
on an air-gapped cluster.
"""

from __future__ import annotations

import contextlib
import copy
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from dcf.data.video import VIDEO_FORMATS
from dcf.inference.fields import VisualizeOptions
from dcf.inference.pipeline import PredictOptions
from dcf.server.errors import RequestError
from dcf.server.service import Service, dcf_model

UPLOAD_ROUTES = ("/v1/predict", "/v1/visualize")  # multipart: the file and the options
DOCS_URL = "/docs"
STATIC_URL = "/static"
_SWAGGER = f"{STATIC_URL}/swagger-ui"
# Swagger UI runs one inline script (its set-up) and loads everything else from this server.
_DOCS_POLICY = (
    "default-src 'none'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'"
)
_REQUEST_ID = {
    "description": "the request's id: the client's X-Request-ID if it was one (1-128 of A-Z a-z 0-9 . _ : -), else a new one",
    "schema": {"type": "string"},
}


def install_docs(app: FastAPI, service: Service) -> None:
    """Serves the completed document at ``app.openapi_url`` and Swagger UI at :data:`DOCS_URL`
    (the app must be created with ``docs_url=None, redoc_url=None``)."""
    cached: dict[str, Any] = {}

    def openapi() -> dict[str, Any]:
        if cached:
            return cached
        document = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        _complete(document, service)
        if service.ready:  # the model's bounds are in it: it no longer changes
            cached.update(document)
        return document

    app.openapi = openapi  # type: ignore[method-assign]
    app.mount(STATIC_URL, StaticFiles(packages=[("dcf.server", "static")]), name="static")

    @app.get(DOCS_URL, include_in_schema=False)
    async def docs() -> HTMLResponse:
        page = get_swagger_ui_html(
            openapi_url=str(app.openapi_url),
            title=f"{app.title}: API",
            swagger_js_url=f"{_SWAGGER}/swagger-ui-bundle.js",
            swagger_css_url=f"{_SWAGGER}/swagger-ui.css",
            swagger_favicon_url=f"{_SWAGGER}/favicon-32x32.png",
        )
        page.headers["Content-Security-Policy"] = _DOCS_POLICY
        return page


def _complete(document: dict[str, Any], service: Service) -> None:
    for path in document["paths"].values():
        for operation in path.values():
            for response in operation["responses"].values():
                response.setdefault("headers", {})["X-Request-ID"] = _REQUEST_ID
            for parameter in operation.get("parameters", []):
                parameter["schema"] = _not_null(parameter["schema"])
    for path, bounds in _bounds(service).items():
        operation = document["paths"][path]["post"]
        for parameter in operation["parameters"]:
            parameter["schema"].update(bounds.get(parameter["name"], {}))
    for path in UPLOAD_ROUTES:
        operation = document["paths"][path]["post"]
        operation["requestBody"] = _upload_body(operation["parameters"], service.settings.max_upload_bytes)


def _bounds(service: Service) -> dict[str, dict[str, dict[str, Any]]]:
    """JSON Schema keywords, by route and parameter, that only the loaded model gives."""
    if service.backend is None:
        return {}
    classes = len(service.backend.info.classes)
    bounds = {"/v1/predict": PredictOptions.bounds(classes, service.settings.max_views)}
    with contextlib.suppress(RequestError):  # not a DCF network in PyTorch: the route answers 501
        bounds["/v1/visualize"] = VisualizeOptions.bounds(dcf_model(service.backend))
    return bounds


def _not_null(schema: dict[str, Any]) -> dict[str, Any]:
    """An optional parameter's schema without its ``null`` choice: a query or form value is text,
    never null (leaving it out is how it is not given)."""
    choices = [s for s in schema.get("anyOf", []) if s != {"type": "null"}]
    if len(choices) != 1:
        return schema
    rest = {key: value for key, value in schema.items() if key != "anyOf"}
    return {**choices[0], **rest}


def _upload_body(parameters: list[dict[str, Any]], max_upload_bytes: int) -> dict[str, Any]:
    """The multipart body of an upload route: the file, and the same options as the query
    parameters, as form fields (the query wins where both give one)."""
    formats = ", ".join(VIDEO_FORMATS)
    options = {p["name"]: copy.deepcopy(p["schema"]) for p in parameters if p["in"] == "query"}
    return {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": f"the video, at most {max_upload_bytes} bytes "
                            f"({max_upload_bytes / 2**20:g} MiB); containers: {formats}",
                        },
                        **options,
                    },
                    "additionalProperties": False,
                },
                # Any part type is read (the container is recognised from the bytes); a video is expected.
                "encoding": {"file": {"contentType": "video/*"}},
            }
        },
    }
