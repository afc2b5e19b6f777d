"""Lesson 03 helpers: what fsync costs here, group commit, and what ``never`` loses.

Owns: ``measure_fsync`` (append + fsync through the real ``OsDisk``, timed on this machine),
``group_commit_curve`` (the real ``DurableQueue`` with threads, the seed's strategies 1
and 2: ``batch_interval`` 0 and 10 ms), ``simulated_group_commit`` (the same
``WalWriter.sync_due`` rule on a ``SimDisk`` with a ``ManualClock``: deterministic counts),
``power_loss_table`` (each commit policy on a ``SimDisk``, then a power loss) and the plots.

Must not know: how the writer batches (it only configures ``DurableQueue``/``WalWriter``
and counts what they did).  Timings come from ``time.perf_counter`` and vary by machine:
notebooks mark those cells ``# NBVAL_IGNORE_OUTPUT``; the simulated numbers do not vary.
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd

from phase1.clock import ManualClock
from phase1.config import Config
from phase1.core import QueueCore
from phase1.disk import OsDisk
from phase1.jobs import Job
from phase1.runtime.durable import DurableQueue
from phase1.sim.disk import SimDisk
from phase1.wal import PAD, WalWriter

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "measure_fsync",
    "plot_fsync",
    "group_commit_run",
    "group_commit_curve",
    "plot_group_commit",
    "simulated_group_commit",
    "power_loss_table",
]


def _pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure_fsync(
    folder: str, n: int = 200, record_bytes: int = 120, *, preallocate: bool = False
) -> dict[str, Any]:
    """Append ``n`` records of ``record_bytes`` to a file in ``folder`` through ``OsDisk``;
    time each append alone and each fsync after it (microseconds).

    ``preallocate=True`` first pads the file with newlines for all ``n`` records (fsynced)
    and then writes each record *over* the padding, as ``WalWriter`` does with
    ``preallocate_bytes``: the file's size never changes, so no fsync has metadata to
    commit."""
    disk = OsDisk()
    path = os.path.join(folder, "fsync-probe.log")
    record = b"x" * (record_bytes - 1) + b"\n"
    writes, syncs = [], []
    if preallocate:
        disk.write_at(path, 0, PAD * (n * record_bytes))
        disk.fsync(path)
    try:
        for i in range(n):
            t0 = time.perf_counter()
            if preallocate:
                disk.write_at(path, i * record_bytes, record)
            else:
                disk.append(path, record)
            t1 = time.perf_counter()
            disk.fsync(path)
            t2 = time.perf_counter()
            writes.append((t1 - t0) * 1e6)
            syncs.append((t2 - t1) * 1e6)
    finally:
        disk.close()
        os.unlink(path)
    return {
        "n": n,
        "write_us_median": statistics.median(writes),
        "fsync_us_median": statistics.median(syncs),
        "fsync_us_p99": _pct(syncs, 0.99),
        "fsync_per_s_max": 1e6 / statistics.median(syncs),
        "fsync_us": syncs,
    }


def plot_fsync(result: dict[str, Any]) -> Figure:
    """A histogram of the fsync times ``measure_fsync`` took, median marked."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3.0))
    samples = result["fsync_us"]
    ax.hist(samples, bins=40, color="#5b8cc0")
    med = result["fsync_us_median"]
    ax.axvline(med, color="#b03a2e", lw=2, label=f"median {med:.0f} us")
    ax.set_xlabel("fsync time (microseconds, this machine)")
    ax.set_ylabel("fsyncs")
    ax.legend(frameon=False)
    fig.tight_layout()
    return fig


def group_commit_run(
    folder: str, *, threads: int, jobs_per_thread: int, batch_interval_s: float
) -> dict[str, Any]:
    """``threads`` threads each submit ``jobs_per_thread`` jobs one at a time to one real
    ``DurableQueue`` (policy ``batch``); each submit returns once its ENQUEUE is fsynced."""
    tag = f"t{threads}-i{int(batch_interval_s * 1000)}"
    config = Config().replace(
        wal_path=os.path.join(folder, tag, "wal.log"),
        snapshot_path=os.path.join(folder, tag, "snapshot.json"),
        commit_policy="batch",
        batch_interval_s=batch_interval_s,
    )
    queue = DurableQueue(config)
    latencies: list[float] = []
    lock = threading.Lock()

    def work(t: int) -> None:
        mine = []
        for i in range(jobs_per_thread):
            t0 = time.perf_counter()
            queue.submit([Job(f"w{t}-{i}")])
            mine.append(time.perf_counter() - t0)
        with lock:
            latencies.extend(mine)

    pool = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    started = time.perf_counter()
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    elapsed = time.perf_counter() - started
    fsyncs = queue.fsyncs
    queue.close()
    jobs = threads * jobs_per_thread
    return {
        "batch_interval_ms": batch_interval_s * 1000,
        "threads": threads,
        "jobs": jobs,
        "throughput_per_s": jobs / elapsed,
        "latency_ms_p50": _pct(latencies, 0.50) * 1000,
        "latency_ms_p95": _pct(latencies, 0.95) * 1000,
        "fsyncs": fsyncs,
        "records_per_fsync": jobs / max(fsyncs, 1),
    }


def group_commit_curve(
    folder: str,
    *,
    threads: Sequence[int] = (1, 2, 4, 8, 16),
    intervals_s: Sequence[float] = (0.0, 0.010),
    jobs_per_thread: int = 40,
) -> pd.DataFrame:
    """``group_commit_run`` for every (interval, threads) pair, one row each."""
    rows = [
        group_commit_run(folder, threads=t, jobs_per_thread=jobs_per_thread, batch_interval_s=i)
        for i in intervals_s
        for t in threads
    ]
    return pd.DataFrame(rows)


def plot_group_commit(curve: pd.DataFrame) -> Figure:
    """Throughput and median latency against writer threads, one line per batch interval."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import ScalarFormatter

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    for interval, part in curve.groupby("batch_interval_ms"):
        label = f"batch_interval {interval:g} ms"
        left.plot(part["threads"], part["throughput_per_s"], marker="o", label=label)
        right.plot(part["threads"], part["latency_ms_p50"], marker="o", label=label)
    left.set_ylabel("durable submits per second")
    right.set_ylabel("submit latency p50 (ms)")
    for ax in (left, right):
        ax.set_xlabel("threads submitting")
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted(curve["threads"].unique()))
        ax.get_xaxis().set_major_formatter(ScalarFormatter())
        ax.minorticks_off()
        ax.legend(frameon=False, fontsize=8)
        ax.grid(alpha=0.3)
    left.set_title("throughput (this machine)")
    right.set_title("latency (this machine)")
    fig.tight_layout()
    return fig


def simulated_group_commit(
    batch_interval_s: float,
    *,
    records: int = 1000,
    gap_s: float = 0.001,
    batch_size: int = 100,
) -> dict[str, Any]:
    """The real ``WalWriter`` on a ``SimDisk`` with a ``ManualClock``: one record arrives
    every ``gap_s``; the caller fsyncs whenever ``sync_due`` says so.  Deterministic."""
    disk, clock = SimDisk(), ManualClock(0.0)
    writer = WalWriter(
        disk,
        "data/wal.log",
        next_seq=1,
        policy="batch",
        batch_size=batch_size,
        batch_interval_s=batch_interval_s,
    )
    core = QueueCore()
    waited: list[float] = []
    arrived: list[float] = []
    for i in range(records):
        step = core.enqueue([Job(f"task-{i:04d}")], clock.now_s())
        writer.append(step.records, now_s=clock.now_s())
        arrived.append(clock.now_s())
        if writer.sync_due(clock.now_s()):
            writer.sync()
            waited += [clock.now_s() - t for t in arrived]
            arrived = []
        clock.advance(gap_s)
    if arrived:
        writer.sync()
        waited += [clock.now_s() - t for t in arrived]
    return {
        "batch_interval_ms": round(batch_interval_s * 1000, 3),
        "records": records,
        "fsyncs": disk.fsync_count,
        "records_per_fsync": round(records / disk.fsync_count, 1),
        "wait_ms_max": round(max(waited) * 1000, 3),
    }


def power_loss_table(n_jobs: int = 20) -> pd.DataFrame:
    """Each commit policy on a ``SimDisk``: submit ``n_jobs`` jobs one at a time (each one
    acknowledged), lose power, recover.  What survives?"""
    rows = []
    for policy in ("always", "batch", "never"):
        disk = SimDisk()
        config = Config().replace(
            wal_path="data/wal.log", snapshot_path="data/snapshot.json", commit_policy=policy
        )
        queue = DurableQueue(config, disk=disk, clock=ManualClock(0.0))
        for i in range(n_jobs):
            queue.submit([Job(f"task-{i:03d}")])
        fsyncs = disk.fsync_count
        disk.crash("power")  # rng=None: every unsynced byte is lost
        after = DurableQueue(config, disk=disk, clock=ManualClock(10.0))
        survived = after.counts()["pending"]
        after.close()
        rows.append(
            {
                "policy": policy,
                "acknowledged": n_jobs,
                "fsyncs": fsyncs,
                "survived": survived,
                "lost": n_jobs - survived,
            }
        )
    return pd.DataFrame(rows)
