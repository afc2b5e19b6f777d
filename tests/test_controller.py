"""The controller on real threads and real files: no mocks, no sleeps as synchronisation.

Every wait is ``wait_until_idle`` / ``wait_until`` (a condition notified after each applied
step) or a ``threading.Event`` the test owns.
"""

from __future__ import annotations

import http.server
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from phase1.config import Config
from phase1.disk import OsDisk
from phase1.jobs import Job, parse_jobs
from phase1.runtime import Controller, DurableQueue
from phase1.runtime.context import TaskContext
from phase1.runtime.handlers import HandlerRegistry
from phase1.runtime.metrics import QueueMetrics
from phase1.wal import read_wal

REPO = Path(__file__).resolve().parent.parent
WAIT_S = 30.0  # generous upper bound for any wait; tests finish far sooner


@pytest.fixture
def cfg(tmp_config: Config) -> Config:
    return tmp_config.replace(
        timeout_check_interval_s=0.02, snapshot_interval_s=0.1, task_timeout_s=5.0
    )


def own_threads(ctl: Controller) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(ctl.name + "-")]


def wal_records(config: Config) -> list[Any]:
    disk = OsDisk()
    try:
        return read_wal(disk, config.wal_path).records
    finally:
        disk.close()


def noop_jobs(n: int, prefix: str = "j") -> list[Job]:
    return [Job(f"{prefix}{i:04d}", {"kind": "noop"}) for i in range(n)]


# -- happy path -----------------------------------------------------------------------------
def test_submit_then_every_job_completes_and_status_counts_add_up(cfg: Config) -> None:
    with Controller(cfg) as ctl:
        assert ctl.enqueue_jobs(noop_jobs(50)) == 50
        ctl.submit(Job("one-more", {"kind": "sleep", "seconds": 0.01}))
        assert ctl.wait_until_idle(WAIT_S)
        s = ctl.status()
        assert (s["completed"], s["dead"], s["pending"], s["in_flight"]) == (51, 0, 0, 0)
        assert s["dispatched"] == 51 and s["late_acks"] == s["timeouts"] == s["retries"] == 0
        ctl.check()


def test_enqueue_returns_only_once_enqueue_records_are_in_the_wal(cfg: Config) -> None:
    with Controller(cfg.replace(commit_policy="always", snapshot_interval_s=3600)) as ctl:
        ctl.enqueue_jobs(noop_jobs(5))
        enqueued = {r.job_id for r in wal_records(cfg) if r.type == "ENQUEUE"}
        assert enqueued == {f"j{i:04d}" for i in range(5)}


def test_skip_known_submits_only_new_ids(cfg: Config) -> None:
    with Controller(cfg) as ctl:
        assert ctl.enqueue_jobs(noop_jobs(3)) == 3
        assert ctl.enqueue_jobs(noop_jobs(5), skip_known=True) == 2
        assert ctl.wait_until_idle(WAIT_S)
        assert ctl.status()["completed"] == 5


# -- timeouts, abandonment, fencing -----------------------------------------------------------
def test_stuck_job_times_out_to_dead_and_its_worker_is_replaced(cfg: Config) -> None:
    config = cfg.replace(task_timeout_s=0.2, max_retry=2, worker_count=2)
    with Controller(config) as ctl:
        ctl.submit(Job("stuck", {"kind": "stuck"}))
        assert ctl.wait_until_idle(WAIT_S)
        s = ctl.status()
        assert (s["dead"], s["timeouts"], s["retries"], s["abandoned_workers"]) == (1, 2, 1, 2)
        assert "timed out on attempt 2" in ctl.dead_reasons()["stuck"]
        assert ctl.workers_alive() == 2  # capacity kept
        ctl.enqueue_jobs(noop_jobs(20))
        assert ctl.wait_until_idle(WAIT_S)
        assert ctl.status()["completed"] == 20
        ctl.check()
    assert ctl.leaked_threads == [] and own_threads(ctl) == []


def test_late_result_is_fenced_and_the_job_completes_once_on_attempt_two(cfg: Config) -> None:
    release = threading.Event()

    def late(payload: object, ctx: TaskContext) -> str:
        if ctx.attempt == 1:
            release.wait(WAIT_S)  # ignores its context on purpose
            return "late"
        return "fast"

    config = cfg.replace(task_timeout_s=0.2, max_retry=3, snapshot_interval_s=3600)
    registry = HandlerRegistry(config)
    registry.register("late", late)
    with Controller(config, registry=registry) as ctl:
        ctl.submit(Job("L", {"kind": "late"}))
        assert ctl.wait_until_idle(WAIT_S)
        s = ctl.status()
        assert (s["completed"], s["timeouts"], s["abandoned_workers"], s["late_acks"]) == (
            1,
            1,
            1,
            0,
        )
        release.set()
        assert ctl.wait_until(lambda s: s["late_acks"] == 1, WAIT_S)
        acks = [r for r in wal_records(config) if r.type == "ACK"]
        assert [(r.job_id, r.attempt) for r in acks] == [("L", 2)]
        assert ctl.status()["completed"] == 1
        ctl.check()
    assert ctl.leaked_threads == []


def test_cooperative_sleep_past_its_deadline_is_timed_out_not_failed(cfg: Config) -> None:
    config = cfg.replace(task_timeout_s=0.1, max_retry=2)
    with Controller(config) as ctl:
        ctl.submit(Job("nap", {"kind": "sleep", "seconds": 10}))
        assert ctl.wait_until_idle(WAIT_S)
        s = ctl.status()
        assert (s["dead"], s["timeouts"]) == (1, 2)
        assert "timed out on attempt 2" in ctl.dead_reasons()["nap"]
        assert not any(r.type == "FAIL" for r in wal_records(config))


# -- failures ----------------------------------------------------------------------------------
def test_failures_retry_then_dead_with_the_reason_kept(cfg: Config) -> None:
    config = cfg.replace(max_retry=3)
    with Controller(config) as ctl:
        ctl.enqueue_jobs(
            [
                Job("always", {"kind": "fail"}),
                Job("once", {"kind": "fail", "times": 1}),
                Job("mystery", {"kind": "no-such-kind"}),
            ]
        )
        assert ctl.wait_until_idle(WAIT_S)
        s = ctl.status()
        assert (s["completed"], s["dead"], s["retries"]) == (1, 2, 2 + 1 + 2)
        reasons = ctl.dead_reasons()
        assert "fails on purpose" in reasons["always"] and "max_retry 3" in reasons["always"]
        assert "unknown job kind 'no-such-kind'" in reasons["mystery"]
        ctl.check()


# -- stop -------------------------------------------------------------------------------------
def test_stop_joins_every_thread_it_started(cfg: Config) -> None:
    before = set(threading.enumerate())
    ctl = Controller(cfg.replace(worker_count=4)).start()
    assert len(own_threads(ctl)) == 4 + 4  # workers + dispatcher, results, timeouts, snapshots
    ctl.enqueue_jobs(noop_jobs(100))
    assert ctl.wait_until_idle(WAIT_S)
    ctl.stop()
    assert own_threads(ctl) == [] and ctl.leaked_threads == []
    assert set(threading.enumerate()) <= before
    ctl.stop()  # idempotent


def test_stop_names_a_thread_it_could_not_join(
    cfg: Config, caplog: pytest.LogCaptureFixture
) -> None:
    release = threading.Event()
    running = threading.Event()

    def deaf(payload: object, ctx: TaskContext) -> None:
        running.set()
        release.wait(WAIT_S)

    registry = HandlerRegistry(cfg)
    registry.register("deaf", deaf)
    ctl = Controller(cfg.replace(worker_count=1), registry=registry).start()
    ctl.submit(Job("deaf", {"kind": "deaf"}))
    # in flight is not enough: a worker told to stop before it starts the handler just exits
    assert running.wait(WAIT_S)
    with caplog.at_level(logging.WARNING, logger="phase1.runtime.controller"):
        ctl.stop(drain=False, timeout_s=0.3)
    leaked = ctl.leaked_threads
    assert f"{ctl.name}-worker0.1" in leaked, leaked
    assert all("-worker" in name for name in leaked), f"a loop thread leaked: {leaked}"
    assert "still alive after stop()" in caplog.text and leaked[0] in caplog.text
    release.set()
    for t in own_threads(ctl):
        t.join(WAIT_S)
    assert own_threads(ctl) == []


def test_stop_without_drain_leaves_the_job_in_flight_for_recovery(cfg: Config) -> None:
    def first_blocks(payload: object, ctx: TaskContext) -> int:
        if ctx.attempt == 1:
            ctx.wait(WAIT_S)  # cooperative: returns when cancelled
            ctx.check()
        return ctx.attempt

    config = cfg.replace(max_retry=3)
    registry = HandlerRegistry(config)
    registry.register("first-blocks", first_blocks)
    ctl = Controller(config, registry=registry).start()
    ctl.submit(Job("J", {"kind": "first-blocks"}))
    assert ctl.wait_until(lambda s: s["in_flight"] == 1, WAIT_S)
    ctl.stop(drain=False)
    assert ctl.status()["in_flight"] == 1 and own_threads(ctl) == []

    registry2 = HandlerRegistry(config)
    registry2.register("first-blocks", first_blocks)
    with Controller(config, registry=registry2) as again:
        assert again.recovery_report is not None and again.recovery_report.requeued == 1
        assert again.wait_until_idle(WAIT_S)
        assert again.status()["completed"] == 1
        acks = [r for r in wal_records(config) if r.type == "ACK"]
        assert [(r.job_id, r.attempt) for r in acks] == [("J", 2)]


def test_stop_with_drain_finishes_running_work(cfg: Config) -> None:
    ctl = Controller(cfg.replace(worker_count=2)).start()
    ctl.enqueue_jobs([Job(f"s{i}", {"kind": "sleep", "seconds": 0.05}) for i in range(2)])
    assert ctl.wait_until(lambda s: s["in_flight"] == 2, WAIT_S)
    ctl.stop(drain=True)
    s = ctl.status()
    assert (s["completed"], s["in_flight"]) == (2, 0)


# -- recovery at start --------------------------------------------------------------------------
def test_start_recovers_jobs_a_previous_run_left(cfg: Config) -> None:
    q = DurableQueue(cfg)
    q.submit(noop_jobs(10))
    q.dispatch(worker_id=0, limit=3)  # then "crash": three left in flight
    q.close()
    with Controller(cfg) as ctl:
        report = ctl.recovery_report
        assert report is not None and report.requeued == 3
        assert ctl.wait_until_idle(WAIT_S)
        assert ctl.status()["completed"] == 10


# -- stress and isolation ------------------------------------------------------------------------
def test_thread_stress_sixteen_workers_tiny_timeouts_keep_every_invariant(cfg: Config) -> None:
    config = cfg.replace(
        worker_count=16, task_timeout_s=0.05, max_retry=2, timeout_check_interval_s=0.005
    )
    jobs = []
    for i in range(2000):
        if i % 100 == 0:  # 20 jobs that always overrun their deadline
            payload: dict[str, object] = {"kind": "sleep", "seconds": 0.2}
        elif i % 2:
            payload = {"kind": "noop"}
        else:
            payload = {"kind": "sleep", "seconds": 0}
        jobs.append(Job(f"t{i:04d}", payload))
    with Controller(config) as ctl:
        ctl.enqueue_jobs(jobs[:1000])
        ctl.enqueue_jobs(jobs[1000:])
        assert ctl.wait_until_idle(60)
        s = ctl.status()
        assert s["completed"] + s["dead"] == 2000
        assert s["dead"] >= 20 and s["timeouts"] >= 40
        ctl.check()
    assert ctl.leaked_threads == []


def test_two_controllers_in_one_process_do_not_interfere(tmp_path: Path, cfg: Config) -> None:
    configs = [
        cfg.replace(
            wal_path=str(tmp_path / name / "wal.log"),
            snapshot_path=str(tmp_path / name / "snapshot.json"),
            worker_count=4,
        )
        for name in ("a", "b")
    ]
    metrics = [QueueMetrics(), QueueMetrics()]
    ctls = [Controller(c, metrics=m).start() for c, m in zip(configs, metrics, strict=True)]
    try:
        ctls[0].enqueue_jobs(noop_jobs(300, "a"))
        ctls[1].enqueue_jobs(noop_jobs(200, "b"))
        assert all(c.wait_until_idle(WAIT_S) for c in ctls)
        assert [c.status()["completed"] for c in ctls] == [300, 200]
        assert [m.as_dict()["queue_jobs_completed_total"] for m in metrics] == [300.0, 200.0]
    finally:
        for c in ctls:
            c.stop()
    for config, prefix in zip(configs, "ab", strict=True):
        ids = {r.job_id for r in wal_records(config)}
        assert ids == set() or all(i.startswith(prefix) for i in ids)


def test_metrics_see_dispatch_completion_retry_timeout_dead_and_fsync(cfg: Config) -> None:
    m = QueueMetrics()
    config = cfg.replace(task_timeout_s=0.2, max_retry=2)
    with Controller(config, metrics=m) as ctl:
        ctl.enqueue_jobs(
            [
                Job("ok", {"kind": "noop"}),
                Job("bad", {"kind": "fail"}),
                Job("zz", {"kind": "stuck"}),
            ]
        )
        assert ctl.wait_until_idle(WAIT_S)
    d = m.as_dict()
    assert d["queue_jobs_completed_total"] == 1.0
    assert d["queue_jobs_dispatched_total"] == 5.0
    assert d["queue_jobs_retried_total"] == 2.0
    assert d['queue_jobs_retried_by_cause_total{cause="fail"}'] == 1.0
    assert d['queue_jobs_retried_by_cause_total{cause="timeout"}'] == 1.0
    assert any(k.startswith("queue_jobs_dead_total") and v == 2.0 for k, v in d.items()), d
    assert any("fsync" in k and v > 0 for k, v in d.items()), d


# -- payloads end to end --------------------------------------------------------------------------
def test_seed_test_jobs_fibonacci_completes_sandbox_and_allow_list_refusals_go_dead(
    cfg: Config,
) -> None:
    jobs = parse_jobs((REPO / "data" / "test-jobs.json").read_bytes())
    with Controller(cfg) as ctl:
        ctl.enqueue_jobs(jobs)
        assert ctl.wait_until_idle(WAIT_S)
        s = ctl.status()
        assert (s["completed"], s["dead"]) == (1, 2)
        reasons = ctl.dead_reasons()
    assert "outside the workspace" in reasons["task-002"]
    assert "api.github.com" in reasons["task-003"] and "http_allow_hosts" in reasons["task-003"]
    assert not Path("/tmp/test.txt").exists() or "Hello World" not in Path(
        "/tmp/test.txt"
    ).read_text(errors="replace")


@pytest.fixture
def local_http() -> Iterator[str]:
    class Hello(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"hello from loopback"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hello)
    thread = threading.Thread(target=server.serve_forever, name="test-http", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(WAIT_S)


def test_http_get_to_an_allowed_local_server_completes(cfg: Config, local_http: str) -> None:
    config = cfg.replace(http_allow_hosts=("127.0.0.1",))
    with Controller(config) as ctl:
        ctl.submit(Job("get", {"type": "network", "operation": "http_get", "url": local_http}))
        ctl.submit(
            Job(
                "file",
                {"type": "io", "operation": "write_file", "path": "out/a.txt", "content": "x"},
            )
        )
        assert ctl.wait_until_idle(WAIT_S)
        assert (ctl.status()["completed"], ctl.dead_reasons()) == (2, {})
    assert (Path(config.workspace) / "out" / "a.txt").read_text() == "x"


def test_process_pool_runs_compute_jobs(cfg: Config) -> None:
    jobs = [
        Job(f"f{n}", {"type": "compute", "operation": "fibonacci", "input": n}) for n in range(8)
    ]
    jobs.append(Job("too-big", {"type": "compute", "operation": "fibonacci", "input": 10**6}))
    with Controller(cfg.replace(worker_count=2, max_retry=1), process_pool=True) as ctl:
        ctl.enqueue_jobs(jobs)
        assert ctl.wait_until_idle(WAIT_S)
        assert (ctl.status()["completed"], ctl.status()["dead"]) == (8, 1)
        assert "out of range" in ctl.dead_reasons()["too-big"]
    assert ctl.leaked_threads == []


def test_prefetch_moves_queued_tasks_to_the_replacement_of_a_stuck_worker(cfg: Config) -> None:
    config = cfg.replace(worker_count=1, task_timeout_s=0.3, max_retry=3)
    with Controller(config, prefetch=4) as ctl:
        ctl.enqueue_jobs([Job("stuck", {"kind": "stuck"}), *noop_jobs(3)])
        assert ctl.wait_until_idle(WAIT_S)
        s = ctl.status()
        assert (s["completed"], s["dead"]) == (3, 1)
        assert ctl.workers_alive() == 1 and s["abandoned_workers"] == 3
        ctl.enqueue_jobs(noop_jobs(200, "more"))
        assert ctl.wait_until_idle(WAIT_S)
        assert ctl.status()["completed"] == 203
        ctl.check()
    assert ctl.leaked_threads == []
