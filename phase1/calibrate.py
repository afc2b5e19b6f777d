"""``phase1 bench calibrate``: measure the simulator's cost model on the real code.

The SimPy harness charges a recovery ``fixed + per_snapshot_job * waiting +
per_finished_job * finished + per_wal_record * records`` seconds of virtual time, and draws
fsync latencies around ``fsync_latency_s_mean``.  Those constants live in the config; this
module measures them here, on real files (``OsDisk``), with the real ``recover()``:

* ``recovery_cost_fixed_s``: recovering an empty queue (open, list, read nothing);
* ``recovery_cost_per_snapshot_job_s``: the slope over a snapshot of ``jobs`` pending jobs
  (each one a whole job: id, payload, priority, attempts);
* ``recovery_cost_per_finished_job_s``: the slope over a snapshot of ``jobs`` completed ids
  (an id in a list: most of a long run's snapshot, and about ten times cheaper);
* ``recovery_cost_per_wal_record_s``: the slope over a WAL of ``records`` records
  (an ENQUEUE / DISPATCH / ACK mix, the seed's record shape);
* ``fsync_latency_s_mean``: the mean latency of ``fsyncs`` single-record appends through a
  ``WalWriter`` with policy ``always`` and the config's ``preallocate_bytes`` (what one
  acknowledged record costs the runtime, padding included).

Each figure is the median of ``repeats`` runs.  ``startup_s`` (a fresh interpreter that
imports phase1, what a real restart also pays) is reported but not written: the simulator
models a recovering process, not its interpreter, and a lesson can add it by hand.
``write_calibration`` updates the keys in a YAML config file in place (other lines and
comments kept), atomically.
"""

from __future__ import annotations

import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from phase1.config import Config, load_config
from phase1.core import QueueCore
from phase1.disk import OsDisk
from phase1.jobs import generate_test_jobs
from phase1.recovery import recover
from phase1.snapshot import write_snapshot
from phase1.wal import WalWriter

__all__ = ["Calibration", "calibrate", "write_calibration"]


@dataclass(frozen=True, slots=True)
class Calibration:
    recovery_cost_fixed_s: float
    recovery_cost_per_snapshot_job_s: float
    recovery_cost_per_finished_job_s: float
    recovery_cost_per_wal_record_s: float
    fsync_latency_s_mean: float
    startup_s: float = 0.0  # informational: never written to a config

    def as_dict(self) -> dict[str, float]:
        """The config keys this calibration sets (``startup_s`` is not one)."""
        values = asdict(self)
        del values["startup_s"]
        return values


def _files(
    folder: Path, config: Config, jobs: int, wal_jobs: int, *, finished: bool = False
) -> Config:
    """A snapshot holding ``jobs`` pending (or, ``finished``, completed) jobs, then a WAL
    of ``3 * wal_jobs`` records."""
    cfg = config.replace(
        wal_path=str(folder / "wal.log"), snapshot_path=str(folder / "snapshot.json")
    )
    disk = OsDisk()
    rng = random.Random(42)
    core = QueueCore(max_retry=cfg.max_retry, task_timeout_s=cfg.task_timeout_s)
    if jobs:
        core.enqueue(generate_test_jobs(jobs, rng), now_s=1.0)
        if finished:
            step = core.dispatch(now_s=1.0, worker_id=1, limit=jobs)
            for record in step.records:
                core.ack(record.job_id, 1, now_s=1.0)
        write_snapshot(disk, cfg.snapshot_path, core.export(), keep=1)
    if wal_jobs:
        writer = WalWriter(disk, cfg.wal_path, next_seq=core.last_seq + 1, policy="never")
        extra = generate_test_jobs(wal_jobs, rng, start=jobs)
        for start in range(0, wal_jobs, 500):
            batch = extra[start : start + 500]
            records = list(core.enqueue(batch, now_s=2.0).records)
            step = core.dispatch(now_s=3.0, worker_id=1, limit=len(batch))
            records += step.records
            for job_id in [r.job_id for r in step.records]:
                records += core.ack(job_id, 1, now_s=4.0).records
            writer.append(records)
        writer.close()
    disk.close()
    return cfg


def _time_recovery(cfg: Config, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        recover(OsDisk(), cfg, now_s=10.0, truncate=False)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _fsync_mean(folder: Path, config: Config, fsyncs: int) -> float:
    """Mean seconds of one ``always`` append (write + fsync) of one small record."""
    core = QueueCore(max_retry=config.max_retry, task_timeout_s=config.task_timeout_s)
    steps = [
        core.enqueue([job], now_s=1.0).records
        for job in generate_test_jobs(fsyncs, random.Random(7))
    ]
    disk = OsDisk()
    writer = WalWriter(
        disk,
        str(folder / "fsync.wal"),
        next_seq=1,
        policy="always",
        preallocate_bytes=config.preallocate_bytes,
    )
    try:
        writer.append(steps[0])  # the first append creates and pads the segment: not timed
        started = time.perf_counter()
        for records in steps[1:]:
            writer.append(records)
        elapsed = time.perf_counter() - started
    finally:
        writer.close()
        disk.close()
    return elapsed / max(len(steps) - 1, 1)


def _startup_s(repeats: int) -> float:
    """Median seconds for a fresh interpreter to import phase1's recovery path."""
    argv = [sys.executable, "-c", "import phase1.recovery, phase1.runtime.durable"]
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run(argv, check=True, stdin=subprocess.DEVNULL)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def calibrate(
    config: Config,
    *,
    jobs: int = 20_000,
    wal_jobs: int = 10_000,
    fsyncs: int = 500,
    repeats: int = 3,
    folder: str | None = None,
    startup: bool = True,
) -> Calibration:
    """Measure the cost model in a temporary folder (on the disk of ``folder`` if given:
    fsync on tmpfs is free and would lie)."""
    with tempfile.TemporaryDirectory(prefix="phase1-calibrate-", dir=folder) as tmp:
        root = Path(tmp)
        parts = {}
        shapes = (
            ("empty", 0, 0, False),
            ("snap", jobs, 0, False),
            ("done", jobs, 0, True),
            ("wal", 0, wal_jobs, False),
        )
        for name, n_jobs, n_wal, finished in shapes:
            sub = root / name
            sub.mkdir()
            cfg = _files(sub, config, n_jobs, n_wal, finished=finished)
            parts[name] = _time_recovery(cfg, repeats)
        fsync_s = _fsync_mean(root, config, fsyncs)
    fixed = parts["empty"]
    return Calibration(
        recovery_cost_fixed_s=fixed,
        recovery_cost_per_snapshot_job_s=max(parts["snap"] - fixed, 0.0) / jobs,
        recovery_cost_per_finished_job_s=max(parts["done"] - fixed, 0.0) / jobs,
        recovery_cost_per_wal_record_s=max(parts["wal"] - fixed, 0.0) / (3 * wal_jobs),
        fsync_latency_s_mean=fsync_s,
        startup_s=_startup_s(repeats) if startup else 0.0,
    )


def write_calibration(path: str | os.PathLike[str], calibration: Calibration) -> None:
    """Set the calibrated keys in the YAML file at ``path`` (comments kept), atomically;
    the result is loaded back to check it is still a valid config."""
    target = Path(path)
    text = target.read_text(encoding="utf-8")
    for key, value in calibration.as_dict().items():
        line = f"{key}: {value:.3e}"
        pattern = re.compile(rf"^{re.escape(key)}:[ \t]*[^\s#]*", re.MULTILINE)
        if pattern.search(text):
            text = pattern.sub(line, text, count=1)
        else:
            text = text.rstrip("\n") + f"\n{line}\n"
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    try:
        load_config(tmp)
    except Exception:
        tmp.unlink()
        raise
    os.replace(tmp, target)
