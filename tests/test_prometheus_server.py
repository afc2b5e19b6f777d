"""A real Prometheus scrapes a fed QueueMetrics; the seed's PromQL returns data through its API.

The queries are the seed's text, verbatim (``SEED_VERBATIM`` below is copied from the seed by
hand, not imported), so this also proves the seed's retry ratio divides one series by one.

Needs the Debian package ``prometheus`` (``.ci/run`` installs it).  Everything stays on
127.0.0.1: one scrape job pointed at our ``MetricsServer``, no alerting, no rule files, no
remote write, no self-scrape.  Polling Prometheus with a deadline is waiting for an external
server, not synchronisation between our own threads.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from phase1.config import load_config
from phase1.runtime.dashboard import ERROR_PROMQL, SEED_PROMQL
from phase1.runtime.metrics import MetricsServer, QueueMetrics

REPO = Path(__file__).resolve().parent.parent
PROMETHEUS = os.environ.get("PHASE1_PROMETHEUS_BIN", "/usr/bin/prometheus")
PROMTOOL = os.environ.get("PHASE1_PROMTOOL_BIN", "/usr/bin/promtool")
DEADLINE_S = 60.0
POLL_S = 0.5

# Never route loopback requests through an HTTP proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def require(binary: str) -> str:
    if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
        pytest.fail(
            f"{binary} not found: install the Debian package with "
            "`apt-get install prometheus` (.ci/run does this in CI)",
            pytrace=False,
        )
    return binary


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get_json(url: str, timeout: float = 5.0) -> Any:
    with _OPENER.open(url, timeout=timeout) as resp:
        return json.loads(resp.read())


# -- a fed QueueMetrics behind a MetricsServer (a running controller, simulated) --------------


@dataclass
class Exporter:
    metrics: QueueMetrics
    server: MetricsServer


def feed(m: QueueMetrics, stop: threading.Event) -> None:
    """What a busy controller reports, ~50 times a second until ``stop``."""
    durations = (0.0008, 0.004, 0.02, 0.09, 0.3, 1.2)
    causes = ("fail", "timeout", "recovered")
    i = 0
    m.on_recovery(type("Report", (), {"duration_s": 0.042, "records_replayed": 1200})())
    while not stop.is_set():
        m.on_dispatch(5)
        for k in range(4):
            m.on_complete(f"job-{i}-{k}", durations[(i + k) % len(durations)])
        m.on_retry(causes[i % len(causes)])
        if i % 5 == 0:
            m.on_timeout()
        if i % 7 == 0:
            m.on_dead("max_retry exceeded")
        if i % 11 == 0:
            m.on_late_ack()
        m.on_fsync(0.0002 + 0.0001 * (i % 4), 1 + i % 50)
        m.set_depth({"pending": 20 + i % 10, "in_flight": 8, "completed": 4 * i, "dead": i // 7})
        i += 1
        stop.wait(0.02)  # pacing of the simulated workload, not synchronisation


@pytest.fixture
def exporter() -> Iterator[Exporter]:
    m = QueueMetrics()
    server = MetricsServer(m, host="127.0.0.1", port=0)
    server.start()
    stop = threading.Event()
    feeder = threading.Thread(target=feed, args=(m, stop), name="metrics-feeder")
    feeder.start()
    try:
        yield Exporter(m, server)
    finally:
        stop.set()
        feeder.join()
        server.stop()


# -- a real Prometheus on loopback ----------------------------------------------------------


@dataclass
class Prometheus:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def query(self, promql: str) -> list[dict[str, Any]]:
        qs = urllib.parse.urlencode({"query": promql})
        body = get_json(f"{self.url}/api/v1/query?{qs}")
        assert body["status"] == "success", body
        result = body["data"]["result"]
        assert isinstance(result, list)
        return result


def scrape_config(target_port: int) -> dict[str, Any]:
    return {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {
                "job_name": "phase1",
                "metrics_path": "/metrics",
                "static_configs": [{"targets": [f"127.0.0.1:{target_port}"]}],
            }
        ],
    }


def start_prometheus(tmp: Path, target_port: int) -> Prometheus:
    binary = require(PROMETHEUS)
    config = tmp / "prometheus.yml"
    config.write_text(yaml.safe_dump(scrape_config(target_port)), encoding="utf-8")
    last_error = ""
    for attempt in range(3):  # the free port may be taken between probe and bind
        port = free_port()
        log = tmp / f"prometheus-{attempt}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [
                    binary,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={tmp / f'tsdb-{attempt}'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--storage.tsdb.retention.time=1h",
                    "--log.level=info",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        prom = Prometheus(f"http://127.0.0.1:{port}", proc, log)
        deadline = time.monotonic() + DEADLINE_S
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with _OPENER.open(f"{prom.url}/-/ready", timeout=2) as resp:
                    if resp.status == 200:
                        return prom
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(POLL_S)
        last_error = prom.log_tail()
        stop_prometheus(prom)
    pytest.fail(f"Prometheus did not become ready:\n{last_error}", pytrace=False)


def stop_prometheus(prom: Prometheus) -> None:
    if prom.proc.poll() is None:
        prom.proc.terminate()
        try:
            prom.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            prom.proc.kill()
            prom.proc.wait(timeout=10)


@pytest.fixture
def prometheus(tmp_path: Path, exporter: Exporter) -> Iterator[Prometheus]:
    prom = start_prometheus(tmp_path, exporter.server.port)
    try:
        yield prom
    finally:
        stop_prometheus(prom)


def wait_for_data(prom: Prometheus, queries: dict[str, str]) -> dict[str, list[dict[str, Any]]]:
    """Poll until every query returns a non-empty vector (rate() needs >= 2 scrapes)."""
    deadline = time.monotonic() + DEADLINE_S
    results: dict[str, list[dict[str, Any]]] = {}
    while True:
        pending = [name for name in queries if not results.get(name)]
        for name in pending:
            results[name] = prom.query(queries[name])
        if all(results.values()):
            return results
        if time.monotonic() > deadline or prom.proc.poll() is not None:
            empty = sorted(name for name, r in results.items() if not r)
            up = prom.query("up")
            pytest.fail(
                f"no data after {DEADLINE_S:.0f}s for {empty}; up={up}\n{prom.log_tail()}",
                pytrace=False,
            )
        time.sleep(POLL_S)


def values(result: list[dict[str, Any]]) -> list[float]:
    return [float(r["value"][1]) for r in result]


# -- the tests ------------------------------------------------------------------------------

#: The seed's four PromQL queries exactly as the seed writes them ("Prometheus 查詢範例").
SEED_VERBATIM: dict[str, str] = {
    "throughput": "rate(queue_jobs_completed_total[1m])",
    "latency_p95": "histogram_quantile(0.95, rate(queue_job_duration_seconds_bucket[5m]))",
    "queue_depth": "queue_depth_gauge",
    "retry_ratio": "rate(queue_jobs_retried_total[1m]) / rate(queue_jobs_dispatched_total[1m])",
}


def test_the_queries_sent_are_the_seed_text() -> None:
    for name, text in SEED_VERBATIM.items():
        assert SEED_PROMQL[name] == text, name


def test_seed_promql_returns_data_from_a_real_prometheus(
    prometheus: Prometheus, exporter: Exporter
) -> None:
    t0 = time.monotonic()
    verbatim = {f"seed_{name}": text for name, text in SEED_VERBATIM.items()}
    results = wait_for_data(prometheus, {**SEED_PROMQL, **ERROR_PROMQL, **verbatim})
    elapsed = time.monotonic() - t0

    up = prometheus.query('up{job="phase1"}')
    assert values(up) == [1.0], up

    assert all(v > 0 for v in values(results["throughput"])), results["throughput"]
    p95 = values(results["latency_p95"])
    assert len(p95) == 1 and 0.001 <= p95[0] <= 30, p95  # within the histogram's buckets
    les = {r["metric"]["le"] for r in results["latency_heatmap"]}
    assert {"0.001", "30.0", "+Inf"} <= les, les
    states = {r["metric"]["state"] for r in results["queue_depth"]}
    assert {"pending", "in_flight", "completed"} <= states, states
    # The seed's retry ratio, verbatim: one unlabelled series on each side, one result.
    ratio = values(results["seed_retry_ratio"])
    assert len(ratio) == 1 and 0 < ratio[0] < 1, ratio  # 1 retry per 5 dispatches fed
    instance = f"127.0.0.1:{exporter.server.port}"
    assert results["seed_retry_ratio"][0]["metric"] == {"instance": instance, "job": "phase1"}
    # The error panel's breakdown: one series per cause, from the by-cause counter.
    causes = {r["metric"]["cause"] for r in results["retries"]}
    assert causes == {"fail", "timeout", "recovered"}, causes

    # Only our exporter is scraped: no self-scrape, nothing off the loopback.
    targets = get_json(f"{prometheus.url}/api/v1/targets")["data"]["activeTargets"]
    assert [t["scrapeUrl"] for t in targets] == [exporter.server.url], targets
    alertmanagers = get_json(f"{prometheus.url}/api/v1/alertmanagers")["data"]
    assert alertmanagers["activeAlertmanagers"] == []
    assert elapsed < DEADLINE_S


def test_prometheus_binary_missing_fails_with_install_hint(tmp_path: Path) -> None:
    with pytest.raises(pytest.fail.Exception, match="apt-get install prometheus"):
        require(str(tmp_path / "no-such-prometheus"))


def test_example_scrape_config_is_valid_and_matches_the_configs(tmp_path: Path) -> None:
    path = REPO / "configs" / "prometheus" / "prometheus.yml"
    promtool = require(PROMTOOL)
    check = subprocess.run(
        [promtool, "check", "config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert check.returncode == 0, check.stdout + check.stderr

    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert set(data) == {"global", "scrape_configs"}  # no alerting, rule_files, remote_write
    targets = {
        target
        for job in data["scrape_configs"]
        for group in job["static_configs"]
        for target in group["targets"]
    }
    for name in ("default.yaml", "test.yaml"):
        cfg = load_config(REPO / "configs" / name)
        assert f"{cfg.metrics_host}:{cfg.metrics_port}" in targets, (name, targets)
    assert all(t.startswith("127.0.0.1:") for t in targets), targets
