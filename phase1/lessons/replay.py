"""Lesson 05 helpers: the seed's Q1 timeline, replayed one record at a time, and torn tails
vs corruption.

Owns: ``Q1World`` / ``q1_stepper`` (snapshot at T0, WAL T1-T3, a crash at T4, recovery at
T5 done step by step with the same functions ``phase1.recovery.recover`` calls:
``load_snapshot``, ``QueueCore.restore``, ``read_wal``, ``QueueCore.apply``, ``settle``),
``files_text`` (what is on a ``SimDisk``) and ``damage_table`` (a torn last record vs a
flipped byte with records after it, each fed to the real ``recover``).

Must not know: how recovery decides (the stepper calls the real functions in the real
order, and the lesson checks the result equals ``recover()``'s).  Everything runs on a
``SimDisk`` with a ``ManualClock``: deterministic, no files, no wall clock.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from phase1.clock import ManualClock
from phase1.config import Config
from phase1.core import QueueCore, Record, SendToWorker
from phase1.errors import QueueKitError
from phase1.jobs import Job
from phase1.lessons.stepper import Action, Scenario, Stepper
from phase1.lessons.views import record_line, state_text
from phase1.recovery import recover
from phase1.runtime.durable import DurableQueue
from phase1.sim.disk import SimDisk
from phase1.snapshot import load_snapshot
from phase1.wal import read_wal

__all__ = ["sim_config", "files_text", "Q1World", "q1_stepper", "damage_table", "small_wal"]

FIRST_DONE = 100  # the seed's T0: "100 jobs completed"


def sim_config(**changes: Any) -> Config:
    """A ``Config`` for a ``SimDisk``: files under ``data/`` (names only, nothing on disk),
    no WAL preallocation (it speeds up real fsyncs only; here it would show as 1 MiB of
    blank lines in every listing)."""
    base: dict[str, Any] = {
        "wal_path": "data/wal.log",
        "snapshot_path": "data/snapshot.json",
        "preallocate_bytes": 0,
    }
    return Config().replace(**(base | changes))


def files_text(disk: SimDisk) -> str:
    """``files: snapshot.json 1234 B, wal.log 567 B`` (what the OS shows now)."""
    files = disk.snapshot_files()
    if not files:
        return "files: (none)"
    return "files: " + ", ".join(f"{p.rpartition('/')[2]} {len(b)} B" for p, b in files.items())


class Q1World:
    """Everything the Q1 stepper drives: a ``SimDisk``, a ``ManualClock``, the queue (while
    the process lives) and the core being rebuilt (during recovery)."""

    def __init__(self) -> None:
        self.disk = SimDisk()
        self.clock = ManualClock(0.0)
        self.config = sim_config(task_timeout_s=30.0)
        self.queue: DurableQueue | None = DurableQueue(
            self.config, disk=self.disk, clock=self.clock
        )
        self.core: QueueCore | None = None  # the core recovery rebuilds
        self.to_replay: list[Record] = []
        self.replayed = 0
        jobs = [Job(f"task-{i:03d}") for i in range(1, FIRST_DONE + 3)]
        self.queue.submit(jobs)
        for _ in range(FIRST_DONE):
            self._work_one(ack=True)

    # -- the live process ---------------------------------------------------------------
    def _work_one(self, *, ack: bool) -> str:
        assert self.queue is not None
        step = self.queue.dispatch(worker_id=1)
        send = step.effects[0]
        assert isinstance(send, SendToWorker)
        self.clock.advance(0.01)
        if ack:
            ack_step = self.queue.ack(send.job.id, send.attempt)
            return record_line(ack_step.records[0])
        return record_line(step.records[0])

    def t0_snapshot(self) -> str:
        assert self.queue is not None
        written = self.queue.snapshot()
        return f"snapshot.json written: last_seq {written.last_seq}, WAL rotated and dropped"

    def dispatch(self) -> str:
        assert self.queue is not None
        step = self.queue.dispatch(worker_id=1)
        self.clock.advance(1.0)
        return record_line(step.records[0])

    def ack_last(self) -> str:
        assert self.queue is not None
        (job_id, flight), *_ = self.queue.core.in_flight().items()
        step = self.queue.ack(job_id, flight.attempt)
        self.clock.advance(1.0)
        return record_line(step.records[0])

    def crash(self) -> str:
        self.disk.crash("process")  # the OS survives: bytes written stay
        self.queue = None  # dropped without close(): memory is gone
        self.clock.advance(1.0)
        return "process killed: memory gone, files stay"

    # -- recovery, step by step (the order recover() uses) --------------------------------
    def load(self) -> str:
        loaded = load_snapshot(self.disk, self.config.snapshot_path)
        assert loaded.state is not None
        self.core = QueueCore.restore(
            loaded.state, max_retry=self.config.max_retry, task_timeout_s=self.config.task_timeout_s
        )
        return f"loaded snapshot.json: last_seq {self.core.last_seq}"

    def read(self) -> str:
        assert self.core is not None
        read = read_wal(self.disk, self.config.wal_path, after_seq=self.core.last_seq)
        self.to_replay = list(read.records)
        return f"{len(self.to_replay)} WAL records after seq {self.core.last_seq}, torn tail: {read.torn is not None}"

    def replay_next(self) -> str:
        assert self.core is not None
        rec = self.to_replay[self.replayed]
        applied = self.core.apply(rec)
        self.replayed += 1
        return f"{record_line(rec)}: {'applied' if applied else 'already reflected'}"

    def settle(self) -> str:
        assert self.core is not None
        step = self.core.settle(self.clock.now_s())
        self.core.check()
        return "; ".join(record_line(r) for r in step.records) or "nothing to settle"

    def render(self) -> str:
        core = self.queue.core if self.queue is not None else self.core
        wal = read_wal(self.disk, self.config.wal_path).records
        durable = self.queue.writer.durable_seq if self.queue is not None else None
        phase = "live" if self.queue is not None else ("recovering" if self.core else "down")
        return state_text(
            core, wal=wal, durable_seq=durable, note=f"[{phase}] {files_text(self.disk)}"
        )

    def scenario(self) -> Scenario:
        actions = [
            Action("T0: snapshot (100 jobs completed)", self.t0_snapshot),
            Action("T1: DISPATCH task-101", self.dispatch),
            Action("T2: ACK task-101", self.ack_last),
            Action("T3: DISPATCH task-102", self.dispatch),
            Action("T4: crash", self.crash),
            Action("T5: load the T0 snapshot", self.load),
            Action("T5: read the WAL after it", self.read),
            Action("T5: replay record 1 of 3", self.replay_next),
            Action("T5: replay record 2 of 3", self.replay_next),
            Action("T5: replay record 3 of 3", self.replay_next),
            Action("T5: settle what was in flight", self.settle),
        ]
        return Scenario(actions, self.render, world=self)


def q1_stepper() -> Stepper:
    """The seed's Q1 timeline on a ``SimDisk``: live T0-T3, crash T4, recovery T5."""
    return Stepper(lambda: Q1World().scenario(), title="Q1: snapshot + WAL, crash, recovery")


def small_wal(n_jobs: int = 4) -> tuple[SimDisk, Config]:
    """A ``SimDisk`` holding the WAL of ``n_jobs`` jobs enqueued, dispatched and acked (no
    snapshot): 3 records per job, every one durable."""
    disk, config = SimDisk(), sim_config()
    queue = DurableQueue(config, disk=disk, clock=ManualClock(0.0))
    queue.submit([Job(f"task-{i:03d}") for i in range(1, n_jobs + 1)])
    for _ in range(n_jobs):
        send = queue.dispatch(worker_id=1).effects[0]
        assert isinstance(send, SendToWorker)
        queue.ack(send.job.id, send.attempt)
    queue.close()
    return disk, config


def _outcome(disk: SimDisk, config: Config) -> dict[str, Any]:
    try:
        core, report = recover(disk, config)
    except QueueKitError as exc:
        return {"recover()": f"raises {type(exc).__name__}", "detail": str(exc).split(";")[0]}
    torn = report.torn
    detail = f"torn tail at byte {torn.offset}: {torn.reason}" if torn else "clean"
    return {
        "recover()": f"ok: {report.records_replayed} records replayed, "
        f"{report.torn_bytes_truncated} bytes truncated",
        "detail": detail,
    }


def damage_table(n_jobs: int = 4, cut_bytes: int = 30) -> pd.DataFrame:
    """Three WALs fed to the real ``recover``: intact; the last record cut short (a crash
    mid-append: torn tail, truncated and reported); one byte flipped in record 2 with
    valid records after it (corruption: ``WalCorruptionError`` names file, line, offset)."""
    rows = []
    disk, config = small_wal(n_jobs)
    rows.append({"WAL": "intact", **_outcome(disk, config)})
    disk, config = small_wal(n_jobs)
    size = disk.size(config.wal_path)
    disk.truncate(config.wal_path, size - cut_bytes)
    rows.append({"WAL": f"last record cut {cut_bytes} bytes short", **_outcome(disk, config)})
    disk, config = small_wal(n_jobs)
    data = bytearray(disk.read(config.wal_path))
    second = data.index(b"\n") + 1
    data[data.index(b"task-", second) + 5] ^= 0x01  # "task-002" becomes "task-102"
    disk.write(config.wal_path, bytes(data))
    rows.append({"WAL": "one bit flipped in record 2", **_outcome(disk, config)})
    return pd.DataFrame(rows)
