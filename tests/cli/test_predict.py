"""``dcf predict`` from the command line: tables, JSON, bad files, hostile files, its flags."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from dcf.testing import media
from dcf.testing.server import loopback_listener
from tests.support.cli import run_dcf


def test_predict_prints_a_table(clips: dict[str, Path]) -> None:
    result = run_dcf("predict", *map(str, clips.values()), "--top-k", "2")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(str(clips["moving left"])) and "24 frames, 96x96" in lines[0]
    assert lines[1].split(maxsplit=1)[1] == "moving left"
    assert any(line.split(maxsplit=1)[-1] == "approaching" for line in lines[3:5])


def test_predict_json_timeline(clips: dict[str, Path]) -> None:
    result = run_dcf(
        "predict", str(clips["approaching"]), "--json", "--timeline", "--window-s", "1", "--clips", "2"
    )
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["predictions"][0]["label"] == "approaching" and len(answer["timeline"]) == 2
    assert answer["views"]["total"] == 4


def test_predict_with_openvino_answers_as_onnx_runtime(
    clips: dict[str, Path], demo_exports: dict[str, Path]
) -> None:
    """The portable file in both runtimes, and the custom-node file in OpenVINO (auto's pick)."""
    answers = {}
    for run, model, backend in (
        ("onnxruntime", "portable", "onnxruntime"),
        ("openvino", "portable", "openvino"),
        ("openvino custom", "custom", "auto"),
    ):
        result = run_dcf(
            "predict", str(clips["moving left"]), "--model", str(demo_exports[model]),
            "--backend", backend, "--json", "--clips", "2",
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert f"with the {run.split()[0]} backend on cpu" in result.stderr
        answers[run] = json.loads(result.stdout)["predictions"]
    for run in ("openvino", "openvino custom"):
        assert [p["label"] for p in answers[run]] == [p["label"] for p in answers["onnxruntime"]]
        for ov, ort in zip(answers[run], answers["onnxruntime"], strict=True):
            assert ov["score"] == pytest.approx(ort["score"], abs=2e-6)  # the answers' 6 decimals


def test_predict_reports_bad_files_and_goes_on(clips: dict[str, Path], tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not a video")
    named = [clips["moving left"], text, clips["approaching"]]
    result = run_dcf("predict", *map(str, named))
    assert result.returncode == 1
    firsts = [line.split(":")[0] for line in result.stdout.splitlines() if not line.startswith(" ")]
    assert firsts == list(map(str, named))  # printed in the order named
    assert f"{text}: error: not a media container FFmpeg can read" in result.stdout
    assert "moving left" in result.stdout


def test_predict_never_follows_playlists_or_list_files(clips: dict[str, Path], tmp_path: Path) -> None:
    with loopback_listener() as listener:
        paths = []
        for name, data in media.nested_references(listener.url, clips["moving left"]).items():
            paths.append(tmp_path / name)
            paths[-1].write_bytes(data)
        result = run_dcf("predict", *map(str, paths))
        time.sleep(0.3)
    assert result.returncode == 1
    assert [line.split(": error: ")[0] for line in result.stdout.splitlines()] == list(map(str, paths))
    assert listener.connections == []


def test_predict_flags_are_the_request_options() -> None:
    """Every field of PredictOptions is a flag of dcf predict, parsed to the same options."""
    from dcf.cli import build_parser
    from dcf.cli.options import model_values
    from dcf.inference.pipeline import PredictOptions

    parser = build_parser()
    flags = "--top-k 3 --clips 2 --crops 3 --sampling interval --timeline --window-s 4"
    given = parser.parse_args(["predict", "a.mp4", *flags.split(" ")])
    assert PredictOptions.parse(model_values(given, PredictOptions)) == PredictOptions(
        top_k=3, clips=2, crops=3, sampling="interval", timeline=True, window_s=4.0
    )
    defaults = parser.parse_args(["predict", "a.mp4"])
    assert PredictOptions.parse(model_values(defaults, PredictOptions)) == PredictOptions()
    result = run_dcf("predict", "--help")
    assert all(f"--{name.replace('_', '-')}" in result.stdout for name in PredictOptions.model_fields)


def test_predict_a_collection_survives_a_kill_and_resumes(tmp_path: Path) -> None:
    """A real SIGKILL mid-run: the lines written are whole, --resume adds the rest, each video once.
    A FIFO nobody writes holds one decoder for good, so the first run cannot end before the kill."""
    folder = tmp_path / "videos"
    videos = media.write_collection(folder, 24)
    (folder / "broken.mp4").write_bytes(b"not a video")
    os.mkfifo(folder / "pipe.mp4")
    out = tmp_path / "out" / "results.jsonl"
    exe = shutil.which("dcf") or "dcf"
    with subprocess.Popen(
        [exe, "predict", str(folder), "--out", str(out), "--clips", "2"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    ) as first:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and (not out.exists() or out.read_text().count("\n") < 5):
            time.sleep(0.05)
        first.send_signal(signal.SIGKILL)
    written = out.read_text().splitlines()
    assert len(written) >= 5 and all(json.loads(line)["file"] for line in written)
    assert str(folder / "pipe.mp4") not in out.read_text()

    again = run_dcf("predict", str(folder), "--out", str(out), "--clips", "2")
    assert again.returncode == 2 and "already holds results: pass --resume" in again.stderr
    (folder / "pipe.mp4").unlink()
    (folder / "pipe.mp4").touch()  # never answered by the first run: now an empty file
    resumed = run_dcf("predict", str(folder), "--out", str(out), "--clips", "2", "--resume")
    assert resumed.returncode == 1, resumed.stderr  # pipe.mp4 failed in this run
    records = [json.loads(line) for line in out.read_text().splitlines()]
    everything = [*videos, folder / "broken.mp4", folder / "pipe.mp4"]
    assert sorted(r["file"] for r in records) == sorted(map(str, everything))
    assert f"{len(written)} already in the results" in resumed.stderr
    errors = {Path(r["file"]).name: r["error"]["code"] for r in records if "error" in r}
    assert errors == {"broken.mp4": "not_a_video", "pipe.mp4": "empty_file"}
    assert all(r["views"]["total"] == 2 for r in records if "error" not in r)


def test_predict_list_file_into_parquet(clips: dict[str, Path], tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet", reason="Parquet output needs pyarrow (the ray extra)")
    listed = tmp_path / "videos.txt"
    listed.write_text("# the two clips\n" + "\n".join(map(str, clips.values())) + "\n")
    result = run_dcf("predict", "--list", str(listed), "--out", str(tmp_path / "r.parquet"), "--top-k", "2")
    assert result.returncode == 0, result.stderr
    rows = pq.read_table(tmp_path / "r.parquet").to_pylist()
    best = {row["file"]: row["predictions"][0]["label"] for row in rows}
    assert best == {str(path): label for label, path in clips.items()}
    assert "2 videos in" in result.stderr and "2 answered" in result.stderr


def test_predict_says_what_its_flags_need(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from dcf.cli import main

    for args, message in (
        ((), "name the videos: PATH... or --list FILE"),
        (("a.mp4", "--resume"), "--resume continues a results file: give it with --out"),
        (("a.mp4", "--ray"), "--ray writes a results file: give it with --out"),
        (("a.mp4", "--out", "r.jsonl", "--workers", "0"), "--workers must be between 1 and 64, got 0"),
        ((str(tmp_path),), "no videos"),
        (("a.mp4", "--out", "r.parquet", "--resume"), "--resume needs JSON lines results"),
    ):
        assert main(["predict", *args]) == 2
        assert message in capsys.readouterr().err, args
