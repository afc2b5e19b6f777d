"""Snapshots: the core's state in one checksummed JSON line, written atomically with retention.

Owns: the snapshot file format (``encode_snapshot`` / ``decode_snapshot``), the atomic
write protocol with ``keep`` older copies (``write_snapshot``), choosing the newest
readable copy at start-up (``load_snapshot``), how far back the WAL must reach
(``oldest_kept_last_seq``) and the summary ``phase1 snapshot show`` prints
(``describe_snapshot``).

Must not know: clocks, threads, randomness, the real file system.  Every byte goes
through a ``phase1.disk.Disk`` (``OsDisk`` in the runtime, ``SimDisk`` in the simulator).

File format (``SCHEMA_VERSION = 1``)
------------------------------------

One line of compact JSON (orjson, no spaces) followed by ``"\\n"``.  Keys in exactly this
order; the first six are the seed's::

    {"queue": [job, ...],
     "in_flight": {id: {"worker_id": int, "deadline_ms": int, "attempt": int, "job": job}},
     "completed": [id, ...],
     "dead": [id, ...],
     "last_seq": int,
     "schema_version": 1,
     "dead_reasons": {id: reason},
     "failed": [job, ...],
     "checksum": crc}

(shown wrapped here; on disk it is a single line).

* ``job`` is ``phase1.jobs.job_to_dict(job)``: ``id``, ``payload``, ``attempt`` (the
  job's current attempt count), ``status``, then ``priority`` / ``scheduled_at`` /
  ``depends_on`` only when not default.
* ``queue`` holds the pending jobs in dispatch order (priority high first, FIFO within a
  priority), so FIFO order survives a snapshot.  ``in_flight`` keeps its insertion order.
* ``completed`` and ``dead`` hold ids only (as in the seed); ``dead_reasons`` maps every
  dead id to why it died.  ``failed`` holds jobs whose attempt ended but whose
  RETRY-or-DEAD decision was torn off by a crash (normally empty).
* ``last_seq`` is the seq of the last WAL record reflected; recovery replays records with
  ``seq > last_seq``.
* ``checksum`` is ``zlib.crc32`` of every byte before ``,"checksum":`` (the same rule as
  the WAL): the bytes from the opening ``{`` through the end of the ``failed`` array.  The
  line must end exactly with ``,"checksum":<decimal>}\\n``.

The seed's recipes work: ``jq '.queue | length'``, ``jq '.completed | length'``.

A ``schema_version`` newer than ``SCHEMA_VERSION`` is refused (``NewerSnapshotError``),
never guessed at, and never silently replaced by an older snapshot.

Write protocol (``write_snapshot(disk, path, state, keep=2)``)
--------------------------------------------------------------

1. write ``path + ".tmp"`` (same folder, so the rename below is atomic);
2. ``fsync`` it;
3. shift older copies: for ``i`` from ``keep-1`` down to ``1`` rename ``path.{i-1}``
   (``path.0`` meaning ``path``) to ``path.{i}`` if it exists;
4. rename the temp file to ``path``;
5. ``fsync_dir`` the folder.

A crash (process or power) between any two steps leaves the old or the new snapshot
loadable: the temp file's bytes are durable before any name moves, and until step 4 the
old snapshot is still at ``path`` or already at ``path.1``.  A leftover ``.tmp`` is
ignored by ``load_snapshot`` (and reported).

Invariants kept: ``decode_snapshot(encode_snapshot(s)) == s``; ``decode_snapshot`` raises
only ``SnapshotError`` whatever the bytes; a damaged newer copy is reported, never
silently skipped.
"""

from __future__ import annotations

import hashlib
import math
import zlib
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, NoReturn

import msgspec
import orjson

from phase1.core import CoreState, InFlight
from phase1.disk import Disk, folder_of
from phase1.errors import SnapshotError
from phase1.jobs import PRIORITY_MAX, Job, JobState, job_to_dict
from phase1.protocol import CORRECT, Protocol

__all__ = [
    "SCHEMA_VERSION",
    "CHECKSUM_MARKER",
    "TMP_SUFFIX",
    "NewerSnapshotError",
    "SnapshotWritten",
    "SnapshotLoad",
    "encode_snapshot",
    "decode_snapshot",
    "write_snapshot",
    "kept_snapshot_paths",
    "load_snapshot",
    "oldest_kept_last_seq",
    "describe_snapshot",
]

SCHEMA_VERSION = 1
CHECKSUM_MARKER = b',"checksum":'
TMP_SUFFIX = ".tmp"

_KEYS = (
    "queue",
    "in_flight",
    "completed",
    "dead",
    "last_seq",
    "schema_version",
    "dead_reasons",
    "failed",
    "checksum",
)
_FLIGHT_KEYS = frozenset({"worker_id", "deadline_ms", "attempt", "job"})
_JOB_KEYS = frozenset(
    {"id", "payload", "attempt", "status", "priority", "scheduled_at", "depends_on"}
)
_STATUSES = frozenset(s.value for s in JobState)


class NewerSnapshotError(SnapshotError):
    """The snapshot was written by a newer phase1 (``schema_version`` > ours).

    ``load_snapshot`` never falls back to an older copy on this error: the older copy
    would silently lose the newer program's work.
    """


@dataclass(frozen=True, slots=True)
class SnapshotWritten:
    """What ``write_snapshot`` did: the file, its size, what it covers, the copies kept."""

    path: str
    bytes: int
    last_seq: int
    kept: list[str] = field(default_factory=list)  # existing copies, newest first


@dataclass(frozen=True, slots=True)
class SnapshotLoad:
    """What ``load_snapshot`` found.

    ``state`` is ``None`` only when no snapshot file exists at all (a fresh start).
    ``damaged`` lists ``(path, reason)`` for every newer copy that failed to decode;
    ``leftover_tmp`` says a ``.tmp`` from an interrupted write was found (and ignored).
    """

    state: CoreState | None
    used_path: str | None
    damaged: list[tuple[str, str]] = field(default_factory=list)
    leftover_tmp: bool = False


# == encoding =============================================================================
def _body(state: CoreState) -> dict[str, Any]:
    return {
        "queue": [job_to_dict(j) for j in state.pending],
        "in_flight": {
            job.id: {
                "worker_id": flight.worker_id,
                "deadline_ms": flight.deadline_ms,
                "attempt": flight.attempt,
                "job": job_to_dict(job),
            }
            for job, flight in state.in_flight
        },
        "completed": list(state.completed),
        "dead": list(state.dead),
        "last_seq": state.last_seq,
        "schema_version": SCHEMA_VERSION,
        "dead_reasons": dict(state.dead),
        "failed": [job_to_dict(j) for j in state.failed],
    }


def encode_snapshot(state: CoreState) -> bytes:
    """The snapshot line for ``state`` (format in the module docstring), ending in ``\\n``."""
    body = orjson.dumps(_body(state))
    head = body[:-1]  # drop the closing brace; the checksum goes last
    crc = zlib.crc32(head)
    return head + CHECKSUM_MARKER + str(crc).encode("ascii") + b"}\n"


# == decoding =============================================================================
def _err(path: str, what: str) -> SnapshotError:
    return SnapshotError(f"snapshot {path}: {what}", path=path)


def _int(value: Any, path: str, where: str, *, minimum: int | None = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _err(path, f"{where} is {type(value).__name__} {value!r:.60}, not an integer")
    if minimum is not None and value < minimum:
        raise _err(path, f"{where} is {value}, below {minimum}")
    return value


def _str(value: Any, path: str, where: str) -> str:
    if not isinstance(value, str):
        raise _err(path, f"{where} is {type(value).__name__} {value!r:.60}, not a string")
    return value


def _list(value: Any, path: str, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise _err(path, f"{where} is {type(value).__name__}, not an array")
    return value


def _dict(value: Any, path: str, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _err(path, f"{where} is {type(value).__name__}, not an object")
    return value


def _job(d: Any, path: str, section: str, index: object) -> Job:
    """A job dict phase1 wrote; checked for shape so bad bytes can only raise SnapshotError.

    The happy path is a few type checks per job (error text is built only on failure).
    """
    if type(d) is not dict:
        raise _err(path, f"{section}[{index!r}] is {type(d).__name__}, not a job object")
    job_id = d.get("id")
    attempt = d.get("attempt", 0)
    status = d.get("status", "pending")
    priority = d.get("priority", 0)
    sched = d.get("scheduled_at")
    deps_raw = d.get("depends_on")
    if (
        type(job_id) is not str
        or not job_id
        or type(attempt) is not int
        or attempt < 0
        or status not in _STATUSES
        or type(priority) is not int
        or not 0 <= priority <= PRIORITY_MAX  # (a restored job must fit a ready queue)
        or not (
            sched is None or type(sched) is int or (type(sched) is float and math.isfinite(sched))
        )
        or not (deps_raw is None or type(deps_raw) is list)
        or not _JOB_KEYS.issuperset(d)
    ):
        _job_problem(d, path, f"{section}[{index!r}]")
    if type(sched) is int:
        sched = float(sched)
    deps: tuple[str, ...] = ()
    if deps_raw:
        for dep in deps_raw:
            if type(dep) is not str:
                raise _err(
                    path, f"{section}[{index!r}] (job {job_id!r}): depends_on has {dep!r:.60}"
                )
        deps = tuple(deps_raw)
    # Positional tuple.__new__: a keyword Job(...) call costs ~5x (a million jobs at load).
    return tuple.__new__(Job, (job_id, d.get("payload"), attempt, status, priority, sched, deps))


def _job_problem(d: dict[str, Any], path: str, where: str) -> NoReturn:
    """Say precisely what is wrong with a job dict that failed ``_job``'s quick checks."""
    unknown = sorted(set(d) - _JOB_KEYS)
    if unknown:
        raise _err(path, f"{where} has unknown key {unknown[0]!r}")
    if "id" not in d:
        raise _err(path, f"{where} is missing key 'id'")
    job_id = d["id"]
    if not isinstance(job_id, str) or not job_id:
        raise _err(path, f"{where}.id is {job_id!r:.60}, not a non-empty string")
    at = f"{where} (job {job_id!r})"
    _int(d.get("attempt", 0), path, f"{at}.attempt")
    status = d.get("status", "pending")
    if status not in _STATUSES:
        raise _err(path, f"{at}.status is {status!r:.60}, not one of {sorted(_STATUSES)}")
    if _int(d.get("priority", 0), path, f"{at}.priority") > PRIORITY_MAX:
        raise _err(path, f"{at}.priority is {d['priority']}, above {PRIORITY_MAX}")
    sched = d.get("scheduled_at")
    if sched is not None and type(sched) is not int:
        if type(sched) is not float or not math.isfinite(sched):
            raise _err(path, f"{at}.scheduled_at is {sched!r:.60}, not a finite number")
    _list(d.get("depends_on"), path, f"{at}.depends_on")
    raise _err(path, f"{at} is malformed")  # pragma: no cover - the checks above cover it


def _parse(data: bytes, path: str) -> dict[str, Any]:
    """JSON-parse and check framing + checksum; returns the top-level object."""
    if not data:
        raise _err(path, "file is empty (a crash during its first write?)")
    try:
        obj = orjson.loads(data)
    except (orjson.JSONDecodeError, ValueError, RecursionError) as exc:
        raise _err(path, f"is not JSON (torn or damaged file): {exc}") from None
    if not isinstance(obj, dict):
        raise _err(path, f"top level is {type(obj).__name__}, not an object")
    claimed = obj.get("schema_version")
    newer = (
        f" (it claims schema_version {claimed}; if a newer phase1 wrote it, upgrade phase1)"
        if isinstance(claimed, int) and not isinstance(claimed, bool) and claimed > SCHEMA_VERSION
        else ""
    )
    cut = data.rfind(CHECKSUM_MARKER)
    if cut < 0 or "checksum" not in obj:
        raise _err(path, f"missing key 'checksum'{newer}")
    tail = data[cut + len(CHECKSUM_MARKER) :]
    digits = tail[:-2]
    if not (tail.endswith(b"}\n") and digits.isdigit() and digits.isascii()):
        raise _err(
            path,
            "does not end with ',\"checksum\":<number>}\\n' "
            f"(damaged, or not written by phase1){newer}",
        )
    stored = int(digits)
    computed = zlib.crc32(data[:cut])
    if stored != computed or obj["checksum"] != stored:
        raise _err(
            path,
            f"checksum mismatch: stored {stored}, computed {computed} over the first "
            f"{cut} bytes (the file was changed or damaged){newer}",
        )
    return obj


# == bulk decoding =========================================================================
# A backlog's snapshot holds ~100 bytes per job; decoding it dict by dict and checking each
# job in Python costs ~3 us a job.  The fast path below lets msgspec decode and type-check
# the whole file at C speed and returns only what ``_decode`` would return; anything at all
# unusual (or wrong) returns None and ``_decode`` runs, for its exact error message.
_Int64 = Annotated[int, msgspec.Meta(ge=0, le=(1 << 63) - 1)]
_AnyInt64 = Annotated[int, msgspec.Meta(ge=-(1 << 63), le=(1 << 63) - 1)]
_RAW_NULL = msgspec.Raw(b"null")


class _FastJob(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    id: Annotated[str, msgspec.Meta(min_length=1)]
    payload: msgspec.Raw = _RAW_NULL  # parsed by orjson, exactly as _decode's parse does
    attempt: _Int64 = 0
    status: Literal["pending", "in_flight", "failed", "completed", "dead"] = "pending"
    priority: Annotated[int, msgspec.Meta(ge=0, le=PRIORITY_MAX)] = 0
    scheduled_at: _AnyInt64 | float | None = None
    depends_on: list[str] | None = None


class _FastFlight(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    worker_id: _AnyInt64
    deadline_ms: _AnyInt64
    attempt: _Int64
    job: _FastJob


class _FastSnapshot(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    queue: msgspec.Raw  # _jobs_of: the C decoder's, else list[_FastJob]
    in_flight: dict[str, _FastFlight]
    completed: list[str]
    dead: list[str]
    last_seq: _Int64
    schema_version: Literal[1]
    dead_reasons: dict[str, str]
    failed: list[_FastJob]
    checksum: int


_fast_snapshot = msgspec.json.Decoder(_FastSnapshot).decode
_fast_jobs = msgspec.json.Decoder(list[_FastJob]).decode

try:  # the optional C accelerator (setup.py); without it, msgspec + _fast_job per job
    from phase1._walcheck import decode_jobs as _c_decode_jobs
except ImportError:  # pragma: no cover - depends on the build
    _c_decode_jobs = None


def _fast_job(j: _FastJob) -> Job:
    sched = j.scheduled_at
    deps = j.depends_on
    return tuple.__new__(
        Job,
        (
            j.id,
            orjson.loads(memoryview(j.payload)),
            j.attempt,
            j.status,
            j.priority,
            float(sched) if type(sched) is int else sched,
            tuple(deps) if deps else (),
        ),
    )


def _jobs_of(raw: msgspec.Raw) -> list[Job]:
    """The snapshot's queue: in C where every job is in the writer's own shape (the same
    Jobs, tested against this path), else through msgspec's checks and ``_fast_job``."""
    if _c_decode_jobs is not None:
        jobs: list[Job] | None = _c_decode_jobs(raw, Job, orjson.loads, PRIORITY_MAX)
        if jobs is not None:
            return jobs
    return list(map(_fast_job, _fast_jobs(raw)))


def _decode_fast(data: bytes) -> CoreState | None:
    cut = data.rfind(CHECKSUM_MARKER)
    if cut < 0 or not data.endswith(b"}\n"):
        return None
    digits = data[cut + len(CHECKSUM_MARKER) : -2]
    if not (digits.isascii() and digits.isdigit()) or int(digits) != zlib.crc32(data[:cut]):
        return None
    try:
        snap = _fast_snapshot(data)
        if snap.checksum != int(digits):
            return None
        pending = _jobs_of(snap.queue)
        failed = list(map(_fast_job, snap.failed))
        in_flight: list[tuple[Job, InFlight]] = []
        for job_id, f in snap.in_flight.items():
            if f.job.id != job_id:
                return None
            in_flight.append(
                (_fast_job(f.job), tuple.__new__(InFlight, (f.worker_id, f.attempt, f.deadline_ms)))
            )
    except (msgspec.DecodeError, orjson.JSONDecodeError, UnicodeDecodeError, ValueError):
        return None
    ids = [j.id for j in pending]
    ids += [j.id for j in failed]
    ids += snap.in_flight.keys()
    ids += snap.completed
    ids += snap.dead
    if len(set(ids)) != len(ids):
        return None  # a job twice: _decode names it
    if len(snap.dead_reasons) != len(snap.dead) or not snap.dead_reasons.keys() >= set(snap.dead):
        return None
    return CoreState(
        last_seq=snap.last_seq,
        pending=pending,
        in_flight=in_flight,
        failed=failed,
        completed=snap.completed,
        dead={job_id: snap.dead_reasons[job_id] for job_id in snap.dead},
    )


def decode_snapshot(data: bytes, *, path: str) -> CoreState:
    """Parse and verify a snapshot line; raise ``SnapshotError`` (naming ``path`` and what is
    wrong) for anything else, ``NewerSnapshotError`` for a newer ``schema_version``."""
    fast = _decode_fast(data)
    if fast is not None:
        return fast
    try:
        return _decode(data, path)
    except SnapshotError:
        raise
    except Exception as exc:  # a last net: whatever the bytes, only SnapshotError escapes
        raise _err(path, f"is malformed ({type(exc).__name__}: {exc})") from None


def _decode(data: bytes, path: str) -> CoreState:
    obj = _parse(data, path)
    for key in _KEYS:
        if key not in obj:
            raise _err(path, f"missing key {key!r}")
    unknown = sorted(set(obj) - set(_KEYS))
    if unknown:
        raise _err(path, f"unknown key {unknown[0]!r}")
    version = _int(obj["schema_version"], path, "schema_version", minimum=None)
    if version > SCHEMA_VERSION:
        raise NewerSnapshotError(
            f"snapshot {path}: written by a newer phase1 (schema_version {version} > "
            f"{SCHEMA_VERSION}); upgrade phase1, refusing to guess",
            path=path,
        )
    if version < 1:
        raise _err(path, f"schema_version {version} is not one phase1 ever wrote")

    last_seq = _int(obj["last_seq"], path, "last_seq")
    seen: dict[str, str] = {}

    def claim(job_id: str, where: str) -> None:
        other = seen.get(job_id)
        if other is not None:
            raise _err(path, f"job {job_id!r} appears twice ({other} and {where})")
        seen[job_id] = where

    pending: list[Job] = []
    for i, d in enumerate(_list(obj["queue"], path, "queue")):
        job = _job(d, path, "queue", i)
        claim(job.id, "queue")
        pending.append(job)

    in_flight: list[tuple[Job, InFlight]] = []
    for job_id, raw in _dict(obj["in_flight"], path, "in_flight").items():
        where = f"in_flight[{job_id!r}]"
        f = _dict(raw, path, where)
        for key in _FLIGHT_KEYS:
            if key not in f:
                raise _err(path, f"{where} is missing key {key!r}")
        if len(f) != len(_FLIGHT_KEYS):
            raise _err(path, f"{where} has unknown key {sorted(set(f) - _FLIGHT_KEYS)[0]!r}")
        job = _job(f["job"], path, "in_flight", job_id)
        if job.id != job_id:
            raise _err(path, f"{where}.job has id {job.id!r}")
        flight = InFlight(
            worker_id=_int(f["worker_id"], path, f"{where}.worker_id", minimum=None),
            attempt=_int(f["attempt"], path, f"{where}.attempt"),
            deadline_ms=_int(f["deadline_ms"], path, f"{where}.deadline_ms", minimum=None),
        )
        claim(job_id, "in_flight")
        in_flight.append((job, flight))

    failed: list[Job] = []
    for i, d in enumerate(_list(obj["failed"], path, "failed")):
        job = _job(d, path, "failed", i)
        claim(job.id, "failed")
        failed.append(job)

    completed = _list(obj["completed"], path, "completed")
    for i, job_id in enumerate(completed):
        claim(_str(job_id, path, f"completed[{i}]"), "completed")

    reasons = _dict(obj["dead_reasons"], path, "dead_reasons")
    dead: dict[str, str] = {}
    for i, job_id in enumerate(_list(obj["dead"], path, "dead")):
        claim(_str(job_id, path, f"dead[{i}]"), "dead")
        if job_id not in reasons:
            raise _err(path, f"dead_reasons is missing dead job {job_id!r}")
        dead[job_id] = _str(reasons[job_id], path, f"dead_reasons[{job_id!r}]")
    if len(reasons) != len(dead):
        extra = sorted(set(reasons) - set(dead))[0]
        raise _err(path, f"dead_reasons names job {extra!r}, which is not in dead")

    return CoreState(
        last_seq=last_seq,
        pending=pending,
        in_flight=in_flight,
        failed=failed,
        completed=list(completed),
        dead=dead,
    )


# == files ================================================================================
def kept_snapshot_paths(path: str, keep: int) -> list[str]:
    """The copies retention keeps, newest first: ``path, path.1, ..., path.{keep-1}``."""
    if keep < 1:
        raise ValueError(f"keep must be >= 1, got {keep}")
    return [path] + [f"{path}.{i}" for i in range(1, keep)]


def write_snapshot(
    disk: Disk, path: str, state: CoreState, *, keep: int = 2, protocol: Protocol = CORRECT
) -> SnapshotWritten:
    """Write ``state`` to ``path`` atomically and durably, keeping ``keep - 1`` older copies.

    Steps (a crash between any two leaves the old or the new snapshot loadable): write
    ``path.tmp``, fsync it, shift ``path.{i-1}`` -> ``path.{i}`` for ``i = keep-1 .. 1``,
    rename ``path.tmp`` -> ``path``, fsync the folder.  Only when this returns may the
    caller start a new WAL segment and delete segments up to ``oldest_kept_last_seq``.
    ``protocol`` (``phase1.protocol``) switches steps off for the crash explorer's lessons.
    """
    kept = kept_snapshot_paths(path, keep)
    folder = folder_of(path)
    data = encode_snapshot(state)
    tmp = path + TMP_SUFFIX
    disk.makedirs(folder)
    if protocol.snapshot_temp_file:
        disk.write(tmp, data)
        if protocol.fsync:
            disk.fsync(tmp)
        for i in range(keep - 1, 0, -1):
            if disk.exists(kept[i - 1]):
                disk.rename(kept[i - 1], kept[i])
        disk.rename(tmp, path)
    else:  # variant "snapshot-in-place": the bug write-then-rename exists to prevent
        disk.write(path, data)
        if protocol.fsync:
            disk.fsync(path)
    if protocol.rename_dir_fsync:
        disk.fsync_dir(folder)
    return SnapshotWritten(
        path=path,
        bytes=len(data),
        last_seq=state.last_seq,
        kept=[p for p in kept if disk.exists(p)],
    )


def _read(disk: Disk, path: str) -> CoreState:
    try:
        data = disk.read(path)
    except OSError as exc:
        raise _err(path, f"cannot be read: {exc}") from None
    return decode_snapshot(data, path=path)


def load_snapshot(disk: Disk, path: str, *, keep: int = 2) -> SnapshotLoad:
    """The newest readable snapshot among ``kept_snapshot_paths(path, keep)``.

    A damaged newer copy is reported in ``damaged`` and the next older one is used.  No
    file at all -> ``state=None`` (fresh start).  Files exist but none decodes ->
    ``SnapshotError`` naming each.  A newer ``schema_version`` -> ``NewerSnapshotError``
    at once, no fallback.
    """
    leftover_tmp = disk.exists(path + TMP_SUFFIX)
    damaged: list[tuple[str, str]] = []
    for candidate in kept_snapshot_paths(path, keep):
        if not disk.exists(candidate):
            continue  # e.g. a crash between shifting and the final rename
        try:
            state = _read(disk, candidate)
        except NewerSnapshotError:
            raise
        except SnapshotError as exc:
            damaged.append((candidate, str(exc)))
            continue
        return SnapshotLoad(state, candidate, damaged, leftover_tmp)
    if damaged:
        listing = "; ".join(reason for _, reason in damaged)
        raise SnapshotError(
            f"no readable snapshot among {len(damaged)} file(s): {listing}. "
            "Restore a snapshot from backup, or move these files aside and recover from "
            "the WAL alone if it still starts at seq 1 (`phase1 wal stats`)",
            path=path,
        )
    return SnapshotLoad(None, None, damaged, leftover_tmp)


def oldest_kept_last_seq(disk: Disk, path: str, keep: int) -> int | None:
    """The smallest ``last_seq`` among readable kept copies (``None`` if none is readable).

    The shell deletes WAL segments only up to this seq, so falling back to the oldest kept
    snapshot still finds every record it needs.
    """
    seqs: list[int] = []
    for candidate in kept_snapshot_paths(path, keep):
        if not disk.exists(candidate):
            continue
        seq = _kept_last_seq(disk, candidate)
        if seq is not None:
            seqs.append(seq)
    return min(seqs) if seqs else None


# The runtime asks after every snapshot, and the kept copies rarely change in between (the
# newest was just written, the older ones only shift names): each copy's bytes are hashed
# and decoded once.  Same bytes, same answer, so this changes nothing but the cost.
_LAST_SEQ_BY_CONTENT: dict[bytes, int | None] = {}


def _kept_last_seq(disk: Disk, path: str) -> int | None:
    try:
        data = disk.read(path)
    except OSError:
        return None
    key = hashlib.blake2b(data, digest_size=16).digest()
    if key in _LAST_SEQ_BY_CONTENT:
        return _LAST_SEQ_BY_CONTENT[key]
    try:
        seq: int | None = decode_snapshot(data, path=path).last_seq
    except SnapshotError:
        seq = None
    if len(_LAST_SEQ_BY_CONTENT) >= 16:
        _LAST_SEQ_BY_CONTENT.clear()
    _LAST_SEQ_BY_CONTENT[key] = seq
    return seq


def describe_snapshot(state: CoreState) -> dict[str, int]:
    """The summary ``phase1 snapshot show`` prints."""
    return {
        "schema_version": SCHEMA_VERSION,
        "last_seq": state.last_seq,
        "queue": len(state.pending),
        "in_flight": len(state.in_flight),
        "completed": len(state.completed),
        "dead": len(state.dead),
        "failed": len(state.failed),
    }
