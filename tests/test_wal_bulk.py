"""The WAL's bulk decoding path (``wal._decode_lines_fast``) against ``decode_line``.

The bulk path exists for speed only: on every input it must either decline (``None``, so
the reader goes line by line) or return exactly the Records the line-by-line path builds.
Checked on logs the writer produced from arbitrary jobs, on hand-made hostile lines whose
checksums were recomputed (so only the field checks can refuse them), and on the fuzzer's
whole corpus of damaged logs, comparing ``read_wal``'s results and error messages with the
bulk path switched off.
"""

from __future__ import annotations

import zlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phase1 import fuzz, wal
from phase1.core import QueueCore, Record
from phase1.errors import WalCorruptionError
from phase1.jobs import Job
from phase1.wal import decode_line, encode_records, read_wal

json_leaf = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(1 << 63), max_value=(1 << 63) - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
json_value = st.recursive(
    json_leaf,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)


def line_by_line(data: bytes) -> list[Record]:
    return [decode_line(line) for line in data.split(b"\n")[:-1]]


def with_checksum(body: bytes) -> bytes:
    return body + b',"checksum":%d}\n' % zlib.crc32(body)


@st.composite
def little_queues(draw: st.DrawFn) -> tuple[QueueCore, list[Record]]:
    """A core after a random little workload (payloads, priorities, delays, dependencies,
    dispatches, acks, failures, timeouts) and the records it produced."""
    core = QueueCore(max_retry=2, task_timeout_s=1.0)
    n = draw(st.integers(min_value=1, max_value=8))
    jobs = []
    for i in range(n):
        deps = draw(st.lists(st.sampled_from([f"j{k}" for k in range(i)] or ["j0"]), max_size=2))
        jobs.append(
            Job(
                id=f"j{i}",
                payload=draw(json_value),
                priority=draw(st.integers(min_value=0, max_value=10)),
                scheduled_at=draw(
                    st.none() | st.floats(min_value=0, max_value=5) | st.integers(0, 5)
                ),
                depends_on=tuple(d for d in dict.fromkeys(deps) if d != f"j{i}"),
            )
        )
    records: list[Record] = list(core.enqueue(jobs, now_s=0.0).records)
    now = 0.0
    for _ in range(draw(st.integers(min_value=0, max_value=12))):
        now += draw(st.sampled_from([0.1, 0.6, 1.5]))
        move = draw(st.sampled_from(["dispatch", "ack", "fail", "tick"]))
        if move == "dispatch":
            step = core.dispatch(now, worker_id=draw(st.integers(0, 3)), limit=2)
        elif move == "tick":
            step = core.tick(now)
        else:
            flying = sorted(core.in_flight().items())
            if not flying:
                continue
            job_id, flight = draw(st.sampled_from(flying))
            if move == "ack":
                step = core.ack(job_id, flight.attempt, now)
            else:
                step = core.fail(job_id, flight.attempt, now, draw(st.text(max_size=8)))
        records.extend(step.records)
    return core, records


@st.composite
def workloads(draw: st.DrawFn) -> bytes:
    """The bytes the writer puts on disk for a random little workload."""
    return encode_records(draw(little_queues())[1])


@settings(max_examples=150, deadline=None)
@given(workloads())
def test_bulk_decoding_of_written_logs_equals_line_by_line(data: bytes) -> None:
    assert wal._decode_lines_fast(data) == line_by_line(data)


GOOD = (
    b'{"seq":1,"type":"ENQUEUE","job_id":"a","timestamp":"2024-01-01T10:00:00.000Z",'
    b'"job":{"id":"a","payload":{"n":1},"attempt":0,"status":"pending"}'
)
ACK = b'{"seq":2,"type":"ACK","job_id":"a","timestamp":"2024-01-01T10:00:00.000Z","attempt":1'

HOSTILE: dict[str, bytes] = {
    "null worker_id": ACK + b',"worker_id":null',
    "null reason": ACK + b',"reason":null',
    "null job": ACK.replace(b'"ACK"', b'"DEAD"') + b',"job":null',
    "unknown field": ACK + b',"colour":"red"',
    "float attempt": ACK.replace(b'"attempt":1', b'"attempt":1.0'),
    "bool attempt": ACK.replace(b'"attempt":1', b'"attempt":true'),
    "negative attempt": ACK.replace(b'"attempt":1', b'"attempt":-1'),
    "huge deadline": ACK + b',"deadline_ms":1180591620717411303424',
    "huge payload int": GOOD.replace(b'{"n":1}', b'{"n":1180591620717411303424}'),
    "unknown type": ACK.replace(b'"ACK"', b'"ZAP"'),
    "empty job_id": ACK.replace(b'"job_id":"a"', b'"job_id":""'),
    "seq zero": ACK.replace(b'"seq":2', b'"seq":0'),
    "bad timestamp": ACK.replace(b"10:00:00.000Z", b"10:00:00Z"),
    "impossible date": ACK.replace(b"2024-01-01", b"2024-02-31"),
    "job on an ACK": ACK + b',"job":{"id":"a","payload":null}',
    "ENQUEUE without job": ACK.replace(b'"ACK"', b'"ENQUEUE"'),
    "job id differs": GOOD.replace(b'"id":"a"', b'"id":"b"'),
    "priority out of range": GOOD.replace(
        b'"status":"pending"', b'"status":"pending","priority":11'
    ),
    "deps not strings": GOOD.replace(b'"status":"pending"', b'"status":"pending","depends_on":[1]'),
    "not an object": b'["seq",1',
}
# Unusual but accepted by decode_line: the bulk path must agree, not just decline.
ODD: dict[str, bytes] = {
    "ENQUEUE with worker and deadline": GOOD + b',"worker_id":3,"deadline_ms":5',
    "ENQUEUE with a reason": GOOD.replace(b'"job":{', b'"reason":"r","job":{'),
    "explicit zero attempt": ACK.replace(b'"attempt":1', b'"attempt":0'),
    "payload null": GOOD.replace(b'{"n":1}', b"null"),
    "no payload": GOOD.replace(b'"payload":{"n":1},', b""),
    "fields reordered": ACK.replace(b'"seq":2,"type":"ACK"', b'"type":"ACK","seq":2'),
    "escaped id": ACK.replace(b'"job_id":"a"', b'"job_id":"\\u0061"'),
}


@pytest.mark.parametrize("name", sorted(ODD))
def test_bulk_path_reads_odd_but_valid_lines_like_decode_line(name: str) -> None:
    data = with_checksum(GOOD) + with_checksum(ODD[name]) + with_checksum(ACK)
    assert wal._decode_lines_fast(data) == line_by_line(data)


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_bulk_path_declines_what_it_must_not_decide(name: str) -> None:
    """Each hostile line, checksummed, between two good ones: the bulk path either
    declines or agrees with decode_line; where decode_line refuses, it declines."""
    data = with_checksum(GOOD) + with_checksum(HOSTILE[name]) + with_checksum(ACK)
    fast = wal._decode_lines_fast(data)
    try:
        slow: list[Record] | None = line_by_line(data)
    except ValueError:
        slow = None
    assert fast is None if slow is None else fast in (None, slow)


@pytest.mark.parametrize(
    "data",
    [
        with_checksum(GOOD) + b"\n" + with_checksum(ACK),  # an empty line
        with_checksum(GOOD)[:-1] + b" " + with_checksum(ACK),  # two objects on one line
        with_checksum(GOOD).replace(b"}\n", b"} \n"),  # a space after the trailer
        with_checksum(GOOD).replace(b'"checksum":', b'"checksum":0'),  # a leading zero
        with_checksum(GOOD).replace(b'"n":1', b'"n":2'),  # a changed body byte
        b"\n" + with_checksum(GOOD),  # a leading empty line
    ],
)
def test_bulk_path_declines_framing_damage(data: bytes) -> None:
    assert wal._decode_lines_fast(data) is None


def _read(files: dict[str, bytes]) -> Any:
    try:
        read = read_wal(fuzz._disk(files), fuzz.WAL)
    except WalCorruptionError as exc:
        return ("corruption", str(exc))
    return (read.records, read.torn, read.first_seq, read.last_seq, read.lines_read)


def test_fuzz_corpus_reads_the_same_with_and_without_the_bulk_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cases = [fuzz.make_case(7, i, target="wal") for i in range(400)]
    with_bulk = [_read(c.files) for c in cases]
    monkeypatch.setattr(wal, "_decode_lines_fast", lambda data: None)
    without = [_read(c.files) for c in cases]
    for case, a, b in zip(cases, with_bulk, without, strict=True):
        assert a == b, case.label()


# == the checksum check: C accelerator and pure-Python fallback ==============================
def test_the_c_accelerator_is_built() -> None:
    """setup.py builds it wherever a C compiler is at install time (CI has one): without it
    recovery silently takes the slower path, so a missing build must be seen."""
    from phase1 import _walcheck

    assert wal._checksums_hold is wal._checksums_hold_c
    assert wal._c_decode is _walcheck.decode_records
    assert _walcheck.crc32(b"") == zlib.crc32(b"") and _walcheck.crc32(GOOD) == zlib.crc32(GOOD)


@settings(max_examples=300, deadline=None)
@given(
    data=st.binary(max_size=600) | st.binary(min_size=1000, max_size=5000),
    offset=st.integers(min_value=0, max_value=15),
)
def test_the_c_crc32_paths_agree_with_zlib(data: bytes, offset: int) -> None:
    """The carry-less-multiply path (64+ bytes, 16-byte folds, where the CPU has it) and the
    table path both give zlib's CRC-32, at every length and alignment of the buffer."""
    _walcheck = pytest.importorskip("phase1._walcheck")
    view = memoryview(bytes(offset) + data)[offset:]  # the same bytes, moved in memory
    expected = zlib.crc32(data)
    assert _walcheck.crc32(view) == expected
    assert _walcheck.crc32_table(view) == expected


def test_the_clmul_path_is_taken_on_x86_64_with_pclmul() -> None:
    """On a CPU that has PCLMULQDQ (every x86-64 of the last decade), the fast path is on;
    elsewhere the table path serves alone."""
    import platform

    _walcheck = pytest.importorskip("phase1._walcheck")
    flags = ""
    if platform.machine() == "x86_64":
        try:
            with open("/proc/cpuinfo") as f:
                flags = f.read()
        except OSError:
            pytest.skip("no /proc/cpuinfo to compare with")
    has = " pclmulqdq" in flags and " sse4_1" in flags
    assert bool(_walcheck.HAVE_CLMUL) == has


trailer_damage = st.sampled_from(
    [
        lambda line: line,
        lambda line: line.replace(b',"checksum":', b',"checksum": '),
        lambda line: line.replace(b',"checksum":', b',"checksum":0'),
        lambda line: line.replace(b',"checksum":', b',"checksum":9'),
        lambda line: line.replace(b',"checksum":', b',"checksum":-'),
        lambda line: line.replace(b"}\n", b"\n"),
        lambda line: line.replace(b"}\n", b"} \n"),
        lambda line: line[:-1],
        lambda line: b"\n" + line,
        lambda line: line[:5] + b"X" + line[6:],
        lambda line: b',"checksum":0}\n',
        lambda line: line.replace(b"}\n", b"}}\n"),
    ]
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.binary(max_size=40), trailer_damage), max_size=6),
    st.integers(min_value=-1, max_value=(1 << 32) + 5),
)
def test_c_and_python_checksum_checks_agree(lines: list[tuple[bytes, Any]], forged: int) -> None:
    body_lines = [damage(with_checksum(body.replace(b"\n", b" "))) for body, damage in lines]
    if forged >= 0:  # mostly a mismatch, or too big; without it a damaged line may end data
        body_lines.append(b'{"x":1,"checksum":%d}\n' % forged)
    data = b"".join(body_lines)
    n = data.count(b"\n")
    from phase1 import _walcheck

    good = _walcheck.check_lines(data)
    complete = not data or data.endswith(b"\n")
    assert wal._checksums_hold_c(data, n) == wal._checksums_hold_py(data, n)
    assert wal._checksums_hold_c(data, n) == (good == n and complete)
    # the lines it passes are exactly the leading lines decode_line's checksum test passes
    for line in data.split(b"\n")[:good]:
        cut = line.rfind(b',"checksum":')
        assert line[cut:] == b',"checksum":%d}' % zlib.crc32(line[:cut])


@settings(max_examples=200, deadline=None)
@given(little_queues())
def test_encode_records_gives_the_bytes_of_encode_record(queue: tuple[Any, list[Record]]) -> None:
    """encode_records formats the common lines directly; the bytes must be encode_record's."""
    records = queue[1]
    assert encode_records(records) == b"".join(map(wal.encode_record, records))
