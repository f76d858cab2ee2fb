"""``dcf serve`` from the command line: models it refuses, and the ONNX Runtime backend."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dcf.testing.server import start_server, stop_server
from tests.support.cli import run_dcf


def test_serve_refuses_unusable_models_in_one_line(demo_exports: dict[str, Path], tmp_path: Path) -> None:
    result = run_dcf(
        "serve",
        "--model",
        str(demo_exports["custom"]),
        "--backend",
        "onnxruntime",
        env={"DCF_CPU_KERNEL": "0"},
    )
    assert (
        result.returncode == 2
        and "ONNX Runtime without its dcf op library (DCF_CPU_KERNEL=0 turns the compiled kernels off) cannot run"
        in result.stderr
        and "--portable" in result.stderr
    )
    plan = tmp_path / "demo.plan"
    plan.write_bytes(b"engine")
    result = run_dcf("serve", "--model", str(plan))
    assert result.returncode == 2 and "pass --device cuda" in result.stderr
    result = run_dcf("serve", "--model", str(tmp_path / "missing.safetensors"))
    assert result.returncode == 2 and "model not found" in result.stderr
    assert "Traceback" not in result.stderr


def test_onnxruntime_backend_serves_the_portable_export(
    clips: dict[str, Path], demo_exports: dict[str, Path], tmp_path: Path
) -> None:
    server = start_server(
        tmp_path, "--model", str(demo_exports["portable"]), "--backend", "onnxruntime", "--threads", "1"
    )
    try:
        (model,) = server.get("/v1/models").json()["models"]
        assert (model["name"], model["backend"], model["architecture"]) == (
            "demo",
            "onnxruntime",
            "x3d_xs_dcf",
        )
        answer = server.predict(clips["moving left"].read_bytes(), top_k=1).json()
        assert answer["predictions"][0]["label"] == "moving left"
        torch_answer = json.loads(
            run_dcf("predict", str(clips["moving left"]), "--json", "--top-k", "1").stdout
        )
        assert answer["predictions"][0]["score"] == pytest.approx(
            torch_answer["predictions"][0]["score"], abs=1e-4
        )
    finally:
        stop_server(server)
