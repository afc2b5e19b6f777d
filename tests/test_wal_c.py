"""The C record decoder (``_walcheck.decode_records``) against the pure-Python reader.

The C decoder exists for speed only.  On every input ``read_wal`` must give the same
answer with it as without it (``wal._c_decode = None``): the same records, the same torn
tail, the same counts, or the same ``WalCorruptionError`` message.  Checked on logs the
writer produced from arbitrary workloads, on those logs truncated, with flipped or inserted
bytes, and with fields rewritten into odd or hostile JSON whose checksums were recomputed
(so only the field checks can refuse them), and on the fuzzer's corpus; and, line by line,
that what the decoder accepts is exactly ``decode_line``'s Record.
"""

from __future__ import annotations

import zlib
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phase1 import fuzz, wal
from phase1.core import QueueCore, Record
from phase1.errors import WalCorruptionError
from phase1.jobs import PRIORITY_MAX, Job
from phase1.recovery import recover
from phase1.wal import decode_line, encode_records, read_wal
from tests.test_wal_bulk import ACK, GOOD, HOSTILE, ODD, little_queues, with_checksum

pytestmark = pytest.mark.skipif(wal._c_decode is None, reason="phase1._walcheck is not built")

WAL = fuzz.WAL


def _outcome(files: dict[str, bytes], rows: bool = False, after_seq: int = 0) -> Any:
    try:
        read = read_wal(fuzz._disk(files), WAL, rows=rows, after_seq=after_seq)
    except WalCorruptionError as exc:
        return ("corruption", str(exc), exc.path, exc.line, exc.offset, exc.seq)
    records = [wal.record_of(r) for r in read.records]
    assert all(type(r) is Record for r in records)
    if read.enqueue_ids is not None:  # the C reader's: exactly the ENQUEUEs' job ids
        assert read.enqueue_ids == [r.job_id for r in records if r.type == "ENQUEUE"]
    assert (read.enqueue_ids is None) == (wal._c_decode is None)
    return (records, read.torn, read.first_seq, read.last_seq, read.lines_read, read.bytes_read)


def both_ways(files: dict[str, bytes], **kw: Any) -> tuple[Any, Any]:
    """(with the C decoder, without it)."""
    with_c = _outcome(files, **kw)
    saved = wal._c_decode
    wal._c_decode = None
    try:
        without = _outcome(files, **kw)
    finally:
        wal._c_decode = saved
    return with_c, without


def recheck(line: bytes) -> bytes:
    """``line`` (no newline) with its checksum recomputed, if it has a trailer."""
    cut = line.rfind(b',"checksum":')
    if cut < 0:
        return line
    return line[:cut] + b',"checksum":%d}' % zlib.crc32(line[:cut])


def decoded(data: bytes, start: int = 0, prev: int = 0) -> tuple[list[Any], tuple[int, int, int]]:
    out: list[Any] = []
    res = wal._c_decode(data, start, prev, 0, out, Record, Job, orjson.loads, PRIORITY_MAX)
    return out, res


# == what the decoder accepts is decode_line's Record ========================================
@settings(max_examples=200, deadline=None)
@given(little_queues())
def test_decoder_reads_written_logs_as_decode_line_does(queue: tuple[Any, list[Record]]) -> None:
    data = encode_records(queue[1])
    out, (stop, lines, prev) = decoded(data)
    raw = data.split(b"\n")[:-1]
    assert 0 <= lines <= len(raw) and len(out) == lines
    assert out == [decode_line(line) for line in raw[:lines]]
    assert all(type(r) is Record and type(r.job) in (Job, type(None)) for r in out)
    # with a list of ids: the job id of each ENQUEUE it keeps (seq > after_seq), in order
    after = len(out) // 2
    kept: list[Any] = []
    ids: list[str] = []
    res = wal._c_decode(data, 0, 0, after, kept, Record, Job, orjson.loads, PRIORITY_MAX, ids)
    assert res == (stop, lines, prev) and kept == [r for r in out if r.seq > after]
    assert ids == [r.job_id for r in kept if r.type == "ENQUEUE"]
    assert stop == sum(len(line) + 1 for line in raw[:lines])
    assert prev == (out[-1].seq if out else 0)
    assert both_ways({WAL: data}) == both_ways({WAL: data})[::-1]


def test_decoder_reads_the_common_lines_entirely() -> None:
    core = QueueCore(max_retry=2, task_timeout_s=1.0)
    recs = list(core.enqueue([Job(f"t{i}", {"i": i, "f": 0.5}) for i in range(50)], 0.0).records)
    recs += core.dispatch(0.0, worker_id=2, limit=50).records
    for job_id in sorted(core.in_flight())[:20]:
        recs += core.ack(job_id, 1, 0.1).records
    recs += core.tick(5.0).records  # TIMEOUT, RETRY
    data = encode_records(recs)
    out, (stop, lines, _) = decoded(data)
    assert stop == len(data) and lines == len(recs) and out == recs


def with_seq(body: bytes, seq: int) -> bytes:
    return body.replace(b'{"seq":1,', b'{"seq":%d,' % seq).replace(
        b'{"seq":2,', b'{"seq":%d,' % seq
    )


@pytest.mark.parametrize("name", sorted(ODD))
def test_decoder_reads_odd_but_valid_lines_like_decode_line(name: str) -> None:
    odd = with_seq(ODD[name], 2)
    data = with_checksum(GOOD) + with_checksum(odd) + with_checksum(with_seq(ACK, 3))
    out, (stop, lines, _) = decoded(data)
    raw = data.split(b"\n")[:-1]
    assert out == [decode_line(line) for line in raw[:lines]]
    # fields out of the writer's order, or escapes: left to decode_line
    assert lines == 3 or name in (
        "escaped id",
        "fields reordered",
        "no payload",
        "ENQUEUE with worker and deadline",
    )
    with_c, without = both_ways({WAL: data})
    assert with_c == without and with_c[0] == [decode_line(line) for line in raw]


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_decoder_stops_at_hostile_lines(name: str) -> None:
    data = with_checksum(GOOD) + with_checksum(HOSTILE[name]) + with_checksum(ACK)
    out, (stop, lines, _) = decoded(data)
    try:
        decode_line(data.split(b"\n")[1])
    except ValueError:
        assert lines == 1 and stop == len(with_checksum(GOOD))
    assert both_ways({WAL: data})[0] == both_ways({WAL: data})[1]


def test_decoder_checks_its_arguments() -> None:
    with pytest.raises(TypeError):
        wal._c_decode(b"", 0, 0, 0, [], dict, Job, orjson.loads, PRIORITY_MAX)
    with pytest.raises(ValueError):
        wal._c_decode(b"ab", 3, 0, 0, [], Record, Job, orjson.loads, PRIORITY_MAX)
    with pytest.raises(ValueError):
        wal._c_decode(b"ab", -1, 0, 0, [], Record, Job, orjson.loads, PRIORITY_MAX)
    with pytest.raises(TypeError):
        wal._c_decode(b"", 0, 0, 0, (), Record, Job, orjson.loads, PRIORITY_MAX)
    with pytest.raises(TypeError):
        wal._c_decode(b"", 0, 0, 0, [], Record, Job, orjson.loads, PRIORITY_MAX, ())


def test_decoder_passes_on_errors_other_than_a_refused_payload() -> None:
    def boom(raw: bytes) -> Any:
        raise RuntimeError("boom")

    data = with_checksum(GOOD.replace(b'{"n":1}', b'{"n":1.5}'))  # orjson's to parse
    with pytest.raises(RuntimeError):
        wal._c_decode(data, 0, 0, 0, [], Record, Job, boom, PRIORITY_MAX)


# == timestamps: the dates _parse_ts accepts, and only those ====================================
@settings(max_examples=300, deadline=None)
@given(
    st.integers(0, 10000),
    st.integers(0, 13),
    st.integers(0, 32),
    st.integers(0, 25),
    st.integers(0, 61),
    st.integers(0, 61),
    st.integers(0, 999),
)
def test_decoder_timestamps_agree_with_parse_ts(
    y: int, mo: int, d: int, h: int, mi: int, s: int, ms: int
) -> None:
    stamp = b"%04d-%02d-%02dT%02d:%02d:%02d.%03dZ" % (y % 10000, mo, d, h, mi, s, ms)
    line = recheck(ACK.replace(b"2024-01-01T10:00:00.000Z", stamp) + b',"checksum":0}')
    data = line + b"\n"
    try:
        expected: Any = [decode_line(line)]
    except ValueError:
        expected = []
    out, (_, lines, _) = decoded(data)
    assert out == expected[:lines]
    assert both_ways({WAL: data})[0] == both_ways({WAL: data})[1]


# == damaged and rewritten logs: the same answer both ways ========================================
ODD_VALUES = [
    b"0",
    b"-0",
    b"-1",
    b"01",
    b"1.0",
    b"1e3",
    b"true",
    b"null",
    b'""',
    b'"a"',
    b'"\\u0061"',
    b'"\\n"',
    b'"\\',
    b'"a\\"',
    b'"\\\\"',
    b'"\xc3\xa9"',
    b'"\xff"',
    b"[]",
    b'["a"]',
    b"[1]",
    b"{}",
    b'{"a":1}',
    b'{"a":1,"a":2}',
    b" 1",
    b"1 ",
    b"123456789012345678",
    b"1234567890123456789",
    b"18446744073709551615",
    b"18446744073709551616",
    b"-9223372036854775808",
    b"[" * 70 + b"]" * 70,
    b"[[[[1]]]]",
    b'{"x":[1,{"y":"\\""}]}',
    b"NaN",
    b"Infinity",
]


@st.composite
def damaged_logs(draw: st.DrawFn) -> dict[str, bytes]:
    records = draw(little_queues())[1]
    lines = encode_records(records).split(b"\n")[:-1]
    for _ in range(draw(st.integers(0, 3))):
        i = draw(st.integers(0, len(lines) - 1))
        line = lines[i]
        how = draw(st.sampled_from(["value", "flip", "insert", "delete", "drop", "swap", "dup"]))
        if how == "value":
            # replace the value after some key with an odd one, checksum recomputed
            keys = [k for k in range(len(line)) if line[k : k + 2] == b'":']
            if keys:
                at = draw(st.sampled_from(keys)) + 2
                end = at
                while end < len(line) and line[end : end + 1] not in (b",", b"}"):
                    end += 1
                line = recheck(line[:at] + draw(st.sampled_from(ODD_VALUES)) + line[end:])
        elif how in ("flip", "insert", "delete"):
            k = draw(st.integers(0, max(0, len(line) - 1)))
            byte = bytes([draw(st.integers(0, 255))])
            if how == "flip":
                line = line[:k] + byte + line[k + 1 :]
            elif how == "insert":
                line = line[:k] + byte + line[k:]
            else:
                line = line[:k] + line[k + 1 :]
            if draw(st.booleans()):
                line = recheck(line)
        elif how == "drop" and len(lines) > 1:
            del lines[i]
            continue
        elif how == "swap" and i + 1 < len(lines):
            lines[i], lines[i + 1] = lines[i + 1], lines[i]
            continue
        elif how == "dup":
            lines.insert(i, line)
        lines[i] = line
    data = b"".join(line + b"\n" for line in lines)
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    files = {WAL: data}
    if draw(st.booleans()) and b"\n" in data[:-1]:
        # split into a closed segment (named after its last seq, as rotate does) + active
        newlines = [k for k in range(len(data) - 1) if data[k] == 0x0A]
        cut = draw(st.sampled_from(newlines)) + 1
        first = data[:cut]
        last_line = first[:-1].rsplit(b"\n", 1)[-1]
        seq = wal._seq_of(last_line) or 1
        files = {wal.segment_path(WAL, seq): first, WAL: data[cut:]}
    return files


@settings(max_examples=400, deadline=None)
@given(damaged_logs(), st.booleans(), st.integers(0, 6))
def test_damaged_logs_read_the_same_with_and_without_the_decoder(
    files: dict[str, bytes], rows: bool, after_seq: int
) -> None:
    with_c, without = both_ways(files, rows=rows, after_seq=after_seq)
    assert with_c == without


def test_fuzz_corpus_reads_the_same_with_and_without_the_decoder() -> None:
    for i in range(300):
        case = fuzz.make_case(11, i, target="wal")
        with_c, without = both_ways(case.files)
        assert with_c == without, case.label()


def test_recovery_is_the_same_with_and_without_the_decoder() -> None:
    for i in range(60):
        case = fuzz.make_case(5, i, target="all")
        results = []
        for use_c in (True, False):
            saved = wal._c_decode
            if not use_c:
                wal._c_decode = None
            try:
                core, report = recover(fuzz._disk(case.files), fuzz._CONFIG, truncate=False)
                results.append((core.export(), report.records_replayed, report.torn))
            except Exception as exc:  # the same error, either way
                results.append((type(exc).__name__, str(exc)))
            finally:
                wal._c_decode = saved
        assert results[0] == results[1], case.label()


@pytest.mark.parametrize("first", [(1 << 63) - 2, (1 << 63) - 1, 1 << 63, (1 << 64) - 2])
def test_huge_seqs_are_left_to_decode_line(first: int) -> None:
    """Seqs beyond 18 digits go line by line; the decoder is never handed one (found by the
    fuzz loop: a prev beyond int64 overflowed the argument conversion)."""
    lines = [
        with_checksum(with_seq(ACK, 2).replace(b'"seq":2', b'"seq":%d' % (first + i)))
        for i in range(2)
    ]
    data = b"".join(lines) + with_checksum(with_seq(ACK, 5))
    with_c, without = both_ways({WAL: data})
    assert with_c == without and with_c[0] == "corruption"
    with_c, without = both_ways({WAL: b"".join(lines)}, after_seq=first)
    assert with_c == without and [r.seq for r in with_c[0]] == [first + 1]


@pytest.mark.parametrize("payload", [b'"\\', b'"a\\"', b'["\\"]', b'{"k":"\\\\"}', b'"\\u00e9"'])
def test_payload_strings_with_backslashes_read_as_decode_line_reads_them(payload: bytes) -> None:
    line = recheck(GOOD.replace(b'{"n":1}', payload) + b',"checksum":0}')
    data = line + b"\n" + with_checksum(with_seq(ACK, 2))
    with_c, without = both_ways({WAL: data})
    assert with_c == without
