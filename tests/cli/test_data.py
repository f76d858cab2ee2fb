"""``dcf data check`` on a real split with the broken files real downloads leave."""

from __future__ import annotations

import json
from pathlib import Path

from dcf.testing.media import write_broken_split
from tests.support.cli import run_dcf


def test_data_check_lists_every_broken_video(tmp_path: Path) -> None:
    write_broken_split(tmp_path / "train")
    result = run_dcf("data", "check", str(tmp_path), "--split", "train", "--no-progress")
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    assert [Path(line.split(": ", 1)[0]).name for line in lines] == ["empty.mp4", "cut.mp4", "text.mp4"]
    assert lines[0].endswith(": the file is empty")
    assert "3 of 5 videos in" in result.stderr and "Traceback" not in result.stderr

    full = run_dcf("data", "check", str(tmp_path), "--full", "--json", "--workers", "3", "--no-progress")
    records = [json.loads(line) for line in full.stdout.splitlines()]
    assert full.returncode == 1
    assert [Path(r["file"]).parent.name + "/" + Path(r["file"]).name for r in records] == [
        "a/empty.mp4",
        "b/cut.mp4",
        "b/text.mp4",
    ]
    assert all(r["error"] for r in records)

    for name in ("a/empty.mp4", "b/cut.mp4", "b/text.mp4"):
        (tmp_path / "train" / name).unlink()
    clean = run_dcf("data", "check", str(tmp_path), "--no-progress")
    assert clean.returncode == 0 and clean.stdout == "" and "all 2 videos" in clean.stderr

    bad = run_dcf("data", "check", str(tmp_path), "--workers", "0")
    assert bad.returncode == 2 and "--workers must be between 1 and 64, got 0" in bad.stderr
