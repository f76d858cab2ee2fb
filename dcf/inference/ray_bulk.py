"""``dcf predict ... --out FILE --ray [ADDRESS]``: the bulk pipeline of :mod:`dcf.inference.bulk` on
Ray Data (the optional ``ray`` extra).

The paths are a dataset; decoding and preprocessing (the same :class:`~dcf.inference.bulk.Decoder`)
is a CPU ``flat_map`` giving one row per clip; the model is a pool of actors (``map_batches`` with a
callable class, ``batch`` clips per call, one GPU per actor with ``device="cuda"``); the driver
gathers each video's clips, makes its answer with the same :func:`~dcf.inference.pipeline.summarize`
and writes the record to the sink. Without an address a local cluster is started on 127.0.0.1
only; with one (``auto``, ``ray://HOST:10001``) the model file and the videos must be readable at
the same paths on every node (a shared file system).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from dcf.checkpoint import DEMO
from dcf.data.video import VideoInfo, VideoLimits
from dcf.inference.backends import BackendName, ComputePrecision, Device, ModelInfo, load_backend
from dcf.inference.bulk import Decoder, Record, Sink, Summary, answer_record, error_record
from dcf.inference.errors import VideoError
from dcf.inference.pipeline import MAX_BATCH, MAX_VIEWS, PredictOptions, PreparedVideo, run_views, summarize

log = logging.getLogger(__name__)


def _view_rows(row: dict[str, Any], decoder: Decoder) -> list[dict[str, Any]]:
    """One row per clip of a video (the first carries what was decoded), or one row with its error."""
    result = decoder(row["path"])
    base = {"file": row["file"], "error": "", "meta": ""}
    if isinstance(result, VideoError):
        # A clip of zeros, of the same shape: a block mixing shapes is a column of objects, which
        # Ray cannot concatenate with the tensor columns of other blocks.
        spec = decoder.spec
        blank = np.zeros((3, spec.num_frames, spec.crop_size, spec.crop_size), np.float32)
        return [{**base, "index": 0, "views": 0, "error": result.model_dump_json(), "view": blank}]
    meta = json.dumps(
        {
            "info": dataclasses.asdict(result.info),
            "windows": result.windows,
            "frames_used": result.frames_used,
            "decode_s": result.decode_s,
        }
    )
    views = len(result.views)
    return [
        {**base, "index": i, "views": views, "meta": meta if i == 0 else "", "view": view}
        for i, view in enumerate(result.views)
    ]


class _Scorer:
    """A model actor: the backend loaded once, the logits of each batch of clip rows."""

    def __init__(
        self,
        model: str,
        backend: BackendName,
        device: Device,
        plugin: str | None,
        batch: int,
        precision: ComputePrecision = "fp32",
    ) -> None:
        self.backend = load_backend(model, backend, device=device, plugin=plugin, precision=precision)
        self.batch = batch

    def __call__(self, rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        clips = [view for view, error in zip(rows["view"], rows["error"], strict=True) if not error]
        logits = np.full((len(rows["file"]), len(self.backend.info.classes)), np.nan, np.float32)
        if clips:
            logits[rows["error"] == ""] = run_views(self.backend, np.stack(clips), self.batch)
        out = {name: column for name, column in rows.items() if name != "view"}
        out["logits"] = logits
        return out


def _prepared(meta: str) -> PreparedVideo:
    """What was decoded, without the views (they went to the model)."""
    values = json.loads(meta)
    return PreparedVideo(
        np.zeros((0,), np.float32),
        [tuple(window) for window in values["windows"]],
        VideoInfo(**values["info"]),
        values["frames_used"],
        values["decode_s"],
    )


def _blocks(videos: int, cpus: float) -> int:
    """Decode tasks for ``videos``: about 32 videos each (a Ray task costs tens of milliseconds on a
    small machine: one per video halves the throughput, bench/results/bulk_predict.md), but at least
    two per CPU of the cluster while there are videos enough."""
    return max(1, min(videos, max(2 * int(cpus), math.ceil(videos / 32))))


def _local(path: str) -> str:
    """Absolute where it is a local path (Ray's workers need not share the driver's directory)."""
    return str(Path(path).resolve()) if path != DEMO and Path(path).exists() else path


# What keeps a local cluster on this machine's loopback, for this process and every Ray process it
# starts (read when ray is imported). RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 is Ray's own "this machine
# is the cluster" (otherwise it replaces 127.0.0.1 by the machine's address and listens there). Ray's
# dashboard process asks cloud metadata endpoints (169.254.169.254, ...) which cloud it runs on even
# with usage stats off (ray 2.60, UsageStatsHead): its HTTP goes to a closed loopback port instead.
LOOPBACK_ENV = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
    **dict.fromkeys(("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"), "http://127.0.0.1:9"),
    **dict.fromkeys(("NO_PROXY", "no_proxy"), "localhost,127.0.0.1,::1"),
}


def start_local_cluster(ray: Any) -> None:
    """A Ray cluster of this machine's CPUs (and GPUs) whose processes use loopback only."""
    from ray._private import ray_constants

    if ray_constants.ENABLE_RAY_CLUSTER:  # ray was imported before this module set the knob
        raise RuntimeError(
            "ray was imported before dcf could keep its local cluster on 127.0.0.1: set "
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 before importing ray, or pass a cluster address"
        )
    # address="local": a new cluster even where RAY_ADDRESS names another one.
    ray.init(address="local", num_cpus=os.cpu_count(), _node_ip_address="127.0.0.1", include_dashboard=False)
    log.info("started a local Ray cluster on 127.0.0.1 (%s)", ray.cluster_resources())


def run_on_ray(
    model: str,
    info: ModelInfo,
    videos: Sequence[str],
    options: PredictOptions,
    sink: Sink,
    *,
    address: str | None = None,
    backend: BackendName = "torch",  # as the driver resolved it (auto could differ on a worker)
    device: Device = "cpu",
    plugin: str | None = None,
    precision: ComputePrecision = "fp32",
    batch: int = MAX_BATCH,
    actors: int = 1,
    limits: VideoLimits | None = None,
    max_views: int = MAX_VIEWS,
    progress: bool = False,
) -> Summary:
    """As :func:`dcf.inference.bulk.run_bulk`, on Ray Data; ``info`` is the model's (checked here,
    before any task starts). Joins the cluster at ``address``, or starts a local one on 127.0.0.1
    (stopped at the end).

    Raises:
        ImportError: Ray (with Ray Data) is not installed.
        InvalidOptions: Options beyond the model or ``max_views``.
    """
    if address is None:
        os.environ.update(LOOPBACK_ENV)
    try:
        import ray
        import ray.data
    except ImportError:
        raise ImportError("--ray needs Ray Data: pip install 'dcf[ray]'") from None
    options.check(len(info.classes), max_views)
    done = sink.done()
    todo = [video for video in videos if video not in done]
    summary = Summary(skipped=len(videos) - len(todo))
    if not todo:
        return summary
    started = not ray.is_initialized()
    if started and address is None:
        start_local_cluster(ray)
    elif started:
        try:
            ray.init(address=address)
        except ConnectionError as exc:
            raise ValueError(
                f"cannot join the Ray cluster at {address}: {exc} (a cluster with token authentication, "
                "Ray's default, needs RAY_AUTH_MODE=token and its token here: ~/.ray/auth_token or "
                "RAY_AUTH_TOKEN)"
            ) from None
    try:
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # ours counts videos
        decoder = Decoder(info.input_spec, options, limits or VideoLimits(), max_views, threads=1)
        dataset = (
            ray.data.from_items(
                [{"file": video, "path": _local(video)} for video in todo],
                override_num_blocks=_blocks(len(todo), ray.cluster_resources().get("CPU", 1)),
            )
            .flat_map(functools.partial(_view_rows, decoder=decoder))
            .map_batches(
                _Scorer,
                fn_constructor_kwargs={
                    "model": _local(model),
                    "backend": backend,
                    "device": device,
                    "plugin": plugin and _local(plugin),
                    "precision": precision,
                    "batch": batch,
                },
                batch_size=batch,
                batch_format="numpy",
                compute=ray.data.ActorPoolStrategy(size=actors),
                num_gpus=1 if device == "cuda" else 0,
            )
        )
        start = time.perf_counter()
        clips: dict[str, dict[int, np.ndarray]] = {}
        metas: dict[str, str] = {}
        with tqdm(total=len(todo), desc="predict", unit="video", disable=not progress, mininterval=1) as bar:

            def finish(record: Record) -> None:
                sink.write(record)
                summary.count(record)
                bar.update()

            for row in dataset.iter_rows():
                file = str(row["file"])
                if row["error"]:
                    finish(error_record(file, VideoError.model_validate_json(row["error"])))
                    continue
                clips.setdefault(file, {})[int(row["index"])] = row["logits"]
                if row["meta"]:
                    metas[file] = str(row["meta"])
                if len(clips[file]) == int(row["views"]) and file in metas:
                    logits = np.stack([clips[file][i] for i in range(int(row["views"]))])
                    del clips[file]
                    finish(answer_record(file, summarize(logits, _prepared(metas.pop(file)), info, options)))
        summary.seconds = time.perf_counter() - start
    finally:
        if started:
            ray.shutdown()
    return summary
