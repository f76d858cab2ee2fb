"""Bulk predictions on one machine: finding the videos, batching clips across videos, the records
(equal to one-video answers), results files that survive a kill, error codes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, get_args

import numpy as np
import pytest

from dcf.data.video import (
    DecodeWorkError,
    EmptyFile,
    NotAVideo,
    UnreadableFile,
    VideoDecodeError,
    VideoLimitError,
    VideoLimits,
)
from dcf.inference.backends import Backend, ModelInfo, load_backend
from dcf.inference.bulk import (
    ClipBatcher,
    JsonlResults,
    Pool,
    find_videos,
    open_results,
    run_bulk,
)
from dcf.inference.errors import VideoErrorCode, video_error_code
from dcf.inference.pipeline import PredictOptions, PreparedVideo, predict
from dcf.server.errors import STATUSES
from dcf.testing import media
from tests.support.answers import assert_same_answer

OPTIONS = PredictOptions(top_k=3, clips=2, crops=3)  # 6 views: a video spans backend calls of 4


@pytest.fixture(scope="module")
def demo() -> Backend:
    return load_backend("demo")


@pytest.fixture(scope="module")
def collection(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Five real videos and one file of each kind of refusal, by name."""
    folder = tmp_path_factory.mktemp("collection")
    videos = {path.name: path for path in media.write_collection(folder, 5)}
    refused = {"notes.mp4": b"not a video", "empty.mkv": b""}
    refused["cut.mkv"] = media.truncated(media.encoded(".mkv", media.moving_square(24)), keep=0.1)
    for name, data in refused.items():
        (folder / name).write_bytes(data)
        videos[name] = folder / name
    return videos


def test_videos_are_found_in_folders_patterns_and_lists(tmp_path: Path) -> None:
    for name in ("a.mp4", "b.WEBM", "sub/c.mkv", "sub/deeper/d.avi", "notes.txt", "sub/e.json"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    folder = find_videos([tmp_path])
    assert folder == [str(tmp_path / n) for n in ("a.mp4", "b.WEBM", "sub/c.mkv", "sub/deeper/d.avi")]
    assert find_videos([f"{tmp_path}/**/*.mkv", f"{tmp_path}/a.*"]) == [
        str(tmp_path / "sub/c.mkv"),
        str(tmp_path / "a.mp4"),
    ]
    listed = tmp_path / "list.txt"
    listed.write_text(
        f"# my videos\n\n{tmp_path / 'notes.txt'}\n  {tmp_path / 'a.mp4'}  \n{tmp_path}/missing.mp4\n"
    )
    # Named files are taken whatever their suffix (and a missing one gets its error record); each once.
    assert find_videos([tmp_path / "a.mp4"], listed) == [
        str(tmp_path / "a.mp4"),
        str(tmp_path / "notes.txt"),
        f"{tmp_path}/missing.mp4",
    ]
    for empty, message in (
        (tmp_path / "sub/deeper/none", "no videos"),
        (f"{tmp_path}/*.mov", "no files match"),
    ):
        Path(tmp_path / "sub/deeper/none").mkdir(exist_ok=True)
        with pytest.raises(FileNotFoundError, match=message):
            find_videos([empty])
    with pytest.raises(FileNotFoundError, match="cannot read the list file"):
        find_videos([], tmp_path / "absent.txt")


class _Recording:
    """Stand-in backend isolating the batcher: each clip's logit is the clip's own value."""

    info: ModelInfo

    def __init__(self) -> None:
        self.calls: list[int] = []

    def __call__(self, clips: np.ndarray) -> np.ndarray:
        self.calls.append(len(clips))
        return clips.reshape(len(clips), -1)[:, :1].copy()


def _prepared(values: list[float]) -> PreparedVideo:
    views = np.array(values, np.float32).reshape(-1, 1)
    return PreparedVideo(views, [(0.0, 1.0)], None, 0, 0.0)  # type: ignore[arg-type]


def test_clip_batcher_fills_batches_across_videos() -> None:
    backend = _Recording()
    batcher = ClipBatcher(backend, batch=4)  # type: ignore[arg-type]
    finished = []
    for name, values in (("a", [1, 2, 3]), ("b", [4]), ("c", [5, 6, 7, 8, 9]), ("d", [10])):
        finished += list(batcher.add(name, _prepared(values)))
    assert [name for name, *_ in finished] == ["a", "b"]  # c spans the second call and the third
    finished += list(batcher.flush())
    assert backend.calls == [4, 4, 2] and batcher.waiting == 0
    logits = {name: scores.ravel().tolist() for name, _, scores in finished}
    assert logits == {"a": [1, 2, 3], "b": [4], "c": [5, 6, 7, 8, 9], "d": [10]}


@pytest.mark.parametrize(("workers", "pool"), [(1, "thread"), (2, "thread"), (2, "process")])
def test_bulk_records_equal_one_video_answers(
    demo: Backend, collection: dict[str, Path], tmp_path: Path, workers: int, pool: Pool
) -> None:
    files = [str(path) for path in collection.values()] + [str(tmp_path / "gone.mp4")]
    results = JsonlResults(tmp_path / "results.jsonl")
    summary = run_bulk(demo, files, OPTIONS, results, workers=workers, pool=pool, batch=4)
    results.close()
    records = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert sorted(r["file"] for r in records) == sorted(files)
    by_file = {r["file"]: r for r in records}
    errors = {Path(f).name: r["error"]["code"] for f, r in by_file.items() if "error" in r}
    assert errors == {
        "notes.mp4": "not_a_video",
        "empty.mkv": "empty_file",
        "cut.mkv": "undecodable_video",
        "gone.mp4": "unreadable_file",
    }
    assert "No such file" in by_file[str(tmp_path / "gone.mp4")]["error"]["message"]
    for name, path in collection.items():
        if name.startswith("synthetic"):
            answer = predict(demo, path.read_bytes(), OPTIONS).model_dump(exclude_none=True)
            assert_same_answer(by_file[str(path)], answer)
    assert summary.answered == 5 and summary.failed.total() == 4 and summary.clips == 30
    assert "9 videos in" in str(summary) and "undecodable_video 1" in str(summary)


def test_results_resume_after_a_kill(demo: Backend, collection: dict[str, Path], tmp_path: Path) -> None:
    """A kill mid-line leaves a last line without its newline: dropped, that video runs again, and
    every video ends with exactly one line."""
    # A name that is not UTF-8 (bytes 0xe9): written escaped, and found again on resume.
    files = [str(path) for path in collection.values()] + [str(tmp_path / "caf\udce9.mp4")]
    out = tmp_path / "results.jsonl"
    first = JsonlResults(out)
    run_bulk(demo, files[:3], OPTIONS, first)
    first.close()
    whole = out.read_bytes()
    last = whole.rstrip(b"\n").rsplit(b"\n", 1)[1]
    out.write_bytes(whole[: len(whole) - len(last) // 2 - 1])  # the last line cut in half
    with pytest.raises(FileExistsError, match="pass --resume"):
        JsonlResults(out)
    resumed = JsonlResults(out, resume=True)
    assert resumed.done() == set(files[:2])
    summary = run_bulk(demo, files, OPTIONS, resumed)
    resumed.close()
    assert summary.skipped == 2 and summary.answered + summary.failed.total() == len(files) - 2
    lines = out.read_text().splitlines()
    assert sorted(json.loads(line)["file"] for line in lines) == sorted(files)
    again = JsonlResults(out, resume=True)
    assert str(run_bulk(demo, files, OPTIONS, again)).startswith("nothing to do: all 9 videos")
    again.close()


def test_results_refuse_what_they_cannot_continue(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign.jsonl"
    foreign.write_text('{"file": "a.mp4"}\nnot json\n{"file": "b.mp4"}\n')
    with pytest.raises(ValueError, match=r"foreign.jsonl:2 is not a result line"):
        JsonlResults(foreign, resume=True)
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes, no newline at the end")
    with pytest.raises(ValueError, match="ends in a line that is not a result"):
        JsonlResults(notes, resume=True)
    assert notes.read_text() == "my notes, no newline at the end"  # untouched
    with pytest.raises(ValueError, match="--resume needs JSON lines"):
        open_results(tmp_path / "r.parquet", resume=True)


def test_parquet_results_hold_the_same_records(
    demo: Backend, collection: dict[str, Path], tmp_path: Path
) -> None:
    pq = pytest.importorskip("pyarrow.parquet", reason="Parquet output needs pyarrow (the ray extra)")
    files = [str(path) for path in collection.values()]
    jsonl, parquet = JsonlResults(tmp_path / "r.jsonl"), open_results(tmp_path / "r.parquet")
    for sink in (jsonl, parquet):
        run_bulk(demo, files, PredictOptions(timeline=True, window_s=1), sink)
        sink.close()
    with pytest.raises(FileExistsError, match="cannot be resumed"):
        open_results(tmp_path / "r.parquet")
    table = pq.read_table(tmp_path / "r.parquet")
    assert table.schema.field("predictions").type.value_type.names == ["label", "index", "score"]
    rows = {row["file"]: _without_nulls(row) for row in table.to_pylist()}
    lines = {r["file"]: r for r in map(json.loads, (tmp_path / "r.jsonl").read_text().splitlines())}
    assert rows == lines  # one worker, the same batches: the same numbers


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def test_every_video_error_has_its_code() -> None:
    cases = [
        (DecodeWorkError("x"), "too_much_decoding"),
        (VideoLimitError("x"), "video_too_large"),
        (EmptyFile("x"), "empty_file"),
        (UnreadableFile("x"), "unreadable_file"),
        (NotAVideo("x"), "not_a_video"),
        (VideoDecodeError("x"), "undecodable_video"),
    ]
    assert [video_error_code(exc) for exc, _ in cases] == [code for _, code in cases]
    assert {code for _, code in cases} == set(get_args(VideoErrorCode))
    # The server answers each with its status, but a local file's: an upload is always readable.
    assert set(get_args(VideoErrorCode)) - set(STATUSES) == {"unreadable_file"}


def test_ray_rows_of_a_broken_video_have_the_clips_shape(demo: Backend, collection: dict[str, Path]) -> None:
    """Ray concatenates the blocks of decode tasks: a column must keep one tensor shape, so the row
    of a video that failed carries a blank clip (the model stage skips it)."""
    from dcf.inference.bulk import Decoder
    from dcf.inference.ray_bulk import _view_rows

    decoder = Decoder(demo.info.input_spec, OPTIONS, VideoLimits())
    good = _view_rows({"file": "a", "path": str(collection["synthetic_0000.mp4"])}, decoder)
    (bad,) = _view_rows({"file": "b", "path": str(collection["notes.mp4"])}, decoder)
    assert len(good) == 6 and {row["view"].shape for row in good} == {bad["view"].shape}
    assert not bad["view"].any() and json.loads(bad["error"])["code"] == "not_a_video"
    assert [row["index"] for row in good] == list(range(6)) and good[0]["meta"] and not good[1]["meta"]
