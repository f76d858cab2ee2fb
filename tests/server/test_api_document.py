"""The API document tells the truth: what it says is what the server does, checked by reading it
and by an independent property-based fuzzer (Schemathesis) against a real ``dcf serve``; and its
page (``/docs``) works in a real browser with no network."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any, get_args

import httpx
import pytest
from prometheus_client import CONTENT_TYPE_LATEST

from dcf.inference.pipeline import PredictOptions
from dcf.server.errors import STATUSES, ErrorCode
from dcf.testing import media
from dcf.testing.server import Server
from tests.support.browser import chromium

HOOKS = Path(__file__).parents[1] / "support" / "api_fuzz_hooks.py"
FUZZ_SEED = int(os.environ.get("DCF_FUZZ_SEED", "1"))  # fixed in CI; set another to explore


@pytest.fixture(scope="module")
def document(server: Server) -> dict[str, Any]:
    response = server.get("/openapi.json")
    assert response.status_code == 200
    return dict(response.json())


def _resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def test_every_answer_is_documented_with_its_schema_and_headers(document: dict[str, Any]) -> None:
    operations = {(m.upper(), p): op for p, ops in document["paths"].items() for m, op in ops.items()}
    assert set(operations) == {
        ("GET", "/"),
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("GET", "/metrics"),
        ("GET", "/v1/models"),
        ("POST", "/v1/predict"),
        ("POST", "/v1/visualize"),
    }
    for key, operation in operations.items():
        for status, response in operation["responses"].items():
            assert "X-Request-ID" in response["headers"], (key, status)
            if status.startswith(("4", "5")):
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorResponse"}, (key, status)
            if status == "503":
                assert "Retry-After" in response["headers"], key
    predict = operations["POST", "/v1/predict"]["responses"]
    assert set(predict) == {"200", "400", "408", "413", "415", "422", "499", "503"}
    assert "`deadline_exceeded`" in predict["503"]["description"]  # the codes each status can carry
    answer = _resolve(document, predict["200"]["content"]["application/json"]["schema"])
    assert {"model", "predictions", "video", "views", "timings_ms", "request_id"} <= set(answer["required"])
    assert set(operations["GET", "/readyz"]["responses"]) == {"200", "503"}
    visualize = operations["POST", "/v1/visualize"]["responses"]
    assert set(visualize) == {"200", "400", "408", "413", "415", "422", "499", "501", "503"}
    assert set(visualize["200"]["content"]) == {"image/png", "video/mp4"}
    assert list(operations["GET", "/"]["responses"]["200"]["content"]) == ["text/html"]
    metrics = operations["GET", "/metrics"]["responses"]["200"]["content"]
    assert list(metrics) == [CONTENT_TYPE_LATEST]  # Prometheus text, not JSON
    # The error codes: one enumeration, each code with one status.
    detail = document["components"]["schemas"]["ErrorDetail"]
    assert set(detail["properties"]["code"]["enum"]) == set(get_args(ErrorCode))
    assert set(detail["required"]) == {"code", "message", "request_id"}
    assert set(STATUSES) == set(get_args(ErrorCode)) - {"http_error"}


def test_parameters_carry_the_bounds_the_server_applies(server: Server, document: dict[str, Any]) -> None:
    operation = document["paths"]["/v1/predict"]["post"]
    query = {p["name"]: p["schema"] for p in operation["parameters"]}
    classes = server.get("/v1/models").json()["models"][0]["classes"]
    assert query["top_k"]["minimum"] == 1 and query["top_k"]["maximum"] == len(classes)
    assert query["clips"]["minimum"] == 1 and query["clips"]["maximum"] == 32  # max views
    assert query["crops"]["enum"] == [1, 3] and query["window_s"]["exclusiveMinimum"] == 0
    assert query["sampling"] == {"enum": ["segment", "interval"], "type": "string"} | {
        k: v for k, v in query["sampling"].items() if k not in ("enum", "type")
    }  # no null choice: a query value is never null
    body = operation["requestBody"]["content"]["multipart/form-data"]
    assert body["schema"]["required"] == ["file"] and body["schema"]["additionalProperties"] is False
    assert body["schema"]["properties"]["file"]["format"] == "binary"
    assert "2097152 bytes" in body["schema"]["properties"]["file"]["description"]  # --max-upload-mb 2
    assert body["encoding"]["file"]["contentType"] == "video/*"
    fields = body["schema"]["properties"]
    assert set(fields) == {"file", *PredictOptions.model_fields} and fields["top_k"]["maximum"] == len(
        classes
    )
    drawn = {p["name"]: p["schema"] for p in document["paths"]["/v1/visualize"]["post"]["parameters"]}
    assert drawn["stage"]["enum"] == [2, 3, 4] and drawn["tau"]["not"] == {"const": 0}
    assert (drawn["tau"]["minimum"], drawn["tau"]["maximum"]) == (-2, 2)
    # The bounds are applied as documented.
    video = media.single_frame_mp4()
    assert server.predict(video, top_k=len(classes)).status_code == 200
    over = server.predict(video, top_k=len(classes) + 1)
    assert over.status_code == 422 and over.json()["error"]["code"] == "invalid_parameters"


def test_405_says_which_methods_are_allowed(server: Server) -> None:
    response = httpx.put(f"{server.url}/v1/predict", timeout=30)
    assert response.status_code == 405 and response.headers["allow"] == "POST"
    assert response.json()["error"]["code"] == "method_not_allowed"
    assert response.headers["x-request-id"] == response.json()["error"]["request_id"]


def test_form_options_are_used_and_checked_where_the_query_overrides_them(server: Server) -> None:
    video = media.single_frame_mp4()
    files = {"file": ("a.mp4", video, "video/mp4")}

    def post(query: str, data: dict[str, str]) -> httpx.Response:
        return httpx.post(f"{server.url}/v1/predict{query}", files=files, data=data, timeout=60)

    form_only = post("", {"top_k": "2", "crops": "3"})
    assert form_only.status_code == 200 and len(form_only.json()["predictions"]) == 2
    assert form_only.json()["views"] == {"clips": 1, "crops": 3, "total": 3}
    both = post("?top_k=1", {"top_k": "0"})
    assert both.status_code == 422 and "top_k must be >= 1, got 0" in both.json()["error"]["message"]
    query_wins = post("?top_k=1", {"top_k": "3"})
    assert query_wins.status_code == 200 and len(query_wins.json()["predictions"]) == 1
    long_field = post("", {"top_k": "1" * 2000})  # refused, not dropped
    assert long_field.status_code == 422 and "at most 1024" in long_field.json()["error"]["message"]
    no_boundary = httpx.post(
        f"{server.url}/v1/predict", content=b"x", headers={"content-type": "multipart/form-data"}, timeout=30
    )
    assert no_boundary.status_code == 400 and no_boundary.json()["error"]["code"] == "invalid_request"


def test_a_huge_timeline_window_is_one_window(server: Server) -> None:
    """Found by the fuzzer: window_s=7e307 overflowed the frame count (a 500)."""
    response = server.predict(
        media.encoded(".mp4", media.moving_square(20)), timeline="true", window_s="7e307"
    )
    assert response.status_code == 200 and len(response.json()["timeline"]) == 1


def test_an_independent_fuzzer_finds_nothing(server: Server, tmp_path: Path) -> None:
    """Schemathesis, every check, against the running server: a few hundred generated requests,
    schema-valid ones answered 200 (with real videos, see the hooks), invalid ones refused with a
    documented 4xx, every answer matching its documented status, content type, headers and schema."""
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        f"{server.url}/openapi.json",
        "--checks",
        "all",
        "--max-examples",
        "60",
        "--seed",
        str(FUZZ_SEED),
        "--workers",
        "1",
        "--request-timeout",
        "60",
        "--report",
        "junit",
        "--report-dir",
        str(tmp_path),
    ]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": str(HOOKS), "NO_COLOR": "1"}
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    summary = result.stdout[-6000:] + result.stderr[-2000:]
    assert result.returncode == 0, summary
    assert "No issues found" in result.stdout, summary
    cases = int(result.stdout.split(" generated")[0].rsplit(maxsplit=1)[-1])
    assert cases >= 150, summary  # a run that generated little proves little


def test_docs_page_lists_the_operations_without_network(server: Server, tmp_path: Path) -> None:
    """Swagger UI from the package: every request the page makes goes to the server itself."""
    requests: list[str] = []
    problems: list[str] = []
    with chromium() as browser:
        page = browser.new_page()
        page.on("request", lambda request: requests.append(request.url))
        page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: problems.append(str(error)))
        answer = page.goto(f"{server.url}/docs")
        assert answer is not None and "default-src 'none'" in answer.headers["content-security-policy"]
        page.wait_for_selector(".opblock-summary-path", timeout=30_000)
        paths = page.locator(".opblock-summary-path").all_inner_texts()
        page.screenshot(path=str(tmp_path / "docs.png"), full_page=True)
    assert {p.replace("\u200b", "") for p in paths} == {
        "/",
        "/v1/visualize",
        "/healthz",
        "/readyz",
        "/metrics",
        "/v1/models",
        "/v1/predict",
    }
    assert requests and all(url.startswith((server.url, "data:")) for url in requests), requests
    assert not problems, problems  # Content-Security-Policy violations among them
