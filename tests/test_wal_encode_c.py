"""The C record encoder (``_walcheck.encode_records``) against the pure-Python encoder.

The C encoder exists for speed only.  ``wal.encode_records`` must give the same answer with
it as without it (``wal._encode_records_py``, the reference): the same bytes, or the same
exception (type and message).  Checked on records the core produces from arbitrary
workloads, on generated records with odd or hostile fields (huge ints, timestamps at and
past the ends of ``_iso``'s range, strings needing escapes or refused by orjson, subclasses,
payloads of every JSON type and some non-JSON ones, deep nesting), on non-Record inputs,
and that the common shapes really are framed in C (no call back into Python).
"""

from __future__ import annotations

import sys
import tracemalloc
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phase1 import wal
from phase1.core import RECORD_TYPES, Record
from phase1.jobs import Job
from tests.test_wal_bulk import little_queues

pytestmark = pytest.mark.skipif(wal._c_encode is None, reason="phase1._walcheck is not built")

ISO_MIN = -62_135_596_800_000  # 0001-01-01T00:00:00.000Z
ISO_MAX = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z
T0 = 1_704_103_200_000  # 2024-01-01T10:00:00.000Z


class Str(str):
    pass


class Int(int):
    pass


def outcome(fn: Any, recs: Any) -> tuple[Any, ...]:
    try:
        return ("ok", fn(recs))
    except Exception as exc:  # noqa: BLE001  # the comparison is the point
        return ("raised", type(exc), str(exc))


def both(recs: Any) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """(C, Python) outcomes of encoding ``recs``."""
    return outcome(wal.encode_records, recs), outcome(wal._encode_records_py, recs)


def assert_same(recs: Any) -> tuple[Any, ...]:
    with_c, py = both(recs)
    assert with_c == py
    return with_c


def c_only(recs: Any) -> tuple[bytes, list[Any]]:
    """The C encoder's bytes for ``recs`` and the records it handed back to Python."""
    handed: list[Any] = []

    def fallback(rec: Any) -> bytes:
        handed.append(rec)
        return wal._encode_one(rec)

    assert wal._c_encode is not None
    return wal._c_encode(recs, Record, Job, orjson.dumps, fallback), handed


# == strategies ================================================================================
BIG = [
    0,
    1,
    -1,
    (1 << 63) - 1,
    1 << 63,
    -(1 << 63),
    -(1 << 63) - 1,
    (1 << 64) - 1,
    1 << 64,
    1 << 70,
    -(1 << 70),
]
ints = st.integers(-1000, 10**6) | st.sampled_from(BIG) | st.integers(-(1 << 70), 1 << 70)
stamps = (
    st.integers(T0 - 10**6, T0 + 10**6)
    | st.integers(ISO_MIN - 5, ISO_MIN + 5)
    | st.integers(ISO_MAX - 5, ISO_MAX + 5)
    | st.integers(ISO_MIN, ISO_MAX)
    | st.integers(-3000, 3000)
    | st.sampled_from([1 << 63, -(1 << 63) - 1, 1 << 70, 951_782_400_000, 4_107_542_400_000])
)
nasty_text = st.sampled_from(
    ["", "a", 'q"uote', "back\\slash", "nul\x00", "\x1f", "\x7f", "tab\t", "\u2028", "é", "\U0001f600",
     "\ud800", "new\nline", "slash/", "<>&'"]
)  # fmt: skip
texts = st.text(max_size=10) | nasty_text | st.from_regex(r"[a-z]{1,3}-\d{1,4}", fullmatch=True)
odd = st.sampled_from(
    [None, True, False, 0.0, 1.5, float("nan"), "7", b"7", Int(3), Str("x"), (), [1], object()]
)
json_leaf = (
    st.none()
    | st.booleans()
    | ints
    | st.floats()
    | texts
    | st.sampled_from([Str("k"), Int(5), (1, 2), {1: "int key"}, {"a"}, 1j])
)
payloads = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=12,
)


def nested(depth: int, leaf: Any = 1, kind: str = "list") -> Any:
    value = leaf
    for i in range(depth):
        value = [value] if kind == "list" else {f"k{i}": value}
    return value


@st.composite
def jobs(draw: st.DrawFn, job_id: Any) -> Any:
    plain = draw(st.booleans())
    return Job(
        job_id if plain or draw(st.booleans()) else draw(texts),
        draw(payloads),
        0 if plain else draw(ints | odd),
        "pending" if plain or draw(st.booleans()) else draw(texts | odd),
        draw(st.integers(0, 10)) if plain else draw(ints | odd),
        None if plain else draw(st.none() | st.floats() | ints | odd),
        () if plain else draw(st.tuples() | st.lists(texts, max_size=2).map(tuple) | odd),
    )


@st.composite
def records(draw: st.DrawFn) -> Any:
    """Mostly well-formed records (so the C path runs), any field sometimes odd."""
    tame = draw(st.booleans())
    rtype = (
        draw(st.sampled_from(RECORD_TYPES))
        if tame
        else draw(st.sampled_from(RECORD_TYPES) | texts | odd)
    )
    job_id = draw(texts) if tame else draw(texts | odd)
    enqueue = rtype == "ENQUEUE"
    rec = Record(
        draw(st.integers(1, 10**9)) if tame else draw(ints | odd),
        rtype,
        job_id,
        draw(stamps) if tame else draw(stamps | odd),
        draw(st.integers(0, 5)) if tame or enqueue else draw(ints | odd),
        draw(st.none() | st.integers(0, 16)) if tame else draw(st.none() | ints | odd),
        draw(st.none() | ints) if tame else draw(st.none() | ints | odd),
        draw(st.none() | texts) if not enqueue or not tame else None,
        draw(jobs(job_id)) if enqueue else draw(st.none() | st.none() | jobs(job_id)),
    )
    if tame and enqueue:
        rec = rec._replace(attempt=0, worker_id=None, deadline_ms=None)
    shape = draw(st.sampled_from(["record"] * 8 + ["tuple", "short", "int"]))
    if shape == "tuple":
        return tuple(rec)
    if shape == "short":
        return tuple(rec)[:8]
    if shape == "int":
        return 7
    return rec


i64 = st.integers(-(1 << 63), (1 << 63) - 1)
valid_text = st.text(max_size=10) | nasty_text.filter(lambda t: t not in ("\ud800",))
valid_payloads = st.recursive(
    st.none() | st.booleans() | i64 | st.floats() | valid_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(valid_text, inner, max_size=4),
    max_leaves=12,
)


@st.composite
def valid_records(draw: st.DrawFn) -> Record:
    """Records the encoder must write (no error), with jobs plain or not."""
    rtype = draw(st.sampled_from(RECORD_TYPES))
    job_id = draw(valid_text)
    stamp = draw(st.integers(ISO_MIN, ISO_MAX) | st.integers(-3000, 3000) | st.just(T0))
    seq = draw(st.integers(1, 10**12) | i64)
    if rtype == "ENQUEUE":
        job = Job(
            job_id,
            draw(valid_payloads),
            draw(st.integers(0, 3) | i64),
            "pending",
            draw(st.integers(0, 10) | i64),
            draw(st.none() | st.none() | st.floats() | st.integers(0, 10**10)),
            draw(st.lists(valid_text, max_size=2).map(tuple)),
        )
        return Record(seq, rtype, job_id, stamp, job=job)
    return Record(
        seq,
        rtype,
        job_id,
        stamp,
        draw(st.integers(0, 5) | i64),
        draw(st.none() | st.integers(0, 16) | i64),
        draw(st.none() | st.integers(T0, T0 + 10**6) | i64),
        draw(st.none() | valid_text),
    )


# == differential ==============================================================================
@settings(max_examples=300, deadline=None)
@given(little_queues())
def test_written_logs_encode_the_same(queue: tuple[Any, list[Record]]) -> None:
    records = queue[1]
    data, handed = c_only(records)
    assert assert_same(records) == ("ok", data)
    assert handed == []  # all framed in C


@settings(max_examples=600, deadline=None)
@given(st.lists(records(), max_size=6))
def test_generated_records_encode_the_same(recs: list[Any]) -> None:
    assert_same(recs)


@settings(max_examples=400, deadline=None)
@given(st.lists(valid_records(), max_size=8))
def test_valid_records_encode_the_same(recs: list[Record]) -> None:
    data, handed = c_only(recs)
    assert assert_same(recs) == ("ok", data)
    assert data == b"".join(map(wal.encode_record, recs))  # (the documented equivalence)
    assert handed == []  # all framed in C


STRINGS = ["", "a", 'q"uote', "back\\slash", "nul\x00", "\x1f", "\x7f", "tab\t", "\u2028", "é",
           "\U0001f600", "new\nline", "slash/", "<>&'", "\ud800", "\udfff"]  # fmt: skip


@pytest.mark.parametrize("text", STRINGS, ids=range(len(STRINGS)))
def test_strings_in_every_place(text: str) -> None:
    for rec in (
        Record(1, "ACK", text, T0, 1),
        Record(1, "FAIL", "a", T0, 1, reason=text),
        Record(1, "DISPATCH", text, T0, 1, 2, T0),
        Record(1, "ENQUEUE", text, T0, job=Job(text, "x")),
        Record(1, "ENQUEUE", "a", T0, job=Job("a", text)),
        Record(1, "ENQUEUE", "a", T0, job=Job("a", {text: [text]})),
        Record(1, "ENQUEUE", "a", T0, job=Job("a", {"k": 1, text: 2})),
        Record(1, "ENQUEUE", "a", T0, job=Job("a", [1, text], priority=2)),
    ):
        got = assert_same([rec])
        if "\ud800" not in text and "\udfff" not in text:
            assert got[0] == "ok"
            assert c_only([rec])[1] == []  # never handed back: escapes go through dumps


@settings(max_examples=300, deadline=None)
@given(records())
def test_each_record_alone_encodes_the_same(rec: Any) -> None:
    # (alone, so an early error in a list does not hide a later record)
    assert_same([rec])


@settings(max_examples=500, deadline=None)
@given(stamps)
def test_timestamps_are_formatted_like_iso(ms: int) -> None:
    rec = Record(1, "ACK", "a", ms, attempt=1)
    got = assert_same([rec])
    if ISO_MIN <= ms <= ISO_MAX:
        assert got[0] == "ok" and orjson.loads(got[1])["timestamp"] == wal._iso(ms)
        assert c_only([rec])[1] == []


@pytest.mark.parametrize(
    "ms",
    [ISO_MIN, ISO_MIN - 1, ISO_MAX, ISO_MAX + 1, -1, -999, -1000, -1001, 0, 951_782_400_000,
     951_868_799_999, 4_107_542_400_000, 1 << 63, -(1 << 63) - 1],
)  # fmt: skip
def test_timestamp_edges(ms: int) -> None:
    assert_same([Record(1, "ACK", "a", ms, attempt=1), Record(2, "ACK", "a", ms + 1, attempt=1)])


@pytest.mark.parametrize(
    "payload",
    [None, True, False, 0, -5, 1 << 63, (1 << 64) - 1, 1 << 64, 1.5, float("nan"),
     float("inf"), -0.0, "", "x", 'q"', "é", "\ud800", [], {}, [1, "a", None, [True]],
     {"index": 3, "value": 7}, {"a": {"b": [1, {"c": "d"}]}}, {1: 2}, {"a": 1.5},
     {"a": "\n"}, {"é": 1}, (1, 2), {"a"}, Str("s"), Int(4), nested(31), nested(32),
     nested(33), nested(200), nested(252), nested(253), nested(254), nested(255), nested(300),
     nested(40, kind="dict"), nested(252, kind="dict"), nested(253, kind="dict"),
     nested(254, kind="dict"), nested(255, kind="dict"), nested(300, kind="dict"), object()],
)  # fmt: skip
def test_payloads_of_every_kind(payload: Any) -> None:
    for job in (
        Job("j", payload),
        Job("j", payload, priority=3),
        Job("j", payload, 2),
        # not plain: one dumps of the whole record in Python (its recursion limit counts
        # the record's two levels above the payload)
        Job("j", payload, scheduled_at=1.5),
        Job("j", payload, depends_on=("a",)),
        Job("j", payload, status="running"),
    ):
        assert_same([Record(1, "ENQUEUE", "j", T0, job=job)])


def test_common_shapes_never_go_back_to_python() -> None:
    recs = [
        Record(1, "ENQUEUE", "task-0001", T0, job=Job("task-0001", {"index": 1, "value": 2})),
        Record(2, "ENQUEUE", "b", T0, job=Job("b", ["x", 1, None, True], priority=7)),
        Record(3, "ENQUEUE", "ü-id", T0, job=Job("ü-id", "pay\nload")),  # dumps, in C
        Record(4, "ENQUEUE", "c", T0, job=Job("c", 1.25)),  # dumps, in C
        Record(5, "DISPATCH", "task-0001", T0 + 1, 1, 3, T0 + 30_000),
        Record(6, "ACK", "task-0001", T0 + 2, 1),
        Record(7, "FAIL", "b", T0 + 2, 2, reason='boom: ünïcode "quoted"'),
        Record(8, "TIMEOUT", "b", -5, 3),
        Record(9, "RETRY", "b", T0, 3, reason="timeout"),
        Record(10, "DEAD", "b", T0, 4, reason="max_retry 3 reached"),
        Record(11, "ACK", "b", T0, 0),
        Record(12, "DISPATCH", "b", T0, 2, 0, None),
        Record(13, "FAIL", "b", T0, -1, None, -7, ""),
        Record(14, "ENQUEUE", "d", T0, job=Job("d", {"a": 1}, scheduled_at=12.25)),
        Record(15, "ENQUEUE", "e", T0, job=Job("e", [0.5], 1, priority=2, scheduled_at=7)),
        Record(16, "ENQUEUE", "f", T0, job=Job("f", None, depends_on=("d", "é", 'q"'))),
        Record(17, "ENQUEUE", "g", T0, job=Job("g", "x", status="weird\n", scheduled_at=-0.0)),
        Record(18, "ENQUEUE", "h", T0, job=Job("h", nested(100), scheduled_at=float("nan"))),
    ]
    data, handed = c_only(recs)
    assert handed == []
    assert data == wal._encode_records_py(recs)
    assert data == b"".join(map(wal.encode_record, recs))


@pytest.mark.parametrize(
    "recs",
    [
        [Record(1, "ENQUEUE", "a", T0)],  # no job
        [Record(1, "ACK", "a", T0, 1), Record(2, "BOGUS", "a", T0, 1)],  # unknown type
        [Record(1, "ACK", "a", T0, 1, job=Job("a"))],  # a job on an ACK
        [Record(1, "ENQUEUE", "a", T0, job=Job("b"))],  # job.id differs
        [Record(1, "ENQUEUE", "a", T0, 1 << 70, job=Job("a"))],
        [Record(1, "ACK", "a", T0, 1 << 64, reason="r")],  # orjson: past 64 bits
        [Record(1 << 64, "ACK", "a", T0, 1, reason="r")],
        [Record(1, "ACK", "\ud800", T0, 1)],  # orjson refuses surrogates
        [Record(1, "FAIL", "a", T0, 1, reason="\udfff")],
        [Record(1, "ENQUEUE", "a", T0, job=Job("a", {1: 2}))],  # orjson: non-str key
        [Record(1, "ENQUEUE", "a", T0, job=Job("a", object()))],
        [Record(1, "ENQUEUE", "a", T0, job=Job("a", nested(300)))],
        [Record(1, "ACK", "a", ISO_MAX + 1, 1)],  # year 10000
        [Record(1, "ACK", "a", 1 << 70, 1)],
        [Record(1, "ACK", "a", 1.5, 1)],  # (Python writes it: a float's stamp)
        [Record(1, "ACK", None, T0, 1)],  # type: ignore[arg-type]  # ("job_id":null)
        [(1, "ACK", "a")],
        [7],
        [None],
        7,
        None,
    ],
    ids=range(21),
)
def test_errors_are_pythons(recs: Any) -> None:
    with_c, py = both(recs)
    assert with_c == py
    writes = isinstance(recs, list) and type(recs[0]) is Record and recs[0][3] == 1.5
    writes |= isinstance(recs, list) and type(recs[0]) is Record and recs[0][2] is None
    assert with_c[0] == ("ok" if writes else "raised")


def test_any_iterable() -> None:
    recs = [Record(i, "ACK", f"j{i}", T0 + i, 1) for i in range(1, 50)]
    want = wal._encode_records_py(recs)
    assert wal.encode_records(recs) == want
    assert wal.encode_records(tuple(recs)) == want
    assert wal.encode_records(iter(recs)) == want
    assert wal.encode_records(r for r in recs) == want
    assert wal.encode_records([]) == wal.encode_records(()) == b""


def test_an_iterator_that_raises_midway() -> None:
    def gen() -> Iterator[Record]:
        yield Record(1, "ACK", "a", T0, 1)
        raise RuntimeError("from the generator")

    with pytest.raises(RuntimeError, match="from the generator"):
        wal.encode_records(gen())


def test_a_fallback_that_changes_the_list() -> None:
    recs: list[Any] = [Record(1, "ACK", "a", T0, 1), (2, "ACK", "b", T0, 1, None, None, None, None)]

    def fallback(rec: Any) -> bytes:
        recs.clear()  # read by index, as a for loop reads it: the loop just ends
        return b"odd\n"

    assert wal._c_encode is not None
    got = wal._c_encode(recs, Record, Job, orjson.dumps, fallback)
    assert got == wal._encode_records_py([Record(1, "ACK", "a", T0, 1)]) + b"odd\n"


def test_without_the_extension_encode_records_is_the_python_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    recs = [Record(1, "ENQUEUE", "a", T0, job=Job("a", {"x": 1}))]
    monkeypatch.setattr(wal, "_c_encode", None)
    called: list[Any] = []
    monkeypatch.setattr(wal, "_encode_records_py", lambda r: called.append(r) or b"py")
    assert wal.encode_records(recs) == b"py" and called == [recs]


def test_encoder_checks_its_arguments() -> None:
    enc = wal._c_encode
    assert enc is not None
    ok = ([], Record, Job, orjson.dumps, wal._encode_one)
    assert enc(*ok) == b""
    with pytest.raises(TypeError, match="5 arguments"):
        enc([], Record, Job, orjson.dumps)
    with pytest.raises(TypeError, match="NamedTuples"):
        enc([], dict, Job, orjson.dumps, wal._encode_one)
    with pytest.raises(TypeError, match="callable"):
        enc([], Record, Job, None, wal._encode_one)
    with pytest.raises(TypeError, match="callable"):
        enc([], Record, Job, orjson.dumps, 3)
    odd = [Record(1, "ACK", "a", 1.5, 1)]
    with pytest.raises(TypeError, match="fallback must return bytes"):
        enc(odd, Record, Job, orjson.dumps, lambda r: "str")
    with pytest.raises(TypeError, match="dumps must return bytes"):
        enc([Record(1, "ACK", "é", T0, 1)], Record, Job, lambda v: "str", wal._encode_one)
    with pytest.raises(ZeroDivisionError):
        enc(odd, Record, Job, orjson.dumps, lambda r: 1 // 0)
    with pytest.raises(ZeroDivisionError):  # not a TypeError: passed on, not a fallback
        enc([Record(1, "ACK", "é", T0, 1)], Record, Job, lambda v: 1 // 0, wal._encode_one)


def test_no_reference_or_memory_leaks_on_any_path() -> None:
    payload = {"a": [1, "x"]}
    odd_payload = {"a": 1.5}  # through dumps
    jid = "".join(["leak-", "é"])  # through dumps
    reason = "".join(["r", "1"])
    bad = object()  # orjson refuses it: back to Python, which raises
    cases = [
        [Record(1, "ENQUEUE", "a", T0, job=Job("a", payload))] * 3,
        [Record(1, "ENQUEUE", "a", T0, job=Job("a", odd_payload, priority=2))],
        [Record(1, "FAIL", jid, T0, 1, reason=reason), Record(2, "ACK", jid, T0, 1)],
        [Record(1, "ACK", "a", T0, 1), Record(1, "ENQUEUE", "a", T0, job=Job("a", bad))],
        [Record(1, "ACK", jid, 1.5, 1)],  # handed back
        [Record(1, "ACK", "\ud800", T0, 1)],  # dumps raises in C, then Python raises
        [Record(1, "ACK", "a", T0, 1 << 70, reason=reason)],
    ]
    watched: list[Any] = [payload, odd_payload, jid, reason, bad, *cases]

    def run(times: int) -> None:
        for _ in range(times):
            for recs in cases:
                outcome(wal.encode_records, recs)
                outcome(wal.encode_records, iter(recs))

    run(50)
    before = [sys.getrefcount(o) for o in watched]
    tracemalloc.start()
    try:
        run(50)
        start = tracemalloc.get_traced_memory()[0]
        run(500)
        grown = tracemalloc.get_traced_memory()[0] - start
    finally:
        tracemalloc.stop()
    assert [sys.getrefcount(o) for o in watched] == before
    assert grown < 50_000
