"""A binary framing of WAL records, for lesson 13 (the seed's decision 1, measured).

Owns: ``encode_frame`` / ``decode_frame`` / ``read_frames`` (a length-prefixed, CRC-checked
binary form of the same ``Record`` that ``phase1.wal`` writes as a JSON line), the sample
records lesson 13 measures, and the size and speed tables comparing the two framings.

Must not know: how the queue decides anything.  This is a lesson's model of what a phase-3
format could look like, not a second on-disk format: nothing in phase1 writes it to a WAL.

Frame layout (little-endian, no padding)::

    offset  size  field
    0       4     len       u32   bytes after this 8-byte prefix
    4       4     crc       u32   zlib.crc32 of the len field and every byte after crc
    8       8     seq       u64
    16      1     type      u8    TYPE_CODES (1 ENQUEUE .. 7 DEAD)
    17      1     flags     u8    which optional fields are present (FLAG_*)
    18      8     ts        i64   timestamp_ms
    26      2     attempt   u16
    28      4     worker    i32   0 unless FLAG_WORKER
    32      8     deadline  i64   0 unless FLAG_DEADLINE
    40      2     id_len    u16   then job_id (UTF-8)
            [2    reason_len u16, then reason (UTF-8)]       if FLAG_REASON
            [4    job_len    u32, then the job as JSON]      if FLAG_JOB (ENQUEUE only)

The job travels as the same JSON object the WAL writes (``job_to_dict``): payloads are
arbitrary JSON, and re-inventing a JSON-equivalent binary encoding would teach nothing.

Invariants kept:

* ``decode_frame(encode_frame(r)) == r`` for every record ``wal.encode_record`` accepts (and
  ``encode_frame`` refuses the same records it refuses, plus fields that do not fit their
  width, e.g. ``attempt`` > 65535).
* The CRC covers the length field too, so a damaged length is caught, not trusted.
* ``read_frames`` tells a torn tail (damage nothing valid follows) from corruption (a valid
  frame follows the damage), like ``wal.read_wal``.  A binary stream has no newline to
  resynchronise on, so finding "a valid frame follows" means trying every later offset
  (``resync=True``); with ``resync=False`` the reader trusts the first damaged frame to be
  the end, which is exactly the mistake lesson 13 shows.
"""

from __future__ import annotations

import gc
import random
import struct
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import pandas as pd

from phase1.core import RECORD_TYPES, QueueCore, Record, SendToWorker
from phase1.jobs import Job, generate_test_jobs, job_from_dict, job_to_dict
from phase1.wal import decode_line, encode_record

__all__ = [
    "TYPE_CODES",
    "FLAG_WORKER",
    "FLAG_DEADLINE",
    "FLAG_REASON",
    "FLAG_JOB",
    "HEADER_BYTES",
    "MAX_FRAME_BYTES",
    "FrameError",
    "FrameCorruption",
    "TornFrame",
    "FrameRead",
    "encode_frame",
    "encode_frames",
    "decode_frame",
    "read_frames",
    "frame_layout",
    "hexdump",
    "sample_records",
    "size_table",
    "speed_table",
]

#: Record type -> the u8 stored in a frame.  Explicit (not ``RECORD_TYPES.index``) so that
#: reordering the core's table can never silently change the meaning of stored bytes.
TYPE_CODES: dict[str, int] = {
    "ENQUEUE": 1,
    "DISPATCH": 2,
    "ACK": 3,
    "FAIL": 4,
    "TIMEOUT": 5,
    "RETRY": 6,
    "DEAD": 7,
}
_TYPE_NAMES = {code: name for name, code in TYPE_CODES.items()}
assert set(TYPE_CODES) == set(RECORD_TYPES), "framing.TYPE_CODES must cover core.RECORD_TYPES"

FLAG_WORKER = 0x01
FLAG_DEADLINE = 0x02
FLAG_REASON = 0x04
FLAG_JOB = 0x08
_FLAGS_ALL = FLAG_WORKER | FLAG_DEADLINE | FLAG_REASON | FLAG_JOB

_PREFIX = struct.Struct("<II")  # len, crc
_LEN = struct.Struct("<I")
_BODY = struct.Struct("<QBBqHiqH")  # seq, type, flags, ts, attempt, worker, deadline, id_len
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")

#: Fixed part of every frame: the 8-byte prefix plus the 34-byte body header.
HEADER_BYTES = _PREFIX.size + _BODY.size
#: A declared length above this is damage, not a record (the WAL caps payloads at 1 MiB).
MAX_FRAME_BYTES = 16 << 20

_U16_MAX = (1 << 16) - 1
_I32 = (-(1 << 31), (1 << 31) - 1)
_I64 = (-(1 << 63), (1 << 63) - 1)


class FrameError(ValueError):
    """One frame is not valid; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class FrameCorruption(ValueError):
    """Damage at ``offset`` with a valid frame after it (at ``next_valid``): not a torn tail."""

    def __init__(self, offset: int, reason: str, next_valid: int) -> None:
        super().__init__(
            f"byte offset {offset}: {reason}; a valid frame starts at byte {next_valid}, "
            "so this is corruption, not a torn tail"
        )
        self.offset = offset
        self.reason = reason
        self.next_valid = next_valid


@dataclass(frozen=True, slots=True)
class TornFrame:
    """The damaged end of a stream: where it starts, why, and how many bytes it holds."""

    offset: int
    reason: str
    dropped_bytes: int


@dataclass(frozen=True, slots=True)
class FrameRead:
    """What ``read_frames`` found: the valid records, then the torn tail if any."""

    records: list[Record]
    torn: TornFrame | None


# == encoding ==============================================================================
def _utf8(text: str, what: str, seq: int) -> bytes:
    data = text.encode("utf-8")
    if len(data) > _U16_MAX:
        raise ValueError(f"record seq {seq}: {what} is {len(data)} bytes (at most {_U16_MAX})")
    return data


def _check_range(value: int, lo: int, hi: int, what: str, seq: int) -> None:
    if not lo <= value <= hi:
        raise ValueError(f"record seq {seq}: {what}={value} does not fit in {lo}..{hi}")


def encode_frame(rec: Record) -> bytes:
    """One record as a binary frame (layout in the module docstring).

    Raises ``ValueError`` for a record ``wal.encode_record`` refuses, or one whose fields do
    not fit their widths.
    """
    code = TYPE_CODES.get(rec.type)
    if code is None:
        raise ValueError(f"record seq {rec.seq}: unknown type {rec.type!r}")
    if not rec.job_id:
        raise ValueError(f"record seq {rec.seq}: empty job_id")
    _check_range(rec.seq, 1, (1 << 64) - 1, "seq", rec.seq)
    _check_range(rec.timestamp_ms, *_I64, "timestamp_ms", rec.seq)
    _check_range(rec.attempt, 0, _U16_MAX, "attempt", rec.seq)
    flags = 0
    worker = deadline = 0
    if rec.worker_id is not None:
        _check_range(rec.worker_id, *_I32, "worker_id", rec.seq)
        flags |= FLAG_WORKER
        worker = rec.worker_id
    if rec.deadline_ms is not None:
        _check_range(rec.deadline_ms, *_I64, "deadline_ms", rec.seq)
        flags |= FLAG_DEADLINE
        deadline = rec.deadline_ms
    job_id = _utf8(rec.job_id, "job_id", rec.seq)
    tail = [job_id]
    if rec.reason is not None:
        flags |= FLAG_REASON
        reason = _utf8(rec.reason, "reason", rec.seq)
        tail += [_U16.pack(len(reason)), reason]
    if rec.job is not None:
        if rec.type != "ENQUEUE":
            raise ValueError(f"record seq {rec.seq}: only ENQUEUE carries a job ({rec.type})")
        if rec.job.id != rec.job_id:
            raise ValueError(f"record seq {rec.seq}: job.id {rec.job.id!r} differs from job_id")
        flags |= FLAG_JOB
        job = orjson.dumps(job_to_dict(rec.job))
        tail += [_U32.pack(len(job)), job]
    elif rec.type == "ENQUEUE":
        raise ValueError(f"record seq {rec.seq}: ENQUEUE of {rec.job_id!r} has no job")
    body = b"".join(
        [
            _BODY.pack(
                rec.seq,
                code,
                flags,
                rec.timestamp_ms,
                rec.attempt,
                worker,
                deadline,
                len(job_id),
            ),
            *tail,
        ]
    )
    length = _LEN.pack(len(body))
    return _PREFIX.pack(len(body), zlib.crc32(body, zlib.crc32(length))) + body


def encode_frames(recs: Sequence[Record]) -> bytes:
    """The frames of ``recs`` back to back (what one append would write)."""
    return b"".join([encode_frame(r) for r in recs])


# == decoding ==============================================================================
def _string(buf: bytes, at: int, end: int, n: int, what: str) -> tuple[str, int]:
    if at + n > end:
        raise FrameError(f"{what} runs past the end of its frame")
    try:
        return buf[at : at + n].decode("utf-8"), at + n
    except UnicodeDecodeError:
        raise FrameError(f"{what} is not valid UTF-8") from None


def decode_frame(buf: bytes, offset: int = 0) -> tuple[Record, int]:
    """The record whose frame starts at ``offset``, and the offset just after it.

    Raises ``FrameError`` (a ``ValueError``) with a reason for a cut or damaged frame.
    """
    size = len(buf)
    if offset + _PREFIX.size > size:
        raise FrameError(f"frame header cut: {size - offset} of {_PREFIX.size} bytes")
    length, stored = _PREFIX.unpack_from(buf, offset)
    if length < _BODY.size or length > MAX_FRAME_BYTES:
        raise FrameError(f"length {length} is not a plausible frame length")
    start = offset + _PREFIX.size
    end = start + length
    if end > size:
        raise FrameError(f"frame cut: {size - start} of {length} bytes")
    crc = zlib.crc32(buf[start:end], zlib.crc32(buf[offset : offset + 4]))
    if crc != stored:
        raise FrameError(f"checksum mismatch (stored {stored}, computed {crc})")
    seq, code, flags, ts, attempt, worker, deadline, id_len = _BODY.unpack_from(buf, start)
    rtype = _TYPE_NAMES.get(code)
    if rtype is None:
        raise FrameError(f"unknown type code {code}")
    if flags & ~_FLAGS_ALL:
        raise FrameError(f"unknown flags 0x{flags:02x}")
    if seq < 1 or id_len == 0:
        raise FrameError("seq 0 or an empty job_id")
    at = start + _BODY.size
    job_id, at = _string(buf, at, end, id_len, "job_id")
    reason: str | None = None
    if flags & FLAG_REASON:
        if at + 2 > end:
            raise FrameError("reason length runs past the end of its frame")
        (n,) = _U16.unpack_from(buf, at)
        reason, at = _string(buf, at + 2, end, n, "reason")
    job: Job | None = None
    if flags & FLAG_JOB:
        if rtype != "ENQUEUE":
            raise FrameError(f"{rtype} carries a job (only ENQUEUE does)")
        if at + 4 > end:
            raise FrameError("job length runs past the end of its frame")
        (n,) = _U32.unpack_from(buf, at)
        if at + 4 + n > end:
            raise FrameError("job runs past the end of its frame")
        try:
            raw = orjson.loads(buf[at + 4 : at + 4 + n])
        except orjson.JSONDecodeError:
            raise FrameError("job is not valid JSON") from None
        if type(raw) is not dict or raw.get("id") != job_id:
            raise FrameError("job is not an object with the record's job_id")
        job = job_from_dict(raw)
        at += 4 + n
    elif rtype == "ENQUEUE":
        raise FrameError("ENQUEUE without its job")
    if at != end:
        raise FrameError(f"{end - at} unexpected bytes at the end of the frame")
    rec = Record(
        seq,
        rtype,
        job_id,
        ts,
        attempt,
        worker if flags & FLAG_WORKER else None,
        deadline if flags & FLAG_DEADLINE else None,
        reason,
        job,
    )
    return rec, end


def _next_valid(data: bytes, after: int) -> int | None:
    """The first offset > ``after`` where a whole valid frame starts (CRC and all)."""
    for at in range(after + 1, len(data) - HEADER_BYTES + 1):
        try:
            decode_frame(data, at)
        except FrameError:
            continue
        return at
    return None


def read_frames(data: bytes, *, resync: bool = True) -> FrameRead:
    """Every valid frame of ``data`` in order, and the torn tail if the end is damaged.

    With ``resync`` (the default), damage that a valid frame follows raises
    ``FrameCorruption``; without it, the first damaged frame is taken for the end of the
    stream, which silently drops every record after a damaged length field.
    """
    records: list[Record] = []
    at = 0
    while at < len(data):
        try:
            rec, at_next = decode_frame(data, at)
        except FrameError as exc:
            if resync:
                nxt = _next_valid(data, at)
                if nxt is not None:
                    raise FrameCorruption(at, exc.reason, nxt) from None
            return FrameRead(records, TornFrame(at, exc.reason, len(data) - at))
        records.append(rec)
        at = at_next
    return FrameRead(records, None)


# == views =================================================================================
def frame_layout(rec: Record) -> pd.DataFrame:
    """The fields of ``rec``'s frame: offset, size, field, value (the header and the tail)."""
    frame = encode_frame(rec)
    length, crc = _PREFIX.unpack_from(frame)
    seq, code, flags, ts, attempt, worker, deadline, id_len = _BODY.unpack_from(frame, 8)
    rows: list[tuple[int, int, str, Any]] = [
        (0, 4, "len (u32)", length),
        (4, 4, "crc32 (u32)", crc),
        (8, 8, "seq (u64)", seq),
        (16, 1, "type (u8)", f"{code} = {_TYPE_NAMES[code]}"),
        (17, 1, "flags (u8)", f"0x{flags:02x}"),
        (18, 8, "timestamp_ms (i64)", ts),
        (26, 2, "attempt (u16)", attempt),
        (28, 4, "worker_id (i32)", worker if flags & FLAG_WORKER else "absent"),
        (32, 8, "deadline_ms (i64)", deadline if flags & FLAG_DEADLINE else "absent"),
        (40, 2, "job_id length (u16)", id_len),
        (42, id_len, "job_id (UTF-8)", rec.job_id),
    ]
    at = HEADER_BYTES + id_len
    if rec.reason is not None:
        n = len(rec.reason.encode("utf-8"))
        rows += [(at, 2, "reason length (u16)", n), (at + 2, n, "reason (UTF-8)", rec.reason)]
        at += 2 + n
    if rec.job is not None:
        n = len(orjson.dumps(job_to_dict(rec.job)))
        rows += [(at, 4, "job length (u32)", n), (at + 4, n, "job (JSON)", "{...}")]
    return pd.DataFrame(rows, columns=["offset", "bytes", "field", "value"])


def hexdump(data: bytes, width: int = 16, limit: int | None = None) -> str:
    """``offset  hex bytes  ascii`` lines, like ``xxd`` (``limit`` bytes at most)."""
    shown = data if limit is None else data[:limit]
    lines = []
    for at in range(0, len(shown), width):
        chunk = shown[at : at + width]
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        lines.append(f"{at:08x}  {chunk.hex(' '):<{width * 3 - 1}}  {text}")
    return "\n".join(lines)


# == the records lesson 13 measures ========================================================
T0_MS = 1_704_103_200_000  # 2024-01-01T10:00:00Z


def sample_records(n_jobs: int = 500, seed: int = 42) -> list[Record]:
    """The WAL records of a small deterministic workload, made by the real ``QueueCore``.

    ``n_jobs`` generator jobs; each attempt acks (86%), fails (8%) or times out (6%),
    with max_retry 3, so every record type appears.  Virtual time, seeded: the same
    arguments give the same records.
    """
    rng = random.Random(seed)
    core = QueueCore(max_retry=3, task_timeout_s=3.0)
    now_s = T0_MS / 1000.0
    out: list[Record] = list(core.enqueue(generate_test_jobs(n_jobs, rng), now_s).records)
    workers = 8
    while not core.is_idle():
        now_s += 0.25
        sends: list[SendToWorker] = []
        for worker in range(1, workers + 1):
            step = core.dispatch(now_s, worker_id=worker)
            out += step.records
            sends += [e for e in step.effects if isinstance(e, SendToWorker)]
        if not sends:
            now_s += 3.0  # only timed-out attempts left: let their deadlines pass
        for send in sends:
            draw = rng.random()
            job_id, attempt = send.job.id, send.attempt
            if draw < 0.86:
                out += core.ack(job_id, attempt, now_s + 0.1).records
            elif draw < 0.94:
                reason = f"fail: attempt {attempt} fails on purpose"
                out += core.fail(job_id, attempt, now_s + 0.1, reason).records
        out += core.tick(now_s + 3.5).records
    return out


# == measurements ==========================================================================
def size_table(records: Sequence[Record]) -> pd.DataFrame:
    """Bytes per record by type, JSON line (``wal.encode_record``) vs binary frame.

    Deterministic: sizes depend only on the records.  Rows are the types present (in the
    core's order) and ``all``.
    """
    rows = []
    groups: dict[str, list[Record]] = {t: [] for t in RECORD_TYPES}
    for r in records:
        groups[r.type].append(r)
    groups["all"] = list(records)
    for name, recs in groups.items():
        if not recs:
            continue
        json_b = sum(len(encode_record(r)) for r in recs)
        bin_b = sum(len(encode_frame(r)) for r in recs)
        rows.append(
            {
                "type": name,
                "records": len(recs),
                "json_bytes_per_record": round(json_b / len(recs), 1),
                "binary_bytes_per_record": round(bin_b / len(recs), 1),
                "json_over_binary": round(json_b / bin_b, 2),
            }
        )
    return pd.DataFrame(rows)


def speed_table(records: Sequence[Record], repeat: int = 15) -> pd.DataFrame:
    """Encode and decode throughput (records/s, best of ``repeat`` interleaved runs) for
    both framings.

    Machine-dependent: notebooks mark the cell that prints it ``# NBVAL_IGNORE_OUTPUT``.
    Decoding checks every checksum in both cases; JSON decoding splits lines first, as
    ``read_wal`` does.
    """
    recs = list(records)
    n = len(recs)
    lines = [encode_record(r)[:-1] for r in recs]
    blob = encode_frames(recs)

    def json_decode() -> None:
        for line in lines:
            decode_line(line)

    def bin_decode() -> None:
        at, size = 0, len(blob)
        while at < size:
            at = decode_frame(blob, at)[1]

    runs: dict[str, Callable[[], object]] = {
        "json_encode": lambda: [encode_record(r) for r in recs],
        "json_decode": json_decode,
        "bin_encode": lambda: [encode_frame(r) for r in recs],
        "bin_decode": bin_decode,
    }
    best = dict.fromkeys(runs, float("inf"))
    collecting = gc.isenabled()
    gc.disable()  # as timeit does: a collection landing in one run is not the format's cost
    try:
        for _ in range(repeat):  # interleaved, so a busy moment hits every contender alike
            for name, fn in runs.items():
                t0 = time.perf_counter()
                fn()
                best[name] = min(best[name], time.perf_counter() - t0)
    finally:
        if collecting:
            gc.enable()
    rows = [
        {
            "format": "JSON lines",
            "encode_records_per_s": n / best["json_encode"],
            "decode_records_per_s": n / best["json_decode"],
            "bytes": sum(len(line) + 1 for line in lines),
        },
        {
            "format": "binary frames",
            "encode_records_per_s": n / best["bin_encode"],
            "decode_records_per_s": n / best["bin_decode"],
            "bytes": len(blob),
        },
    ]
    return pd.DataFrame(rows)
