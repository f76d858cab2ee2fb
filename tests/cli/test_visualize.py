"""``dcf visualize`` as a user runs it: a real encoded video in, a PNG or MP4 out."""

from __future__ import annotations

import io
from pathlib import Path

import av
from PIL import Image

from dcf.testing import media
from tests.support.cli import run_dcf


def test_visualize_writes_a_png_and_an_mp4(tmp_path: Path) -> None:
    video = tmp_path / "clip.mp4"
    video.write_bytes(media.encoded(".mp4", media.moving_texture(24, 96, 160, step=3)))
    png, mp4 = tmp_path / "vis.png", tmp_path / "vis.mp4"
    done = run_dcf("visualize", str(video), "--out", str(png), "--stage", "3", "--tau", "-1")
    assert done.returncode == 0, done.stderr
    assert "stage 3" in done.stdout
    picture = Image.open(io.BytesIO(png.read_bytes()))
    assert picture.format == "PNG" and picture.width >= 8 * 128  # eight frames of the demo's 64 px, doubled
    assert run_dcf("visualize", str(video), "--out", str(mp4), "--soft").returncode == 0
    with av.open(str(mp4)) as container:
        frames = list(container.decode(video=0))
    assert len(frames) == 8  # one per frame of the demo's clip


def test_visualize_says_what_is_wrong(tmp_path: Path) -> None:
    video = tmp_path / "clip.mp4"
    video.write_bytes(media.encoded(".mp4", media.moving_square(12, 64, 80)))
    wrong_suffix = run_dcf("visualize", str(video), "--out", str(tmp_path / "vis.gif"))
    assert wrong_suffix.returncode == 2 and "--out must end in .png or .mp4" in wrong_suffix.stderr
    wrong_tau = run_dcf(
        "visualize", str(video), "--out", str(tmp_path / "v.png"), "--stage", "4", "--tau", "2"
    )
    assert wrong_tau.returncode == 2 and "tau must be one of [-1, 1] at stage 4, got 2" in wrong_tau.stderr
    not_video = tmp_path / "notes.txt"
    not_video.write_text("not a video")
    refused = run_dcf("visualize", str(not_video), "--out", str(tmp_path / "v.png"))
    assert refused.returncode == 2 and "not a media container" in refused.stderr
