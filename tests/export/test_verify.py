"""``dcf export`` from the command line (a real subprocess) and the verify step's pass/fail rule."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from dcf.export import onnxruntime_op
from dcf.export.metadata import read_onnx_metadata
from dcf.export.verify import TOLERANCES, compare
from dcf.testing.media import moving_square, write_video
from tests.support.checkpoints import tiny_checkpoint
from tests.support.cli import run_dcf

FP32 = TOLERANCES["fp32"]


@pytest.fixture(scope="module")
def demo_fp16(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo model exported by ``dcf export onnx --portable --precision fp16``: also this module's
    file without a dynamic frames axis. No test changes it."""
    path = tmp_path_factory.mktemp("demo_fp16") / "demo.fp16.onnx"
    result = run_dcf(
        "export", "onnx", "--checkpoint", "demo", "--out", str(path), "--portable", "--precision", "fp16"
    )
    assert result.returncode == 0, result.stderr
    return path


def test_compare_passes_equal_logits() -> None:
    reference = np.array([[1.0, 3.0, 2.0], [0.5, -1.0, 4.0]], np.float32)
    result = compare(reference, reference.copy(), FP32)
    assert result["passed"] and result["max_abs"] == 0 and result["top1_agree"] == 2


def test_compare_fails_beyond_the_tolerance() -> None:
    reference = np.array([[1.0, 3.0, 2.0]], np.float32)
    result = compare(reference, reference + np.float32(3e-3), FP32)  # 1e-3 of the largest logit
    assert not result["passed"] and result["max_rel"] == pytest.approx(1e-3, rel=1e-3)


def test_compare_fails_a_clear_top1_flip_but_not_a_tie() -> None:
    clear = np.array([[1.0, 3.0, 2.0]], np.float32)
    flipped = np.array([[1.0, 2.0, 3.0]], np.float32)
    assert not compare(clear, flipped, TOLERANCES["fp16"])["passed"]
    tie = np.array([[1.0, 3.0, 3.0 - 1e-5]], np.float32)
    swapped = np.array([[1.0, 3.0 - 1e-5, 3.0]], np.float32)
    result = compare(tie, swapped, FP32)
    assert result["passed"] and result["top1_agree"] == 0 and result["top1_decided_failures"] == 0


def test_verify_demo_passes(demo_exports: dict[str, Path], tmp_path: Path) -> None:
    video = write_video(tmp_path / "clip.mp4", moving_square(20, 96, 128))
    result = run_dcf(
        "export", "verify", "--checkpoint", "demo", "--video", str(video),
        "--onnx", str(demo_exports["custom"]), "--onnx", str(demo_exports["portable"]), "--openvino",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    rows = [line for line in result.stdout.splitlines() if "PASS" in line or "FAIL" in line]
    # 4 or 5 runs x (random batch, random with more frames, decoded clip)
    in_onnxruntime = onnxruntime_op.library() is not None
    assert len(rows) == 12 + 3 * in_onnxruntime and all("PASS" in row for row in rows)
    assert sum("onnx-reference (demo.onnx)" in row for row in rows) == 3
    assert sum("onnxruntime (demo.onnx)" in row for row in rows) == 3 * in_onnxruntime
    assert sum("openvino (demo.onnx)" in row for row in rows) == 3
    assert sum("onnxruntime (demo.portable.onnx)" in row for row in rows) == 3
    assert sum("openvino (demo.portable.onnx)" in row for row in rows) == 3
    assert any("random 1x12x64x64" in row for row in rows)
    assert any("decoded clip.mp4" in row for row in rows)


def test_verify_fails_a_wrong_model(demo_exports: dict[str, Path], tmp_path: Path) -> None:
    model = onnx.load(str(demo_exports["portable"]))
    weight = max(model.graph.initializer, key=lambda t: np.prod(t.dims))  # perturb the largest weight
    weight.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weight) * np.float32(1.05), weight.name))
    broken = tmp_path / "broken.onnx"
    onnx.save(model, str(broken))
    result = run_dcf(
        "export", "verify", "--checkpoint", "demo", "--onnx", str(broken), "--openvino", "--json"
    )
    assert result.returncode == 1, result.stderr
    rows = json.loads(result.stdout)
    assert {row["runtime"].split()[0] for row in rows} == {"onnxruntime", "openvino"}
    assert rows and not any(row["passed"] for row in rows)
    assert all(row["max_rel"] > TOLERANCES["fp32"].max_rel for row in rows)


def test_verify_refuses_a_file_from_another_checkpoint(demo_exports: dict[str, Path], tmp_path: Path) -> None:
    tiny_checkpoint(tmp_path, "x3d_xs_dcf")
    other = tmp_path / "x3d_xs_dcf.safetensors"
    result = run_dcf("export", "verify", "--checkpoint", str(other), "--onnx", str(demo_exports["portable"]))
    assert result.returncode == 2
    assert "export it from this checkpoint first" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["onnx", "--checkpoint", "{tmp}/missing.safetensors", "--out", "{tmp}/m.onnx"], "checkpoint not found"),
        (["onnx", "--checkpoint", "{tmp}/corrupt.safetensors", "--out", "{tmp}/m.onnx"], "not a valid safetensors file"),
        (["verify", "--checkpoint", "demo"], "nothing to verify"),
        (["verify", "--checkpoint", "demo", "--onnx", "{tmp}/missing.onnx"], "ONNX model not found"),
        (["verify", "--checkpoint", "demo", "--onnx", "{tmp}/corrupt.onnx"], "not a readable ONNX model"),
        (["verify", "--checkpoint", "demo", "--onnx", "{portable}", "--plugin", "{tmp}/p.so"], "--plugin only applies"),
        (["verify", "--checkpoint", "demo", "--onnx", "{custom}", "--openvino-precision", "bf16"], "--openvino-precision needs --openvino"),
        (["tensorrt", "--onnx", "{custom}", "--out", "{tmp}/m.plan"], "pass --plugin"),
        (["tensorrt", "--onnx", "{custom}", "--out", "{tmp}/m.plan", "--plugin", "{tmp}/missing.so"], "plugin library not found"),
        (["tensorrt", "--onnx", "{portable}", "--out", "{tmp}/m.plan", "--batch", "8:1:4"], "1 <= MIN <= OPT <= MAX"),
        (["tensorrt", "--onnx", "{static}", "--out", "{tmp}/m.plan", "--frames", "4:8:16"], "re-export it with --dynamic-frames"),
    ],
)  # fmt: skip
def test_bad_requests_fail_with_one_clear_line(
    args: list[str],
    message: str,
    demo_exports: dict[str, Path],
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    (tmp_path / "corrupt.safetensors").write_bytes(b"not a checkpoint")
    (tmp_path / "corrupt.onnx").write_bytes(b"\x08\x07garbage")
    paths = {"tmp": tmp_path, **demo_exports}
    if "{static}" in args:  # a file without a dynamic frames axis (portable: no --plugin needed)
        paths["static"] = request.getfixturevalue("demo_fp16")
        assert not read_onnx_metadata(paths["static"]).dynamic_frames
    args = [arg.format(**paths) for arg in args]
    result = run_dcf("export", *args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "m.onnx").exists() and not (tmp_path / "m.plan").exists()


def test_tensorrt_absent_is_explained(demo_exports: dict[str, Path], tmp_path: Path) -> None:
    try:
        import tensorrt  # noqa: F401

        pytest.skip("TensorRT is installed here")
    except ImportError:
        pass
    result = run_dcf(
        "export", "tensorrt", "--onnx", str(demo_exports["portable"]), "--out", str(tmp_path / "m.plan")
    )
    assert result.returncode == 2
    assert "TensorRT's Python package is not importable" in result.stderr
    assert "--portable" in result.stderr and "Traceback" not in result.stderr


def test_verify_fp16_export_against_its_own_tolerance(demo_fp16: Path) -> None:
    result = run_dcf("export", "verify", "--checkpoint", "demo", "--onnx", str(demo_fp16), "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    rows = json.loads(result.stdout)
    assert rows and all(row["precision"] == "fp16" and row["passed"] for row in rows)
    # Half precision is visibly not float32, and within the fp16 tolerance.
    assert max(row["max_rel"] for row in rows) > TOLERANCES["fp32"].max_rel
    assert max(row["max_rel"] for row in rows) <= TOLERANCES["fp16"].max_rel


def test_export_help_teaches() -> None:
    result = run_dcf("export", "--help")
    assert result.returncode == 0 and "examples:" in result.stdout
    for target in ("onnx", "tensorrt", "verify"):
        assert target in result.stdout
        sub = run_dcf("export", target, "--help")
        assert sub.returncode == 0 and "examples:" in sub.stdout
