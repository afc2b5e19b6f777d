"""``QueueMetrics``: the seed's Prometheus metrics, one registry per queue.

The seed exports ``queue_jobs_completed_total``, ``queue_jobs_dispatched_total``,
``queue_jobs_retried_total``, ``queue_job_duration_seconds`` (a histogram, for P95) and
``queue_depth_gauge``; phase1 adds retries by cause, timeouts, dead letters, late ACKs, WAL
fsync latency and batch size, and the last recovery's duration and replayed records.
``MetricsServer`` serves them on ``/metrics`` (bound to 127.0.0.1 unless told otherwise; port
0 picks a free port).

Owns: one ``prometheus_client.CollectorRegistry`` per ``QueueMetrics`` (never the global
``REGISTRY``: two controllers in one process, or a notebook cell run twice, must not
collide) and the HTTP exporter's socket and threads.  Must not know: jobs, the WAL format,
the controller's locks.  Every ``on_*`` method is thread-safe (prometheus_client's metrics
are) and cheap enough to call on the hot path.

Invariants kept:

* Every series the dashboard queries exists from construction (labelled children are
  created at zero), so ``rate()`` has data after two scrapes even before the first retry.
* ``queue_jobs_retried_total`` has no labels, exactly like ``queue_jobs_dispatched_total``,
  so the seed's ``rate(queue_jobs_retried_total[1m]) / rate(queue_jobs_dispatched_total[1m])``
  matches one series on each side.  The cause (fail/timeout/recovered) is a separate counter,
  ``queue_jobs_retried_by_cause_total{cause}``; ``on_retry`` increments both, so once it
  returns the causes sum to the total.
* ``stop()`` closes the socket and joins the serving thread and every request thread.

>>> m = QueueMetrics()
>>> m.on_dispatch(3); m.on_complete("job-1", 0.02); m.on_retry("timeout")
>>> m.set_depth({"pending": 5, "in_flight": 2})
>>> d = m.as_dict()
>>> d["queue_jobs_dispatched_total"], d["queue_jobs_completed_total"]
(3.0, 1.0)
>>> d["queue_jobs_retried_total"], d['queue_jobs_retried_by_cause_total{cause="timeout"}']
(1.0, 1.0)
>>> d['queue_depth_gauge{state="dead"}']
0.0
>>> b"# TYPE queue_job_duration_seconds histogram" in m.exposition()
True
"""

from __future__ import annotations

import socket
import threading
from bisect import bisect_left
from collections.abc import Mapping, Sequence
from socketserver import ThreadingMixIn
from typing import Any, Protocol
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    make_wsgi_app,
)

__all__ = [
    "DEPTH_STATES",
    "DURATION_BUCKETS_S",
    "FSYNC_BUCKETS_S",
    "METRIC_NAMES",
    "RECORDS_PER_FSYNC_BUCKETS",
    "RETRY_CAUSES",
    "MetricsServer",
    "QueueMetrics",
    "RecoveryReportLike",
]

#: ``queue_depth_gauge{state=...}`` children, created at zero.
DEPTH_STATES: tuple[str, ...] = ("pending", "in_flight", "completed", "dead", "delayed", "blocked")
#: ``queue_jobs_retried_by_cause_total{cause=...}`` children, created at zero.
RETRY_CAUSES: tuple[str, ...] = ("fail", "timeout", "recovered")

#: Job duration: 1 ms .. 30 s (a no-op job up to the seed's slowest handler).
DURATION_BUCKETS_S: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
#: WAL fsync latency: 50 us (NVMe, page cache) .. 100 ms (a slow disk under load).
FSYNC_BUCKETS_S: tuple[float, ...] = (
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
)
#: Records made durable by one fsync (group commit): 1 .. batch_size and beyond.
RECORDS_PER_FSYNC_BUCKETS: tuple[float, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)

#: Every metric family ``QueueMetrics`` exposes, as named in the exposition text.
METRIC_NAMES: tuple[str, ...] = (
    "queue_jobs_completed_total",
    "queue_jobs_dispatched_total",
    "queue_jobs_retried_total",
    "queue_jobs_retried_by_cause_total",
    "queue_job_duration_seconds",
    "queue_depth_gauge",
    "queue_jobs_timeouts_total",
    "queue_jobs_dead_total",
    "queue_late_acks_total",
    "queue_wal_fsync_seconds",
    "queue_wal_records_per_fsync",
    "queue_recovery_duration_seconds",
    "queue_recovery_records_replayed",
)


class RecoveryReportLike(Protocol):
    """What ``on_recovery`` reads from a recovery report (duck-typed)."""

    @property
    def duration_s(self) -> float: ...

    @property
    def records_replayed(self) -> int: ...


class QueueMetrics:
    """The queue's Prometheus metrics in a registry of their own.

    Pass ``registry`` to share one with other collectors; by default each instance makes a
    fresh ``CollectorRegistry`` so instances never collide.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        # prometheus_client appends ``_total`` to a Counter's name in the exposition.
        self.completed = Counter(
            "queue_jobs_completed", "Jobs acknowledged as completed.", registry=r
        )
        self.dispatched = Counter(
            "queue_jobs_dispatched", "Jobs handed to a worker (every attempt).", registry=r
        )
        # Unlabelled, as in the seed, so it divides by queue_jobs_dispatched_total
        # one-to-one; the breakdown by cause is a counter of its own.
        self.retried = Counter(
            "queue_jobs_retried",
            "Jobs put back to pending for another attempt (every cause).",
            registry=r,
        )
        self.retried_by_cause = Counter(
            "queue_jobs_retried_by_cause",
            "Jobs put back to pending for another attempt, by cause (fail, timeout, recovered).",
            ["cause"],
            registry=r,
        )
        self.duration = Histogram(
            "queue_job_duration_seconds",
            "Handler run time of completed jobs, dispatch to ACK.",
            buckets=DURATION_BUCKETS_S,
            registry=r,
        )
        self.depth = Gauge(
            "queue_depth_gauge", "Jobs in each state right now.", ["state"], registry=r
        )
        self.timeouts = Counter(
            "queue_jobs_timeouts", "Attempts that ran past task_timeout_s.", registry=r
        )
        self.dead = Counter("queue_jobs_dead", "Jobs moved to the dead letter state.", registry=r)
        self.late_acks = Counter(
            "queue_late_acks",
            "ACKs that arrived after the attempt had timed out (ignored).",
            registry=r,
        )
        self.fsync = Histogram(
            "queue_wal_fsync_seconds",
            "Latency of one WAL fsync.",
            buckets=FSYNC_BUCKETS_S,
            registry=r,
        )
        self.records_per_fsync = Histogram(
            "queue_wal_records_per_fsync",
            "WAL records made durable by one fsync (group commit size).",
            buckets=RECORDS_PER_FSYNC_BUCKETS,
            registry=r,
        )
        self.recovery_duration = Gauge(
            "queue_recovery_duration_seconds",
            "Wall time of the last recovery (snapshot load + WAL replay).",
            registry=r,
        )
        self.recovery_records = Gauge(
            "queue_recovery_records_replayed",
            "WAL records replayed by the last recovery.",
            registry=r,
        )
        for cause in RETRY_CAUSES:
            self.retried_by_cause.labels(cause=cause)
        for state in DEPTH_STATES:
            self.depth.labels(state=state).set(0)

    # -- the controller's hooks ------------------------------------------------------

    def on_dispatch(self, n: int = 1) -> None:
        """``n`` jobs were handed to workers."""
        self.dispatched.inc(n)

    def on_complete(self, job_id: str, duration_s: float) -> None:
        """A job was acknowledged after running ``duration_s`` seconds."""
        del job_id  # per-job labels would be unbounded cardinality
        self.completed.inc()
        self.duration.observe(max(0.0, duration_s))

    def on_complete_many(self, durations_s: Sequence[float]) -> None:
        """``len(durations_s)`` jobs were acknowledged, after running that long each: the
        same counts as one ``on_complete`` per job, with one lock round per bucket touched
        instead of two per job (the controller reports a whole ACK batch at once)."""
        if not durations_s:
            return
        self.completed.inc(len(durations_s))
        _observe_many(self.duration, durations_s)

    def on_retry(self, cause: str) -> None:
        """A job goes back to pending; ``cause`` is fail, timeout or recovered.

        Increments ``queue_jobs_retried_total`` and ``queue_jobs_retried_by_cause_total``.
        """
        self.retried.inc()
        self.retried_by_cause.labels(cause=cause).inc()

    def on_timeout(self) -> None:
        """An attempt ran past its deadline."""
        self.timeouts.inc()

    def on_dead(self, reason: str) -> None:
        """A job was dead-lettered (the free-text reason is not a label: unbounded)."""
        del reason
        self.dead.inc()

    def on_late_ack(self) -> None:
        """An ACK arrived for an attempt that had already timed out."""
        self.late_acks.inc()

    def on_fsync(self, latency_s: float, records: int) -> None:
        """One WAL fsync took ``latency_s`` and made ``records`` records durable."""
        self.fsync.observe(max(0.0, latency_s))
        self.records_per_fsync.observe(records)

    def set_depth(self, counts: Mapping[str, int]) -> None:
        """Set ``queue_depth_gauge`` per state; known states missing from ``counts`` read 0."""
        for state in DEPTH_STATES:
            if state not in counts:
                self.depth.labels(state=state).set(0)
        for state, n in counts.items():
            self.depth.labels(state=state).set(n)

    def on_recovery(self, report: RecoveryReportLike | Any) -> None:
        """Record the last recovery (reads ``report.duration_s``, ``report.records_replayed``)."""
        self.recovery_duration.set(float(report.duration_s))
        self.recovery_records.set(float(report.records_replayed))

    # -- reading ---------------------------------------------------------------------

    def exposition(self) -> bytes:
        """The Prometheus text format, as ``/metrics`` serves it."""
        return generate_latest(self.registry)

    def as_dict(self) -> dict[str, float]:
        """Every sample as ``'name{label="v",...}' -> value`` (no ``_created`` timestamps).

        For notebooks: look at the metrics without a port or a scraper.
        """
        out: dict[str, float] = {}
        for family in self.registry.collect():
            for s in family.samples:
                if s.name.endswith("_created"):
                    continue
                out[_sample_key(s.name, s.labels)] = float(s.value)
        return out

    def value(self, name: str, **labels: str) -> float | None:
        """One sample's value (``None`` if absent), e.g. ``value("queue_depth_gauge", state="dead")``."""
        return self.registry.get_sample_value(name, labels)


def _observe_many(histogram: Histogram, amounts: Sequence[float]) -> None:
    """``histogram.observe(max(0, a))`` for each of ``amounts``, summed per bucket first.

    Uses prometheus_client's per-child values (``_upper_bounds``, ``_buckets``, ``_sum``:
    stable since 0.4); falls back to one ``observe`` per amount if they are missing.
    """
    bounds = getattr(histogram, "_upper_bounds", None)
    buckets = getattr(histogram, "_buckets", None)
    total = getattr(histogram, "_sum", None)
    if bounds is None or buckets is None or total is None or len(bounds) != len(buckets):
        for a in amounts:
            histogram.observe(max(0.0, a))
        return
    counts = [0] * len(bounds)
    s = 0.0
    for a in amounts:
        a = max(0.0, a)
        s += a
        counts[bisect_left(bounds, a)] += 1  # the first bound >= a, as observe() picks
    total.inc(s)
    for i, n in enumerate(counts):
        if n:
            buckets[i].inc(n)


def _sample_key(name: str, labels: Mapping[str, str]) -> str:
    if not labels:
        return name
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items(), key=lambda kv: kv[0]))
    return f"{name}{{{inner}}}"


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class _QuietHandler(WSGIRequestHandler):
    """No access log on stderr; a stuck client cannot hold a request thread forever."""

    timeout = 10.0

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingMixIn, WSGIServer):
    # Non-daemon request threads, joined by server_close(): stop() leaks no threads.
    daemon_threads = False
    block_on_close = True


class _Server6(_Server):
    address_family = socket.AF_INET6


class MetricsServer:
    """``/metrics`` over HTTP for one ``QueueMetrics``; ``start()`` returns the bound port.

    >>> srv = MetricsServer(QueueMetrics(), port=0)
    >>> port = srv.start()
    >>> srv.url == f"http://127.0.0.1:{port}/metrics"
    True
    >>> srv.stop()
    """

    def __init__(self, metrics: QueueMetrics, host: str = "127.0.0.1", port: int = 0) -> None:
        self.metrics = metrics
        self.host = host
        self.port = port
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> int:
        """Bind and serve in a background thread; returns the actual port."""
        with self._lock:
            if self._httpd is not None:
                return self.port
            cls = _Server6 if ":" in self.host else _Server
            app = make_wsgi_app(self.metrics.registry)
            httpd = make_server(self.host, self.port, app, cls, handler_class=_QuietHandler)
            self.port = int(httpd.server_address[1])
            t = threading.Thread(
                target=httpd.serve_forever,
                kwargs={"poll_interval": 0.1},
                name=f"phase1-metrics-{self.port}",
                daemon=True,
            )
            t.start()
            self._httpd, self._thread = httpd, t
            return self.port

    def stop(self) -> None:
        """Stop serving, close the socket, join the serving and request threads."""
        with self._lock:
            httpd, t = self._httpd, self._thread
            self._httpd, self._thread = None, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        if t is not None:
            t.join()

    @property
    def running(self) -> bool:
        return self._httpd is not None

    @property
    def url(self) -> str:
        """``http://host:port/metrics`` (the port is the bound one after ``start()``)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def __enter__(self) -> MetricsServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
