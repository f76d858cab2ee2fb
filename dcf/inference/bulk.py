"""Labelling a collection of videos on one machine (``dcf predict PATH... --out results.jsonl``).

:func:`find_videos` turns files, folders, globs and list files into the videos, in order;
:func:`run_bulk` decodes them on ``workers`` threads or processes, batches the clips of several
videos into one backend call, and hands each video's record (:func:`answer_record`,
:func:`error_record`) to a :class:`Sink` as soon as it is known. :class:`JsonlResults` writes one
line per video and flushes it, so a killed run loses at most the videos in flight, and reopened with
``resume`` skips those it holds; :class:`ParquetResults` writes typed columns. The same records come
from a Ray cluster (:mod:`dcf.inference.ray_bulk`).
"""

from __future__ import annotations

import concurrent.futures as cf
import glob
import json
import logging
import multiprocessing
import time
from collections import Counter, deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import UnionType
from typing import Any, Literal, Protocol, Union, get_args, get_origin

import numpy as np
from pydantic import BaseModel
from tqdm import tqdm

from dcf.data.spec import InputSpec
from dcf.data.video import VIDEO_SUFFIXES, VideoDecodeError, VideoLimitError, VideoLimits
from dcf.inference.answer import Answer
from dcf.inference.backends import Backend
from dcf.inference.errors import VideoError, video_error_code
from dcf.inference.pipeline import MAX_BATCH, MAX_VIEWS, PredictOptions, PreparedVideo, prepare, summarize

log = logging.getLogger(__name__)

Pool = Literal["thread", "process"]
Record = dict[str, Any]  # {"file", **Answer} or {"file", "error": {"code", "message"}}
_GLOB = frozenset("*?[")


def find_videos(paths: Iterable[str | Path], list_file: str | Path | None = None) -> list[str]:
    """The videos named by ``paths`` and the lines of ``list_file``, each once, in order.

    A file is taken as named (whatever its suffix; one that does not exist gets an error record),
    a folder for every file under it with a video suffix (sorted), a pattern with ``*``, ``?`` or
    ``[`` (``**`` for any depth) for the files it matches. A list file holds one such path per line;
    blank lines and lines starting with ``#`` are skipped.

    Raises:
        FileNotFoundError: ``list_file`` cannot be read, or a folder or pattern names no video.
    """
    named = [str(p) for p in paths]
    if list_file is not None:
        try:
            lines = Path(list_file).read_text().splitlines()
        except OSError as exc:
            raise FileNotFoundError(f"cannot read the list file {list_file}: {exc.strerror}") from None
        named += [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    found: dict[str, None] = {}
    for name in named:
        path = Path(name)
        if path.is_dir():
            matches = sorted(
                str(p) for p in path.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file()
            )
            if not matches:
                raise FileNotFoundError(f"no videos ({', '.join(VIDEO_SUFFIXES)}) under the folder {name}")
        elif not path.exists() and _GLOB & set(name):
            matches = sorted(p for p in glob.glob(name, recursive=True) if Path(p).is_file())
            if not matches:
                raise FileNotFoundError(f"no files match {name}")
        else:
            matches = [name]
        found.update(dict.fromkeys(matches))
    return list(found)


def answer_record(file: str, answer: Answer) -> Record:
    return {"file": file, **answer.model_dump(exclude_none=True)}


def error_record(file: str, error: VideoError) -> Record:
    return {"file": file, "error": error.model_dump()}


class Sink(Protocol):
    """Where the records go, one per video."""

    def done(self) -> set[str]:
        """The videos it already holds (skipped by a resumed run)."""
        ...

    def write(self, record: Record) -> None: ...

    def close(self) -> None: ...


class JsonlResults:
    """One JSON object per line and per video, flushed as written.

    Without ``resume`` the file must not exist yet (or be empty); with it, the videos it holds are
    done, and a last line cut short by a kill is dropped (its video runs again).

    Raises:
        FileExistsError: ``path`` holds results and ``resume`` is not set.
        ValueError: A line other than the last is not a record (not a file this command wrote).
    """

    def __init__(self, path: str | Path, resume: bool = False) -> None:
        self.path = Path(path)
        self._done: set[str] = set()
        exists = self.path.is_file() and self.path.stat().st_size > 0
        if exists and not resume:
            raise FileExistsError(
                f"{self.path} already holds results: pass --resume to add the videos it lacks, "
                "or choose another --out"
            )
        if exists:
            self._done = self._read()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a", encoding="utf-8")

    def _read(self) -> set[str]:
        data = self.path.read_bytes()
        complete = data.rfind(b"\n") + 1  # a kill can leave a last line without its newline
        done = set()
        for number, line in enumerate(data[:complete].splitlines(), 1):
            try:
                record = json.loads(line)
                done.add(record["file"])
            except (ValueError, KeyError, TypeError):
                raise ValueError(
                    f"{self.path}:{number} is not a result line of dcf predict (a JSON object with its "
                    '"file"): is --out the results file you meant?'
                ) from None
        if complete < len(data):  # only once the file is known to be ours, and the tail a cut record
            if not data[complete:].startswith(b'{"file": '):
                raise ValueError(
                    f"{self.path} ends in a line that is not a result of dcf predict: is --out the "
                    "results file you meant?"
                )
            log.warning("%s: dropping an unfinished last line (%d bytes)", self.path, len(data) - complete)
            with self.path.open("r+b") as file:
                file.truncate(complete)
        return done

    def done(self) -> set[str]:
        return set(self._done)

    def write(self, record: Record) -> None:
        # ASCII (escapes): any file name is written, even one that is not valid UTF-8.
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        self._done.add(record["file"])

    def close(self) -> None:
        self._file.close()


class ParquetResults:
    """Typed columns (``file``, the answer's fields, ``error``), a row group every ``rows`` videos.
    A Parquet file is only readable once closed, so it cannot be resumed: use JSONL for that.

    Raises:
        ImportError: pyarrow is not installed.
        FileExistsError: ``path`` exists.
    """

    def __init__(self, path: str | Path, rows: int = 1024) -> None:
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise ImportError(
                "Parquet output needs pyarrow: pip install pyarrow (the ray extra has it)"
            ) from None
        self.path = Path(path)
        if self.path.exists():
            raise FileExistsError(
                f"{self.path} exists; Parquet results cannot be resumed: choose another --out"
            )
        self._pa = pa
        self.schema = pa.schema(
            [pa.field("file", pa.string(), nullable=False)]
            + [pa.field(name, _arrow_type(pa, info.annotation)) for name, info in Answer.model_fields.items()]
            + [pa.field("error", _arrow_type(pa, VideoError))]
        )
        self._pq = pq
        self._writer: Any = None  # opened with the first rows: a run that fails first leaves no file
        self._rows: list[Record] = []
        self._size = rows

    def done(self) -> set[str]:
        return set()

    def write(self, record: Record) -> None:
        self._rows.append(record)
        if len(self._rows) >= self._size:
            self._flush()

    def _flush(self) -> None:
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = self._pq.ParquetWriter(self.path, self.schema)
        self._writer.write_table(self._pa.Table.from_pylist(self._rows, schema=self.schema))
        self._rows = []

    def close(self) -> None:
        if self._rows:
            self._flush()
        if self._writer is not None:
            self._writer.close()


def _arrow_type(pa: Any, annotation: Any) -> Any:
    """The Arrow type of a field of the answer's pydantic models (every column nullable)."""
    if get_origin(annotation) in (Union, UnionType):
        inner = [a for a in get_args(annotation) if a is not type(None)]
        if all(get_origin(a) is Literal for a in inner):  # choices of text (error codes)
            return pa.string()
        (single,) = inner
        return _arrow_type(pa, single)
    if get_origin(annotation) is list:
        return pa.list_(_arrow_type(pa, get_args(annotation)[0]))
    if get_origin(annotation) is Literal or annotation is str:
        return pa.string()
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return pa.struct([(n, _arrow_type(pa, f.annotation)) for n, f in annotation.model_fields.items()])
    return {int: pa.int64(), float: pa.float64(), bool: pa.bool_()}[annotation]


def open_results(path: str | Path, resume: bool = False) -> JsonlResults | ParquetResults:
    """The sink for ``path``: Parquet for ``.parquet``, JSON lines otherwise."""
    if Path(path).suffix.lower() == ".parquet":
        if resume:
            raise ValueError("--resume needs JSON lines results (--out results.jsonl), not Parquet")
        return ParquetResults(path)
    return JsonlResults(path, resume)


@dataclass
class Summary:
    """What a run did: answered videos, failures by code, and its pace."""

    answered: int = 0
    failed: Counter[str] = field(default_factory=Counter)
    skipped: int = 0  # already in the results (resumed)
    clips: int = 0
    seconds: float = 0.0

    def count(self, record: Record) -> None:
        if "error" in record:
            self.failed[record["error"]["code"]] += 1
        else:
            self.answered += 1
            self.clips += record["views"]["total"]

    def __str__(self) -> str:
        done = self.answered + self.failed.total()
        if not done:
            return f"nothing to do: all {self.skipped} videos are in the results already"
        if not self.seconds:
            return f"{done} videos: {self.answered} answered"
        pace = (
            f"{done / self.seconds:.2f} videos/s, {self.clips / self.seconds:.1f} clips/s"
            if self.seconds
            else ""
        )
        text = f"{done} videos in {self.seconds:.1f} s ({pace}): {self.answered} answered"
        if self.failed:
            text += (
                f", {self.failed.total()} failed ("
                + ", ".join(f"{c} {n}" for c, n in self.failed.most_common())
                + ")"
            )
        if self.skipped:
            text += f"; {self.skipped} already in the results"
        return text


@dataclass(frozen=True)
class Decoder:
    """Decodes and preprocesses one video by path, as :func:`~dcf.inference.pipeline.prepare`
    does for the server; picklable, so that it runs in worker processes too (and Ray tasks)."""

    spec: InputSpec
    options: PredictOptions
    limits: VideoLimits
    max_views: int = MAX_VIEWS
    threads: int = 0  # FFmpeg's decoding threads (0: one per core)

    def __call__(self, file: str) -> PreparedVideo | VideoError:
        try:
            return prepare(
                Path(file), self.spec, self.options, self.limits, self.max_views, threads=self.threads
            )
        except (VideoDecodeError, VideoLimitError) as exc:
            return VideoError(code=video_error_code(exc), message=str(exc))
        except Exception as exc:  # a failure of ours: recorded, the run goes on
            log.exception("%s: decoding failed", file)
            return VideoError(code="internal_error", message=f"{type(exc).__name__}: {exc}")


@dataclass
class _Video:
    file: str
    prepared: PreparedVideo
    logits: list[np.ndarray] = field(default_factory=list)
    sent: int = 0  # views handed to the backend

    @property
    def views(self) -> int:
        return len(self.prepared.views)


class ClipBatcher:
    """Clips of several videos in one backend call, at most ``batch`` at a time; a video is
    finished when all its clips are scored (its views may span calls)."""

    def __init__(self, backend: Backend, batch: int = MAX_BATCH) -> None:
        self.backend, self.batch = backend, batch
        self._videos: deque[_Video] = deque()
        self.waiting = 0  # clips not yet sent

    def add(self, file: str, prepared: PreparedVideo) -> Iterator[tuple[str, PreparedVideo, np.ndarray]]:
        """Queues a video; runs every full batch and yields the videos those finish."""
        self._videos.append(_Video(file, prepared))
        self.waiting += len(prepared.views)
        while self.waiting >= self.batch:
            yield from self._step()

    def flush(self) -> Iterator[tuple[str, PreparedVideo, np.ndarray]]:
        """Runs what is left (the last, partial batches)."""
        while self.waiting:
            yield from self._step()

    def _step(self) -> Iterator[tuple[str, PreparedVideo, np.ndarray]]:
        parts, taken = [], []
        room = self.batch
        for video in self._videos:
            if not room:
                break
            count = min(room, video.views - video.sent)
            if count:
                parts.append(video.prepared.views[video.sent : video.sent + count])
                taken.append((video, count))
                video.sent += count
                room -= count
        logits = self.backend(np.concatenate(parts))
        self.waiting -= len(logits)
        start = 0
        for video, count in taken:
            video.logits.append(logits[start : start + count])
            start += count
        while self._videos and sum(len(part) for part in self._videos[0].logits) == self._videos[0].views:
            video = self._videos.popleft()
            yield video.file, video.prepared, np.concatenate(video.logits)


def _worker_setup() -> None:
    """A decode process: one thread for torch's preprocessing (the processes are the parallelism)."""
    import torch

    torch.set_num_threads(1)


def _executor(workers: int, pool: Pool) -> cf.Executor:
    if pool == "process":
        # forkserver: a fork of a process that has started torch's and the runtimes' threads can hang.
        context = multiprocessing.get_context("forkserver")
        return cf.ProcessPoolExecutor(workers, mp_context=context, initializer=_worker_setup)
    return cf.ThreadPoolExecutor(workers, thread_name_prefix="decode")


def run_bulk(
    backend: Backend,
    videos: Sequence[str],
    options: PredictOptions,
    sink: Sink,
    *,
    workers: int = 1,
    pool: Pool = "thread",
    batch: int = MAX_BATCH,
    limits: VideoLimits | None = None,
    max_views: int = MAX_VIEWS,
    progress: bool = False,
) -> Summary:
    """Answers every video of ``videos`` not yet in ``sink``, and writes its record there.

    Videos are decoded on ``workers`` threads or processes, at most ``2 x workers`` ahead of the
    model; the model runs here, ``batch`` clips at a time across videos. A video that cannot be
    decoded gets an error record; a failure of the backend stops the run (the records written stay).

    Raises:
        InvalidOptions: Options beyond the model or ``max_views``.
    """
    info = backend.info
    options.check(len(info.classes), max_views)
    done = sink.done()
    todo = [video for video in videos if video not in done]
    summary = Summary(skipped=len(videos) - len(todo))
    # With several workers each decodes on one thread: the workers are the parallelism.
    decoder = Decoder(info.input_spec, options, limits or VideoLimits(), max_views, 1 if workers > 1 else 0)
    batcher = ClipBatcher(backend, batch)
    start = time.perf_counter()

    def finish(record: Record) -> None:
        sink.write(record)
        summary.count(record)
        bar.update()
        if summary.failed:
            bar.set_postfix(failed=summary.failed.total(), refresh=False)

    def answered(finished: Iterable[tuple[str, PreparedVideo, np.ndarray]]) -> None:
        for file, prepared, logits in finished:
            finish(answer_record(file, summarize(logits, prepared, info, options)))

    with (
        _executor(workers, pool) as executor,
        tqdm(total=len(todo), desc="predict", unit="video", disable=not progress, mininterval=1) as bar,
    ):
        queued = iter(todo)
        running: dict[cf.Future[PreparedVideo | VideoError], str] = {}
        while True:
            for file in queued:
                running[executor.submit(decoder, file)] = file
                if len(running) >= 2 * workers:
                    break
            if not running:
                break
            ready, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
            for future in ready:
                file = running.pop(future)
                result = future.result()
                if isinstance(result, VideoError):
                    finish(error_record(file, result))
                else:
                    answered(batcher.add(file, result))
        answered(batcher.flush())
    summary.seconds = time.perf_counter() - start
    return summary
