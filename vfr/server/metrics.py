"""Prometheus metrics (text format at /metrics): requests and their latency by route, search latency by
retriever, and, read at scrape time, the index's documents, generation, segments and deleted rows, and
how well searches batch. One registry per app, so tests can run several apps in one process."""
from __future__ import annotations

from typing import Callable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

BUCKETS = (.001, .0025, .005, .0075, .01, .015, .02, .03, .05, .075, .1, .25, .5, 1, 2.5, 5, 10)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    def __init__(self, stats: Callable[[], dict], encoding: Callable[[], dict]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("vfr_http_requests", "HTTP requests by route and status",
                                ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram("vfr_http_request_duration_seconds", "HTTP request latency by route",
                                 ["method", "route"], buckets=BUCKETS, registry=self.registry)
        self.search = Histogram("vfr_search_duration_seconds", "Engine time per search request (all its "
                                "queries), by retriever", ["retriever"], buckets=BUCKETS, registry=self.registry)
        self.registry.register(_IndexCollector(stats, encoding))

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _IndexCollector:
    def __init__(self, stats: Callable[[], dict], encoding: Callable[[], dict]) -> None:
        self.stats, self.encoding = stats, encoding

    def describe(self):
        return []

    def collect(self):
        try:
            s = self.stats()
        except Exception:  # noqa: BLE001 - an index mid-swap must not fail the scrape
            s = {}
        for name, key, doc in (("vfr_index_documents", "documents", "Live documents in the index"),
                               ("vfr_index_generation", "generation", "Index generation being served"),
                               ("vfr_index_segments", "segments", "Index segments"),
                               ("vfr_index_deleted_rows", "deleted_rows", "Deleted rows awaiting compaction")):
            if key in s:
                yield GaugeMetricFamily(name, doc, value=s[key])
        if "collections" in s:
            g = GaugeMetricFamily("vfr_collection_documents", "Live documents per collection", labels=["collection"])
            for name, n in s["collections"].items():
                g.add_metric([name], n)
            yield g
        enc = self.encoding()
        if enc:
            yield CounterMetricFamily("vfr_search_batches", "Search batches run (concurrent searches share one)",
                                      value=enc.get("calls", 0))
            yield CounterMetricFamily("vfr_search_batch_requests", "Searches answered through search batching "
                                      "(batches < requests: concurrent searches were batched)",
                                      value=enc.get("requests", 0))
