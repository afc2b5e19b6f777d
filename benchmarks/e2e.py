"""End to end through the threaded runtime (issue #3's Benchmarks section).

* ``e2e.controller_prefetch1`` / ``e2e.controller_prefetch16``: durable no-op jobs/s through
  a real ``Controller`` (submit -> dispatch -> ack, every transition durable under policy
  ``batch``), 8 workers, ``enqueue_jobs`` in batches of 500 from one thread; timed from the
  first submit until ``wait_until_idle`` returns (start-up, recovery and stop not included);
* baselines, measured in the same run, one thread each:
  ``peer.persistqueue_ack_e2e`` (persist-queue ``SQLiteAckQueue`` put + get + ack per job,
  the row the ``durable`` group prints; measured once per run and shared),
  ``e2e.sqlite3_3commits`` (stdlib sqlite3, WAL journal, ``synchronous=FULL``: INSERT,
  UPDATE to in_flight, UPDATE to done, each committed), and ``e2e.beanstalkd`` (``-f 0``,
  put + reserve + delete over its text protocol) only when ``/usr/bin/beanstalkd`` exists,
  and ``peer.redis_reliable_e2e`` (``--appendfsync always``, LPUSH + LMOVE + LREM per job,
  the row the ``durable`` group prints; see ``benchmarks.redis_peer``) only when
  ``/usr/bin/redis-server`` exists;
* ``e2e.crash_recovery``: the seed's crash test: ``python -m phase1 run`` on ~300 mixed jobs
  as a subprocess, SIGKILLed part way, restarted; the figure is the worst "recovered in X
  ms" the restarts print on stderr, against the seed's 3 s bar.
"""

from __future__ import annotations

import gc
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import orjson

from benchmarks._harness import REPO, Context, Result, ratio, temp_dir
from benchmarks.durable import _config, _job, _sqlite_open, persistqueue_e2e
from benchmarks.redis_peer import redis_reliable_e2e
from phase1.jobs import Job, generate_mixed_jobs

WORKERS = 8
SUBMIT_BATCH = 500
TARGET_JOBS_S = 20_000
TARGET_X = 10
BEANSTALKD = "/usr/bin/beanstalkd"
RECOVERY_BAR_MS = 3_000.0  # the seed's bar


# == baselines ===============================================================================
def sqlite_three_commits(ctx: Context) -> float:
    """jobs/s: INSERT, UPDATE in_flight, UPDATE done, one COMMIT after each (FULL, WAL)."""

    def measure() -> float:
        window = ctx.seconds(3.0)
        with temp_dir("sqlite3x3") as d:
            conn = _sqlite_open(os.path.join(d, "q.db"))
            insert = "INSERT INTO jobs (id, payload, state) VALUES (?, ?, 'pending')"
            take = "UPDATE jobs SET state = 'in_flight' WHERE id = ?"
            done = "UPDATE jobs SET state = 'done' WHERE id = ?"
            gc.collect()
            n = 0
            started = time.perf_counter()
            deadline = started + window
            while True:
                job = _job(n)
                conn.execute(insert, (job.id, orjson.dumps(job.payload)))
                conn.commit()
                conn.execute(take, (job.id,))
                conn.commit()
                conn.execute(done, (job.id,))
                conn.commit()
                n += 1
                if n % 8 == 0 and time.perf_counter() >= deadline:
                    break
            elapsed = time.perf_counter() - started
            conn.close()
        return n / elapsed

    return float(ctx.shared("sqlite3.3commits", measure))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Beanstalk:
    """The three commands we need of beanstalkd's text protocol (no client library)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.file = self.sock.makefile("rb")

    def _line(self) -> bytes:
        return self.file.readline().rstrip(b"\r\n")

    def put(self, body: bytes) -> None:
        self.sock.sendall(b"put 0 0 60 %d\r\n%s\r\n" % (len(body), body))
        line = self._line()
        if not line.startswith(b"INSERTED"):
            raise RuntimeError(f"beanstalkd put: {line!r}")

    def reserve(self) -> int:
        self.sock.sendall(b"reserve\r\n")
        line = self._line()
        if not line.startswith(b"RESERVED"):
            raise RuntimeError(f"beanstalkd reserve: {line!r}")
        _, job_id, size = line.split()
        self.file.read(int(size) + 2)
        return int(job_id)

    def delete(self, job_id: int) -> None:
        self.sock.sendall(b"delete %d\r\n" % job_id)
        line = self._line()
        if line != b"DELETED":
            raise RuntimeError(f"beanstalkd delete: {line!r}")

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def beanstalkd_e2e(ctx: Context) -> float | None:
    """jobs/s: put + reserve + delete per job against ``beanstalkd -f 0`` (fsync every
    write); ``None`` when it is not installed (never installed by this harness)."""
    if not os.path.exists(BEANSTALKD):
        return None

    def measure() -> float:
        window = ctx.seconds(3.0)
        with temp_dir("beanstalkd") as d:
            port = _free_port()
            proc = subprocess.Popen(
                [BEANSTALKD, "-l", "127.0.0.1", "-p", str(port), "-b", d, "-f", "0"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                client = None
                for _ in range(200):
                    try:
                        client = _Beanstalk(port)
                        break
                    except OSError:
                        time.sleep(0.01)
                if client is None:
                    raise RuntimeError("beanstalkd did not accept connections")
                body = orjson.dumps(_job(0).payload)
                for _ in range(10):
                    client.put(body)
                    client.delete(client.reserve())
                n = 0
                started = time.perf_counter()
                deadline = started + window
                while True:
                    client.put(orjson.dumps(_job(n).payload))
                    client.delete(client.reserve())
                    n += 1
                    if n % 8 == 0 and time.perf_counter() >= deadline:
                        break
                elapsed = time.perf_counter() - started
                client.close()
            finally:
                proc.terminate()
                proc.wait(10)
        return n / elapsed

    result: float | None = ctx.shared("peer.beanstalkd", measure)
    return result


def bench_sqlite(ctx: Context) -> list[Result]:
    per_s = sqlite_three_commits(ctx)
    return [
        ctx.result(
            name="e2e.sqlite3_3commits",
            figure=per_s,
            unit="jobs/s",
            notes="baseline: stdlib sqlite3 (WAL journal, synchronous=FULL), one thread: "
            "INSERT, UPDATE in_flight, UPDATE done per job, a COMMIT after each",
        )
    ]


def bench_beanstalkd(ctx: Context) -> list[Result]:
    per_s = beanstalkd_e2e(ctx)
    if per_s is None:
        return [
            ctx.result(
                name="e2e.beanstalkd",
                figure=None,
                unit="jobs/s",
                notes=f"skipped (not installed: no {BEANSTALKD})",
            )
        ]
    return [
        ctx.result(
            name="e2e.beanstalkd",
            figure=per_s,
            unit="jobs/s",
            notes="baseline: beanstalkd -f 0 (fsync every write), put + reserve + delete per "
            "job over its text protocol, one client",
        )
    ]


# == the Controller ==========================================================================
def controller_run(
    folder: str, n: int, prefetch: int, probe: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """Submit ``n`` no-op jobs in batches of ``SUBMIT_BATCH`` to a started Controller and
    wait until idle; the seconds from the first submit to idle, and the final counts.
    ``probe("start")`` / ``probe("idle")`` bracket the timed part (``benchmarks.profiles``
    reads CPU counters there)."""
    from phase1.runtime.controller import Controller

    config = _config(
        folder,
        worker_count=WORKERS,
        commit_policy="batch",
        workspace=os.path.join(folder, "workspace"),
    )
    batches = [
        [Job(f"e2e-{i:07d}", {"kind": "noop"}) for i in range(s, min(s + SUBMIT_BATCH, n))]
        for s in range(0, n, SUBMIT_BATCH)
    ]
    ctl = Controller(config, prefetch=prefetch)
    ctl.start()
    try:
        gc.collect()
        if probe is not None:
            probe("start")
        started = time.perf_counter()
        # Drop each batch once submitted, like a producer that does not keep what it sent:
        # the jobs are built beforehand only to keep their construction out of the figure,
        # and 60,000 jobs kept alive here would be walked by every full GC of the run.
        batches.reverse()
        while batches:
            ctl.enqueue_jobs(batches.pop())
        submitted = time.perf_counter()
        if not ctl.wait_until_idle(600):
            raise RuntimeError(f"not idle after 600 s: {ctl.status()}")
        elapsed = time.perf_counter() - started
        if probe is not None:
            probe("idle")
        fsyncs = ctl.durable.fsyncs if ctl.durable is not None else 0
        status = ctl.status()
    finally:
        ctl.stop()
    if status["completed"] != n:
        raise RuntimeError(f"expected {n} completed, got {status}")
    return {
        "elapsed_s": elapsed,
        "submit_s": submitted - started,
        "fsyncs": fsyncs,
        "status": status,
        "config": config,
    }


def _bench_controller(ctx: Context, prefetch: int) -> list[Result]:
    pq = persistqueue_e2e(ctx)
    sq = sqlite_three_commits(ctx)
    bs = beanstalkd_e2e(ctx)
    rd = redis_reliable_e2e(ctx)
    n = ctx.size(60_000, smoke=1_000, minimum=SUBMIT_BATCH)
    with temp_dir(f"e2e-ctl-p{prefetch}") as d:
        run = controller_run(d, n, prefetch)
    per_s = n / run["elapsed_s"]
    peers = {
        "persist-queue": pq,
        "sqlite3 3 commits": sq,
        "beanstalkd": bs,
        "redis": None if rd is None else float(rd["per_s"]),
    }
    measured = {k: v for k, v in peers.items() if v is not None}
    strongest = max(measured, key=lambda k: measured[k]) if measured else ""
    met = per_s >= TARGET_JOBS_S and all(per_s >= TARGET_X * v for v in measured.values())
    cfg = run["config"]
    ratios = "; ".join(
        f"{k} {v:,.0f} jobs/s ({per_s / v:.1f}x)"
        if v is not None
        else f"{k} skipped (not installed)"
        for k, v in peers.items()
    )
    return [
        ctx.result(
            name=f"e2e.controller_prefetch{prefetch}",
            figure=per_s,
            unit="jobs/s",
            baseline=measured.get(strongest),
            baseline_label=f"strongest peer: {strongest}" if strongest else "",
            ratio=ratio(per_s, measured.get(strongest)),
            target=f">= {TARGET_JOBS_S} jobs/s and >= {TARGET_X}x every peer",
            met=met,
            notes=f"{n} noop jobs, {WORKERS} workers, prefetch {prefetch}, enqueue_jobs x "
            f"{SUBMIT_BATCH}; policy batch (batch_size {cfg.batch_size}, batch_interval "
            f"{cfg.batch_interval_s * 1e3:g} ms, snapshot every {cfg.snapshot_interval_s:g} s); "
            f"submitting took {run['submit_s']:.2f} s of {run['elapsed_s']:.2f} s; "
            f"{run['fsyncs']} fsyncs ({3 * n / max(run['fsyncs'], 1):.0f} transitions/fsync); "
            f"peers: {ratios}",
            extra={"fsyncs": run["fsyncs"], "submit_s": run["submit_s"], "jobs": n},
        )
    ]


def bench_prefetch1(ctx: Context) -> list[Result]:
    return _bench_controller(ctx, 1)


def bench_prefetch16(ctx: Context) -> list[Result]:
    return _bench_controller(ctx, 16)


# == the seed's crash test: SIGKILL part way, restart, recovery time ============================
_RECOVERED = re.compile(rb"phase1 run: recovered in ([0-9.]+) ms")


def _spawn(config: str, jobs: str, cwd: str) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "phase1", "run", "--config", config, "--jobs", jobs]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.Popen(
        cmd + ["--until-idle", "--quiet"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        cwd=cwd,
        env=env,
    )


def _await_recovered(proc: subprocess.Popen[bytes]) -> tuple[float, float, str]:
    """Read stderr until the "recovered in X ms" line: (X, seconds since the call, line)."""
    assert proc.stderr is not None
    t = time.perf_counter()
    seen = b""
    while True:
        line = proc.stderr.readline()
        if not line:
            raise RuntimeError(f"phase1 run exited before recovering: {seen.decode()!r}")
        seen += line
        m = _RECOVERED.search(line)
        if m:
            text = line.decode("utf-8", "replace").strip()
            return float(m.group(1)), time.perf_counter() - t, text


def bench_crash_recovery(ctx: Context) -> list[Result]:
    total = ctx.size(300, smoke=120, minimum=120)
    kills = {"full": 5, "quick": 2, "smoke": 1}[ctx.mode]
    rng = random.Random(20250101)
    recovered_ms: list[float] = []
    startup_s: list[float] = []
    lines: list[str] = []
    with temp_dir("crash") as d:
        data = os.path.join(d, "data")
        config = os.path.join(d, "phase1.yaml")
        values = {
            "wal_path": os.path.join(data, "wal.log"),
            "snapshot_path": os.path.join(data, "snapshot.json"),
            "workspace": os.path.join(data, "workspace"),
            "worker_count": 2,
            "task_timeout": "2s",
            "snapshot_interval": "500ms",
            "timeout_check_interval": "100ms",
            "max_retry": 6,
            "commit_policy": "batch",
        }
        with open(config, "wb") as f:
            f.write(orjson.dumps(values))  # JSON is YAML
        jobs = os.path.join(d, "jobs.json")
        with open(jobs, "wb") as f:
            f.write(orjson.dumps(generate_mixed_jobs(total, rng)))
        proc = _spawn(config, jobs, d)
        _await_recovered(proc)
        for _ in range(kills):
            time.sleep(rng.uniform(0.15, 0.35))  # part way through (a run takes ~1-2 s)
            if proc.poll() is not None:
                break  # finished before the kill: nothing left to crash
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
            assert proc.stderr is not None
            proc.stderr.close()
            proc = _spawn(config, jobs, d)
            ms, s, text = _await_recovered(proc)
            recovered_ms.append(ms)
            startup_s.append(s)
            lines.append(text)
        assert proc.stderr is not None
        rest = proc.stderr.read()
        proc.stderr.close()
        code = proc.wait(120)
        if code != 0:
            raise RuntimeError(f"last phase1 run exited {code}: {rest.decode()[-500:]!r}")
        shutil.rmtree(data, ignore_errors=True)
    if not recovered_ms:
        raise RuntimeError("every run finished before its kill: no restart measured")
    worst = max(recovered_ms)
    worst_line = lines[recovered_ms.index(worst)].removeprefix("phase1 run: ")
    listed = ", ".join(f"{x:.1f}" for x in recovered_ms)
    return [
        ctx.result(
            name="e2e.crash_recovery",
            figure=worst,
            unit="ms",
            baseline=RECOVERY_BAR_MS,
            baseline_label="seed's 3 s bar",
            ratio=ratio(worst, RECOVERY_BAR_MS, lower_is_better=True),
            target="<= 3000 ms",
            met=worst <= RECOVERY_BAR_MS,
            notes=f"phase1 run --until-idle on {total} mixed jobs (2 workers, policy batch, "
            f"snapshot every 500 ms), SIGKILL 0.15-0.35 s after recovering, restart; worst of "
            f"{len(recovered_ms)} restart(s), 'recovered in' ms: {listed}; spawn to that line "
            f"(interpreter start + imports + recovery): max {max(startup_s):.2f} s; the last "
            f"run finished all jobs (exit 0); worst: {worst_line}",
            extra={"recovered_ms": recovered_ms, "spawn_to_recovered_s": startup_s},
        )
    ]


BENCHMARKS = [
    ("e2e.sqlite3_3commits", bench_sqlite),
    ("e2e.beanstalkd", bench_beanstalkd),
    ("e2e.controller_prefetch1", bench_prefetch1),
    ("e2e.controller_prefetch16", bench_prefetch16),
    ("e2e.crash_recovery", bench_crash_recovery),
]

ROW_NAMES = [name for name, _ in BENCHMARKS]
