"""Recovery: newest valid snapshot + replay of the WAL records after it.

Owns: ``recover(disk, config) -> (QueueCore, RecoveryReport)`` and ``open_writer``, which
makes the records that recovery itself decided (``settle``) durable before anything else.

Must not know: threads, clocks (the caller passes ``now_s`` and, if it wants the time
taken, a ``timer``), randomness.  It runs unchanged on ``OsDisk`` and on ``SimDisk``.

Steps, each safe to repeat (recovery is idempotent: a crash *during* recovery is just
another crash):

1. load the newest snapshot that passes its checksum; a damaged newer one is reported
   (``snapshot_damaged``) and the previous kept one used; none at all is a fresh start;
2. read the WAL segments; a torn tail (a crash mid-append) is truncated so the next
   append does not glue onto garbage, and reported; damage followed by valid records is
   corruption and raises ``WalCorruptionError`` (``phase1 wal repair`` cuts it, on request);
3. replay records with ``seq > snapshot.last_seq`` through ``QueueCore.replay``: the
   transitions of ``QueueCore.apply`` (the same mutator as live operation, so replay
   cannot drift from it), with the common moves inlined (tested equal to ``apply`` one
   record at a time); the WAL is read in bulk (``read_wal(rows=True)``) and the cyclic GC
   is paused meanwhile, since a million records make no cycles;
4. ``settle``: jobs that were in flight when the process died are re-queued (their
   attempt is already counted, so a job that kills the process every time is
   dead-lettered at ``max_retry``); the records this produces are returned in the report
   and must be appended first (``open_writer`` does that).
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from phase1.config import Config
from phase1.core import QueueCore, Record
from phase1.disk import Disk
from phase1.errors import IllegalTransition, WalCorruptionError
from phase1.snapshot import load_snapshot
from phase1.wal import TornTail, WalWriter, read_wal, record_of, truncate_torn

__all__ = ["RecoveryReport", "recover", "open_writer"]


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    """What recovery found and did; ``duration_s`` is 0.0 unless a timer was given."""

    snapshot_used: str | None
    snapshot_last_seq: int
    snapshot_jobs: int  # every job the snapshot held, finished ones included
    snapshot_finished: int  # of those, completed or dead (held as ids only: cheap to load)
    snapshot_damaged: tuple[tuple[str, str], ...]
    wal_segments: tuple[str, ...]
    records_read: int
    records_replayed: int
    torn: TornTail | None
    torn_bytes_truncated: int
    wal_last_seq: int
    settle_records: tuple[Record, ...]
    requeued: int
    dead_lettered: int
    last_seq: int
    counts: dict[str, int] = field(default_factory=dict)
    duration_s: float = 0.0

    def summary(self) -> str:
        """One line for logs and notebooks."""
        snap = (
            f"snapshot {self.snapshot_used} (seq {self.snapshot_last_seq}, "
            f"{self.snapshot_jobs} jobs)"
            if self.snapshot_used
            else "no snapshot"
        )
        torn = f", torn tail {self.torn_bytes_truncated} bytes truncated" if self.torn else ""
        damaged = (
            f", {len(self.snapshot_damaged)} damaged snapshot(s) skipped"
            if self.snapshot_damaged
            else ""
        )
        return (
            f"recovered from {snap} + {self.records_replayed} WAL records{torn}{damaged}; "
            f"re-queued {self.requeued}, dead-lettered {self.dead_lettered}; "
            f"last_seq {self.last_seq}"
        )


def recover(
    disk: Disk,
    config: Config,
    *,
    now_s: float = 0.0,
    timer: Callable[[], float] | None = None,
    truncate: bool = True,
    check: bool = False,
) -> tuple[QueueCore, RecoveryReport]:
    """Rebuild the queue from ``config.snapshot_path`` and ``config.wal_path``.

    ``truncate=False`` reads without changing any file (``phase1 status`` uses it).
    ``check=True`` also runs ``core.check(settled=False)`` after replay and ``core.check()``
    after ``settle`` (O(jobs) with large constants: the crash explorer, the fuzzer and
    debug runs ask for it; a start-up does not, since replay already enforces the
    transition table record by record).
    Raises ``WalCorruptionError`` or ``SnapshotError`` (with file and offset) when the
    files cannot be trusted; nothing is modified in that case.
    """
    # Recovery builds millions of objects and no cycles: the cyclic GC would walk
    # everything built so far again and again (about a fifth of the time); pause it.
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _recover(disk, config, now_s, timer, truncate, check)
    finally:
        if enabled:
            gc.enable()


def _recover(
    disk: Disk,
    config: Config,
    now_s: float,
    timer: Callable[[], float] | None,
    truncate: bool,
    check: bool,
) -> tuple[QueueCore, RecoveryReport]:
    started = timer() if timer is not None else 0.0
    loaded = load_snapshot(disk, config.snapshot_path, keep=config.snapshots_kept)
    if loaded.state is not None:
        core = QueueCore.restore(
            loaded.state,
            max_retry=config.max_retry,
            task_timeout_s=config.task_timeout_s,
            pack_payloads=config.pack_payloads,
        )
        snapshot_jobs = (
            len(loaded.state.pending)
            + len(loaded.state.in_flight)
            + len(loaded.state.failed)
            + len(loaded.state.completed)
            + len(loaded.state.dead)
        )
        snapshot_finished = len(loaded.state.completed) + len(loaded.state.dead)
    else:
        core = QueueCore(
            max_retry=config.max_retry,
            task_timeout_s=config.task_timeout_s,
            pack_payloads=config.pack_payloads,
        )
        snapshot_jobs = snapshot_finished = 0
    snapshot_last_seq = core.last_seq

    read = read_wal(disk, config.wal_path, after_seq=snapshot_last_seq, rows=True)
    if read.records and record_of(read.records[0]).seq != snapshot_last_seq + 1:
        first = record_of(read.records[0])
        where = read.segments[0] if read.segments else config.wal_path
        raise WalCorruptionError(
            f"{where}: the WAL resumes at seq {first.seq} but the snapshot "
            f"{loaded.used_path or '(none)'} ends at seq {snapshot_last_seq}: records "
            f"{snapshot_last_seq + 1}..{first.seq - 1} are missing; restore the missing "
            f"segment or an older snapshot",
            path=where,
            line=1,
            offset=0,
            seq=first.seq,
        )

    try:
        replayed = core.replay(read.records, to_record=record_of, enqueue_ids=read.enqueue_ids)
    except IllegalTransition as exc:
        # Every record passed its checksum, yet the story is impossible (records edited
        # or swapped with checksums recomputed, or a WAL from another queue): corruption.
        # replay stops on the bad record, with every record before it applied.
        rec = record_of(read.records[core.last_seq - snapshot_last_seq])
        path, line, offset = _locate(disk, read.segments, rec.seq, config.wal_path)
        raise WalCorruptionError(
            f"{path}: line {line}, byte offset {offset}: replay stopped at seq {rec.seq}: "
            f"{exc}; the records are well-formed but impossible in this order (edited, or "
            f"not this queue's WAL). Inspect with `phase1 wal dump`; `phase1 wal repair` "
            f"does not fix this",
            path=path,
            line=line,
            offset=offset,
            seq=rec.seq,
        ) from exc
    if check:
        core.check(settled=False)
    wal_last_seq = core.last_seq

    truncated = 0
    if read.torn is not None and truncate:
        truncate_torn(disk, read.torn)
        truncated = read.torn.length_bytes

    settle = core.settle(now_s)
    if check:
        core.check()
    requeued = sum(1 for r in settle.records if r.type == "RETRY")
    dead = sum(1 for r in settle.records if r.type == "DEAD")
    report = RecoveryReport(
        snapshot_used=loaded.used_path,
        snapshot_last_seq=snapshot_last_seq,
        snapshot_jobs=snapshot_jobs,
        snapshot_finished=snapshot_finished,
        snapshot_damaged=tuple(loaded.damaged),
        wal_segments=tuple(read.segments),
        records_read=len(read.records),
        records_replayed=replayed,
        torn=read.torn,
        torn_bytes_truncated=truncated,
        wal_last_seq=wal_last_seq,
        settle_records=settle.records,
        requeued=requeued,
        dead_lettered=dead,
        last_seq=core.last_seq,
        counts=core.counts(),
        duration_s=(timer() - started) if timer is not None else 0.0,
    )
    return core, report


def _locate(disk: Disk, segments: Sequence[str], seq: int, fallback: str) -> tuple[str, int, int]:
    """(file, 1-based line, byte offset) of the record ``seq`` (an error path: re-reads)."""
    prefix = b'{"seq":%d,' % seq
    for path in segments:
        offset = 0
        for number, raw in enumerate(disk.read(path).split(b"\n"), start=1):
            if raw.startswith(prefix):
                return path, number, offset
            offset += len(raw) + 1
    return fallback, 0, 0


def open_writer(
    disk: Disk,
    config: Config,
    report: RecoveryReport,
    *,
    segment_bytes: int | None = None,
    preallocate_bytes: int | None = None,
) -> WalWriter:
    """A ``WalWriter`` continuing after ``report``, with the settle records made durable.

    ``segment_bytes``/``preallocate_bytes`` override the config's (the simulator passes
    ``preallocate_bytes=0``: its fsync latency is a model, so padding would only cost memory).

    Recovery's own decisions (RETRY/DEAD for jobs a crash left in flight) are written and
    fsynced before any new work, whatever the commit policy, so that a second crash
    replays to the same state.
    """
    writer = WalWriter(
        disk,
        config.wal_path,
        next_seq=report.wal_last_seq + 1,
        policy=config.commit_policy,
        batch_size=config.batch_size,
        batch_interval_s=config.batch_interval_s,
        segment_bytes=segment_bytes if segment_bytes is not None else config.segment_bytes,
        preallocate_bytes=(
            preallocate_bytes if preallocate_bytes is not None else config.preallocate_bytes
        ),
    )
    if report.settle_records:
        writer.append(report.settle_records)
        writer.sync()
    return writer
