"""``dcf export triton``: the repository layout, and config.pbtxt parsed by Triton's own protobuf
schema (shipped in the ``tritonclient`` package)."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf import text_format

from tests.support.cli import run_dcf

model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2")


def parse(path: Path):
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


@pytest.fixture
def exported(tiny_exports: dict[str, Path]) -> dict[str, Path]:
    return tiny_exports


def test_onnx_repository(exported: dict[str, Path], tmp_path: Path) -> None:
    result = run_dcf(
        "export", "triton", "--onnx", str(exported["portable"]), "--out", str(tmp_path / "repo"),
        "--max-batch", "16", "--instances", "2", "--kind", "cpu",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    folder = tmp_path / "repo" / "tiny"
    assert (folder / "1" / "model.onnx").read_bytes() == exported["portable"].read_bytes()
    assert (folder / "labels.txt").read_text().splitlines() == [f"class {i}" for i in range(5)]
    config = parse(folder / "config.pbtxt")
    assert (config.name, config.platform, config.max_batch_size) == ("tiny", "onnxruntime_onnx", 16)
    (video,) = config.input
    (logits,) = config.output
    assert video.name == "video" and video.data_type == model_config_pb2.TYPE_FP32
    assert list(video.dims) == [3, -1, 32, 32]  # dynamic frames
    assert logits.name == "logits" and list(logits.dims) == [5] and logits.label_filename == "labels.txt"
    assert list(config.dynamic_batching.preferred_batch_size) == [8, 16]
    assert config.dynamic_batching.max_queue_delay_microseconds == 5000
    (group,) = config.instance_group
    assert group.count == 2 and group.kind == model_config_pb2.ModelInstanceGroup.KIND_CPU


def test_engine_repository_reads_the_sidecar(exported: dict[str, Path], tmp_path: Path) -> None:
    import json

    from dcf.export.metadata import read_onnx_metadata
    from dcf.export.tensorrt import SIDECAR_FORMAT

    plan = tmp_path / "tiny.plan"
    plan.write_bytes(b"a serialized engine")  # written by dcf export tensorrt on a GPU machine
    metadata = read_onnx_metadata(exported["custom"])
    sidecar = {
        "format": SIDECAR_FORMAT,
        "model": metadata.to_dict(),
        "tensorrt_version": "10.13.0",
        "plugin": None,
    }
    Path(f"{plan}.json").write_text(json.dumps(sidecar))
    result = run_dcf("export", "triton", "--engine", str(plan), "--out", str(tmp_path / "repo"))
    assert result.returncode == 0, result.stderr
    config = parse(tmp_path / "repo" / "tiny" / "config.pbtxt")
    assert config.platform == "tensorrt_plan" and list(config.input[0].dims) == [3, 4, 32, 32]
    assert config.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_GPU
    assert (tmp_path / "repo" / "tiny" / "1" / "model.plan").read_bytes() == b"a serialized engine"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--onnx", "{custom}"], "export with --portable"),
        (["--onnx", "{portable}", "--engine", "x.plan"], "exactly one of --onnx"),
        (["--onnx", "{portable}", "--max-batch", "0"], "--max-batch"),
        (["--onnx", "{portable}", "--name", "bad name"], "model name"),
    ],
)
def test_bad_requests(exported: dict[str, Path], tmp_path: Path, args: list[str], message: str) -> None:
    args = [a.format(**exported) for a in args]
    result = run_dcf("export", "triton", *args, "--out", str(tmp_path / "repo"))
    assert result.returncode == 2 and message in result.stderr
