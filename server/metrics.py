"""Prometheus metrics of one server (its own registry, so tests can run several apps)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "dcf_requests", "HTTP requests by route and status code", ["route", "status"], registry=r
        )
        self.request_seconds = Histogram(
            "dcf_request_seconds", "Time to answer a prediction request", buckets=_LATENCY_BUCKETS, registry=r
        )
        self.decode_seconds = Histogram(
            "dcf_decode_seconds",
            "Decoding and preprocessing one upload",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_seconds = Histogram(
            "dcf_queue_seconds",
            "Time a request's clips waited for inference",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.inference_seconds = Histogram(
            "dcf_inference_seconds", "One batched inference call", buckets=_LATENCY_BUCKETS, registry=r
        )
        self.batch_size = Histogram(
            "dcf_batch_size",
            "Clips per inference call",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=r,
        )
        self.in_progress = Gauge(
            "dcf_requests_in_progress", "HTTP requests being answered (this scrape included)", registry=r
        )
        self.queued_clips = Gauge("dcf_queued_clips", "Clips waiting for inference", registry=r)
        self.decoding = Gauge("dcf_decoding_uploads", "Uploads being decoded or waiting to be", registry=r)
        self.uploading = Gauge("dcf_receiving_uploads", "Uploads whose body is being received", registry=r)
        self.memory_bound = Gauge(
            "dcf_memory_bound_bytes", "Worst-case resident memory allowed by the settings", registry=r
        )
        self.upload_bytes = Histogram(
            "dcf_upload_bytes",
            "Size of uploaded videos",
            buckets=(1e4, 1e5, 1e6, 1e7, 1e8, 1e9),
            registry=r,
        )

    def observe_batch(self, views: int, seconds: float) -> None:
        self.batch_size.observe(views)
        self.inference_seconds.observe(seconds)
