"""WAL framing, the writer's policies, segments, and the reader's torn-tail-vs-corruption rule."""

from __future__ import annotations

import shutil
import subprocess
import zlib
from pathlib import Path

import orjson
import pytest

from phase1.core import Record
from phase1.disk import OsDisk
from phase1.errors import DurabilityError, WalCorruptionError
from phase1.jobs import Job
from phase1.wal import (
    WalWriter,
    decode_line,
    drop_segments_upto,
    encode_record,
    encode_records,
    list_segments,
    read_wal,
    repair_wal,
    segment_path,
    truncate_torn,
    verify_wal,
    wal_stats,
)

T0_MS = 1_704_103_200_000  # 2024-01-01T10:00:00.000Z


def rec(seq: int, rtype: str = "DISPATCH", **fields: object) -> Record:
    job_id = str(fields.pop("job_id", f"task-{seq:04d}"))
    if rtype == "ENQUEUE" and "job" not in fields:
        fields["job"] = Job(job_id, payload={"n": seq})
    if rtype == "DISPATCH":
        fields.setdefault("attempt", 1)
        fields.setdefault("worker_id", 3)
        fields.setdefault("deadline_ms", T0_MS + 3000)
    return Record(seq, rtype, job_id, T0_MS + seq, **fields)  # type: ignore[arg-type]


def recs(first: int, last: int) -> list[Record]:
    types = ["ENQUEUE", "DISPATCH", "ACK"]
    return [rec(s, types[s % 3]) for s in range(first, last + 1)]


def write(path: Path, records: list[Record]) -> bytes:
    data = encode_records(records)
    path.write_bytes(data)
    return data


class NoSyncDisk(OsDisk):
    """OsDisk whose fsyncs do nothing: for tests that only look at bytes, not durability."""

    def fsync(self, path: str) -> None:
        pass

    def fsync_dir(self, folder: str) -> None:
        pass


class CountingDisk(OsDisk):
    """OsDisk that counts fsyncs and can be told to fail the next fsync or append."""

    def __init__(self) -> None:
        super().__init__()
        self.fsyncs = 0
        self.fail_fsync = False
        self.fail_append = False

    def fsync(self, path: str) -> None:
        if self.fail_fsync:
            raise OSError(5, "Input/output error")
        self.fsyncs += 1
        super().fsync(path)

    def append(self, path: str, data: bytes) -> None:
        if self.fail_append:
            raise OSError(28, "No space left on device")
        super().append(path, data)


# == framing ===========================================================================
ALL_TYPES = [
    rec(
        1,
        "ENQUEUE",
        job_id="j1",
        job=Job("j1", payload={"text": "héllo 世界 🚀", "n": [1, 2.5, None]}),
    ),
    rec(
        2,
        "ENQUEUE",
        job_id="j2",
        job=Job("j2", payload="x", priority=7, scheduled_at=1.5e9, depends_on=("j1", "j0")),
        attempt=1,
    ),
    rec(3, "DISPATCH", job_id="j1"),
    rec(4, "ACK", job_id="j1", attempt=1),
    rec(5, "FAIL", job_id="j2", attempt=1, reason="boom: ünïcode"),
    rec(6, "TIMEOUT", job_id="j2", attempt=2),
    rec(7, "RETRY", job_id="j2", attempt=2, reason="timeout"),
    rec(8, "DEAD", job_id="j2", attempt=3, reason="max_retry 3 reached"),
]


@pytest.mark.parametrize("record", ALL_TYPES, ids=lambda r: f"{r.seq}-{r.type}")
def test_every_record_type_round_trips(record: Record) -> None:
    line = encode_record(record)
    assert line.endswith(b"}\n") and line.count(b"\n") == 1
    assert decode_line(line[:-1]) == record


def test_key_order_timestamp_and_omitted_fields() -> None:
    d = orjson.loads(encode_record(rec(9, "ACK", attempt=0)))
    assert list(d) == ["seq", "type", "job_id", "timestamp", "checksum"]
    assert d["timestamp"] == "2024-01-01T10:00:00.009Z"
    d = orjson.loads(encode_record(ALL_TYPES[1]))
    assert list(d) == ["seq", "type", "job_id", "timestamp", "attempt", "job", "checksum"]
    d = orjson.loads(encode_record(rec(3, "DISPATCH")))
    assert list(d)[4:] == ["attempt", "worker_id", "deadline_ms", "checksum"]


@pytest.mark.parametrize("ms", [0, 999, 1000, T0_MS, T0_MS + 59_999, 4_102_444_799_999])
def test_timestamp_keeps_milliseconds(ms: int) -> None:
    record = Record(1, "ACK", "a", ms, attempt=1)
    assert decode_line(encode_record(record)[:-1]).timestamp_ms == ms


def test_checksum_is_crc32_of_the_bytes_before_the_checksum_key() -> None:
    for record in ALL_TYPES:
        line = encode_record(record)
        head, sep, tail = line.partition(b',"checksum":')
        assert sep and tail.endswith(b"}\n")
        assert int(tail[:-2]) == zlib.crc32(head)
        # The documented recipe, independently: JSON of the other fields minus its brace.
        fields = {k: v for k, v in orjson.loads(line).items() if k != "checksum"}
        assert head == orjson.dumps(fields)[:-1]


def test_one_changed_byte_anywhere_in_the_body_fails() -> None:
    line = encode_record(ALL_TYPES[1])[:-1]
    body_end = line.rfind(b',"checksum":')
    for i in range(len(line)):
        for new in {line[i] ^ 0x01, ord("0") if line[i] != ord("0") else ord("1")}:
            damaged = line[:i] + bytes([new]) + line[i + 1 :]
            with pytest.raises(ValueError):
                decode_line(damaged)
    assert body_end > 0


@pytest.mark.parametrize(
    "job",
    [
        Job("a"),
        Job('é/ünï "q"', payload={"k": [1, 2.5, None, "x"], "n": {"deep": True}}),
        Job("a", payload=7, attempt=2),
        Job("a", payload="s", status="in_flight"),
        Job("a", priority=3),
        Job("a", payload={"kind": "report"}, priority=10),
        Job("a", priority=True),  # bool: not the int path (orjson writes true)
        Job("a", priority=2, scheduled_at=0.25),
        Job("a", priority=1, depends_on=("b",)),
        Job("a", priority=4, attempt=1),
        Job("a", scheduled_at=1.5),
        Job("a", depends_on=("b", "c")),
        Job("a", attempt=True),  # bool: not the plain path (orjson writes true)
    ],
)
def test_encode_records_gives_encode_records_bytes_for_every_enqueue_shape(job: Job) -> None:
    """The plain-new-job fast path and the generic one write the same bytes."""
    records = [
        Record(5, "ENQUEUE", job.id, T0_MS, job=job),
        rec(6),
        Record(7, "ENQUEUE", job.id, T0_MS + 1, job=job),
    ]
    assert encode_records(records) == b"".join(map(encode_record, records))


def test_append_writes_lines_the_caller_encoded(tmp_path: Path) -> None:
    """The threaded shell encodes each caller's records in that caller's thread and hands
    the writer the lines (``encoded=``): no second encoding; a wrong line count writes
    nothing."""
    wal = str(tmp_path / "wal.log")
    writer = WalWriter(OsDisk(), wal, next_seq=5, policy="never")
    records = [Record(5, "ENQUEUE", "a", T0_MS, job=Job("a")), rec(6)]
    lines = encode_records(records[:1]) + encode_records(records[1:])
    with pytest.raises(ValueError, match="1 lines for 2 records; nothing written"):
        writer.append(records, encoded=lines.split(b"\n", 1)[0] + b"\n")
    with pytest.raises(ValueError, match="0 lines for 2 records"):
        writer.append(records, encoded=b"")
    writer.append(records, encoded=lines)
    writer.close()
    assert Path(wal).read_bytes() == encode_records(records)


def test_encode_refuses_records_the_reader_would_refuse() -> None:
    with pytest.raises(ValueError, match="no job"):
        encode_record(Record(1, "ENQUEUE", "a", 0))
    with pytest.raises(ValueError, match="differs"):
        encode_record(Record(1, "ENQUEUE", "a", 0, job=Job("b")))
    with pytest.raises(ValueError, match="unknown type"):
        encode_record(Record(1, "EXPLODE", "a", 0))


def _signed(d: dict[str, object]) -> bytes:
    body = orjson.dumps(d)[:-1]
    return body + b',"checksum":' + str(zlib.crc32(body)).encode() + b"}"


GOOD = {"seq": 1, "type": "ACK", "job_id": "a", "timestamp": "2024-01-01T10:00:00.000Z"}
WRONG_TYPES = [
    {**GOOD, "seq": "1"},
    {**GOOD, "seq": True},
    {**GOOD, "seq": 0},
    {**GOOD, "seq": 1.0},
    {**GOOD, "job_id": 5},
    {**GOOD, "job_id": ""},
    {**GOOD, "type": "NOPE"},
    {**GOOD, "type": ["ACK"]},
    {**GOOD, "timestamp": 123},
    {**GOOD, "timestamp": "2024-01-01 10:00:00"},
    {**GOOD, "timestamp": "2024-13-01T10:00:00.000Z"},
    {**GOOD, "timestamp": "2024-01-01T10:00:00.0x0Z"},
    {**GOOD, "attempt": -1},
    {**GOOD, "attempt": "1"},
    {**GOOD, "worker_id": "w"},
    {**GOOD, "deadline_ms": 1.5},
    {**GOOD, "reason": 7},
    {**GOOD, "extra": 1},
    {**GOOD, "attempt": None},
    {**GOOD, "type": "ENQUEUE"},  # job missing
    {**GOOD, "type": "ENQUEUE", "job": [1]},
    {**GOOD, "type": "ENQUEUE", "job": {"payload": 1}},
    {**GOOD, "type": "ENQUEUE", "job": {"id": "b"}},
    {**GOOD, "type": "ENQUEUE", "job": {"id": "a", "priority": "high"}},
    {**GOOD, "type": "ENQUEUE", "job": {"id": "a", "priority": 11}},  # no ready queue 11
    {**GOOD, "type": "ENQUEUE", "job": {"id": "a", "priority": -1}},  # (nor -1)
    {**GOOD, "type": "ENQUEUE", "job": {"id": "a", "depends_on": "b"}},
    {**GOOD, "type": "ENQUEUE", "job": {"id": "a", "scheduled_at": "soon"}},
    {**GOOD, "job": {"id": "a"}},  # only ENQUEUE carries a job
    {k: v for k, v in GOOD.items() if k != "timestamp"},
]


@pytest.mark.parametrize("d", WRONG_TYPES, ids=range(len(WRONG_TYPES)))
def test_valid_json_with_wrong_types_is_a_bad_record(d: dict[str, object], tmp_path: Path) -> None:
    assert decode_line(_signed(GOOD)).seq == 1
    with pytest.raises(ValueError) as info:
        decode_line(_signed(d))
    assert type(info.value).__name__ == "_BadRecord"
    # In the middle of a log it is corruption, at the end a torn tail: never a TypeError.
    path = tmp_path / "wal.log"
    path.write_bytes(encode_records(recs(1, 2)) + _signed(d) + b"\n")
    read = read_wal(OsDisk(), str(path))
    assert read.torn is not None and read.last_seq == 2
    path.write_bytes(encode_records(recs(1, 2)) + _signed(d) + b"\n" + encode_record(rec(3)))
    with pytest.raises(WalCorruptionError):
        read_wal(OsDisk(), str(path))


@pytest.mark.parametrize(
    "line",
    [b"", b"[1,2]", b'"x"', b"{not json", b"\x00" * 40, b"\xff\xfe{}", b'{"seq":1}'],
)
def test_non_records_raise_the_private_framing_error(line: bytes) -> None:
    with pytest.raises(ValueError):
        decode_line(line)


# == reading: torn tail vs corruption ===================================================
def test_clean_log_reads_every_record(tmp_path: Path) -> None:
    path = tmp_path / "wal.log"
    data = write(path, recs(1, 12))
    read = read_wal(OsDisk(), str(path))
    assert read.records == recs(1, 12)
    assert (read.first_seq, read.last_seq, read.torn) == (1, 12, None)
    assert (read.bytes_read, read.lines_read, read.segments) == (len(data), 12, [str(path)])
    assert [r.seq for r in read_wal(OsDisk(), str(path), after_seq=9).records] == [10, 11, 12]


def test_missing_wal_reads_empty(tmp_path: Path) -> None:
    read = read_wal(OsDisk(), str(tmp_path / "wal.log"))
    assert (read.records, read.first_seq, read.last_seq, read.torn) == ([], 0, 0, None)


@pytest.mark.parametrize(
    "tail, why",
    [
        (encode_record(rec(4))[:-9], "no newline"),
        (encode_record(rec(4))[:-1], "no newline"),
        (b"garbage that is not json\n", "not valid JSON"),
        (b"\x00" * 4096, "no newline"),
        (b"\x00" * 100 + b"\n" + b"\x00" * 50, "not valid JSON"),
        (b"\n\x00", "empty line"),  # (a bare trailing "\n" is padding: test_wal_prealloc)
        (b"\xff\xfe\xfd\n", "not valid JSON"),
        (encode_record(rec(4)).replace(b"task", b"tusk"), "checksum mismatch"),
    ],
)
def test_damage_at_the_end_is_a_torn_tail(tmp_path: Path, tail: bytes, why: str) -> None:
    path = tmp_path / "wal.log"
    good = write(path, recs(1, 3))
    path.write_bytes(good + tail)
    disk = OsDisk()
    read = read_wal(disk, str(path))
    assert read.records == recs(1, 3)
    assert read.torn is not None
    assert (read.torn.path, read.torn.offset, read.torn.length_bytes) == (
        str(path),
        len(good),
        len(tail),
    )
    assert read.torn.line == 4 and why in read.torn.reason
    truncate_torn(disk, read.torn)
    assert path.read_bytes() == good


def test_bad_line_followed_by_a_good_one_is_corruption(tmp_path: Path) -> None:
    path = tmp_path / "wal.log"
    lines = [encode_record(r) for r in recs(1, 5)]
    lines[2] = lines[2].replace(b"task", b"tesk")  # seq 3: checksum mismatch
    path.write_bytes(b"".join(lines))
    with pytest.raises(WalCorruptionError) as info:
        read_wal(OsDisk(), str(path))
    err = info.value
    assert (err.path, err.line, err.offset, err.seq) == (
        str(path),
        3,
        len(lines[0]) + len(lines[1]),
        3,
    )
    msg = str(err)
    assert str(path) in msg and "line 3" in msg and f"offset {err.offset}" in msg
    assert "seq 3" in msg and "phase1 wal verify" in msg and "phase1 wal repair" in msg


def test_zeroed_block_in_the_middle_is_corruption_without_a_seq(tmp_path: Path) -> None:
    path = tmp_path / "wal.log"
    good = encode_records(recs(1, 2))
    path.write_bytes(good + b"\x00" * 512 + b"\n" + encode_record(rec(3)))
    with pytest.raises(WalCorruptionError) as info:
        read_wal(OsDisk(), str(path))
    assert (info.value.line, info.value.offset, info.value.seq) == (3, len(good), None)


def test_damage_in_a_closed_segment_is_corruption(tmp_path: Path) -> None:
    wal = tmp_path / "wal.log"
    closed = Path(segment_path(str(wal), 4))
    closed.write_bytes(encode_records(recs(1, 3)) + encode_record(rec(4))[:-5])
    with pytest.raises(WalCorruptionError) as info:
        read_wal(OsDisk(), str(wal))
    assert info.value.path == str(closed) and info.value.line == 4
    assert "closed segment" in str(info.value)


def test_torn_active_segment_after_closed_ones_is_a_torn_tail(tmp_path: Path) -> None:
    wal = tmp_path / "wal.log"
    Path(segment_path(str(wal), 4)).write_bytes(encode_records(recs(1, 4)))
    wal.write_bytes(encode_records(recs(5, 6)) + b'{"seq":7,"ty')
    read = read_wal(OsDisk(), str(wal))
    assert [r.seq for r in read.records] == list(range(1, 7))
    assert read.torn is not None and read.torn.path == str(wal) and read.torn.line == 3


@pytest.mark.parametrize("seqs, bad_line", [([1, 2, 4], 3), ([1, 2, 2], 3), ([5, 6, 3], 3)])
def test_sequence_gap_repeat_or_backwards_is_corruption(
    tmp_path: Path, seqs: list[int], bad_line: int
) -> None:
    path = tmp_path / "wal.log"
    path.write_bytes(b"".join(encode_record(rec(s, "ACK", attempt=1)) for s in seqs))
    with pytest.raises(WalCorruptionError) as info:
        read_wal(OsDisk(), str(path))
    assert info.value.line == bad_line and info.value.seq == seqs[bad_line - 1]


def test_sequence_break_across_segments_is_corruption(tmp_path: Path) -> None:
    wal = tmp_path / "wal.log"
    Path(segment_path(str(wal), 3)).write_bytes(encode_records(recs(1, 3)))
    wal.write_bytes(encode_records(recs(5, 6)))
    with pytest.raises(WalCorruptionError) as info:
        read_wal(OsDisk(), str(wal))
    assert (info.value.path, info.value.line, info.value.seq) == (str(wal), 1, 5)


def test_first_record_may_start_anywhere(tmp_path: Path) -> None:
    path = tmp_path / "wal.log"
    write(path, recs(40, 45))
    read = read_wal(OsDisk(), str(path), after_seq=42)
    assert (read.first_seq, read.last_seq) == (40, 45)
    assert [r.seq for r in read.records] == [43, 44, 45]


def test_cut_at_every_byte_never_raises_and_keeps_whole_lines(tmp_path: Path) -> None:
    records = recs(1, 12)
    lines = [encode_record(r) for r in records]
    data = b"".join(lines)
    ends = [sum(len(x) for x in lines[: i + 1]) for i in range(len(lines))]
    path = tmp_path / "wal.log"
    disk = NoSyncDisk()
    for cut in range(len(data) + 1):
        path.write_bytes(data[:cut])
        read = read_wal(disk, str(path))
        whole = sum(1 for e in ends if e <= cut)
        assert read.records == records[:whole], cut
        assert (read.torn is None) == (cut in ends or cut == 0), cut
        if read.torn is not None:
            assert read.torn.offset == (ends[whole - 1] if whole else 0)
            truncate_torn(disk, read.torn)
        writer = WalWriter(disk, str(path), next_seq=whole + 1, policy="always")
        writer.append([records[whole] if whole < 12 else rec(13, "ACK", attempt=1)])
        writer.close()
        again = read_wal(disk, str(path))
        assert again.torn is None and again.last_seq == whole + 1, cut


def test_huge_garbage_line_is_handled(tmp_path: Path) -> None:
    path = tmp_path / "wal.log"
    good = write(path, recs(1, 3))
    garbage = b"x" * (5 << 20)
    path.write_bytes(good + garbage)
    read = read_wal(OsDisk(), str(path))
    assert read.torn is not None and read.torn.length_bytes == len(garbage)
    path.write_bytes(good + garbage + b"\n" + encode_record(rec(4)))
    with pytest.raises(WalCorruptionError) as info:
        read_wal(OsDisk(), str(path))
    assert info.value.offset == len(good) and len(str(info.value)) < 1000


# == writing ============================================================================
def test_writer_appends_in_one_write_and_checks_seqs(tmp_path: Path) -> None:
    disk = OsDisk()
    path = tmp_path / "sub" / "wal.log"
    writer = WalWriter(disk, str(path), next_seq=1)
    assert writer.append(recs(1, 3), now_s=0.0) == 3
    with pytest.raises(ValueError, match="expected 4"):
        writer.append([rec(5)])
    with pytest.raises(ValueError):
        writer.append([rec(4), rec(6)])
    assert writer.appended_seq == 3 and writer.append([]) == 3
    writer.close()
    assert read_wal(disk, str(path)).records == recs(1, 3)


def test_bad_policy_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="policy"):
        WalWriter(OsDisk(), str(tmp_path / "wal.log"), next_seq=1, policy="sometimes")


def test_always_fsyncs_every_append(tmp_path: Path) -> None:
    disk = CountingDisk()
    writer = WalWriter(disk, str(tmp_path / "wal.log"), next_seq=1, policy="always")
    for s in range(1, 6):
        writer.append([rec(s)])
        assert writer.durable_seq == writer.ack_seq == s and writer.unsynced == 0
        assert not writer.sync_due(0.0)
    assert disk.fsyncs == 5


def test_batch_syncs_by_size_and_by_interval(tmp_path: Path) -> None:
    disk = CountingDisk()
    writer = WalWriter(
        disk, str(tmp_path / "wal.log"), next_seq=1, batch_size=3, batch_interval_s=0.010
    )
    writer.append([rec(1)], now_s=100.0)
    writer.append([rec(2)], now_s=100.001)
    assert (writer.appended_seq, writer.durable_seq, writer.ack_seq) == (2, 0, 0)
    assert not writer.sync_due(100.005)
    assert writer.sync_due(100.010)  # the oldest waited batch_interval
    writer.append([rec(3)], now_s=100.002)
    assert writer.sync_due(100.003)  # batch_size waiting
    assert disk.fsyncs == 0
    assert writer.sync() == 3 and disk.fsyncs == 1
    assert writer.ack_seq == 3 and not writer.sync_due(200.0)
    # Group commit: fsync outside the lock covers only what was appended when it began.
    writer.append([rec(4)], now_s=300.0)
    target = writer.fsync_upto()
    writer.append([rec(5)], now_s=300.008)
    writer.mark_durable(target)
    assert (writer.durable_seq, writer.unsynced) == (4, 1)
    assert not writer.sync_due(300.012)  # rec 5 waited 4 ms, rec 4 no longer counts
    assert writer.sync_due(300.02)


def test_never_acks_appended_and_never_fsyncs(tmp_path: Path) -> None:
    disk = CountingDisk()
    writer = WalWriter(disk, str(tmp_path / "wal.log"), next_seq=1, policy="never")
    for s in range(1, 301):
        writer.append([rec(s)], now_s=float(s))
    assert (writer.ack_seq, writer.appended_seq, writer.durable_seq) == (300, 300, 0)
    assert not writer.sync_due(1e9) and disk.fsyncs == 0


def test_failed_fsync_poisons_the_writer(tmp_path: Path) -> None:
    disk = CountingDisk()
    path = str(tmp_path / "wal.log")
    writer = WalWriter(disk, path, next_seq=1)
    writer.append([rec(1)])
    disk.fail_fsync = True
    with pytest.raises(DurabilityError, match="fsync failed") as info:
        writer.sync()
    assert path in str(info.value) and "Restart" in str(info.value)
    assert writer.poisoned and writer.durable_seq == 0
    disk.fail_fsync = False  # a retry could lie: the writer must not try again
    with pytest.raises(DurabilityError):
        writer.append([rec(2)])
    with pytest.raises(DurabilityError):
        writer.sync()
    writer.close()  # does not sync, does not raise
    assert disk.fsyncs == 0


def test_failed_append_poisons_the_writer(tmp_path: Path) -> None:
    disk = CountingDisk()
    writer = WalWriter(disk, str(tmp_path / "wal.log"), next_seq=1, policy="always")
    disk.fail_append = True
    with pytest.raises(DurabilityError, match="No space left"):
        writer.append([rec(1)])
    disk.fail_append = False
    with pytest.raises(DurabilityError):
        writer.append([rec(1)])
    assert writer.appended_seq == 0


# == segments ===========================================================================
def test_rotation_segments_and_dropping(tmp_path: Path) -> None:
    disk = OsDisk()
    wal = str(tmp_path / "wal.log")
    writer = WalWriter(disk, wal, next_seq=1)
    assert writer.rotate() is None  # nothing to close yet
    writer.append(recs(1, 4))
    closed = writer.rotate()
    assert closed == f"{wal}.000000000004" and writer.durable_seq == 4
    assert not Path(wal).exists()
    writer.append(recs(5, 9))
    writer.rotate()
    writer.append(recs(10, 11))
    (tmp_path / "wal.log.corrupt-12").write_bytes(b"junk")
    (tmp_path / "wal.log.bak").write_bytes(b"junk")
    assert list_segments(disk, wal) == [f"{wal}.000000000004", f"{wal}.000000000009", wal]
    read = read_wal(disk, wal)
    assert read.records == recs(1, 11) and read.segments == list_segments(disk, wal)
    # Segments wholly covered by after_seq are not even opened.
    assert read_wal(disk, wal, after_seq=4).segments == [f"{wal}.000000000009", wal]
    assert drop_segments_upto(disk, wal, 8) == [f"{wal}.000000000004"]
    assert drop_segments_upto(disk, wal, 9) == [f"{wal}.000000000009"]
    assert list_segments(disk, wal) == [wal]
    read = read_wal(disk, wal)
    assert (read.first_seq, read.last_seq) == (10, 11)
    writer.close()


def test_append_rotates_when_the_segment_is_full(tmp_path: Path) -> None:
    disk = OsDisk()
    wal = str(tmp_path / "wal.log")
    writer = WalWriter(disk, wal, next_seq=1, segment_bytes=1000, policy="never")
    for s in range(1, 41):
        writer.append([rec(s)])
    writer.close()
    segments = list_segments(disk, wal)
    assert len(segments) > 4
    assert all(Path(p).stat().st_size < 1000 + 200 for p in segments)
    assert read_wal(disk, wal).records == [rec(s) for s in range(1, 41)]


# == tools ==============================================================================
def test_verify_and_stats(tmp_path: Path) -> None:
    path = tmp_path / "wal.log"
    write(path, recs(1, 6))
    path.write_bytes(path.read_bytes() + b'{"seq":7')
    stats = wal_stats(verify_wal(OsDisk(), str(path)))
    assert stats["records"] == 6 and stats["by_type"]["ENQUEUE"] == 2
    assert (stats["first_seq"], stats["last_seq"]) == (1, 6)
    assert stats["torn"]["length_bytes"] == 8 and stats["torn"]["line"] == 7
    orjson.dumps(stats)  # plain data for the CLI


def test_repair_saves_the_cut_bytes_and_leaves_a_clean_log(tmp_path: Path) -> None:
    disk = OsDisk()
    wal = tmp_path / "wal.log"
    closed = Path(segment_path(str(wal), 6))
    lines = [encode_record(r) for r in recs(1, 6)]
    lines[3] = lines[3].replace(b"task", b"tisk")
    closed.write_bytes(b"".join(lines))
    wal.write_bytes(encode_records(recs(7, 8)))
    original = closed.read_bytes()
    offset = sum(len(x) for x in lines[:3])
    report = repair_wal(disk, str(wal))
    assert report.repaired and (report.path, report.line, report.offset) == (str(closed), 4, offset)
    assert report.records_lost == 5 and "checksum" in report.reason
    saved = Path(f"{closed}.corrupt-{offset}")
    assert saved.read_bytes() == original[offset:]
    assert Path(f"{wal}.corrupt-0").read_bytes() == encode_records(recs(7, 8))
    assert report.bytes_cut == len(original) - offset + len(encode_records(recs(7, 8)))
    # The cut closed segment is renamed to its true last seq so names stay in order.
    assert list_segments(disk, str(wal)) == [segment_path(str(wal), 3)]
    read = read_wal(disk, str(wal))
    assert read.records == recs(1, 3) and read.torn is None
    writer = WalWriter(disk, str(wal), next_seq=4)
    writer.append(recs(4, 5))
    writer.close()
    assert read_wal(disk, str(wal)).records == recs(1, 5)
    assert not repair_wal(disk, str(wal)).repaired


def test_repair_of_a_torn_tail_in_the_active_segment(tmp_path: Path) -> None:
    wal = tmp_path / "wal.log"
    good = write(wal, recs(1, 3))
    wal.write_bytes(good + b"\x00" * 100)
    report = repair_wal(OsDisk(), str(wal))
    assert (report.offset, report.bytes_cut, report.records_lost) == (len(good), 100, 1)
    assert wal.read_bytes() == good
    assert Path(f"{wal}.corrupt-{len(good)}").read_bytes() == b"\x00" * 100


@pytest.mark.parametrize("preallocate", [0, 4096], ids=["appended", "padded"])
def test_jq_recipes_read_the_wal(tmp_path: Path, preallocate: int) -> None:
    jq = shutil.which("jq")
    if jq is None:
        pytest.fail("jq is not on PATH: install it (`apt-get install jq`; CI installs it)")
    wal = str(tmp_path / "wal.log")
    writer = WalWriter(OsDisk(), wal, next_seq=1, policy="always", preallocate_bytes=preallocate)
    writer.append(ALL_TYPES)
    if preallocate:  # a running queue's log: the padding is still there
        assert Path(wal).stat().st_size == preallocate
    else:
        writer.close()
    out = subprocess.run(
        [jq, "-c", 'select(.type == "TIMEOUT")', wal], capture_output=True, check=True
    ).stdout
    timeouts = [orjson.loads(x) for x in out.splitlines()]
    assert [(t["seq"], t["job_id"], t["attempt"]) for t in timeouts] == [(6, "j2", 2)]
    out = subprocess.run([jq, "-r", ".type", wal], capture_output=True, check=True).stdout
    assert out.decode().split() == [r.type for r in ALL_TYPES]
    out = subprocess.run(
        [jq, "-r", "select(.seq == 1) | .job.payload.text", wal], capture_output=True, check=True
    ).stdout
    assert out.decode().strip() == "héllo 世界 🚀"
