"""The TensorRT builder's own logic, with the ``tensorrt`` module replaced by a recording stand-in.

TensorRT cannot be installed on this project's machines, so these tests isolate what is ours:
option checks, the strongly typed network, the optimisation profile, plugin loading, the timing
cache and the sidecar. They prove nothing about TensorRT itself (see the README).
"""

from __future__ import annotations

import json
import re
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from dcf.export.onnx_export import export_onnx
from dcf.export.tensorrt import (
    ShapeRange,
    build_engine,
    check_engine_runtime,
    read_engine_metadata,
    sidecar_path,
)
from tests.support.checkpoints import tiny_checkpoint


class _Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []


def fake_tensorrt(record: _Recorder, plugin_registers: bool = True) -> types.ModuleType:
    trt = types.ModuleType("tensorrt")
    trt.__version__ = "10.99.0"  # type: ignore[attr-defined]
    creators: dict[tuple[str, str, str], Any] = {}

    class Logger:
        WARNING = "warning"

        def __init__(self, level: str) -> None:
            record.calls.append(("logger", level))

    class Registry:
        def get_creator(self, name: str, version: str, namespace: str) -> Any:
            return creators.get((name, version, namespace))

        def load_library(self, path: str) -> Any:
            record.calls.append(("load_library", path))
            if plugin_registers:
                creators["DCFCorrelation", "1", ""] = types.SimpleNamespace(plugin_version="1")
            return object()

    registry = Registry()

    class Profile:
        def set_shape(self, name: str, *shapes: tuple[int, ...]) -> None:
            record.calls.append(("profile", name, *shapes))

    class Cache:
        def __init__(self, data: bytes) -> None:
            self.data = data

        def serialize(self) -> bytes:
            return self.data + b"+timings"

    class Config:
        def set_memory_pool_limit(self, pool: str, size: int) -> None:
            record.calls.append(("workspace", size))

        def clear_flag(self, flag: str) -> None:
            record.calls.append(("clear_flag", flag))

        def add_optimization_profile(self, profile: Profile) -> int:
            return 0

        def create_timing_cache(self, data: bytes) -> Cache:
            self.cache = Cache(data)
            return self.cache

        def set_timing_cache(self, cache: Cache, ignore_mismatch: bool) -> bool:
            return True

        def get_timing_cache(self) -> Cache:
            return self.cache

    class Builder:
        def __init__(self, logger: Logger) -> None:
            pass

        def create_network(self, flags: int) -> str:
            record.calls.append(("network_flags", flags))
            return "network"

        def create_builder_config(self) -> Config:
            return Config()

        def create_optimization_profile(self) -> Profile:
            return Profile()

        def build_serialized_network(self, network: str, config: Config) -> bytes:
            return b"serialized engine"

    class OnnxParser:
        num_errors = 0

        def __init__(self, network: str, logger: Logger) -> None:
            pass

        def parse_from_file(self, path: str) -> bool:
            record.calls.append(("parse", path))
            return True

    trt.Logger = Logger  # type: ignore[attr-defined]
    trt.get_plugin_registry = lambda: registry  # type: ignore[attr-defined]
    trt.Builder = Builder  # type: ignore[attr-defined]
    trt.OnnxParser = OnnxParser  # type: ignore[attr-defined]
    trt.NetworkDefinitionCreationFlag = types.SimpleNamespace(STRONGLY_TYPED=1)  # type: ignore[attr-defined]
    trt.BuilderFlag = types.SimpleNamespace(TF32="tf32")  # type: ignore[attr-defined]
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE="workspace")  # type: ignore[attr-defined]
    return trt


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("trt")
    path = tmp / "model.onnx"
    export_onnx(tiny_checkpoint(tmp, "x3d_xs_dcf", frames=4, size=32), path, dynamic_frames=True)
    return path


def test_build_engine_glue(onnx_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    record = _Recorder()
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt(record))
    plugin = tmp_path / "libdcf_trt_plugins.so"
    plugin.write_bytes(b"")
    cache = tmp_path / "timing.cache"
    cache.write_bytes(b"old")
    plan = tmp_path / "model.plan"
    sidecar = build_engine(
        onnx_file,
        plan,
        plugin=plugin,
        batch=ShapeRange(1, 2, 8),
        frames=ShapeRange(2, 4, 16),
        timing_cache=cache,
    )
    assert plan.read_bytes() == b"serialized engine"
    assert cache.read_bytes() == b"old+timings"  # read, then written back updated
    calls = record.calls
    assert ("load_library", str(plugin)) in calls
    assert ("network_flags", 1 << 1) in calls  # strongly typed
    assert ("clear_flag", "tf32") in calls  # an fp32 file builds a float32 engine
    assert ("profile", "video", (1, 3, 2, 32, 32), (2, 3, 4, 32, 32), (8, 3, 16, 32, 32)) in calls
    assert ("parse", str(onnx_file)) in calls
    assert sidecar["tensorrt_version"] == "10.99.0"
    assert sidecar["plugin"] == {"name": "DCFCorrelation", "version": "1"}
    metadata, stored = read_engine_metadata(plan)
    assert stored == json.loads(json.dumps(sidecar)) and sidecar_path(plan).is_file()
    assert metadata.architecture == "x3d_xs_dcf" and metadata.classes[0] == "class 0"


def test_plugin_without_the_creator_is_refused(
    onnx_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt(_Recorder(), plugin_registers=False))
    plugin = tmp_path / "libother.so"
    plugin.write_bytes(b"")
    with pytest.raises(ValueError, match="does not register the DCFCorrelation plugin, version 1"):
        build_engine(onnx_file, tmp_path / "m.plan", plugin=plugin)
    assert not (tmp_path / "m.plan").exists()


def test_old_tensorrt_is_refused(onnx_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    trt = fake_tensorrt(_Recorder())
    trt.__version__ = "8.6.1"  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    plugin = tmp_path / "p.so"
    plugin.write_bytes(b"")
    with pytest.raises(ImportError, match="IPluginV3, which needs TensorRT 10"):
        build_engine(onnx_file, tmp_path / "m.plan", plugin=plugin)


def test_mismatched_engine_is_refused() -> None:
    sidecar = {"tensorrt_version": "10.13.0", "plugin": {"name": "DCFCorrelation", "version": "1"}}
    check_engine_runtime(sidecar, "10.13.0", "1")
    with pytest.raises(
        ValueError, match=re.escape("built with TensorRT 10.13.0 but TensorRT 11.0.0 is loaded")
    ):
        check_engine_runtime(sidecar, "11.0.0", "1")
    with pytest.raises(ValueError, match="plugin version 1, the library has 2"):
        check_engine_runtime(sidecar, "10.13.0", "2")


def test_engine_without_sidecar(tmp_path: Path) -> None:
    (tmp_path / "m.plan").write_bytes(b"engine")
    with pytest.raises(FileNotFoundError, match=re.escape("no metadata sidecar m.plan.json")):
        read_engine_metadata(tmp_path / "m.plan")
