"""QueueMetrics, MetricsServer and the Grafana dashboard: in-process checks, no Prometheus."""

from __future__ import annotations

import re
import socket
import threading
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from phase1.runtime.dashboard import (
    ERROR_PROMQL,
    SEED_PROMQL,
    dashboard_queries,
    load_dashboard,
)
from phase1.runtime.metrics import (
    DEPTH_STATES,
    METRIC_NAMES,
    RETRY_CAUSES,
    MetricsServer,
    QueueMetrics,
)

# -- QueueMetrics --------------------------------------------------------------------------


def test_two_instances_are_independent() -> None:
    a, b = QueueMetrics(), QueueMetrics()  # would raise "Duplicated timeseries" on a shared one
    assert a.registry is not b.registry
    a.on_dispatch(5)
    a.on_complete("j1", 0.1)
    assert a.registry.get_sample_value("queue_jobs_dispatched_total") == 5
    assert b.registry.get_sample_value("queue_jobs_dispatched_total") == 0
    assert b.registry.get_sample_value("queue_jobs_completed_total") == 0


def test_global_registry_is_left_alone() -> None:
    QueueMetrics()
    assert REGISTRY.get_sample_value("queue_jobs_completed_total") is None


def test_a_given_registry_is_used() -> None:
    reg = CollectorRegistry()
    m = QueueMetrics(registry=reg)
    m.on_timeout()
    assert reg.get_sample_value("queue_jobs_timeouts_total") == 1


@dataclass
class Report:
    duration_s: float
    records_replayed: int


# (what to call, sample name, labels, expected value after the call)
HOOKS: list[tuple[str, Callable[[QueueMetrics], Any], str, dict[str, str], float]] = [
    ("dispatch", lambda m: m.on_dispatch(3), "queue_jobs_dispatched_total", {}, 3),
    ("complete", lambda m: m.on_complete("j", 0.02), "queue_jobs_completed_total", {}, 1),
    (
        "duration_count",
        lambda m: m.on_complete("j", 0.02),
        "queue_job_duration_seconds_count",
        {},
        1,
    ),
    (
        "duration_sum",
        lambda m: m.on_complete("j", 0.02),
        "queue_job_duration_seconds_sum",
        {},
        0.02,
    ),
    (
        "duration_bucket",
        lambda m: m.on_complete("j", 0.02),
        "queue_job_duration_seconds_bucket",
        {"le": "0.025"},
        1,
    ),
    (
        "duration_bucket_below",
        lambda m: m.on_complete("j", 0.02),
        "queue_job_duration_seconds_bucket",
        {"le": "0.01"},
        0,
    ),
    ("retry_total", lambda m: m.on_retry("fail"), "queue_jobs_retried_total", {}, 1),
    (
        "retry_fail",
        lambda m: m.on_retry("fail"),
        "queue_jobs_retried_by_cause_total",
        {"cause": "fail"},
        1,
    ),
    (
        "retry_timeout",
        lambda m: m.on_retry("timeout"),
        "queue_jobs_retried_by_cause_total",
        {"cause": "timeout"},
        1,
    ),
    (
        "retry_recovered",
        lambda m: m.on_retry("recovered"),
        "queue_jobs_retried_by_cause_total",
        {"cause": "recovered"},
        1,
    ),
    ("timeout", lambda m: m.on_timeout(), "queue_jobs_timeouts_total", {}, 1),
    ("dead", lambda m: m.on_dead("max_retry exceeded"), "queue_jobs_dead_total", {}, 1),
    ("late_ack", lambda m: m.on_late_ack(), "queue_late_acks_total", {}, 1),
    ("fsync_count", lambda m: m.on_fsync(0.0003, 17), "queue_wal_fsync_seconds_count", {}, 1),
    (
        "fsync_bucket",
        lambda m: m.on_fsync(0.0003, 17),
        "queue_wal_fsync_seconds_bucket",
        {"le": "0.0005"},
        1,
    ),
    ("fsync_records", lambda m: m.on_fsync(0.0003, 17), "queue_wal_records_per_fsync_sum", {}, 17),
    (
        "fsync_records_bucket",
        lambda m: m.on_fsync(0.0003, 17),
        "queue_wal_records_per_fsync_bucket",
        {"le": "32.0"},
        1,
    ),
    (
        "depth",
        lambda m: m.set_depth({"pending": 7, "in_flight": 2}),
        "queue_depth_gauge",
        {"state": "pending"},
        7,
    ),
    (
        "recovery_duration",
        lambda m: m.on_recovery(Report(0.25, 1234)),
        "queue_recovery_duration_seconds",
        {},
        0.25,
    ),
    (
        "recovery_records",
        lambda m: m.on_recovery(Report(0.25, 1234)),
        "queue_recovery_records_replayed",
        {},
        1234,
    ),
]


@pytest.mark.parametrize(
    ("call", "name", "labels", "expected"),
    [h[1:] for h in HOOKS],
    ids=[h[0] for h in HOOKS],
)
def test_each_hook_moves_its_sample(
    call: Callable[[QueueMetrics], Any], name: str, labels: dict[str, str], expected: float
) -> None:
    m = QueueMetrics()
    before = m.registry.get_sample_value(name, labels)
    assert before == 0, f"{name}{labels} should exist at zero before any event, got {before}"
    call(m)
    assert m.registry.get_sample_value(name, labels) == pytest.approx(expected)


def test_hooks_touch_only_their_own_samples() -> None:
    m = QueueMetrics()
    m.on_retry("timeout")
    assert m.value("queue_jobs_retried_by_cause_total", cause="fail") == 0
    assert m.value("queue_jobs_timeouts_total") == 0  # on_retry is not on_timeout
    m.on_late_ack()
    assert m.value("queue_jobs_completed_total") == 0


def test_labelled_series_exist_from_the_start() -> None:
    m = QueueMetrics()
    assert m.value("queue_jobs_retried_total") == 0
    for cause in RETRY_CAUSES:
        assert m.value("queue_jobs_retried_by_cause_total", cause=cause) == 0
    for state in DEPTH_STATES:
        assert m.value("queue_depth_gauge", state=state) == 0


def test_retried_total_is_unlabelled_and_equals_the_sum_of_its_causes() -> None:
    m = QueueMetrics()
    for cause in ("fail", "fail", "timeout", "recovered", "fail"):
        m.on_retry(cause)
    retried = [
        s
        for fam in text_string_to_metric_families(m.exposition().decode())
        for s in fam.samples
        if s.name == "queue_jobs_retried_total"
    ]
    assert [(s.labels, s.value) for s in retried] == [({}, 5.0)]  # the seed's metric: no labels
    by_cause = {c: m.value("queue_jobs_retried_by_cause_total", cause=c) for c in RETRY_CAUSES}
    assert by_cause == {"fail": 3, "timeout": 1, "recovered": 1}
    assert sum(v or 0 for v in by_cause.values()) == m.value("queue_jobs_retried_total")


def test_set_depth_zeroes_states_that_are_missing() -> None:
    m = QueueMetrics()
    m.set_depth({"pending": 4, "dead": 1})
    m.set_depth({"completed": 5})
    assert m.value("queue_depth_gauge", state="pending") == 0
    assert m.value("queue_depth_gauge", state="dead") == 0
    assert m.value("queue_depth_gauge", state="completed") == 5


def test_recovery_keeps_the_last_report_only() -> None:
    m = QueueMetrics()
    m.on_recovery(Report(1.5, 10))
    m.on_recovery(Report(0.5, 3))
    assert m.value("queue_recovery_duration_seconds") == 0.5
    assert m.value("queue_recovery_records_replayed") == 3


def test_concurrent_hooks_lose_no_increment() -> None:
    m = QueueMetrics()
    n_threads, per_thread = 8, 2_000
    barrier = threading.Barrier(n_threads)

    def work() -> None:
        barrier.wait()
        for i in range(per_thread):
            m.on_dispatch(1)
            m.on_complete(f"j{i}", 0.001)

    threads = [threading.Thread(target=work) for _ in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert m.value("queue_jobs_dispatched_total") == n_threads * per_thread
    assert m.value("queue_job_duration_seconds_count") == n_threads * per_thread


def test_exposition_has_help_and_type_for_every_metric() -> None:
    text = QueueMetrics().exposition().decode()
    kinds = {
        "queue_job_duration_seconds": "histogram",
        "queue_wal_fsync_seconds": "histogram",
        "queue_wal_records_per_fsync": "histogram",
        "queue_depth_gauge": "gauge",
        "queue_recovery_duration_seconds": "gauge",
        "queue_recovery_records_replayed": "gauge",
    }
    for name in METRIC_NAMES:
        kind = kinds.get(name, "counter")
        assert re.search(rf"^# HELP {name} \S", text, re.M), f"no HELP line for {name}"
        assert re.search(rf"^# TYPE {name} {kind}$", text, re.M), f"no TYPE {kind} for {name}"
    # and the parser agrees (counters are parsed back without the _total suffix)
    parsed = {f.name for f in text_string_to_metric_families(text)}
    for name in METRIC_NAMES:
        assert name.removesuffix("_total") in parsed


def test_as_dict_matches_the_registry() -> None:
    m = QueueMetrics()
    m.on_dispatch(2)
    m.on_retry("fail")
    m.set_depth({"in_flight": 2})
    d = m.as_dict()
    assert d["queue_jobs_dispatched_total"] == 2
    assert d["queue_jobs_retried_total"] == 1
    assert d['queue_jobs_retried_by_cause_total{cause="fail"}'] == 1
    assert d['queue_depth_gauge{state="in_flight"}'] == 2
    assert d['queue_job_duration_seconds_bucket{le="+Inf"}'] == 0
    assert not [k for k in d if "_created" in k]
    assert all(isinstance(v, float) for v in d.values())


# -- MetricsServer -------------------------------------------------------------------------


# loopback requests never go through an HTTP proxy from the environment
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def fetch(url: str) -> tuple[int, str, bytes]:
    with _OPENER.open(url, timeout=5) as resp:
        return resp.status, resp.headers.get("Content-Type", ""), resp.read()


def test_server_on_port_zero_serves_metrics_and_stops_cleanly() -> None:
    before = set(threading.enumerate())
    m = QueueMetrics()
    m.on_dispatch(41)
    srv = MetricsServer(m, port=0)
    port = srv.start()
    try:
        assert port > 0 and srv.port == port
        assert srv.url == f"http://127.0.0.1:{port}/metrics"
        for _ in range(3):  # a few requests: each runs in a request thread
            status, ctype, body = fetch(srv.url)
            assert status == 200
            assert ctype.startswith("text/plain")
            assert b"queue_jobs_dispatched_total 41.0" in body
        m.on_dispatch(1)
        assert b"queue_jobs_dispatched_total 42.0" in fetch(srv.url)[2]
    finally:
        srv.stop()
    leaked = [t for t in threading.enumerate() if t not in before]
    assert not leaked, f"threads left after stop(): {leaked}"
    with pytest.raises(OSError):
        fetch(srv.url)
    srv.stop()  # idempotent


def test_server_binds_loopback_only() -> None:
    with MetricsServer(QueueMetrics()) as srv:
        assert srv.host == "127.0.0.1"
        assert srv._httpd is not None and srv._httpd.server_address[0] == "127.0.0.1"


def test_two_servers_in_one_process() -> None:
    a, b = QueueMetrics(), QueueMetrics()
    a.on_dead("x")
    with MetricsServer(a) as sa, MetricsServer(b) as sb:
        assert sa.port != sb.port
        assert b"queue_jobs_dead_total 1.0" in fetch(sa.url)[2]
        assert b"queue_jobs_dead_total 0.0" in fetch(sb.url)[2]


def test_a_busy_port_raises_at_start() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        srv = MetricsServer(QueueMetrics(), port=s.getsockname()[1])
        with pytest.raises(OSError):
            srv.start()
        assert not srv.running


# -- the Grafana dashboard -----------------------------------------------------------------

PROMQL_WORDS = {
    # functions and aggregations the dashboard may use
    "rate",
    "irate",
    "increase",
    "sum",
    "avg",
    "max",
    "min",
    "count",
    "histogram_quantile",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "offset",
    "bool",
}


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression (label matchers and grouping lists removed)."""
    stripped = re.sub(r"\{[^}]*\}", "", expr)  # {label="..."}
    stripped = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", stripped)  # by (le)
    stripped = re.sub(r"\[[^\]]*\]", "", stripped)  # [5m]
    names = set(re.findall(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()", stripped))
    return names - PROMQL_WORDS


def test_metric_name_regex() -> None:
    assert metric_names(SEED_PROMQL["latency_heatmap"]) == {"queue_job_duration_seconds_bucket"}
    assert metric_names(SEED_PROMQL["retry_ratio"]) == {
        "queue_jobs_retried_total",
        "queue_jobs_dispatched_total",
    }
    assert metric_names('queue_depth_gauge{state="pending"}') == {"queue_depth_gauge"}


def exposed_sample_names() -> set[str]:
    return {
        s.name
        for fam in text_string_to_metric_families(QueueMetrics().exposition().decode())
        for s in fam.samples
    }


def test_dashboard_has_the_seed_four_panels() -> None:
    d = load_dashboard()
    assert 36 <= d["schemaVersion"] <= 41
    assert d["__inputs"][0]["name"] == "DS_PROMETHEUS"
    panels = {p["title"]: p for p in d["panels"]}
    throughput = next(p for t, p in panels.items() if t.startswith("Throughput"))
    heatmap = next(p for t, p in panels.items() if "heatmap" in t.lower())
    depth = next(p for t, p in panels.items() if t.startswith("Queue depth"))
    errors = next(p for t, p in panels.items() if t.startswith("Errors"))

    assert throughput["type"] == "timeseries"
    assert [t["expr"] for t in throughput["targets"]] == [SEED_PROMQL["throughput"]]

    assert heatmap["type"] == "heatmap"
    assert heatmap["targets"][0]["expr"] == SEED_PROMQL["latency_heatmap"]
    assert heatmap["targets"][0]["format"] == "heatmap"

    assert depth["type"] == "timeseries"
    assert depth["targets"][0]["expr"] == SEED_PROMQL["queue_depth"]
    assert depth["fieldConfig"]["defaults"]["custom"]["stacking"]["mode"] == "normal"
    assert depth["fieldConfig"]["defaults"]["custom"]["fillOpacity"] > 0
    assert depth["targets"][0]["legendFormat"] == "{{state}}"
    # delayed and blocked are a breakdown of pending (core.counts()): never stacked on top
    unstacked = {
        o["matcher"]["options"]
        for o in depth["fieldConfig"]["overrides"]
        for prop in o["properties"]
        if prop["id"] == "custom.stacking" and prop["value"]["mode"] == "none"
    }
    assert unstacked == {"delayed", "blocked"}

    assert errors["fieldConfig"]["defaults"]["custom"]["drawStyle"] == "bars"
    assert [t["expr"] for t in errors["targets"]] == list(ERROR_PROMQL.values())

    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids))
    for p in d["panels"]:
        assert p["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
        assert {"h", "w", "x", "y"} <= set(p["gridPos"])
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs))


def test_dashboard_uses_every_seed_query() -> None:
    exprs = dashboard_queries()
    for name, query in {**SEED_PROMQL, **ERROR_PROMQL}.items():
        assert query in exprs, f"the dashboard does not use {name}: {query}"


def test_every_dashboard_query_names_an_exposed_metric() -> None:
    exposed = exposed_sample_names()
    exprs = dashboard_queries()
    assert exprs
    for expr in exprs:
        names = metric_names(expr)
        assert names, f"no metric name found in {expr!r}"
        assert names <= exposed, f"{expr!r} names {sorted(names - exposed)}, not exposed"


SEED_TEXT = {
    # The seed's four queries as its "Prometheus 查詢範例" block writes them, copied by hand.
    "throughput": "rate(queue_jobs_completed_total[1m])",
    "latency_p95": "histogram_quantile(0.95, rate(queue_job_duration_seconds_bucket[5m]))",
    "queue_depth": "queue_depth_gauge",
    "retry_ratio": "rate(queue_jobs_retried_total[1m]) / rate(queue_jobs_dispatched_total[1m])",
}


def test_seed_queries_are_verbatim() -> None:
    for name, text in SEED_TEXT.items():
        assert SEED_PROMQL[name] == text, name


def test_both_sides_of_the_retry_ratio_have_the_same_labels() -> None:
    # One-to-one matching divides only series with equal label sets: both sides unlabelled.
    m = QueueMetrics()
    m.on_dispatch(4)
    m.on_retry("timeout")
    for name in metric_names(SEED_PROMQL["retry_ratio"]):
        samples = [
            s
            for fam in text_string_to_metric_families(m.exposition().decode())
            for s in fam.samples
            if s.name == name
        ]
        assert [s.labels for s in samples] == [{}], (name, samples)
