"""The thread-safe durable path: ``QueueCore`` + ``WalWriter`` behind one lock.

Owns: the lock that makes this the core's only caller (the seed's decision 2), group
commit across threads, snapshots with WAL rotation, and recovery at start.  The
controller and workers (``phase1.runtime.controller``) are built on it.

Every command follows the same four beats (DESIGN.md): take the lock, call the core with
the clock's time, append ``step.records``; release the lock; wait until the records are
durable; only then return the step so the caller performs its effects.

Group commit under policy ``batch`` is leader/follower: the first waiter whose record is
not yet durable becomes the leader, releases the lock and fsyncs everything appended so
far; callers that append meanwhile wait, and the leader's next fsync (started as soon as
the previous one returns) releases all of them at once.  ``batch_interval`` > 0 makes the
leader first wait up to that long for ``batch_size`` records (the seed's "every 100
events or 10 ms"), which only adds latency on a fast disk.  ``always`` fsyncs inside each
append; ``never`` acknowledges once the bytes are written (safe against a process crash,
not against power loss).

Never call back into a method of this class while holding its lock: the seed's deadlock
pitfall.  Only ``_locked_*`` helpers run under it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from phase1.clock import Clock, RealClock
from phase1.config import Config
from phase1.core import QueueCore, Step
from phase1.disk import Disk, OsDisk, folder_of
from phase1.errors import DurabilityError
from phase1.jobs import Job
from phase1.recovery import RecoveryReport, open_writer, recover
from phase1.snapshot import SnapshotWritten, oldest_kept_last_seq, write_snapshot
from phase1.wal import drop_segments_upto

__all__ = ["DurableQueue"]

_NO_AUTO_ROTATION = 1 << 62  # rotation happens at snapshot time, under the lock


class DurableQueue:
    """Durable enqueue/dispatch/ack for many threads; one fsync releases every waiter.

    >>> import tempfile, os
    >>> from phase1.config import Config
    >>> d = tempfile.mkdtemp()
    >>> cfg = Config().replace(wal_path=os.path.join(d, "wal.log"),
    ...                        snapshot_path=os.path.join(d, "snapshot.json"))
    >>> q = DurableQueue(cfg)
    >>> [r.type for r in q.submit([Job("a")]).records]
    ['ENQUEUE']
    >>> q.counts()["pending"]
    1
    >>> q.close()
    """

    def __init__(
        self,
        config: Config,
        *,
        disk: Disk | None = None,
        clock: Clock | None = None,
        on_fsync: Callable[[float, int], None] | None = None,
    ) -> None:
        self.config = config
        self.disk: Disk = disk if disk is not None else OsDisk()
        self.clock: Clock = clock if clock is not None else RealClock()
        self.disk.makedirs(folder_of(config.wal_path))
        self.disk.makedirs(folder_of(config.snapshot_path))
        self.core, self.recovery = recover(
            self.disk, config, now_s=self.clock.wall_s(), timer=time.perf_counter
        )
        self.recovery_report: RecoveryReport = self.recovery
        self.writer = open_writer(self.disk, config, self.recovery, segment_bytes=_NO_AUTO_ROTATION)
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._syncing = False
        self._leader_waiting = False
        self._snapshot_lock = threading.Lock()
        self._on_fsync = on_fsync
        self.fsyncs = 0
        self.records_synced = 0
        self._closed = False

    # -- commands ---------------------------------------------------------------------------
    def submit(self, jobs: Sequence[Job]) -> Step:
        """Enqueue a batch atomically; returns once its ENQUEUE records are acknowledged
        under the commit policy.  Raises ``InvalidJobError`` (nothing stored) for a known
        or repeated id."""
        return self.run(lambda core, now: core.enqueue(jobs, now))

    def dispatch(self, worker_id: int = 0, limit: int = 1) -> Step:
        return self.run(lambda core, now: core.dispatch(now, worker_id, limit))

    def ack(self, job_id: str, attempt: int) -> Step:
        return self.run(lambda core, now: core.ack(job_id, attempt, now))

    def fail(self, job_id: str, attempt: int, reason: str = "failed") -> Step:
        return self.run(lambda core, now: core.fail(job_id, attempt, now, reason))

    def tick(self) -> Step:
        return self.run(lambda core, now: core.tick(now))

    def cancel(self, job_id: str, reason: str = "cancelled") -> Step:
        return self.run(lambda core, now: core.cancel(job_id, now, reason))

    def run(self, command: Callable[[QueueCore, float], Step]) -> Step:
        """Run ``command(core, now_s)`` under the lock, then wait until its records are
        acknowledgeable.  The building block of every method above."""
        with self._lock:
            if self._closed:
                raise DurabilityError("the durable queue is closed; start a new one")
            if self.writer.poisoned:
                # Refuse before the command runs: it would change the core in memory and
                # then fail to log it (or, with nothing to log, return as if all were well).
                raise DurabilityError(self._poisoned_message())
            step = command(self.core, self.clock.wall_s())
            seq = self._locked_append(step) if step.records else 0
        if seq:
            self.wait_durable(seq)
        return step

    def read(self, query: Callable[[QueueCore], object]) -> object:
        """Run a read-only ``query(core)`` under the lock (the seed's RLock'd Stats)."""
        with self._lock:
            return query(self.core)

    def counts(self) -> dict[str, int]:
        with self._lock:
            return self.core.counts()

    # -- group commit -------------------------------------------------------------------------
    def _locked_append(self, step: Step) -> int:
        writer = self.writer
        if writer.policy == "always":
            # The writer fsyncs inside append: count it here so metrics see it too.
            before = writer.durable_seq
            started = time.perf_counter()
            seq = writer.append(step.records, now_s=self.clock.now_s())
            synced = writer.durable_seq - before
            if synced > 0:
                self.fsyncs += 1
                self.records_synced += synced
                if self._on_fsync is not None:
                    self._on_fsync(time.perf_counter() - started, synced)
            return seq
        seq = writer.append(step.records, now_s=self.clock.now_s())
        if self._leader_waiting and writer.unsynced >= self.config.batch_size:
            self._cond.notify_all()
        return seq

    def wait_durable(self, seq: int) -> None:
        """Block until record ``seq`` is acknowledgeable; lead an fsync when nobody is."""
        writer = self.writer
        with self._cond:
            while writer.ack_seq < seq:
                if writer.poisoned:
                    raise DurabilityError(self._poisoned_message())
                if self._syncing or self._leader_waiting:
                    # One leader at a time: a second one would wait out its own interval
                    # and then fsync a batch of one.
                    self._cond.wait()
                    continue
                self._locked_lead()

    def _poisoned_message(self) -> str:
        return (
            f"{self.config.wal_path}: an earlier fsync failed; this queue refuses "
            "further work: restart and recover"
        )

    def _locked_lead(self) -> None:
        writer = self.writer
        interval = self.config.batch_interval_s
        if interval > 0 and writer.unsynced < self.config.batch_size:
            self._leader_waiting = True
            deadline = time.monotonic() + interval
            while writer.unsynced < self.config.batch_size:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            self._leader_waiting = False
            if writer.ack_seq >= writer.appended_seq or self._syncing:
                self._cond.notify_all()  # followers waiting on this leader re-check
                return
        self._syncing = True
        target = writer.appended_seq
        self._lock.release()
        started = time.perf_counter()
        try:
            writer.fsync_upto()
        finally:
            self._lock.acquire()
            self._syncing = False
            self._cond.notify_all()
        elapsed = time.perf_counter() - started
        synced = target - writer.durable_seq
        writer.mark_durable(target)
        self.fsyncs += 1
        self.records_synced += max(synced, 0)
        if self._on_fsync is not None:
            self._on_fsync(elapsed, synced)

    # -- snapshots -----------------------------------------------------------------------------
    def snapshot(self) -> SnapshotWritten:
        """Snapshot the core and rotate the WAL under the lock, write the file outside it,
        then drop WAL segments the oldest kept snapshot already covers."""
        with self._snapshot_lock:
            with self._cond:
                while self._syncing:
                    self._cond.wait()
                state = self.core.export()
                self.writer.rotate()
                self.writer.mark_durable(self.writer.appended_seq)
                self._cond.notify_all()
            written = write_snapshot(
                self.disk, self.config.snapshot_path, state, keep=self.config.snapshots_kept
            )
            oldest = oldest_kept_last_seq(
                self.disk, self.config.snapshot_path, self.config.snapshots_kept
            )
            if oldest is not None:
                drop_segments_upto(self.disk, self.config.wal_path, oldest)
            return written

    def close(self) -> None:
        """Make everything appended durable and release the files (idempotent)."""
        with self._cond:
            while self._syncing:
                self._cond.wait()
            if self._closed:
                return
            self._closed = True
            if not self.writer.poisoned:
                self.writer.close()
            self.disk.close()

    def __enter__(self) -> DurableQueue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
