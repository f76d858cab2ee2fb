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

from dcf.export.names import PLUGIN_VERSION
from dcf.export.tensorrt import (
    ShapeRange,
    build_engine,
    check_engine_runtime,
    engine_context,
    read_engine_metadata,
    sidecar_path,
)
from dcf.export.verify import verification_inputs


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
            return cache.data != b"foreign"

        def get_timing_cache(self) -> Cache | None:
            return None if self.cache.data == b"none" else self.cache

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


@pytest.fixture
def onnx_file(demo_exports: dict[str, Path]) -> Path:
    """A file with the custom node, dynamic frames and a fixed size: the demo model (8 frames,
    64x64 crops), exported once per run by conftest. No test here changes it."""
    return demo_exports["custom"]


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
        frames=ShapeRange(2, 4, 16),  # around the demo's 8 frames
        timing_cache=cache,
    )
    assert plan.read_bytes() == b"serialized engine"
    assert cache.read_bytes() == b"old+timings"  # read, then written back updated
    calls = record.calls
    assert ("load_library", str(plugin.resolve())) in calls
    assert ("network_flags", 1 << 1) in calls  # strongly typed
    assert ("clear_flag", "tf32") in calls  # an fp32 file builds a float32 engine
    assert ("profile", "video", (1, 3, 2, 64, 64), (2, 3, 4, 64, 64), (8, 3, 16, 64, 64)) in calls
    assert ("parse", str(onnx_file)) in calls
    assert sidecar["tensorrt_version"] == "10.99.0"
    assert sidecar["plugin"] == {"name": "DCFCorrelation", "version": "1"}
    metadata, stored = read_engine_metadata(plan)
    assert stored == json.loads(json.dumps(sidecar)) and sidecar_path(plan).is_file()
    assert metadata.architecture == "x3d_xs_dcf" and metadata.classes[0] == "approaching"


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


@pytest.fixture
def dynamic_onnx_file(dynamic_size_exports: dict[str, Path]) -> Path:
    """A tiny x3d_xs_dcf (4 frames, 64 px) with the custom node, dynamic frames and size: made once
    per run by conftest, shared with the ONNX export tests."""
    return dynamic_size_exports["custom"]


def _plugin(tmp_path: Path) -> Path:
    plugin = tmp_path / "libdcf_trt_plugins.so"
    plugin.write_bytes(b"")
    return plugin


def test_the_profile_follows_the_files_dynamic_axes_and_the_sidecar_says_what_the_engine_takes(
    dynamic_onnx_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bug: the profile fixed H and W at the crop while the sidecar copied the file's dynamic
    axes, so verify's non-square clip could never run."""
    record = _Recorder()
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt(record))
    plugin = _plugin(tmp_path)
    wide = build_engine(dynamic_onnx_file, tmp_path / "wide.plan", plugin=plugin)
    assert ("profile", "video", (1, 3, 2, 64, 64), (1, 3, 4, 64, 64), (8, 3, 8, 128, 128)) in record.calls
    assert wide["model"]["dynamic_size"] and wide["model"]["dynamic_frames"]
    assert wide["profile"]["height"] == wide["profile"]["width"] == {"min": 64, "opt": 64, "max": 128}
    # verify's inputs for such a file fit the default profile.
    spec = read_engine_metadata(tmp_path / "wide.plan")[0].input_spec
    for _, batch in verification_inputs(spec, dynamic_frames=True, dynamic_size=True)[:-1]:
        n, _, t, h, w = batch.shape
        assert n <= 8 and 2 <= t <= 8 and min(h, w) >= 64 and max(h, w) <= 128
    fixed = build_engine(
        dynamic_onnx_file,
        tmp_path / "fixed.plan",
        plugin=plugin,
        size=ShapeRange(64, 64, 64),
        frames=ShapeRange(4, 4, 4),
    )
    assert (
        not fixed["model"]["dynamic_size"] and not fixed["model"]["dynamic_frames"]
    )  # the engine's, not the file's
    assert [c for c in record.calls if c[0] == "logger"] == [("logger", "warning")]  # one logger per process


def test_ranges_the_file_cannot_take_are_refused(
    onnx_file: Path, dynamic_onnx_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt(_Recorder()))
    plugin = _plugin(tmp_path)
    with pytest.raises(ValueError, match="takes exactly 64x64 pixels; re-export it with --dynamic-size"):
        build_engine(onnx_file, tmp_path / "m.plan", plugin=plugin, size=ShapeRange(64, 64, 128))
    with pytest.raises(ValueError, match=r"multiples of 32 in 64\.\.2048, got"):
        build_engine(dynamic_onnx_file, tmp_path / "m.plan", plugin=plugin, size=ShapeRange(64, 80, 128))
    with pytest.raises(ValueError, match="must include the model's crop 64"):
        build_engine(dynamic_onnx_file, tmp_path / "m.plan", plugin=plugin, size=ShapeRange(128, 128, 128))
    with pytest.raises(ValueError, match="include the model's 4 frames"):
        build_engine(dynamic_onnx_file, tmp_path / "m.plan", plugin=plugin, frames=ShapeRange(16, 16, 16))


def test_timing_cache_is_checked_and_written_only_when_there_is_one(
    onnx_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt(_Recorder()))
    plugin = _plugin(tmp_path)
    cache = tmp_path / "timing.cache"
    cache.write_bytes(b"foreign")
    with pytest.raises(ValueError, match="refused the timing cache"):
        build_engine(onnx_file, tmp_path / "m.plan", plugin=plugin, timing_cache=cache)
    cache.write_bytes(b"none")
    build_engine(onnx_file, tmp_path / "m.plan", plugin=plugin, timing_cache=cache)
    assert cache.read_bytes() == b"none"  # TensorRT had none to give: nothing written


def test_a_context_that_cannot_be_made_is_refused(
    onnx_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    trt = fake_tensorrt(_Recorder())
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    plugin = _plugin(tmp_path)
    build_engine(onnx_file, tmp_path / "m.plan", plugin=plugin)

    class Engine:
        def create_execution_context(self) -> None:
            return None

    trt.Runtime = lambda logger: types.SimpleNamespace(deserialize_cuda_engine=lambda data: Engine())  # type: ignore[attr-defined]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with pytest.raises(ValueError, match="could not create an execution context"):
        engine_context(tmp_path / "m.plan", plugin)


def test_the_onnx_node_names_the_plugin_version_the_plugin_has(onnx_file: Path) -> None:
    """The parser's fallback finds the plugin by op_type, plugin_version and plugin_namespace."""
    import onnx

    header = (
        Path(__file__).parents[2] / "trt_plugins" / "correlationPlugin" / "correlationPlugin.h"
    ).read_text()
    assert re.search(r'kCorrelationPluginVersion\{"(.*?)"\}', header).group(1) == PLUGIN_VERSION  # type: ignore[union-attr]
    nodes = [n for n in onnx.load(str(onnx_file)).graph.node if n.op_type == "DCFCorrelation"]
    assert nodes
    for node in nodes:
        attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        assert (
            attributes["plugin_version"] == PLUGIN_VERSION.encode() and attributes["plugin_namespace"] == b""
        )
