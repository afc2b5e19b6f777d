"""The write-ahead log: record framing, segments, the writer and the reader.

Owns: the on-disk record format (``encode_record`` / ``decode_line``), ``WalWriter`` (one
disk write per batch, optional preallocation, commit policies ``always`` / ``batch`` / ``never``, group-commit
split, segment rotation, poisoning after a failed fsync), ``read_wal`` (torn tail vs
corruption, as in leveldb's ``log_reader`` and etcd's ``wal``), ``truncate_torn``,
``verify_wal``, ``wal_stats``, ``repair_wal``, ``list_segments`` and
``drop_segments_upto``.

Must not know: ``os``, clocks, threads, randomness.  Every byte goes through a ``Disk``;
time arrives as ``now_s``.  ``WalWriter`` takes no locks: the threaded runtime serialises
``append``/``rotate`` under its core lock and may run ``fsync_upto`` outside it (never at the
same time as ``rotate``).

Record format
-------------
JSON Lines: one record per line, UTF-8, terminated by ``\\n``.  Keys, in this order::

    seq, type, job_id, timestamp, [attempt], [worker_id], [deadline_ms], [reason], [job], checksum

* ``seq`` (integer >= 1): consecutive across the whole log (each record is the previous + 1).
* ``type``: ``ENQUEUE``, ``DISPATCH``, ``ACK``, ``FAIL``, ``TIMEOUT``, ``RETRY`` or ``DEAD``.
* ``job_id`` (non-empty string).
* ``timestamp``: ISO 8601 UTC with milliseconds, ``"2024-01-01T10:00:00.000Z"``.
* optional, present only when set: ``attempt`` (omitted when 0), ``worker_id``,
  ``deadline_ms`` (milliseconds on the queue's clock), ``reason``, and ``job`` (ENQUEUE
  only, required there: ``{"id", "payload", "attempt", "status"}`` plus ``priority``,
  ``scheduled_at``, ``depends_on`` when not default).
* ``checksum``, always last: ``zlib.crc32`` of the line's bytes *before*
  ``,"checksum":``, i.e. of the JSON text of every other field without its closing brace::

      body = orjson.dumps(fields)           # b'{"seq":1,...,"job_id":"a"...}'
      crc  = zlib.crc32(body[:-1])
      line = body[:-1] + b',"checksum":' + str(crc).encode() + b'}\\n'

  Any changed byte of the body fails the check; the trailer must be exactly
  ``,"checksum":<decimal crc>}`` (no spaces).

Example (one line)::

    {"seq":2,"type":"DISPATCH","job_id":"task-0001","timestamp":"2024-01-01T10:00:00.000Z",
     "attempt":1,"worker_id":3,"deadline_ms":1704103203000,"checksum":1234567890}

Every line is plain JSON, so the seed's recipes work: ``jq 'select(.type == "TIMEOUT")'
data/wal.log``, ``jq -r .type data/wal.log | sort | uniq -c``.

Segments
--------
The active segment is ``wal_path`` (``data/wal.log``).  ``rotate`` (at snapshot time, or when
the active segment exceeds ``segment_bytes``) fsyncs it and renames it to
``f"{wal_path}.{last_seq:012d}"`` (the seq of its last record), then fsyncs the folder; the
next append creates a fresh active file.  The log is the closed segments in seq order, then
the active one.  ``drop_segments_upto`` deletes closed segments wholly covered by a durable
snapshot.  Other names in the folder (``wal.log.corrupt-...``) are ignored.

Preallocation
-------------
With ``preallocate_bytes > 0`` (the runtime's default: 1 MiB) the writer keeps the active
segment padded with newlines (``PAD``) to the next multiple of that size and writes records
*over* the padding (``disk.write_at``) instead of appending.  An append changes the file's
size, so every ``fdatasync`` after it must also commit metadata; an overwrite inside the
file does not, which on ext4 roughly halves the latency of each group commit (PostgreSQL
zero-fills its WAL segments for the same reason).  Padding is whitespace, so ``jq`` reads
the file unchanged; ``read_wal`` stops at the first of the active segment's trailing
newlines (``data_end``); ``rotate`` and ``close`` cut the padding off, so closed segments
(where blank lines are damage) and a cleanly stopped log end at their last record.  A
crash mid-write leaves the torn record followed by padding, which reads as the usual torn
tail.

Reading: torn tail vs corruption
--------------------------------
* In the last segment file, a damaged region (a line without ``\\n``, bad JSON, a checksum
  mismatch, NUL bytes from a power loss, invalid UTF-8, an empty line, a bad field) that no
  valid record follows is a *torn tail*: the expected residue of a crash.  ``read_wal``
  reports it in ``WalRead.torn``; ``truncate_torn`` cuts it before the next append.
* A damaged line followed by any valid record (later in the file or in a later segment), or
  damage anywhere in a closed segment (closed segments are fsynced before they are renamed,
  so a crash never tears them), is *corruption*: ``WalCorruptionError`` names file, line,
  offset and seq.  So is a break in the sequence (gap, repeat, going backwards); only the
  first record read may start anywhere, since older segments may have been dropped.
* ``repair_wal`` cuts the log at the first damage, only when asked, after saving every cut
  byte to ``f"{path}.corrupt-{offset}"``.
"""

from __future__ import annotations

import gc
import re
import zlib
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from operator import attrgetter
from typing import TYPE_CHECKING, Annotated, Any, Literal

import msgspec
import orjson

from phase1.core import RECORD_TYPES, Record
from phase1.disk import Disk, folder_of
from phase1.errors import DurabilityError, WalCorruptionError
from phase1.jobs import PRIORITY_MAX, Job, job_from_dict, job_to_dict
from phase1.protocol import CORRECT, Protocol

if TYPE_CHECKING:
    from mmap import mmap  # OsDisk.read_mapped's (wal itself does no I/O)

__all__ = [
    "POLICIES",
    "DEFAULT_SEGMENT_BYTES",
    "PAD",
    "data_end",
    "encode_record",
    "encode_records",
    "decode_line",
    "TornTail",
    "WalRead",
    "RepairReport",
    "WalWriter",
    "list_segments",
    "segment_path",
    "drop_segments_upto",
    "read_wal",
    "record_of",
    "Row",
    "verify_wal",
    "truncate_torn",
    "wal_stats",
    "repair_wal",
]

POLICIES = ("always", "batch", "never")
DEFAULT_SEGMENT_BYTES = 64 << 20
PAD = b"\n"  # preallocation padding: blank lines, which jq and JSON Lines readers skip

_TRAILER = b',"checksum":'
_TYPES = frozenset(RECORD_TYPES)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SECOND = timedelta(seconds=1)
_CACHE_MAX = 4096
_OPTIONAL = ("attempt", "worker_id", "deadline_ms", "reason", "job")
_KEYS = frozenset(("seq", "type", "job_id", "timestamp", "checksum") + _OPTIONAL)
_PREFIX_RE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", re.ASCII)
_SEQ_RE = re.compile(rb'\{"seq":(\d{1,19})[,}]')
_K_HEAD = ("seq", "type", "job_id", "timestamp")
_K_ATTEMPT = _K_HEAD + ("attempt", "checksum")
_K_DISPATCH = _K_HEAD + ("attempt", "worker_id", "deadline_ms", "checksum")
_K_ENQUEUE = _K_HEAD + ("job", "checksum")
_K_JOB = ("id", "payload", "attempt", "status")
_NO_JOB = _TYPES - {"ENQUEUE"}
_new = tuple.__new__


class _BadRecord(ValueError):
    """A line that is not a valid record; ``reason`` says why (private: read_wal decides)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# == timestamps ===========================================================================
# One record in a busy second shares its "YYYY-MM-DDTHH:MM:SS" prefix with the next
# thousands, so both directions cache per second instead of calling datetime per record.
_iso_by_sec: dict[int, str] = {}
_iso_by_ms: dict[int, str] = {}  # the whole stamp: a step's records share their millisecond
_sec_by_iso: dict[str, int] = {}
_ms_by_iso: dict[str, int] = {}


def _iso(timestamp_ms: int) -> str:
    is_int = type(timestamp_ms) is int  # 1.0 / True must still go the long way
    if is_int:
        stamp = _iso_by_ms.get(timestamp_ms)
        if stamp is not None:
            return stamp
    sec, milli = divmod(timestamp_ms, 1000)
    prefix = _iso_by_sec.get(sec)
    if prefix is None:
        if len(_iso_by_sec) >= _CACHE_MAX:
            _iso_by_sec.clear()
        prefix = datetime.fromtimestamp(sec, UTC).isoformat(timespec="seconds")[:19]
        _iso_by_sec[sec] = prefix
    stamp = "%s.%03dZ" % (prefix, milli)  # noqa: UP031  # the f-string at 60% of its cost
    if is_int:
        if len(_iso_by_ms) >= _CACHE_MAX:
            _iso_by_ms.clear()
        _iso_by_ms[timestamp_ms] = stamp
    return stamp


def _parse_ts(ts: object) -> int:
    if type(ts) is not str:
        raise _BadRecord(f"timestamp={ts!r} is not a string")
    ms = _ms_by_iso.get(ts)
    if ms is not None:
        return ms
    if len(ts) != 24 or ts[19] != "." or ts[23] != "Z":
        raise _BadRecord(f"timestamp={ts!r} is not like '2024-01-01T10:00:00.000Z'")
    milli = ts[20:23]
    if not (milli.isascii() and milli.isdigit()):
        raise _BadRecord(f"timestamp={ts!r} has no milliseconds")
    prefix = ts[:19]
    sec = _sec_by_iso.get(prefix)
    if sec is None:
        if not _PREFIX_RE.fullmatch(prefix):
            raise _BadRecord(f"timestamp={ts!r} is not like '2024-01-01T10:00:00.000Z'")
        try:
            moment = datetime.fromisoformat(prefix).replace(tzinfo=UTC)
        except ValueError:
            raise _BadRecord(f"timestamp={ts!r} is not a valid time") from None
        sec = (moment - _EPOCH) // _SECOND
        if len(_sec_by_iso) >= _CACHE_MAX:
            _sec_by_iso.clear()
        _sec_by_iso[prefix] = sec
    ms = sec * 1000 + int(milli)
    if len(_ms_by_iso) >= _CACHE_MAX:
        _ms_by_iso.clear()
    _ms_by_iso[ts] = ms
    return ms


# == framing ==============================================================================
def encode_record(rec: Record) -> bytes:
    """One record as its line (``\\n`` included); see the module docstring for the format.

    Raises ``ValueError`` for a record ``decode_line`` would refuse (unknown type, ENQUEUE
    without its job), so the writer never puts an unreadable line on disk.
    """
    d: dict[str, Any] = {
        "seq": rec.seq,
        "type": rec.type,
        "job_id": rec.job_id,
        "timestamp": _iso(rec.timestamp_ms),
    }
    if rec.attempt:
        d["attempt"] = rec.attempt
    if rec.worker_id is not None:
        d["worker_id"] = rec.worker_id
    if rec.deadline_ms is not None:
        d["deadline_ms"] = rec.deadline_ms
    if rec.reason is not None:
        d["reason"] = rec.reason
    if rec.job is not None:
        if rec.type != "ENQUEUE":
            raise ValueError(f"record seq {rec.seq}: only ENQUEUE carries a job ({rec.type})")
        if rec.job.id != rec.job_id:
            raise ValueError(f"record seq {rec.seq}: job.id {rec.job.id!r} differs from job_id")
        d["job"] = job_to_dict(rec.job)
    elif rec.type == "ENQUEUE":
        raise ValueError(f"record seq {rec.seq}: ENQUEUE of {rec.job_id!r} has no job")
    if rec.type not in _TYPES:
        raise ValueError(f"record seq {rec.seq}: unknown type {rec.type!r}")
    body = orjson.dumps(d)[:-1]
    return b"%b%b%d}\n" % (body, _TRAILER, zlib.crc32(body))


_ENQUEUE_PLAIN = (
    b'{"seq":%d,"type":"ENQUEUE","job_id":%b,"timestamp":"%b",'
    b'"job":{"id":%b,"payload":%b,"attempt":%d,"status":"pending"}'
)
_ENQUEUE_PRIORITY = _ENQUEUE_PLAIN[:-1] + b',"priority":%d}'


_ATTEMPT_LINE = b'{"seq":%d,"type":"%b","job_id":%b,"timestamp":"%b","attempt":%d'
_DISPATCH_LINE = _ATTEMPT_LINE + b',"worker_id":%d,"deadline_ms":%d'
_TYPE_B = {t: t.encode() for t in RECORD_TYPES}


def encode_records(recs: Iterable[Record]) -> bytes:
    """The lines of ``recs`` joined: what ``WalWriter.append`` hands to one ``disk.append``.

    The same bytes as joining ``encode_record`` of each.  With the C accelerator
    (``_walcheck.encode_records``) the common records are framed in C and every other one
    (odd types or values, errors) goes through ``_encode_one``, i.e. the Python path;
    without it, ``_encode_records_py``.  Same bytes, same exceptions either way.
    """
    if _c_encode is not None:
        return _c_encode(recs, Record, Job, orjson.dumps, _encode_one)  # type: ignore[no-any-return]
    return _encode_records_py(recs)


def _encode_one(rec: Record) -> bytes:
    """One record the Python way (the C encoder's fallback for records it does not vouch for)."""
    return _encode_records_py((rec,))


def _encode_records_py(recs: Iterable[Record]) -> bytes:
    """``encode_records`` in Python (the reference the C encoder is tested against).

    The same bytes as joining ``encode_record`` of each, built faster: the records of one
    step share their timestamp object (formatted once), fields are unpacked positionally,
    and a job's dict is built inline.  Anything unusual goes through ``encode_record``.
    """
    out: list[bytes] = []
    append = out.append
    dumps = orjson.dumps
    crc32 = zlib.crc32
    last_ms: object = None
    stamp = ""
    stamp_b = b""
    for rec in recs:
        seq, rtype, job_id, ts_ms, attempt, worker_id, deadline_ms, reason, job = rec
        if type(ts_ms) is not int or type(rtype) is not str:
            append(encode_record(rec))
            continue
        if ts_ms is not last_ms:
            stamp = _iso_by_ms.get(ts_ms) or _iso(ts_ms)
            stamp_b = stamp.encode()
            last_ms = ts_ms
        if job is None:
            if rtype not in _NO_JOB:
                append(encode_record(rec))  # raises: ENQUEUE without a job, unknown type
                continue
            if (
                reason is None
                and type(attempt) is int
                and attempt > 0
                and type(seq) is int
                and type(job_id) is str
            ):
                # An attempt's DISPATCH or end (most of a busy log): the same bytes as the
                # dict below, formatted directly.
                if worker_id is None and deadline_ms is None:
                    body = _ATTEMPT_LINE % (seq, _TYPE_B[rtype], dumps(job_id), stamp_b, attempt)
                elif type(worker_id) is int and type(deadline_ms) is int:
                    body = _DISPATCH_LINE % (
                        seq,
                        _TYPE_B[rtype],
                        dumps(job_id),
                        stamp_b,
                        attempt,
                        worker_id,
                        deadline_ms,
                    )
                else:
                    body = b""
                if body:
                    append(b"%b%b%d}\n" % (body, _TRAILER, crc32(body)))
                    continue
            d: dict[str, Any] = {"seq": seq, "type": rtype, "job_id": job_id, "timestamp": stamp}
            if attempt:
                d["attempt"] = attempt
            if worker_id is not None:
                d["worker_id"] = worker_id
            if deadline_ms is not None:
                d["deadline_ms"] = deadline_ms
            if reason is not None:
                d["reason"] = reason
        elif (
            rtype == "ENQUEUE"
            and not attempt
            and worker_id is None
            and deadline_ms is None
            and reason is None
            and job[0] == job_id
        ):
            priority = job[4]
            if (
                job[3] == "pending"
                and (not priority or type(priority) is int)
                and job[5] is None
                and not job[6]
                and type(seq) is int
                and type(job[2]) is int
                and type(job_id) is str
            ):
                # A plain new job (the enqueue path's common case), with or without a
                # priority: the same bytes as the dict below, formatted directly (its id
                # dumped once for both places).
                jid = dumps(job_id)
                if priority:
                    body = _ENQUEUE_PRIORITY % (
                        seq, jid, stamp_b, jid, dumps(job[1]), job[2], priority
                    )  # fmt: skip
                else:
                    body = _ENQUEUE_PLAIN % (seq, jid, stamp_b, jid, dumps(job[1]), job[2])
                append(b"%b%b%d}\n" % (body, _TRAILER, crc32(body)))
                continue
            jd: dict[str, Any] = {
                "id": job[0],
                "payload": job[1],
                "attempt": job[2],
                "status": job[3],
            }
            if job[4]:
                jd["priority"] = job[4]
            if job[5] is not None:
                jd["scheduled_at"] = job[5]
            if job[6]:
                jd["depends_on"] = list(job[6])
            d = {"seq": seq, "type": rtype, "job_id": job_id, "timestamp": stamp, "job": jd}
        else:
            append(encode_record(rec))
            continue
        body = dumps(d)[:-1]
        append(b"%b%b%d}\n" % (body, _TRAILER, crc32(body)))
    return b"".join(out)


def _check_job(job: object, job_id: str) -> Job:
    if type(job) is not dict:
        raise _BadRecord("ENQUEUE has no job object")
    if job.get("id") != job_id:
        raise _BadRecord(f"job.id={job.get('id')!r} differs from job_id={job_id!r}")
    attempt = job.get("attempt", 0)
    status = job.get("status", "pending")
    priority = job.get("priority", 0)
    scheduled = job.get("scheduled_at")
    deps = job.get("depends_on", [])
    if type(attempt) is not int or attempt < 0:
        raise _BadRecord(f"job.attempt={attempt!r} is not an integer >= 0")
    if type(status) is not str:
        raise _BadRecord(f"job.status={status!r} is not a string")
    if type(priority) is not int or not 0 <= priority <= PRIORITY_MAX:
        # (out of range, a replayed job would index no ready queue, or the wrong one)
        raise _BadRecord(f"job.priority={priority!r} is not an integer in 0..{PRIORITY_MAX}")
    if scheduled is not None and type(scheduled) not in (int, float):
        raise _BadRecord(f"job.scheduled_at={scheduled!r} is not a number")
    if type(deps) is not list or any(type(x) is not str for x in deps):
        raise _BadRecord("job.depends_on is not a list of job ids")
    return job_from_dict(job)


def decode_line(line: bytes) -> Record:
    """Parse and check one line (without its ``\\n``).

    Raises the private ``_BadRecord`` (a ``ValueError``) with a reason; valid JSON with a
    wrong field type is a bad record too, never a ``TypeError``/``KeyError``.
    """
    try:
        d = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise _BadRecord(f"not valid JSON ({exc})") from None
    if type(d) is not dict:
        raise _BadRecord(f"not a JSON object ({type(d).__name__})")
    # Fast path: the shapes a busy log is made of (ACK/TIMEOUT, DISPATCH, a plain ENQUEUE),
    # recognised by their exact key order and unpacked positionally.  It accepts only
    # lines the full checks below accept and builds the same Record; anything else (or
    # anything odd) falls through to them, so error messages are unchanged.
    keys = tuple(d)
    ok = False
    worker_id = deadline_ms = fjob = None
    if keys == _K_ATTEMPT:
        seq, rtype, job_id, ts, attempt, stored = d.values()
        ok = type(attempt) is int and attempt >= 0 and type(rtype) is str and rtype in _NO_JOB
    elif keys == _K_DISPATCH:
        seq, rtype, job_id, ts, attempt, worker_id, deadline_ms, stored = d.values()
        ok = (
            type(attempt) is int
            and attempt >= 0
            and type(worker_id) is int
            and type(deadline_ms) is int
            and type(rtype) is str
            and rtype in _NO_JOB
        )
    elif keys == _K_ENQUEUE:
        seq, rtype, job_id, ts, raw_job, stored = d.values()
        attempt = 0
        if rtype == "ENQUEUE" and type(raw_job) is dict and tuple(raw_job) == _K_JOB:
            jid, payload, jattempt, status = raw_job.values()
            if jid == job_id and type(jattempt) is int and jattempt >= 0 and type(status) is str:
                fjob = _new(Job, (jid, payload, jattempt, status, 0, None, ()))
                ok = True
    if ok and type(seq) is int and seq > 0 and type(job_id) is str and job_id:
        ms = _ms_by_iso.get(ts) if type(ts) is str else None
        if ms is not None and type(stored) is int:
            tail = b"%b%d}" % (_TRAILER, stored)
            if line.endswith(tail) and zlib.crc32(line[: -len(tail)]) == stored:
                return _new(
                    Record, (seq, rtype, job_id, ms, attempt, worker_id, deadline_ms, None, fjob)
                )
    try:
        seq = d["seq"]
        rtype = d["type"]
        job_id = d["job_id"]
        ts = d["timestamp"]
        stored = d["checksum"]
    except KeyError as exc:
        raise _BadRecord(f"missing field {exc.args[0]!r}") from None
    if type(stored) is not int:
        raise _BadRecord(f"checksum={stored!r} is not an integer")
    cut = line.rfind(_TRAILER)
    body = line[:cut]
    crc = zlib.crc32(body)
    if cut < 0 or crc != stored or line[cut:] != b"%b%d}" % (_TRAILER, crc):
        raise _BadRecord(f"checksum mismatch (stored {stored}, computed {crc})")
    if type(seq) is not int or seq < 1:
        raise _BadRecord(f"seq={seq!r} is not an integer >= 1")
    if type(rtype) is not str or rtype not in _TYPES:
        raise _BadRecord(f"unknown type {rtype!r}")
    if type(job_id) is not str or not job_id:
        raise _BadRecord(f"job_id={job_id!r} is not a non-empty string")
    timestamp_ms = _parse_ts(ts)
    present = 5
    attempt = d.get("attempt")
    if attempt is None:
        attempt = 0
    else:
        present += 1
        if type(attempt) is not int or attempt < 0:
            raise _BadRecord(f"attempt={attempt!r} is not an integer >= 0")
    worker_id = d.get("worker_id")
    if worker_id is not None:
        present += 1
        if type(worker_id) is not int:
            raise _BadRecord(f"worker_id={worker_id!r} is not an integer")
    deadline_ms = d.get("deadline_ms")
    if deadline_ms is not None:
        present += 1
        if type(deadline_ms) is not int:
            raise _BadRecord(f"deadline_ms={deadline_ms!r} is not an integer")
    reason = d.get("reason")
    if reason is not None:
        present += 1
        if type(reason) is not str:
            raise _BadRecord(f"reason={reason!r} is not a string")
    raw_job = d.get("job")
    job: Job | None = None
    if raw_job is not None:
        present += 1
        if rtype != "ENQUEUE":
            raise _BadRecord(f"{rtype} carries a job (only ENQUEUE does)")
        job = _check_job(raw_job, job_id)
    elif rtype == "ENQUEUE":
        raise _BadRecord("missing field 'job' (required on ENQUEUE)")
    if present != len(d):
        unknown = sorted(set(d) - _KEYS)
        if unknown:
            raise _BadRecord(f"unknown field {unknown[0]!r}")
        raise _BadRecord("a field is null")
    return _new(
        Record, (seq, rtype, job_id, timestamp_ms, attempt, worker_id, deadline_ms, reason, job)
    )


# == bulk decoding ===========================================================================
# Recovery reads millions of lines.  ``decode_line`` costs ~3.5 us a line (orjson builds a
# dict per record and per job, then Python checks every field).  Two bulk paths, both
# accepting exactly what ``decode_line`` accepts line by line and building the same Records
# (tested differentially, by hypothesis on written, damaged and rewritten logs, and by the
# fuzzer), both leaving every error message to ``decode_line``:
#
# 1. With the optional C accelerator ``phase1._walcheck`` (setup.py; ``_read_c``), one call
#    per segment reads every line in the writer's own shape straight into Records (or, for
#    recovery, plain tuples of their fields): trailer and CRC, keys in the writer's order,
#    no whitespace, strings of printable ASCII without escapes, integers of at most 18
#    digits, a valid timestamp (converted in C), ENQUEUE <=> job, job.id == job_id, the next
#    seq.  A plain payload (objects, arrays, such strings, integers, literals) is built in
#    C, any other is parsed by ``orjson.loads`` from its slice of the line.  The decoder
#    stops, without judging, at the first line it cannot vouch for (an escape, a float, a
#    key out of order, damage, a sequence break); ``decode_line`` reads that one line (or
#    names the damage) and the decoder resumes after it.  About 0.5 us a line, objects
#    included.
# 2. Without it (``_read_py``): one regex split cuts every line into its body and decimal
#    checksum, zlib checks each body, one list comparison checks all; msgspec decodes every
#    line into typed structs in one call, refusing unknown fields, nulls, wrong types and
#    out-of-range numbers the way ``decode_line`` does; the rest (ENQUEUE <=> job, job.id ==
#    job_id, timestamps, one record per line) in one pass; ``record_of`` turns each struct
#    into its Record.  Anything unusual in a segment sends the whole segment line by line.
#
# orjson reads an integer beyond [-2**63, 2**64 - 1] as a float (which decode_line refuses);
# msgspec would read it exactly, so ranges are set (to int64: msgspec's bounds are int64;
# a larger integer just takes the line-by-line path).  The C decoder reads at most 18
# digits, so it never meets the question.
_I64 = (1 << 63) - 1
_Int = Annotated[int, msgspec.Meta(ge=0, le=_I64)]
_Seq = Annotated[int, msgspec.Meta(ge=1, le=_I64)]
_Any64 = Annotated[int, msgspec.Meta(ge=-_I64 - 1, le=_I64)]
_Id = Annotated[str, msgspec.Meta(min_length=1)]
_CRC_SPLIT = re.compile(rb',"checksum":(0|[1-9][0-9]{0,9})}\n')


_RAW_NULL = msgspec.Raw(b"null")


class _FastJob(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    id: str
    payload: msgspec.Raw = _RAW_NULL  # orjson parses it, exactly as decode_line does
    attempt: _Int = 0
    status: str = "pending"
    priority: Annotated[int, msgspec.Meta(ge=0, le=PRIORITY_MAX)] = 0
    scheduled_at: _Any64 | float | None = None
    depends_on: list[str] = []


class _FastRecord(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    seq: _Seq
    type: Literal["ENQUEUE", "DISPATCH", "ACK", "FAIL", "TIMEOUT", "RETRY", "DEAD"]
    job_id: _Id
    timestamp: str
    checksum: int
    attempt: _Int = 0
    worker_id: _Any64 | None = None  # an explicit null is refused by _NULLS below
    deadline_ms: _Any64 | None = None
    reason: str | None = None
    job: _FastJob | None = None


_fast_lines = msgspec.json.Decoder(_FastRecord).decode_lines
# decode_line refuses a null field; these bytes can only be such a field (or a payload key
# of that name holding null, which then just takes the line-by-line path).
_NULLS = (b'"worker_id":null', b'"deadline_ms":null', b'"reason":null', b'"job":null')
_get_stamp = attrgetter("timestamp")
_get_type = attrgetter("type")
_get_seq = attrgetter("seq")

Row = Any
"""What ``read_wal(rows=True)`` returns: a Record or, where a bulk path read it, a plain
tuple of a Record's fields in their order (a tuple unpacks several times faster than a
Record's fields are read by name, and replay unpacks every row), whose timestamp may be
left as the line's checked ISO text (replay never reads it); ``record_of`` gives its
Record."""
_row_of = attrgetter(
    "seq", "type", "job_id", "timestamp", "attempt", "worker_id", "deadline_ms", "reason", "job"
)


def _checksums_hold_py(data: bytes, lines: int) -> bool:
    parts = _CRC_SPLIT.split(data)
    if parts[-1] or len(parts) // 2 != lines:
        return False  # an empty line, or one without a trailer (merged into the next body)
    return list(map(zlib.crc32, parts[0:-1:2])) == list(map(int, parts[1::2]))


def _checksums_hold_c(data: bytes, lines: int) -> bool:
    return bool(_check_lines(data) == lines) and (not data or data[-1] == 0x0A)


try:  # the optional C accelerator (setup.py); same answers as the regex split, ~6x faster
    from phase1._walcheck import check_lines as _check_lines

    _checksums_hold = _checksums_hold_c
except ImportError:  # pragma: no cover - built wherever a C compiler was at install
    _checksums_hold = _checksums_hold_py

try:  # the same module's encoder (see encode_records)
    from phase1._walcheck import encode_records as _c_encode
except ImportError:  # pragma: no cover - built wherever a C compiler was at install
    _c_encode = None

try:  # the same module's whole-record decoder (see _read_c)
    from phase1._walcheck import decode_records as _c_decode
except ImportError:  # pragma: no cover - built wherever a C compiler was at install
    _c_decode = None


def _decode_rows_fast(data: bytes) -> list[Row] | None:
    """The records of ``data`` (complete lines, each ending in ``\\n``) as rows, or
    ``None`` if any line is not a record ``decode_line`` would accept (the caller then goes
    line by line, for the exact error)."""
    if b":null" in data and any(null in data for null in _NULLS):
        return None  # a null field
    n = data.count(b"\n")
    # Every line ends in ",\"checksum\":<crc>}" with the CRC of the bytes before it; so the
    # object's last key is the checksum, the same one decode_line checks.
    if not _checksums_hold(data, n):
        return None
    try:
        rows = _fast_lines(data)
        if len(rows) != n:
            return None  # two objects on a line
        for ts in set(map(_get_stamp, rows)):
            _parse_ts(ts)
    except (msgspec.DecodeError, UnicodeDecodeError, _BadRecord):  # ValidationError too
        return None
    enqueues = 0
    loads = orjson.loads
    try:
        for row in rows:
            j = row.job
            if j is not None:
                job_id = row.job_id
                if j.id != job_id or row.type != "ENQUEUE":
                    return None
                deps = j.depends_on
                # the row carries the Job itself from now on (what replay and Records hold)
                row.job = _new(  # type: ignore[assignment]
                    Job,
                    (
                        job_id,
                        loads(memoryview(j.payload)),
                        j.attempt,
                        j.status,
                        j.priority,
                        j.scheduled_at,
                        tuple(deps) if deps else (),
                    ),
                )
                enqueues += 1
    except orjson.JSONDecodeError:
        return None
    if list(map(_get_type, rows)).count("ENQUEUE") != enqueues:
        return None  # an ENQUEUE without its job
    return rows


def record_of(row: Row) -> Record:
    """The Record of a row from ``read_wal(rows=True)``: a Record is returned as is, a
    tuple of its fields (the C decoder's rows) or a bulk-decoding struct is converted."""
    if type(row) is Record:
        return row
    if type(row) is tuple:
        ts = row[3]
        if type(ts) is str:  # a bulk-decoding row: the checked ISO text
            ms = _ms_by_iso.get(ts)
            return _new(Record, (*row[:3], _parse_ts(ts) if ms is None else ms, *row[4:]))
        return _new(Record, row)
    ts = row.timestamp
    ms = _ms_by_iso.get(ts)
    if ms is None:
        ms = _parse_ts(ts)
    return _new(
        Record,
        (
            row.seq,
            row.type,
            row.job_id,
            ms,
            row.attempt,
            row.worker_id,
            row.deadline_ms,
            row.reason,
            row.job,
        ),
    )


def _decode_lines_fast(data: bytes) -> list[Record] | None:
    """``_decode_rows_fast`` as Records."""
    rows = _decode_rows_fast(data)
    return None if rows is None else list(map(record_of, rows))


def _reason_of(line: bytes) -> str:
    try:
        decode_line(line)
    except _BadRecord as exc:
        return exc.reason
    return "the record is complete but its newline is missing"


def _seq_of(line: bytes) -> int | None:
    match = _SEQ_RE.match(line)
    return int(match.group(1)) if match else None


# == segments =============================================================================
def segment_path(wal_path: str, last_seq: int) -> str:
    """The name a closed segment whose last record is ``last_seq`` gets."""
    return f"{wal_path}.{last_seq:012d}"


def _closed_segments(disk: Disk, wal_path: str) -> list[tuple[int, str]]:
    folder = folder_of(wal_path)
    base = wal_path.rpartition("/")[2]
    prefix = base + "."
    found: list[tuple[int, str]] = []
    for name in disk.listdir(folder):
        if name.startswith(prefix):
            suffix = name[len(prefix) :]
            if len(suffix) >= 12 and suffix.isascii() and suffix.isdigit():
                found.append((int(suffix), f"{wal_path}.{suffix}"))
    found.sort()
    return found


def list_segments(disk: Disk, wal_path: str) -> list[str]:
    """Closed segments in seq order, then the active one if it exists."""
    paths = [p for _, p in _closed_segments(disk, wal_path)]
    if disk.exists(wal_path):
        paths.append(wal_path)
    return paths


def drop_segments_upto(disk: Disk, wal_path: str, seq: int) -> list[str]:
    """Unlink closed segments whose last seq is <= ``seq``, then fsync the folder.

    Call only once the *oldest* snapshot kept covers ``seq`` (it is durable).
    """
    dropped: list[str] = []
    for last, path in _closed_segments(disk, wal_path):
        if last <= seq:
            disk.unlink(path)
            dropped.append(path)
    if dropped:
        disk.fsync_dir(folder_of(wal_path))
    return dropped


# == reading ==============================================================================
@dataclass(frozen=True, slots=True)
class TornTail:
    """Damage at the end of the last segment that no valid record follows (crash residue).

    ``offset`` is the first damaged byte, ``length_bytes`` runs to end of file, ``line`` is
    the 1-based line number of the damaged line.
    """

    path: str
    offset: int
    length_bytes: int
    reason: str
    line: int


@dataclass(frozen=True, slots=True)
class WalRead:
    """What ``read_wal`` found.

    ``records`` holds only seq > ``after_seq``; ``first_seq``/``last_seq`` are those of all
    valid records read (0 if none); ``segments`` are the files read (closed segments wholly
    <= ``after_seq`` are skipped); ``lines_read`` counts valid lines decoded; ``bytes_read``
    counts the records' bytes, ``padding_bytes`` the preallocated padding after them.
    """

    records: list[Record]
    segments: list[str]
    first_seq: int
    last_seq: int
    torn: TornTail | None
    bytes_read: int
    lines_read: int
    padding_bytes: int = 0
    enqueue_ids: list[str] | None = None
    """The job id of each ENQUEUE in ``records``, in order, where the C decoder read them
    (``None`` otherwise); replay's up-front freshness check reads these instead of every
    record."""


@dataclass(frozen=True, slots=True)
class _Damage:
    path: str
    line: int
    offset: int
    reason: str
    seq: int | None
    sequence: bool  # a sequence break (always corruption), not a bad line
    followed: bool  # a valid record follows it (or it sits in a closed segment)
    file_size: int


@dataclass(slots=True)
class _Scan:
    records: list[Record] = field(default_factory=list)
    segments: list[str] = field(default_factory=list)
    first_seq: int = 0
    last_seq: int = 0
    bytes_read: int = 0
    lines_read: int = 0
    padding_bytes: int = 0
    damage: _Damage | None = None
    enqueue_ids: list[str] | None = None


def _valid_follows(lines: list[bytes]) -> bool:
    """Does a complete valid record appear in ``lines`` (all newline-terminated)?"""
    for raw in lines:
        try:
            decode_line(raw)
        except _BadRecord:
            continue
        return True
    return False


def data_end(data: bytes | mmap) -> int:
    """Where a segment's records end: before its trailing padding (``PAD`` bytes after the
    last record's own newline).  A segment of nothing but padding ends at 0.  ``data`` may
    be a mapped file (``OsDisk.read_mapped``): it is read from the end, a slice at a time."""
    n = len(data)
    if data[n - 2 :] != b"\n\n" and not (n == 1 and data[:1] == PAD):
        return n  # no padding: the common case costs two byte compares
    if type(data) is bytes:
        end = len(data.rstrip(PAD))
    else:
        end = n
        while end:
            start = max(0, end - (1 << 16))
            kept = len(data[start:end].rstrip(PAD))
            end = start + kept
            if kept:
                break
    return end + 1 if end else 0


def _split(data: bytes) -> tuple[list[bytes], bytes]:
    lines = data.split(b"\n")
    tail = lines.pop()  # after the last newline: b"" or a line the crash cut short
    return lines, tail


_Bad = tuple[int, int, str, int | None, bool]


class _LineFault(Exception):
    """Why a line ends the good part of a segment: ``args`` = (reason, seq or None,
    is_sequence_break)."""


def _next_record(raw: bytes, prev: int) -> Record:
    """``decode_line(raw)`` as the record after seq ``prev``, or ``_LineFault``."""
    try:
        rec = decode_line(raw)
    except _BadRecord as exc:
        raise _LineFault(exc.reason if raw else "empty line", _seq_of(raw), False) from None
    seq = rec.seq
    if prev and seq != prev + 1:
        what = "repeats" if seq == prev else ("goes back" if seq < prev else "skips")
        raise _LineFault(f"seq {seq} {what} after seq {prev} (expected {prev + 1})", seq, True)
    return rec


def _read_py(
    data: bytes, prev: int, after_seq: int, out: list[Any], rows: bool
) -> tuple[int, int, int, _Bad | None, list[bytes], bytes]:
    """One segment's records (seq > ``after_seq``) onto ``out``, without the C decoder:
    ``(lines read, offset after them, last seq, damage, the lines after it, the tail)``.
    ``rows``: the bulk path's rows as tuples (``_row_of``), not Records."""
    cut = data.rfind(b"\n") + 1
    fast: list[Any] | None = None
    if cut:
        fast = _decode_rows_fast(data[:cut])
    if fast is not None:
        first = fast[0].seq
        if (not prev or first == prev + 1) and list(map(_get_seq, fast)) == list(
            range(first, first + len(fast))
        ):
            kept = fast[max(0, after_seq - first + 1) :]
            out.extend(map(_row_of if rows else record_of, kept))
            return len(fast), cut, fast[-1].seq, None, [], data[cut:]
        # a sequence break: the loop below names it
    lines, tail = _split(data)
    offset = 0
    append = out.append
    for n, raw in enumerate(lines):
        try:
            rec = _next_record(raw, prev)
        except _LineFault as fault:
            return n, offset, prev, (n, offset, *fault.args), lines[n + 1 :], tail
        prev = rec.seq
        if prev > after_seq:
            append(rec)
        offset += len(raw) + 1
    return len(lines), offset, prev, None, [], tail


def _read_c(
    whole: bytes | mmap,
    end: int,
    prev: int,
    after_seq: int,
    out: list[Any],
    row_type: type[tuple[Any, ...]],
    ids: list[str],
) -> tuple[int, int, int, _Bad | None, list[bytes]]:
    """``_read_py`` of ``whole[:end]`` with the C decoder: it reads every line in the
    writer's own shape (as ``row_type``: Record, or a plain tuple of its fields) and stops
    at any other, which ``decode_line`` then reads (or names as damage); the tail after the
    last newline is ``whole[offset:end]``.  The job id of every ENQUEUE put on ``out`` goes
    onto ``ids``.  ``whole`` may be a mapped file: only its lines are copied out of it."""
    with memoryview(whole) as view, view[:end] as data:
        pos = 0
        n = 0
        append = out.append
        while True:
            # (no seq the decoder reads has more than 18 digits: beyond int64 it stops at once)
            pos, k, c_prev = _c_decode(
                data,
                pos,
                min(prev, _I64 - 1),
                max(-1, min(after_seq, _I64)),
                out,
                row_type,
                Job,
                orjson.loads,
                PRIORITY_MAX,
                ids,
            )
            if k:
                n += k
                prev = c_prev
            nl = whole.find(b"\n", pos, end)
            if nl < 0:
                return n, pos, prev, None, []
            try:
                rec = _next_record(whole[pos:nl], prev)
            except _LineFault as fault:
                later = [] if fault.args[2] else _split(whole[nl + 1 : end])[0]
                return n, pos, prev, (n, pos, *fault.args), later
            prev = rec.seq
            if prev > after_seq:
                append(rec)
                if rec.type == "ENQUEUE":
                    ids.append(rec.job_id)
            n += 1
            pos = nl + 1


def _scan(disk: Disk, wal_path: str, after_seq: int, rows: bool = False) -> _Scan:
    """Decode segments in order up to the first damage; never raises for bad bytes."""
    # A million new records would trigger the cyclic GC over and over (each pass walking
    # every record made so far); records hold no cycles, so pause it while reading.
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _scan_segments(disk, wal_path, after_seq, rows)
    finally:
        if enabled:
            gc.enable()


def _scan_segments(disk: Disk, wal_path: str, after_seq: int, rows: bool) -> _Scan:
    closed = _closed_segments(disk, wal_path)
    paths: list[tuple[str, int | None]] = [(p, last) for last, p in closed if last > after_seq]
    if disk.exists(wal_path):
        paths.append((wal_path, None))
    scan = _Scan()
    if _c_decode is not None:
        scan.enqueue_ids = []
    prev = 0
    # The C path reads a closed segment where it lies (a mapped file) when the disk can map
    # one.  Never the active segment: a live writer cuts its padding off (rotate, close),
    # and touching a mapped page past a file's new end is SIGBUS, not an error; closed
    # segments are never cut (rotate fsyncs before naming them; dropping one unlinks it,
    # which leaves a mapping intact).
    mapped = getattr(disk, "read_mapped", None) if _c_decode is not None else None
    for index, (path, name_seq) in enumerate(paths):
        whole: bytes | mmap = (
            mapped(path) if mapped is not None and name_seq is not None else disk.read(path)
        )
        # Only the active segment may be padded: rotate cuts the padding before the rename,
        # so trailing blank lines in a closed segment are damage like any other.
        file_size = len(whole)
        data_bytes = data_end(whole) if name_seq is None else file_size
        scan.segments.append(path)
        scan.bytes_read += data_bytes
        scan.padding_bytes += file_size - data_bytes
        # (0-based line index, byte offset, reason, seq if readable, is a sequence break)
        bad: tuple[int, int, str, int | None, bool] | None = None
        later: list[bytes] = []  # the complete lines after a bad one (is it followed?)
        if _c_decode is not None:
            assert scan.enqueue_ids is not None
            try:
                n_lines, offset, prev, bad, later = _read_c(
                    whole,
                    data_bytes,
                    prev,
                    after_seq,
                    scan.records,
                    tuple if rows else Record,
                    scan.enqueue_ids,
                )
                tail = whole[offset:data_bytes] if bad is None else b""
            finally:
                if not isinstance(whole, bytes):
                    whole.close()
        else:
            assert isinstance(whole, bytes)  # (mapped only for the C path)
            data = whole if data_bytes == file_size else whole[:data_bytes]
            n_lines, offset, prev, bad, later, tail = _read_py(
                data, prev, after_seq, scan.records, rows
            )
        if bad is None:
            if tail:
                reason = f"last line has no newline (torn write; {_reason_of(tail)})"
                bad = (n_lines, offset, reason, _seq_of(tail), False)
            elif name_seq is not None and (not n_lines or prev != name_seq):
                # rotate names a segment after its last record once it is fsynced, so a
                # closed segment ending elsewhere lost whole lines (found by phase1.fuzz)
                end = f"ends at seq {prev}" if n_lines else "is empty"
                reason = f"closed segment {end} but its name says seq {name_seq}"
                bad = (n_lines, offset, reason, None, True)
        scan.lines_read += n_lines if bad is None else bad[0]
        if bad is not None:
            n, off, reason, seq_read, sequence = bad
            last_file = index == len(paths) - 1
            # Corruption unless it is damage in the last file with nothing valid after it
            # (a closed last file is never torn: rotate fsyncs before renaming).
            followed = sequence or not last_file or name_seq is not None or _valid_follows(later)
            scan.damage = _Damage(path, n + 1, off, reason, seq_read, sequence, followed, file_size)
            break
    scan.last_seq = prev
    if scan.lines_read:
        scan.first_seq = prev - scan.lines_read + 1  # seqs are consecutive
    return scan


def _corruption(wal_path: str, damage: _Damage) -> WalCorruptionError:
    where = f"{damage.path}: line {damage.line}, byte offset {damage.offset}"
    seq = f" (seq {damage.seq})" if damage.seq is not None else ""
    if damage.sequence:
        why = "the sequence is broken"
    elif damage.path != wal_path:
        why = "it is in a closed segment (fsynced before closing, so no crash tears it)"
    else:
        why = "valid records follow it, so it is corruption, not a torn tail"
    return WalCorruptionError(
        f"{where}: {damage.reason}{seq}; {why}. Inspect with `phase1 wal verify {wal_path}`; "
        f"`phase1 wal repair {wal_path}` cuts the log there (cut bytes are saved beside it).",
        path=damage.path,
        line=damage.line,
        offset=damage.offset,
        seq=damage.seq,
    )


def read_wal(disk: Disk, wal_path: str, *, after_seq: int = 0, rows: bool = False) -> WalRead:
    """Read every segment; return records with seq > ``after_seq`` and any torn tail.

    ``rows=True`` (recovery's path) may return plain tuples of a Record's fields (``Row``)
    instead of Records where the C decoder read them; ``record_of`` turns one into its
    Record.

    Raises ``WalCorruptionError`` for damage followed by valid records, damage in a closed
    segment, or a break in the sequence.  Nothing is changed on disk.
    """
    scan = _scan(disk, wal_path, after_seq, rows)
    torn: TornTail | None = None
    damage = scan.damage
    if damage is not None:
        if damage.followed:
            raise _corruption(wal_path, damage)
        torn = TornTail(
            damage.path,
            damage.offset,
            damage.file_size - damage.offset,
            damage.reason,
            damage.line,
        )
    return WalRead(
        scan.records,
        scan.segments,
        scan.first_seq,
        scan.last_seq,
        torn,
        scan.bytes_read,
        scan.lines_read,
        scan.padding_bytes,
        scan.enqueue_ids,
    )


def verify_wal(disk: Disk, wal_path: str) -> WalRead:
    """``read_wal`` of the whole log (for ``phase1 wal verify``)."""
    return read_wal(disk, wal_path)


def truncate_torn(disk: Disk, torn: TornTail) -> None:
    """Cut the torn tail off and fsync, so the next record does not glue onto garbage."""
    disk.truncate(torn.path, torn.offset)
    disk.fsync(torn.path)


def wal_stats(read: WalRead) -> dict[str, Any]:
    """Counts by type, seq range, segments, bytes and the torn tail, as plain data."""
    by_type = {t: 0 for t in RECORD_TYPES}
    for rec in read.records:
        by_type[rec.type] += 1
    torn = read.torn
    return {
        "records": len(read.records),
        "by_type": by_type,
        "first_seq": read.first_seq,
        "last_seq": read.last_seq,
        "segments": list(read.segments),
        "bytes": read.bytes_read,
        "padding_bytes": read.padding_bytes,
        "lines": read.lines_read,
        "torn": None
        if torn is None
        else {
            "path": torn.path,
            "offset": torn.offset,
            "length_bytes": torn.length_bytes,
            "line": torn.line,
            "reason": torn.reason,
        },
    }


@dataclass(frozen=True, slots=True)
class RepairReport:
    """What ``repair_wal`` cut.  ``path is None`` means the log was clean: nothing cut."""

    path: str | None
    line: int
    offset: int
    reason: str
    bytes_cut: int
    records_lost: int  # an estimate: lines in the cut bytes
    saved_to: list[str]
    renamed: list[tuple[str, str]]

    @property
    def repaired(self) -> bool:
        return self.path is not None


def _lines_in(data: bytes) -> int:
    return data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)


def repair_wal(disk: Disk, wal_path: str) -> RepairReport:
    """Cut the log at its first damage, saving every cut byte first (only when asked).

    The damaged file keeps its bytes before the damage; the bytes from the damage to its
    end (any preallocated padding left out) go to ``f"{path}.corrupt-{offset}"``
    (fsynced); each later segment is renamed to
    ``f"{segment}.corrupt-0"``.  A closed segment that was cut is renamed to its true last
    seq (or, emptied, saved as a whole), so segment names stay in order.
    """
    scan = _scan(disk, wal_path, 0)
    damage = scan.damage
    if damage is None:
        return RepairReport(None, 0, 0, "clean", 0, 0, [], [])
    folder = folder_of(wal_path)
    data = disk.read(damage.path)
    cut = data[damage.offset : max(damage.offset, data_end(data))]  # padding is not data
    saved = f"{damage.path}.corrupt-{damage.offset}"
    disk.write(saved, cut)
    disk.fsync(saved)
    saved_to = [saved]
    renamed: list[tuple[str, str]] = []
    bytes_cut = len(cut)
    lost = _lines_in(cut)
    disk.truncate(damage.path, damage.offset)
    disk.fsync(damage.path)
    segments = list_segments(disk, wal_path)
    for path in segments[segments.index(damage.path) + 1 :]:
        later = disk.read(path)
        later = later[: data_end(later)]
        bytes_cut += len(later)
        lost += _lines_in(later)
        target = f"{path}.corrupt-0"
        disk.rename(path, target)
        saved_to.append(target)
        renamed.append((path, target))
    if damage.path != wal_path:
        # A cut closed segment: its name must tell its real last seq again.
        if scan.last_seq and damage.offset > 0:
            target = segment_path(wal_path, scan.last_seq)
        else:
            target = f"{damage.path}.corrupt-empty"
        if target != damage.path:
            disk.rename(damage.path, target)
            renamed.append((damage.path, target))
    disk.fsync_dir(folder)
    return RepairReport(
        damage.path, damage.line, damage.offset, damage.reason, bytes_cut, lost, saved_to, renamed
    )


# == writing ==============================================================================
class WalWriter:
    """Appends records to the active segment under a commit policy.

    * ``always``: ``append`` fsyncs before it returns.
    * ``batch`` (group commit): the caller fsyncs when ``sync_due(now_s)``: ``batch_size``
      records wait or the oldest waited ``batch_interval_s``; one fsync covers all of them.
    * ``never``: the OS decides; acknowledged records survive a process crash (the bytes are
      in the page cache once ``append`` returns) but not a power loss.

    A failed write or fsync poisons the writer (``DurabilityError`` now and on every later
    call), as in LevelDB: after a failed fsync the kernel may have dropped the dirty pages.
    """

    def __init__(
        self,
        disk: Disk,
        wal_path: str,
        *,
        next_seq: int,
        policy: str = "batch",
        batch_size: int = 100,
        batch_interval_s: float = 0.010,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        preallocate_bytes: int = 0,
        protocol: Protocol = CORRECT,
    ) -> None:
        if policy not in POLICIES:
            raise ValueError(f"policy={policy!r} is not one of {', '.join(POLICIES)}")
        if next_seq < 1:
            raise ValueError(f"next_seq={next_seq} must be >= 1")
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be >= 1")
        if batch_interval_s < 0:
            raise ValueError(f"batch_interval_s={batch_interval_s} must be >= 0")
        if segment_bytes < 1:
            raise ValueError(f"segment_bytes={segment_bytes} must be >= 1")
        if preallocate_bytes < 0:
            raise ValueError(f"preallocate_bytes={preallocate_bytes} must be >= 0")
        self.disk = disk
        self.wal_path = wal_path
        self.policy = policy
        self.batch_size = batch_size
        self.batch_interval_s = batch_interval_s
        self.segment_bytes = segment_bytes
        self.preallocate_bytes = preallocate_bytes
        self.protocol = protocol  # a broken variant only in the crash explorer's lessons
        self._folder = folder_of(wal_path)
        self._appended = next_seq - 1
        self._durable = next_seq - 1
        # (last seq of an unsynced append, its now_s): the oldest gives the batch age.
        self._waiting: deque[tuple[int, float | None]] = deque()
        self._poison: str | None = None
        self._closed = False
        try:
            disk.makedirs(self._folder)
            # _size: where the records end (the next append goes there); _alloc: the file's
            # length, padding included (a previous run may have preallocated).
            raw = disk.read(wal_path) if disk.exists(wal_path) else b""
            self._alloc = len(raw)
            self._size = data_end(raw)
            del raw
            # A new file's *name* is durable only once its folder is fsynced.
            self._name_durable = False
            if self._alloc:
                # A previous run's bytes (and name) may sit only in the page cache: make
                # them durable so durable_seq starts true.
                if protocol.fsync:
                    disk.fsync(wal_path)
                disk.fsync_dir(self._folder)
                self._name_durable = True
        except OSError as exc:
            raise self._poisoned_by("open", wal_path, exc) from exc

    # -- state ------------------------------------------------------------------------
    @property
    def next_seq(self) -> int:
        return self._appended + 1

    @property
    def appended_seq(self) -> int:
        return self._appended

    @property
    def durable_seq(self) -> int:
        return self._durable

    @property
    def ack_seq(self) -> int:
        """The last seq a caller may acknowledge under the policy."""
        return self._appended if self.policy == "never" else self._durable

    @property
    def unsynced(self) -> int:
        return self._appended - self._durable

    @property
    def poisoned(self) -> bool:
        return self._poison is not None

    @property
    def active_bytes(self) -> int:
        return self._size

    # -- appending --------------------------------------------------------------------
    def append(
        self, records: Sequence[Record], now_s: float | None = None, *, encoded: bytes | None = None
    ) -> int:
        """Write ``records`` (seqs ``next_seq``, ``next_seq + 1``, ...) with one disk write.

        ``encoded``: their ``encode_records`` bytes, when the caller made them already (the
        threaded shell encodes in each caller's thread, off the fsync thread's path); one
        line per record is checked.  Returns the last seq.  ``ValueError`` if the seqs do
        not continue the log or ``encoded`` has the wrong number of lines (nothing is
        written); ``DurabilityError`` if the writer is or becomes poisoned.
        """
        if self._poison is not None or self._closed:
            self._check_usable()  # raises
        if not records:
            return self._appended
        expected = self._appended + 1
        for i, rec in enumerate(records):
            if rec.seq != expected + i:
                raise ValueError(
                    f"{self.wal_path}: record {i} has seq {rec.seq}, expected {expected + i} "
                    f"(the log continues at {expected}); nothing written"
                )
        if encoded is None:
            data = encode_records(records)
        else:
            lines = encoded.count(b"\n")
            if lines != len(records) or not encoded.endswith(b"\n"):
                raise ValueError(
                    f"{self.wal_path}: encoded holds {lines} lines for {len(records)} "
                    "records; nothing written"
                )
            data = encoded
        start = self._size
        end = start + len(data)
        try:
            if self._alloc > start or self.preallocate_bytes:
                if end > self._alloc and self.preallocate_bytes:
                    # Grow the padding in the same write, to the next multiple of the chunk:
                    # a later overwrite changes no file size, so its fdatasync has no
                    # metadata to commit (about half the latency on ext4).
                    chunk = self.preallocate_bytes
                    data += PAD * ((end // chunk + 1) * chunk - end)
                self.disk.write_at(self.wal_path, start, data)
                if start + len(data) > self._alloc:
                    self._alloc = start + len(data)
            else:
                self.disk.append(self.wal_path, data)
                self._alloc = end
        except OSError as exc:
            raise self._poisoned_by("append", self.wal_path, exc) from exc
        self._appended = records[-1].seq
        self._size = end
        self._waiting.append((self._appended, now_s))
        if self.policy == "always":
            self.sync()
        if self._size >= self.segment_bytes:
            self.rotate()
        return self._appended

    def sync_due(self, now_s: float) -> bool:
        """Should the caller fsync now (``batch``: size or age of the waiting batch)?"""
        if self._appended <= self._durable or self.policy == "never":
            return False
        if self.policy == "always" or self.unsynced >= self.batch_size:
            return True
        first = self._waiting[0][1] if self._waiting else None
        return first is not None and now_s - first >= self.batch_interval_s

    # -- group commit -------------------------------------------------------------------
    def fsync_upto(self) -> int:
        """fsync the active segment; return the seq that fsync covers (``appended_seq`` when
        it started).  Does not change ``durable_seq``: call ``mark_durable`` with the result.
        May run outside the caller's lock, but never concurrently with ``rotate``."""
        if self._poison is not None or self._closed:
            self._check_usable()  # raises
        target = self._appended
        if target <= self._durable:
            return target
        try:
            if self.protocol.fsync:
                self.disk.fsync(self.wal_path)
            if not self._name_durable:
                # The first fsync of a fresh segment: without this a power loss can drop
                # the whole file, fsynced bytes and all (its directory entry was never made
                # durable).  Found by SimDisk; costs one extra fsync per segment.
                self.disk.fsync_dir(self._folder)
                self._name_durable = True
        except OSError as exc:
            raise self._poisoned_by("fsync", self.wal_path, exc) from exc
        return target

    def mark_durable(self, seq: int) -> None:
        """Record that every seq <= ``seq`` is durable (the result of ``fsync_upto``)."""
        if seq > self._appended:
            raise ValueError(f"mark_durable({seq}) beyond appended_seq {self._appended}")
        if seq > self._durable:
            self._durable = seq
        waiting = self._waiting
        while waiting and waiting[0][0] <= self._durable:
            waiting.popleft()

    def sync(self) -> int:
        """fsync and mark durable (single-threaded callers); returns ``durable_seq``."""
        self.mark_durable(self.fsync_upto())
        return self._durable

    # -- segments -------------------------------------------------------------------------
    def rotate(self) -> str | None:
        """Close the active segment: fsync it, rename it to its closed name, fsync the
        folder.  Returns the closed path, or ``None`` when the active segment is empty.

        The shell calls it under its core lock right after ``core.export()``; the next
        append starts a fresh active file.
        """
        self._check_usable()
        path = self.wal_path
        try:
            if not self.disk.exists(path) or self._size == 0:
                return None
            trim = self._cut_padding()  # a closed segment keeps no padding
            if self._durable < self._appended or trim:
                if self.protocol.fsync:
                    self.disk.fsync(path)
                self.mark_durable(self._appended)
            closed = segment_path(path, self._appended)
            self.disk.rename(path, closed)
            if self.protocol.rename_dir_fsync:
                self.disk.fsync_dir(self._folder)
        except OSError as exc:
            raise self._poisoned_by("rotate", path, exc) from exc
        self._size = 0
        self._alloc = 0
        self._name_durable = False
        return closed

    def close(self) -> None:
        """Sync what is unsynced and cut any preallocated padding (unless poisoned), and
        release the disk's handles.  A cleanly closed log has no trailing blank lines."""
        if self._closed:
            return
        try:
            if self._poison is None:
                try:
                    if self._cut_padding() and self.protocol.fsync:
                        self.disk.fsync(self.wal_path)
                except OSError as exc:
                    raise self._poisoned_by("close", self.wal_path, exc) from exc
                self.sync()
        finally:
            self._closed = True
            self.disk.close()

    def _cut_padding(self) -> bool:
        """Truncate the preallocated padding (not fsynced); False if there was none."""
        if self._alloc <= self._size:
            return False
        self.disk.truncate(self.wal_path, self._size)
        self._alloc = self._size
        return True

    # -- failure ----------------------------------------------------------------------------
    def _check_usable(self) -> None:
        if self._poison is not None:
            raise DurabilityError(self._poison)
        if self._closed:
            raise ValueError(f"{self.wal_path}: the WAL writer is closed")

    def _poisoned_by(self, op: str, path: str, exc: OSError) -> DurabilityError:
        self._poison = (
            f"{path}: {op} failed ({exc}); the WAL writer is poisoned and refuses further "
            "appends (after a failed fsync the OS may have dropped unwritten pages, so a "
            "retry could lie). Restart the process and recover from the files."
        )
        return DurabilityError(self._poison)
