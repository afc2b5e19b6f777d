"""The durable core's targets: enqueue throughput, ack latency, recovery, memory, peers.

Baselines are measured in the same run (``Context.shared`` measures each once):

* ``sqlite3 1 thread``: stdlib sqlite3, WAL mode, ``PRAGMA synchronous=FULL``, one
  ``INSERT`` + ``COMMIT`` per job into ``jobs(id TEXT PRIMARY KEY, payload BLOB, state TEXT)``;
* ``sqlite3 16 threads``: the same with 16 producer threads sharing one connection under a
  lock (the strong way to run sqlite from threads: per-thread connections fall into
  sqlite's busy-handler sleeps, which would flatter us);
* recovery: reading the same WAL files and ``orjson.loads`` of every line (the floor of
  any JSON-lines recovery: no checks, no records, no replay);
* memory: the same 1,000,000 ``Job`` objects held in a plain list (the core's overhead);
* end to end: persist-queue's ``SQLiteAckQueue`` (put, get, ack per job, its defaults);
* redis (``benchmarks.redis_peer``, when ``/usr/bin/redis-server`` exists): ``LPUSH`` per
  job against sqlite3 1 thread, and LPUSH + LMOVE + LREM per job against sqlite3's three
  commits per job (``e2e.sqlite3_3commits``), ``--appendfsync always``, one client; and
  16 client threads, one ``LPUSH`` per call, against sqlite3 16 threads (the peer of
  ``durable.threads16_leader``: redis fsyncs once per event-loop pass, its group commit).
"""

from __future__ import annotations

import cProfile
import gc
import io
import json
import os
import pstats
import random
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import orjson

from benchmarks._harness import REPO, Context, Result, percentile, ratio, run_threads, temp_dir
from benchmarks.disk import raw_fsync
from phase1.config import Config
from phase1.jobs import Job

THREADS = 16


def _job(i: int, prefix: str = "task") -> Job:
    """A small job shaped like the seed's ``generateTestJobs`` (payload ``{index, value}``)."""
    return Job(id=f"{prefix}-{i:04d}", payload={"index": i, "value": (i * 7919) % 1000})


def _config(folder: str, **changes: Any) -> Config:
    return Config().replace(
        wal_path=os.path.join(folder, "wal.log"),
        snapshot_path=os.path.join(folder, "snapshot.json"),
        **changes,
    )


# == baselines: stdlib sqlite3 ===========================================================
def _sqlite_open(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, check_same_thread=False, timeout=60)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE IF NOT EXISTS jobs (id TEXT PRIMARY KEY, payload BLOB, state TEXT)")
    conn.commit()
    return conn


_INSERT = "INSERT INTO jobs (id, payload, state) VALUES (?, ?, 'pending')"


def sqlite_one_thread(ctx: Context) -> float:
    """jobs/s: one INSERT + COMMIT per job, one thread (shared by several benchmarks)."""

    def measure() -> float:
        window = ctx.seconds(3.0)
        with temp_dir("sqlite1") as d:
            conn = _sqlite_open(os.path.join(d, "q.db"))
            n = 0
            started = time.perf_counter()
            deadline = started + window
            while True:
                job = _job(n)
                conn.execute(_INSERT, (job.id, orjson.dumps(job.payload)))
                conn.commit()
                n += 1
                if n % 16 == 0 and time.perf_counter() >= deadline:
                    break
            elapsed = time.perf_counter() - started
            conn.close()
        return n / elapsed

    return float(ctx.shared("sqlite3.1thread", measure))


def sqlite_threads(ctx: Context, *, pinned: bool = False) -> float:
    """jobs/s: 16 producer threads, one INSERT + COMMIT per job, one locked connection."""
    return _sqlite_threads_run(ctx, pinned=pinned)["per_s"]


def _sqlite_threads_run(ctx: Context, *, pinned: bool = False) -> dict[str, float]:
    """``sqlite_threads``' run, measured once (per ``pinned``): jobs/s and process CPU
    microseconds per job.  ``pinned``: every thread on one CPU, as ``cpu_affinity: [N]``."""

    def measure() -> dict[str, float]:
        window = ctx.seconds(3.0)
        with temp_dir("sqlite16") as d:
            conn = _sqlite_open(os.path.join(d, "q.db"))
            lock = threading.Lock()

            def produce(t: int, deadline: float) -> int:
                n = 0
                while time.perf_counter() < deadline:
                    job = _job(n, f"t{t}")
                    data = orjson.dumps(job.payload)
                    with lock:
                        conn.execute(_INSERT, (job.id, data))
                        conn.commit()
                    n += 1
                return n

            total, elapsed, cpu_s = run_threads(produce, window, THREADS)
            conn.close()
        return {"per_s": total / elapsed, "cpu_us_per_job": 1e6 * cpu_s / max(total, 1)}

    key = "sqlite3.16threads.pinned" if pinned else "sqlite3.16threads"
    result: dict[str, float] = ctx.shared(
        key, (lambda: _on_one_cpu(measure)) if pinned else measure
    )
    return result


def _on_one_cpu(fn: Callable[[], Any]) -> Any:
    """``fn()`` with every thread of this process pinned to one CPU (then unpinned)."""
    from phase1.runtime.affinity import available_cpus, pin_process, restore

    before = pin_process([min(available_cpus())])
    try:
        return fn()
    finally:
        restore(before)


# == DurableQueue ===========================================================================
class FsyncLog:
    """``DurableQueue(on_fsync=...)``: how long the queue spent in fsync (the disk's share)."""

    def __init__(self) -> None:
        self.lat: list[float] = []

    def __call__(self, elapsed: float, synced: int) -> None:
        self.lat.append(elapsed)

    def summary(self, wall_s: float) -> str:
        if not self.lat:
            return "no fsync"
        lat = sorted(self.lat)
        total = sum(lat)
        return (
            f"fsync p50 {percentile(lat, 50) * 1e3:.3f} ms p99 {percentile(lat, 99) * 1e3:.3f} ms, "
            f"{total:.2f} s of {wall_s:.2f} s wall in fsync ({100 * total / wall_s:.0f}%)"
        )


def _durable(
    folder: str, fsync_log: FsyncLog | None = None, *, disk: Any = None, **changes: Any
) -> Any:
    from phase1.runtime.durable import DurableQueue

    return DurableQueue(_config(folder, **changes), on_fsync=fsync_log, disk=disk)


def _timed_disk(log: FsyncLog) -> Any:
    """An ``OsDisk`` that logs every fsync (policy ``always`` fsyncs inside ``append``)."""
    from phase1.disk import OsDisk

    class TimedDisk(OsDisk):
        def fsync(self, path: str) -> None:
            t = time.perf_counter()
            super().fsync(path)
            log(time.perf_counter() - t, 0)

    return TimedDisk()


BATCH_PRODUCERS = 4


def bench_submit_batch(ctx: Context) -> list[Result]:
    """DurableQueue.submit with 100 jobs per call, policy batch: one caller thread, then
    ``BATCH_PRODUCERS`` caller threads sharing the same number of calls."""
    base = sqlite_one_thread(ctx)
    calls = ctx.size(2_000, smoke=20)
    batches = [[_job(c * 100 + i) for i in range(100)] for c in range(calls)]
    with temp_dir("submit-batch") as d:
        log = FsyncLog()
        q = _durable(d, log, commit_policy="batch", batch_interval_s=0.0)
        gc.collect()
        started = time.perf_counter()
        for batch in batches:
            q.submit(batch)
        elapsed = time.perf_counter() - started
        fsyncs = q.fsyncs
        q.close()
    per_s = calls * 100 / elapsed

    n = BATCH_PRODUCERS
    mine = [batches[t::n] for t in range(n)]
    with temp_dir("submit-batch-threads") as d:
        log_n = FsyncLog()
        q = _durable(d, log_n, commit_policy="batch", batch_interval_s=0.0)

        def produce(t: int, deadline: float) -> int:
            for batch in mine[t]:
                q.submit(batch)
            return len(mine[t]) * 100

        total, elapsed_n, cpu_n = run_threads(produce, 0.0, n)
        fsyncs_n, synced_n = q.fsyncs, q.records_synced
        q.close()
    per_s_n = total / elapsed_n
    return [
        ctx.result(
            name="durable.submit_batch100",
            figure=per_s,
            unit="jobs/s",
            baseline=base,
            baseline_label="sqlite3 1 thread, commit/job",
            ratio=ratio(per_s, base),
            target=">= 150000 jobs/s and >= 20x",
            met=per_s >= 150_000 and per_s >= 20 * base,
            notes=f"ONE caller thread: {calls} calls x 100 jobs, {fsyncs} fsyncs (each call "
            f"waits for its own, so no fsync overlaps encoding); {log.summary(elapsed)}; "
            f"excluding fsync: {calls * 100 / max(elapsed - sum(log.lat), 1e-9):,.0f} jobs/s",
        ),
        ctx.result(
            name="durable.submit_batch100_threads",
            figure=per_s_n,
            unit="jobs/s",
            baseline=base,
            baseline_label="sqlite3 1 thread, commit/job",
            ratio=ratio(per_s_n, base),
            target=">= 150000 jobs/s and >= 20x",
            met=per_s_n >= 150_000 and per_s_n >= 20 * base,
            notes=f"{n} caller threads, the same {calls} calls x 100 jobs split between them "
            f"(one caller's fsync overlaps another's encoding): {fsyncs_n} fsyncs "
            f"({synced_n / max(fsyncs_n, 1):.0f} records/fsync); {log_n.summary(elapsed_n)}; "
            f"CPU {1e6 * cpu_n / max(total, 1):.1f} us/job",
            extra={
                "cpu_us_per_job": 1e6 * cpu_n / max(total, 1),
                "records_per_fsync": synced_n / max(fsyncs_n, 1),
            },
        ),
    ]


def _threaded_submit(
    ctx: Context,
    name: str,
    target: str,
    floor: float | None,
    x: float | None,
    *,
    pinned: bool = False,
    **changes: Any,
) -> Result:
    base = sqlite_threads(ctx, pinned=pinned)
    base_cpu = _sqlite_threads_run(ctx, pinned=pinned)["cpu_us_per_job"]
    window = ctx.seconds(3.0)

    def measure() -> tuple[int, float, float, int, int]:
        with temp_dir("submit-16") as d:
            log = FsyncLog()
            q = _durable(d, log, commit_policy="batch", **changes)

            def produce(t: int, deadline: float) -> int:
                n = 0
                while time.perf_counter() < deadline:
                    q.submit([_job(n, f"t{t}")])
                    n += 1
                return n

            total, elapsed, cpu_s = run_threads(produce, window, THREADS)
            fsyncs, synced = q.fsyncs, q.records_synced
            q.close()
        logs.append(log)
        return total, elapsed, cpu_s, fsyncs, synced

    logs: list[FsyncLog] = []
    total, elapsed, cpu_s, fsyncs, synced = _on_one_cpu(measure) if pinned else measure()
    log = logs[0]
    per_s = total / elapsed
    met = None
    if floor is not None and x is not None:
        met = per_s >= floor and per_s >= x * base
    return ctx.result(
        name=name,
        figure=per_s,
        unit="jobs/s",
        baseline=base,
        baseline_label="sqlite3 16 threads, commit/job",
        ratio=ratio(per_s, base),
        target=target,
        met=met,
        notes=f"{THREADS} threads x 1 job/call for {window:g} s: {total} jobs, {fsyncs} fsyncs "
        f"({synced / max(fsyncs, 1):.1f} records/fsync); {log.summary(elapsed)}; "
        f"CPU {1e6 * cpu_s / max(total, 1):.1f} us/job (sqlite3: {base_cpu:.1f})",
        extra={
            "cpu_us_per_job": 1e6 * cpu_s / max(total, 1),
            "baseline_cpu_us_per_job": base_cpu,
            "records_per_fsync": synced / max(fsyncs, 1),
        },
    )


def bench_threads_leader(ctx: Context) -> list[Result]:
    return [
        _threaded_submit(
            ctx,
            "durable.threads16_leader",
            ">= 30000 jobs/s and >= 4x",
            30_000,
            4,
            batch_interval_s=0.0,
            batch_size=100,
        )
    ]


def bench_threads_pinned(ctx: Context) -> list[Result]:
    """The same 16 producers with every thread on one CPU (config ``cpu_affinity: [N]``);
    the sqlite3 baseline is pinned alike."""
    if not hasattr(os, "sched_setaffinity"):
        return []  # Linux only: the row is absent elsewhere
    r = _threaded_submit(
        ctx,
        "durable.threads16_pinned",
        ">= 30000 jobs/s and >= 4x",
        30_000,
        4,
        pinned=True,
        batch_interval_s=0.0,
        batch_size=100,
    )
    r.notes = "every thread pinned to one CPU (cpu_affinity); " + r.notes
    r.baseline_label = "sqlite3 16 threads pinned alike, commit/job"
    return [r]


def bench_threads_seed(ctx: Context) -> list[Result]:
    r = _threaded_submit(
        ctx,
        "durable.threads16_seed10ms",
        "(measured for comparison)",
        None,
        None,
        batch_interval_s=0.010,
        batch_size=100,
    )
    r.notes = "seed's strategy: batch_interval 10ms, batch_size 100; " + r.notes
    return [r]


def bench_always(ctx: Context) -> list[Result]:
    """One synchronous caller, policy always, one job per call: jobs/s and ack latency."""
    base = sqlite_one_thread(ctx)
    disk = raw_fsync(ctx)
    window = ctx.seconds(3.0)
    lat: list[float] = []
    with temp_dir("always") as d:
        log = FsyncLog()
        q = _durable(d, disk=_timed_disk(log), commit_policy="always")
        for i in range(20):  # warm-up
            q.submit([_job(i, "warm")])
        log.lat.clear()
        gc.collect()
        n = 0
        started = time.perf_counter()
        deadline = started + window
        pc = time.perf_counter
        while True:
            job = _job(n)
            t = pc()
            q.submit([job])
            t2 = pc()
            lat.append(t2 - t)
            n += 1
            if t2 >= deadline:
                break
        elapsed = time.perf_counter() - started
        q.close()
    lat.sort()
    per_s = n / elapsed
    p50, p99 = percentile(lat, 50) * 1e3, percentile(lat, 99) * 1e3
    note = f"{n} submits in {elapsed:.2f} s; max {lat[-1] * 1e3:.3f} ms; {log.summary(elapsed)}"
    return [
        ctx.result(
            name="durable.always_sync",
            figure=per_s,
            unit="jobs/s",
            baseline=base,
            baseline_label="sqlite3 1 thread, commit/job",
            ratio=ratio(per_s, base),
            target=">= 5000 jobs/s",
            met=per_s >= 5_000,
            notes=note,
        ),
        ctx.result(
            name="durable.always_p50",
            figure=p50,
            unit="ms",
            baseline=disk["p50_ms"],
            baseline_label="disk.fsync_p50",
            ratio=ratio(p50, disk["p50_ms"], lower_is_better=True),
            notes=note,
        ),
        ctx.result(
            name="durable.always_p99",
            figure=p99,
            unit="ms",
            baseline=disk["p99_ms"],
            baseline_label="disk.fsync_p99",
            ratio=ratio(p99, disk["p99_ms"], lower_is_better=True),
            target="<= 1 ms",
            met=p99 <= 1.0,
            notes=note,
        ),
    ]


# == recovery =================================================================================
def build_recovery_fixture(folder: str, records: int, snapshot_jobs: int) -> Config:
    """A snapshot of ``snapshot_jobs`` pending jobs, then a WAL of exactly ``records``
    records continuing after it (ENQUEUE/DISPATCH/ACK in blocks of 100, as the seed's
    workers would write them), written with policy ``never`` and one final sync."""
    from phase1.core import QueueCore
    from phase1.disk import OsDisk
    from phase1.jobs import generate_test_jobs
    from phase1.snapshot import write_snapshot
    from phase1.wal import WalWriter

    config = _config(folder)
    disk = OsDisk()
    core = QueueCore(max_retry=config.max_retry, task_timeout_s=config.task_timeout_s)
    rng = random.Random(1)
    now = 1_704_103_200.0  # 2024-01-01T10:00:00Z
    for start in range(0, snapshot_jobs, 1000):
        core.enqueue(generate_test_jobs(min(1000, snapshot_jobs - start), rng, start=start), now)
    write_snapshot(disk, config.snapshot_path, core.export(), keep=config.snapshots_kept)

    writer = WalWriter(
        disk,
        config.wal_path,
        next_seq=core.last_seq + 1,
        policy="never",
        batch_size=config.batch_size,
        batch_interval_s=config.batch_interval_s,
        segment_bytes=config.segment_bytes,
    )
    triples, extra = divmod(records, 3)
    next_id = snapshot_jobs
    done = 0
    while done < triples:
        block = min(100, triples - done)
        now += 0.001
        jobs = generate_test_jobs(block, rng, start=next_id)
        next_id += block
        recs = list(core.enqueue(jobs, now).records)
        step = core.dispatch(now, worker_id=done % 8, limit=block)
        recs.extend(step.records)
        for eff in step.effects:
            recs.extend(core.ack(eff.job.id, eff.attempt, now).records)  # type: ignore[union-attr]
        writer.append(recs, now)
        done += block
    if extra:
        writer.append(core.enqueue(generate_test_jobs(extra, rng, start=next_id), now).records, now)
    writer.sync()
    writer.close()
    return config


def _json_floor(paths: list[str]) -> tuple[float, int]:
    """Read the files and orjson.loads every line: (seconds, lines)."""
    gc.collect()
    started = time.perf_counter()
    n = 0
    loads = orjson.loads
    for p in paths:
        with open(p, "rb") as f:
            data = f.read()
        for line in data.split(b"\n"):
            if line:
                loads(line)
                n += 1
    return time.perf_counter() - started, n


def bench_recovery(ctx: Context) -> list[Result]:
    from phase1.core import QueueCore
    from phase1.disk import OsDisk
    from phase1.recovery import recover
    from phase1.snapshot import load_snapshot
    from phase1.wal import list_segments, read_wal, record_of

    n_records = ctx.size(1_000_000, smoke=3_000)
    n_snap = ctx.size(100_000, smoke=300)
    with temp_dir("recovery") as d:
        t = time.perf_counter()
        config = build_recovery_fixture(d, n_records, n_snap)
        build_s = time.perf_counter() - t
        segments = list_segments(OsDisk(), config.wal_path)
        wal_bytes = sum(os.path.getsize(p) for p in segments)
        snap_bytes = os.path.getsize(config.snapshot_path)

        # 1. the figure: recover() as the runtime calls it, warm page cache, default GC
        gc.collect()
        started = time.perf_counter()
        core, report = recover(OsDisk(), config)
        seconds = time.perf_counter() - started
        if report.records_replayed != n_records or report.snapshot_jobs != n_snap:
            raise AssertionError(
                f"fixture mismatch: replayed {report.records_replayed}/{n_records}, "
                f"snapshot {report.snapshot_jobs}/{n_snap}"
            )
        counts = core.counts()
        del core, report

        # 2. the split, step by step as recover() does it (GC paused, as recover does)
        split: dict[str, float] = {}
        gc.collect()
        gc.disable()
        disk = OsDisk()
        t0 = time.perf_counter()
        loaded = load_snapshot(disk, config.snapshot_path, keep=config.snapshots_kept)
        t1 = time.perf_counter()
        assert loaded.state is not None
        core = QueueCore.restore(
            loaded.state, max_retry=config.max_retry, task_timeout_s=config.task_timeout_s
        )
        t2 = time.perf_counter()
        read = read_wal(disk, config.wal_path, after_seq=core.last_seq, rows=True)
        t3 = time.perf_counter()
        core.replay(read.records, to_record=record_of, enqueue_ids=read.enqueue_ids)
        t4 = time.perf_counter()
        core.check(settled=False)
        core.settle(0.0)
        core.check()
        t5 = time.perf_counter()
        split = {
            "snapshot_load_s": t1 - t0,
            "snapshot_restore_s": t2 - t1,
            "wal_read_decode_s": t3 - t2,
            "replay_s": t4 - t3,
            "check_settle_s": t5 - t4,
        }
        del core, read, loaded
        gc.enable()

        # 3. baseline: read the files + orjson.loads per line
        floor_s, floor_lines = _json_floor(segments + [config.snapshot_path])

        # 4. one cProfile run, top 15 to a file
        prof = cProfile.Profile()
        gc.collect()
        prof.enable()
        recover(OsDisk(), config)
        prof.disable()
        profile_path = ctx.out_dir / "recovery-profile.txt"
        buf = io.StringIO()
        buf.write(
            f"# cProfile of phase1.recovery.recover(OsDisk(), config): {n_records} WAL records, "
            f"{n_snap}-job snapshot\n# command: {ctx.command}\n\n## top 15 by tottime\n"
        )
        pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(15)
        buf.write("\n## top 15 by cumulative\n")
        pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(15)
        profile_path.parent.mkdir(parents=True, exist_ok=True)
        profile_path.write_text(buf.getvalue(), encoding="utf-8")

    rate = n_records / seconds
    target_s = 1.5 * n_records / 1_000_000  # scales with --quick / --smoke
    split_txt = ", ".join(f"{k[:-2]} {v:.3f}s" for k, v in split.items())
    note = (
        f"{n_records} records in {len(segments)} segment(s), {wal_bytes / 1e6:.0f} MB + "
        f"{snap_bytes / 1e6:.1f} MB snapshot ({n_snap} jobs); fixture built in {build_s:.1f} s; "
        f"after: {counts['pending']} pending {counts['completed']} completed"
    )
    extra = {"split": split, "profile": str(profile_path)}
    return [
        ctx.result(
            name="durable.recovery",
            figure=seconds,
            unit="s",
            baseline=floor_s,
            baseline_label="read + orjson.loads per line",
            ratio=ratio(seconds, floor_s, lower_is_better=True),
            target=f"<= {target_s:g} s",
            met=seconds <= target_s,
            notes=note,
            extra=extra,
        ),
        ctx.result(
            name="durable.recovery_rate",
            figure=rate,
            unit="records/s",
            baseline=floor_lines / floor_s,
            baseline_label="read + orjson.loads per line",
            ratio=ratio(rate, floor_lines / floor_s),
            target=">= 650000 records/s",
            met=rate >= 650_000,
            notes=f"split: {split_txt}; profile {profile_path}",
            extra=extra,
        ),
    ] + [
        ctx.result(
            name=f"durable.recovery_split.{k[:-2]}",
            figure=v,
            unit="s",
            notes="share of a separate step-by-step run (same files)",
        )
        for k, v in split.items()
    ]


# == memory (fresh subprocess) ================================================================
_MEMPROBE = r"""
import gc, json, random, sys
import psutil
from phase1.core import QueueCore
from phase1.jobs import generate_test_jobs
mode, n = sys.argv[1], int(sys.argv[2])
proc = psutil.Process()
gc.collect()
before = proc.memory_info().rss
rng = random.Random(1)
if mode in ("core", "packed"):
    held = QueueCore(pack_payloads=True) if mode == "packed" else QueueCore()  # the default: auto
    for start in range(0, n, 10_000):
        held.enqueue(generate_test_jobs(min(10_000, n - start), rng, start=start), 1.0)
    assert held.counts()["pending"] == n
else:
    held = []
    for start in range(0, n, 10_000):
        held.extend(generate_test_jobs(min(10_000, n - start), rng, start=start))
gc.collect()
after = proc.memory_info().rss
print(json.dumps({"before": before, "after": after, "n": len(held) if mode == "jobs" else n}))
"""


def _memprobe(mode: str, n: int) -> dict[str, int]:
    env = dict(os.environ, PYTHONHASHSEED="0")
    out = subprocess.run(
        [sys.executable, "-c", _MEMPROBE, mode, str(n)],
        check=True,
        capture_output=True,
        text=True,
        cwd=str(REPO),
        env=env,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def bench_memory(ctx: Context) -> list[Result]:
    from phase1.core import PACK_ABOVE

    n = ctx.size(1_000_000, smoke=10_000)
    core = _memprobe("core", n)
    plain = _memprobe("jobs", n)
    grow = (core["after"] - core["before"]) / 1e6
    grow_plain = (plain["after"] - plain["before"]) / 1e6
    packed = _memprobe("packed", n)
    grow_packed = (packed["after"] - packed["before"]) / 1e6
    target_mb = 500 * n / 1_000_000
    return [
        ctx.result(
            name="durable.memory_pending",
            figure=grow,
            unit="MB RSS",
            baseline=grow_plain,
            baseline_label="same Jobs in a plain list",
            ratio=ratio(grow, grow_plain, lower_is_better=True),
            target=f"<= {target_mb:g} MB",
            met=grow <= target_mb,
            notes=f"{n} pending generate_test_jobs jobs in a QueueCore (default pack_payloads "
            f"'auto': packed once {PACK_ABOVE:,} wait), fresh subprocess, "
            f"psutil RSS after - before; {grow * 1e6 / n:.0f} B/job (plain list "
            f"{grow_plain * 1e6 / n:.0f} B/job)",
        ),
        ctx.result(
            name="durable.memory_pending_packed",
            figure=grow_packed,
            unit="MB RSS",
            baseline=grow_plain,
            baseline_label="same Jobs in a plain list",
            ratio=ratio(grow_packed, grow_plain, lower_is_better=True),
            target=f"<= {target_mb:g} MB",
            met=grow_packed <= target_mb,
            notes="the same with QueueCore(pack_payloads=True): waiting payloads held packed",
        ),
    ]


# == peers / end to end ======================================================================
def persistqueue_e2e(ctx: Context) -> float | None:
    def measure() -> float | None:
        try:
            from persistqueue import SQLiteAckQueue
        except ImportError:
            return None
        window = ctx.seconds(3.0)
        with temp_dir("persistqueue") as d:
            q = SQLiteAckQueue(os.path.join(d, "pq"))
            for i in range(10):
                q.put(_job(i, "warm").payload)
                q.ack(q.get())
            gc.collect()
            n = 0
            started = time.perf_counter()
            deadline = started + window
            while True:
                q.put(_job(n).payload)
                item = q.get()
                q.ack(item)
                n += 1
                if n % 8 == 0 and time.perf_counter() >= deadline:
                    break
            elapsed = time.perf_counter() - started
            del q
        return n / elapsed

    result: float | None = ctx.shared("peer.persistqueue", measure)
    return result


def bench_peers(ctx: Context) -> list[Result]:
    peer = persistqueue_e2e(ctx)
    out: list[Result] = []
    if peer is None:
        out.append(
            ctx.result(
                name="peer.persistqueue_ack_e2e",
                figure=None,
                unit="jobs/s",
                notes="skipped (not installed)",
            )
        )
    else:
        import persistqueue

        out.append(
            ctx.result(
                name="peer.persistqueue_ack_e2e",
                figure=peer,
                unit="jobs/s",
                baseline=sqlite_one_thread(ctx),
                baseline_label="sqlite3 1 thread, commit/job",
                ratio=ratio(peer, sqlite_one_thread(ctx)),
                notes=f"persist-queue {persistqueue.__version__} SQLiteAckQueue defaults "
                "(auto_commit, WAL journal): put + get + ack per job, one thread",
            )
        )
    out.extend(_redis_rows(ctx))
    # phase1 doing the same walk: submit 1, dispatch 1, ack it; policy batch, one thread
    window = ctx.seconds(3.0)
    with temp_dir("e2e") as d:
        log = FsyncLog()
        q = _durable(d, log, commit_policy="batch", batch_interval_s=0.0)
        gc.collect()
        n = 0
        started = time.perf_counter()
        deadline = started + window
        while True:
            q.submit([_job(n)])
            send = q.dispatch(0, 1).effects[0]
            q.ack(send.job.id, send.attempt)
            n += 1
            if n % 8 == 0 and time.perf_counter() >= deadline:
                break
        elapsed = time.perf_counter() - started
        q.close()
    per_s = n / elapsed
    out.append(
        ctx.result(
            name="durable.e2e_submit_dispatch_ack",
            figure=per_s,
            unit="jobs/s",
            baseline=peer,
            baseline_label="peer.persistqueue_ack_e2e" if peer is not None else "",
            ratio=ratio(per_s, peer),
            notes="DurableQueue submit + dispatch + ack per job (3 fsyncs/job), policy batch, one "
            f"thread; {log.summary(elapsed)}",
        )
    )
    return out


def _redis_rows(ctx: Context) -> list[Result]:
    """``peer.redis_lpush``, ``peer.redis_reliable_e2e`` and ``peer.redis_lpush_threads16``
    (skipped rows when absent)."""
    from benchmarks.e2e import sqlite_three_commits
    from benchmarks.redis_peer import (
        redis_lpush,
        redis_lpush_threads,
        redis_reliable_e2e,
        redis_server_path,
    )

    lpush = redis_lpush(ctx)
    if lpush is None:
        skipped = f"skipped (not installed: no {redis_server_path()})"
        return [
            ctx.result(name=name, figure=None, unit="jobs/s", notes=skipped) for name in REDIS_ROWS
        ]
    e2e = redis_reliable_e2e(ctx)
    many = redis_lpush_threads(ctx, THREADS)
    assert e2e is not None and many is not None
    base1, base3, base16 = sqlite_one_thread(ctx), sqlite_three_commits(ctx), sqlite_threads(ctx)
    server = (
        f"redis-server {lpush['version']} --appendonly yes --appendfsync always --save '' "
        "(AOF fdatasync before each write's reply)"
    )
    lpush_s, e2e_s = float(lpush["per_s"]), float(e2e["per_s"])
    return [
        ctx.result(
            name="peer.redis_lpush",
            figure=lpush_s,
            unit="jobs/s",
            baseline=base1,
            baseline_label="sqlite3 1 thread, commit/job",
            ratio=ratio(lpush_s, base1),
            notes=f"{server}, one synchronous client over RESP: one LPUSH of a "
            f"{lpush['bytes']}-byte job per call, "
            f"{lpush['jobs']:.0f} jobs",
        ),
        ctx.result(
            name="peer.redis_reliable_e2e",
            figure=e2e_s,
            unit="jobs/s",
            baseline=base3,
            baseline_label="sqlite3 3 commits/job",
            ratio=ratio(e2e_s, base3),
            notes=f"{server}, one synchronous client over RESP: LPUSH + LMOVE to a "
            "processing list + LREM (ack) per job, "
            f"{e2e['jobs']:.0f} jobs (3 fsyncs/job)",
        ),
        ctx.result(
            name=REDIS_ROWS[2],
            figure=float(many["per_s"]),
            unit="jobs/s",
            baseline=base16,
            baseline_label="sqlite3 16 threads, commit/job",
            ratio=ratio(float(many["per_s"]), base16),
            notes=f"{server}, one connection per thread over RESP: "
            f"{THREADS} threads x 1 LPUSH/call, {many['jobs']:.0f} jobs; redis fdatasyncs once "
            "per event-loop pass for every client's writes; client CPU "
            f"{float(many['client_cpu_us_per_job']):.1f} us/job",
        ),
    ]


REDIS_ROWS = ("peer.redis_lpush", "peer.redis_reliable_e2e", f"peer.redis_lpush_threads{THREADS}")


BENCHMARKS = [
    ("durable.submit_batch100", bench_submit_batch),
    ("durable.threads16_leader", bench_threads_leader),
    ("durable.threads16_pinned", bench_threads_pinned),
    ("durable.threads16_seed10ms", bench_threads_seed),
    ("durable.always_sync", bench_always),
    ("durable.recovery", bench_recovery),
    ("durable.memory_pending", bench_memory),
    ("durable.e2e_submit_dispatch_ack", bench_peers),
]

# Every row name a full run prints (the smoke test checks them all appear).
ROW_NAMES = [
    "durable.submit_batch100",
    "durable.submit_batch100_threads",
    "durable.threads16_leader",
    "durable.threads16_pinned",
    "durable.threads16_seed10ms",
    "durable.always_sync",
    "durable.always_p50",
    "durable.always_p99",
    "durable.recovery",
    "durable.recovery_rate",
    "durable.memory_pending",
    "durable.memory_pending_packed",
    "peer.persistqueue_ack_e2e",
    *REDIS_ROWS,
    "durable.e2e_submit_dispatch_ack",
]
