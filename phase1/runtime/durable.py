"""The thread-safe durable path: ``QueueCore`` + ``WalWriter`` behind one lock.

Owns: the lock that makes this the core's only caller (the seed's decision 2), group
commit across threads, snapshots with WAL rotation, and recovery at start.  The
controller and workers (``phase1.runtime.controller``) are built on it.

Every command follows the same four beats (DESIGN.md): take the lock, call the core with
the clock's time, append ``step.records`` (``batch``: stash them for the next fsync's
write); release the lock; wait until the records are durable; only then return the step
so the caller performs its effects.

Group commit under policy ``batch`` (each choice below was measured with 16 threads
submitting one job per call):

* A caller encodes its records and stashes them under the lock, but does not write them:
  a write syscall under the lock hands the GIL to a thread that then blocks on the lock.
  Whoever fsyncs next writes everything stashed with one append, then fsyncs.
* When no fsync is in flight and the syncer thread is idle, the caller writes and fsyncs
  inline, outside the lock (a lone caller never switches threads).
* Callers that stash while an fsync is in flight wait, each blocked on its own lock.  The
  fsync's end hands them to a syncer thread (started on first need) that loops write +
  fsync while anyone waits; until it goes idle, callers leave every fsync to it (one that
  led while the syncer waited for the GIL would take its batch, then release its callers
  all at once).
* After each fsync the syncer claims and writes the next batch, then wakes the first of
  the callers the last fsync covered; each woken caller wakes the next before it returns.
  The chain costs the syncer one wake-up per fsync and keeps one caller at a time, not
  all of them, competing for the GIL (waking all at once: 0.7x the jobs/s for 1.4x the
  CPU per job).  The write comes first: a caller woken before it would take the GIL while
  the syncer is in the write syscall.  On one CPU (``cpu_affinity: [N]``), callers queued
  while an earlier chain still runs (its callers still queued) are left to it: the chain
  reaches them in turn, and the syncer goes straight to its fsync instead of waking a
  thread that would only preempt it and wait for the GIL (16 threads: 37 of 46 runs
  interleaved with the old code won, medians +4% to +23%).  With more CPUs the syncer
  still wakes the first itself, which can start on another CPU as soon as the fsync
  releases the GIL (leaving it to the chain there: 17 of 40 runs won).  An idle syncer
  leaves a chain alone; it wakes everyone left only if the chain stopped (a caller that
  stopped waiting never passes on); on one CPU a busy syncer checks that too, every
  ``_CHAIN_CHECK_S``, before it leaves callers to a chain.

So one fsync releases every waiter it covers, nobody is woken to find its record still
unsynced or to re-take the lock, and under load no caller waits for a leader election.
Anything but the writer's own ``DurabilityError`` while writing or fsyncing (an
unencodable record, which is already in the core; a bug) stops the queue like a failed
fsync.  ``batch_interval`` > 0 makes the syncer first wait up to that long for
``batch_size`` records (the seed's "every 100 events or 10 ms"), which only adds latency
on a fast disk.  ``always`` fsyncs inside each append; ``never`` acknowledges once the
bytes are written (safe against a process crash, not against power loss).

Never call back into a method of this class while holding its lock: the seed's deadlock
pitfall.  Only ``_locked_*`` helpers run under it.
"""

from __future__ import annotations

import os
import threading
import time
from _thread import LockType
from _thread import allocate_lock as _allocate_lock
from collections import deque
from collections.abc import Callable, Sequence
from typing import NamedTuple

from phase1.clock import Clock, RealClock
from phase1.config import Config
from phase1.core import QueueCore, Record, Step
from phase1.disk import Disk, OsDisk, folder_of
from phase1.errors import DurabilityError
from phase1.jobs import Job
from phase1.recovery import RecoveryReport, open_writer, recover
from phase1.snapshot import SnapshotWritten, oldest_kept_last_seq, write_snapshot
from phase1.wal import drop_segments_upto, encode_records

__all__ = ["DurableQueue"]


class _Batch(NamedTuple):
    """Stashed records and their WAL lines.  Each caller encodes its own records while it
    holds the lock (the syncer would otherwise encode the whole batch between two fsyncs,
    on the critical path); ``WalWriter.append(records, encoded=lines)`` writes them."""

    records: list[Record]
    lines: bytes


_NOTHING = _Batch([], b"")


_NO_AUTO_ROTATION = 1 << 62  # rotation happens at snapshot time, under the lock
_CHAIN_CHECK_S = 0.005  # an idle syncer checks this often that a wake-up chain still moves


def _runs_on_one_cpu() -> bool:
    """Whether the calling thread may run on one CPU only (``cpu_affinity: [N]``)."""
    try:
        return len(os.sched_getaffinity(0)) == 1
    except (AttributeError, OSError):  # no affinity on this OS
        return False


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
        # Policy batch defers the WAL write to whoever fsyncs: a caller only stashes its
        # records (no write syscall, so no GIL hand-off, under the lock); the fsyncing side
        # writes everything stashed in one append just before its fsync.  Guarded by _lock.
        self._defer = self.writer.policy == "batch"
        self._pending: list[Record] = []
        self._pending_lines: list[bytes] = []  # their WAL lines, encoded by each caller
        self._stashed_seq = self.writer.appended_seq  # last seq stashed or written
        # Group commit (policy batch), all guarded by _lock: callers waiting for their seq
        # to become durable, in seq order, each blocked on its own held lock.
        self._waiters: deque[tuple[int, LockType]] = deque()
        # Callers an fsync covered, not yet released: a chain, each wakes the next.
        self._to_wake: deque[LockType] = deque()
        self._chain_head: LockType | None = None  # _to_wake[0] at the idle syncer's last look
        self._syncing = False  # an fsync is in flight (a caller's or the syncer thread's)
        self._syncer: threading.Thread | None = None  # started on first need
        self._syncer_asleep = False  # blocked on _wake; released at most once per sleep
        # The syncer was handed the fsyncs: callers wait for it instead of leading one
        # inline (a caller that leads while the syncer waits for the GIL steals its batch).
        self._syncer_active = False
        self._wake = _allocate_lock()
        self._wake.acquire()
        self._gathering = False  # the syncer waits for batch_size records (batch_interval)
        self._interval_s = config.batch_interval_s
        self._batch_size = config.batch_size
        self._failure: str | None = None  # the syncer thread died of something unexpected
        self._quiet = threading.Condition(self._lock)  # snapshot/close wait out an fsync
        self._quiet_waiting = 0
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
        lock = self._lock
        lock.acquire()
        try:
            if self._closed:
                raise DurabilityError("the durable queue is closed; start a new one")
            if self.writer.poisoned or self._failure is not None:
                # Refuse before the command runs: it would change the core in memory and
                # then fail to log it (or, with nothing to log, return as if all were well).
                raise DurabilityError(self._poisoned_message())
            step = command(self.core, self.clock.wall_s())
            records = step.records
            if not records:
                return step
            if not self._defer:
                seq = self._locked_append(step)
                if self.writer.ack_seq >= seq:  # never, always
                    return step
                waiter = self._locked_enqueue_waiter(seq)
            else:
                seq = self._locked_stash(records)
                if (
                    self._syncing
                    or self._syncer_active
                    or self._gathering
                    or (self._interval_s > 0 and seq - self.writer.durable_seq < self._batch_size)
                ):
                    waiter = self._locked_enqueue_waiter(seq)
                else:
                    waiter = None
                    self._locked_lead()  # nobody is syncing: fsync inline, no thread switch
        finally:
            lock.release()
        if waiter is not None:
            self._await(waiter, seq)
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
        return writer.append(step.records, now_s=self.clock.now_s())

    def _locked_stash(self, records: Sequence[Record]) -> int:
        """Queue ``records`` for the next fsync's write (policy batch); return the last seq.
        ``ValueError`` (nothing stashed) if they do not continue the log, as the writer's
        ``append`` would (checked at both ends: a step's seqs are consecutive)."""
        expected = self._stashed_seq + 1
        last = records[-1].seq
        if records[0].seq != expected or last != expected + len(records) - 1:
            raise ValueError(
                f"{self.config.wal_path}: records {records[0].seq}..{last} do not continue "
                f"the log at {expected}; nothing written"
            )
        try:
            lines = encode_records(records)
        except Exception as exc:
            # The records are in the core already: nothing that follows can be logged.
            self._failure = f"could not log records {records[0].seq}..{last} ({exc!r})"
            raise DurabilityError(self._poisoned_message()) from exc
        self._pending += records
        self._pending_lines.append(lines)
        self._stashed_seq = last
        return last

    def _locked_take_pending(self) -> _Batch:
        """The stashed records and their lines, emptied."""
        batch = _Batch(self._pending, b"".join(self._pending_lines))
        self._pending = []
        self._pending_lines = []
        return batch

    def _unsynced(self) -> int:
        return self._stashed_seq - self.writer.durable_seq

    def _write_pending(self, batch: _Batch) -> None:
        """Append ``batch`` (taken from ``_pending``) to the WAL.  Its records are in the
        core already: if anything but the writer's own ``DurabilityError`` (which poisons
        the writer) stops the write, the queue is poisoned too (``_failure``)."""
        try:
            self.writer.append(batch.records, encoded=batch.lines)
        except DurabilityError:
            raise
        except BaseException as exc:
            self._failure = (
                f"writing records {batch.records[0].seq}..{batch.records[-1].seq} failed "
                f"({exc!r}); they are "
                "in memory only"
            )
            raise

    def _locked_flush_pending(self) -> None:
        """Write what is stashed, under the lock (snapshot, close: no fsync in flight)."""
        if self._pending:
            self._write_pending(self._locked_take_pending())

    def wait_durable(self, seq: int) -> None:
        """Block until record ``seq`` (already appended) is acknowledgeable."""
        with self._lock:
            writer = self.writer
            if writer.ack_seq >= seq:
                return
            if seq > self._stashed_seq:
                raise ValueError(f"wait_durable({seq}) beyond appended seq {self._stashed_seq}")
            if writer.poisoned or self._failure is not None:
                raise DurabilityError(self._poisoned_message())
            if self._closed:
                raise DurabilityError("the durable queue is closed; start a new one")
            waiter = self._locked_enqueue_waiter(seq)
        self._await(waiter, seq)

    def _await(self, waiter: LockType, seq: int) -> None:
        """Block on ``waiter`` (released by whoever made ``seq`` durable, or failed to),
        pass the wake-up chain on, then return if ``seq`` is acknowledgeable, else raise."""
        waiter.acquire()
        if self._to_wake:
            self._wake_next()
        if self.writer.ack_seq < seq:
            raise DurabilityError(self._poisoned_message())

    def _wake_next(self) -> None:
        """Release the next caller of the wake-up chain (see ``_sync_loop``), if any."""
        try:
            self._to_wake.popleft().release()
        except IndexError:
            pass

    def _wake_all_queued(self) -> None:
        """Release every caller still queued on the wake-up chain (each exactly once: the
        chain pops with the same atomic ``popleft``)."""
        to_wake = self._to_wake
        while to_wake:
            self._wake_next()

    def _locked_enqueue_waiter(self, seq: int) -> LockType:
        """A held lock the syncing side releases once ``seq`` is durable (or never will be),
        queued in seq order; wakes the syncer thread when the fsync is now its job."""
        waiter = _allocate_lock()
        waiter.acquire()
        self._waiters.append((seq, waiter))
        if not self._syncing and self._syncer_asleep:
            if not self._gathering or self._unsynced() >= self._batch_size:
                self._locked_wake_syncer()
        elif self._syncer is None and not self._syncing:
            self._syncer_start()  # first gathering wait (batch_interval > 0)
        return waiter

    def _poisoned_message(self) -> str:
        if self._failure is not None:
            return f"{self.config.wal_path}: {self._failure}; restart and recover"
        return (
            f"{self.config.wal_path}: an earlier WAL write or fsync failed; this queue refuses "
            "further work: restart and recover"
        )

    def _locked_lead(self) -> None:
        """Write what is stashed and fsync it, in the calling thread (the lock is released
        meanwhile); then hand any later waiters to the syncer thread."""
        self._syncing = True
        batch = self._locked_take_pending()
        target = self._stashed_seq
        self._lock.release()
        started = 0.0
        ok = False
        try:
            if batch.records:
                self._write_pending(batch)
            started = time.perf_counter()
            self.writer.fsync_upto()
            ok = True
        except DurabilityError:
            raise  # the writer is poisoned: its waiters raise too
        except BaseException as exc:
            if self._failure is None:  # as in the syncer thread: the queue stops
                self._failure = f"an fsync failed ({exc!r})"
            raise
        finally:
            self._lock.acquire()
            ready = self._locked_finish_sync(target, time.perf_counter() - started, ok)
            if self._waiters and not self._syncing:
                # Records stashed during this fsync wait for the next one: the syncer
                # thread's job, so this caller returns now.
                self._locked_wake_syncer()
            for waiter in ready:
                waiter.release()

    def _locked_finish_sync(self, target: int, elapsed: float, ok: bool) -> list[LockType]:
        """After an fsync covering ``target`` (or its failure): update the writer and the
        counters; return the waiter locks to release (every waiter, on failure)."""
        writer = self.writer
        self._syncing = False
        if self._quiet_waiting:
            self._quiet.notify_all()
        if not ok:
            ready = [w for _, w in self._waiters]
            self._waiters.clear()
            return ready
        synced = target - writer.durable_seq
        writer.mark_durable(target)
        self.fsyncs += 1
        self.records_synced += max(synced, 0)
        if self._on_fsync is not None:
            self._on_fsync(elapsed, synced)
        return self._locked_pop_ready()

    def _locked_pop_ready(self) -> list[LockType]:
        durable = self.writer.ack_seq
        waiters = self._waiters
        ready: list[LockType] = []
        while waiters and waiters[0][0] <= durable:
            ready.append(waiters.popleft()[1])
        return ready

    # -- the syncer thread ----------------------------------------------------------------------
    def _syncer_start(self) -> None:
        self._syncer = threading.Thread(
            target=self._sync_loop, name=f"phase1-fsync-{id(self):x}", daemon=True
        )
        self._syncer_asleep = False
        self._syncer_active = True
        self._syncer.start()

    def _locked_wake_syncer(self) -> None:
        if self._syncer is None:
            self._syncer_start()
        elif self._syncer_asleep:
            self._syncer_asleep = False
            self._syncer_active = True
            self._wake.release()

    def _locked_sleep(self, timeout: float) -> None:
        """Sleep until woken (``_locked_wake_syncer``) or ``timeout`` s (< 0: no limit)."""
        self._syncer_asleep = True
        self._lock.release()
        try:
            woken = self._wake.acquire(timeout=timeout)
        finally:
            self._lock.acquire()
        if not woken and not self._syncer_asleep:
            # Woken between the timeout and taking the lock: consume that release.
            self._wake.acquire()
        self._syncer_asleep = False

    def _sync_loop(self) -> None:
        """The syncer thread: while callers wait, write what they stashed, fsync it, release
        the callers it covers, repeat.  Under load it fsyncs back to back (claiming and
        writing the next batch before it releases the callers the last fsync covered);
        callers only stash and wait on their own lock.  ``batch_interval`` > 0 makes it
        first wait up to that long for ``batch_size`` records."""
        writer = self.writer
        lock = self._lock
        interval = self._interval_s
        ready: list[LockType] = []
        one_cpu = _runs_on_one_cpu()  # looked at again after each idle sleep
        chain_check_at = 0.0  # when a busy syncer on one CPU next checks the chain moves
        lock.acquire()
        try:
            while not (self._closed or writer.poisoned or self._failure is not None):
                if not ready:
                    if self._syncing or not self._waiters:
                        self._syncer_active = False
                        if self._to_wake:
                            # A wake-up chain is under way: let it run (waking everyone
                            # left at once would have them all fight for the GIL) and look
                            # again later.  It stops early only if a caller stopped waiting
                            # (an exception in acquire) before passing on.
                            if self._chain_stalled():
                                self._wake_all_queued()
                            self._locked_sleep(_CHAIN_CHECK_S)
                        else:
                            self._locked_sleep(-1)
                            one_cpu = _runs_on_one_cpu()
                        continue
                    if interval > 0 and self._unsynced() < self._batch_size:
                        self._locked_gather(interval)
                        if self._syncing or not self._waiters:
                            continue
                target = -1
                batch = _NOTHING
                if not self._syncing and self._waiters:
                    if not ready or interval <= 0 or self._unsynced() >= self._batch_size:
                        self._syncing = True
                        batch = self._locked_take_pending()
                        target = self._stashed_seq
                covered, ready = ready, []
                lock.release()
                ok = False
                started = 0.0
                try:
                    if batch.records:
                        # Written before the wake-up below: a woken caller would take the
                        # GIL while this thread is in the write syscall.
                        self._write_pending(batch)
                    if covered:
                        # Wake the first (on one CPU: unless a chain still runs, with
                        # earlier callers queued, that reaches these in turn); each woken
                        # caller wakes the next before it returns, so this thread starts
                        # its next fsync after one wake-up at most, not one per caller.
                        to_wake = self._to_wake
                        to_wake.extend(covered)
                        first = covered[0]
                        covered = []
                        if not one_cpu:
                            self._wake_next()
                        else:
                            try:
                                chain_running = to_wake[0] is not first
                            except IndexError:  # a running chain took them all already
                                chain_running = True
                            if not chain_running:
                                self._wake_next()
                            elif time.perf_counter() >= chain_check_at:
                                # A busy syncer never idles to see that a chain stopped (a
                                # caller that stopped waiting passes nothing on): look here
                                # too, or the callers queued behind it would wait until
                                # the load ends.
                                chain_check_at = time.perf_counter() + _CHAIN_CHECK_S
                                if self._chain_stalled():
                                    self._wake_all_queued()
                    if target >= 0:
                        started = time.perf_counter()
                        writer.fsync_upto()
                        ok = True
                except DurabilityError:
                    pass  # the writer is poisoned: every waiter raises, the loop ends
                except BaseException as exc:  # noqa: BLE001 - reported to every waiter
                    if self._failure is None:
                        self._failure = f"the fsync thread failed ({exc!r})"
                finally:
                    lock.acquire()
                ready = covered  # not handed over if the write failed: released below
                if target >= 0:
                    ready += self._locked_finish_sync(target, time.perf_counter() - started, ok)
        finally:
            # Closing (close() made everything durable first) or failed: release everyone;
            # each checks its own seq.
            ready.extend(w for _, w in self._waiters)
            self._waiters.clear()
            self._syncer_asleep = False
            self._syncer_active = False
            lock.release()
            for waiter in ready:
                waiter.release()
            self._wake_all_queued()

    def _chain_stalled(self) -> bool:
        """Whether the wake-up chain's next caller is the one seen at the last check (the
        chain did not move for a whole check interval); notes the one seen now."""
        try:
            head: LockType | None = self._to_wake[0]
        except IndexError:
            head = None
        stalled = head is not None and head is self._chain_head
        self._chain_head = head
        return stalled

    def _locked_gather(self, interval: float) -> None:
        """Wait up to ``interval`` s for ``batch_size`` unsynced records (the seed's "every
        100 events or 10 ms"); a caller whose append reaches ``batch_size`` wakes us."""
        self._gathering = True
        try:
            deadline = time.monotonic() + interval
            while not self._closed and self._unsynced() < self._batch_size:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._locked_sleep(left)
        finally:
            self._gathering = False

    # -- snapshots -----------------------------------------------------------------------------
    def _locked_wait_quiet(self) -> None:
        """Wait until no fsync is in flight (rotate and close must not overlap one)."""
        while self._syncing:
            self._quiet_waiting += 1
            try:
                self._quiet.wait()
            finally:
                self._quiet_waiting -= 1

    def snapshot(self) -> SnapshotWritten:
        """Snapshot the core and rotate the WAL under the lock, write the file outside it,
        then drop WAL segments the oldest kept snapshot already covers."""
        with self._snapshot_lock:
            with self._lock:
                self._locked_wait_quiet()
                if self._failure is not None:
                    raise DurabilityError(self._poisoned_message())
                state = self.core.export()
                try:
                    self._locked_flush_pending()
                    self.writer.rotate()  # fsyncs what is unsynced: its waiters may go
                    self.writer.mark_durable(self.writer.appended_seq)
                    ready = self._locked_pop_ready()
                except BaseException:
                    ready = [w for _, w in self._waiters]  # poisoned: they raise
                    self._waiters.clear()
                    raise
                finally:
                    for waiter in ready:
                        waiter.release()
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
        with self._lock:
            self._locked_wait_quiet()
            if self._closed:
                return
            self._closed = True
            try:
                if not self.writer.poisoned:
                    try:
                        if self._failure is None:
                            self._locked_flush_pending()
                    finally:
                        self.writer.close()
                self.disk.close()
            finally:
                # Durable now (or never will be): every waiter checks its own seq.
                ready = [w for _, w in self._waiters]
                self._waiters.clear()
                for waiter in ready:
                    waiter.release()
                self._wake_all_queued()
                syncer = self._syncer
                if syncer is not None and self._syncer_asleep:
                    self._locked_wake_syncer()
        if syncer is not None and syncer is not threading.current_thread():
            syncer.join()

    def __enter__(self) -> DurableQueue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
