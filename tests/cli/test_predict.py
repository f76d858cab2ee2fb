"""``dcf predict`` from the command line: tables, JSON, bad files, hostile files, its flags."""

from __future__ import annotations

import json
import time
from pathlib import Path

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


def test_predict_reports_bad_files_and_goes_on(clips: dict[str, Path], tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not a video")
    result = run_dcf("predict", str(text), str(clips["moving left"]))
    assert result.returncode == 1
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
