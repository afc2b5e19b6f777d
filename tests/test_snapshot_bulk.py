"""The snapshot's bulk decoding path (``snapshot._decode_fast``) against ``_decode``.

Like the WAL's bulk path, it exists for speed only: on every input it must either decline
(``None``, so ``_decode`` runs and names the problem) or return exactly what ``_decode``
returns.  Checked on snapshots of arbitrary little queues, on every single-key damage with
the checksum recomputed, and on the fuzzer's snapshot corpus with the fast path switched off.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_wal_bulk import little_queues

from phase1 import fuzz, snapshot
from phase1.core import CoreState
from phase1.errors import SnapshotError
from phase1.snapshot import CHECKSUM_MARKER, decode_snapshot, encode_snapshot


@st.composite
def states(draw: st.DrawFn) -> CoreState:
    return draw(little_queues())[0].export()


@settings(max_examples=150, deadline=None)
@given(states())
def test_bulk_decoding_of_written_snapshots_equals_the_checked_path(state: CoreState) -> None:
    data = encode_snapshot(state)
    fast = snapshot._decode_fast(data)
    assert fast is not None
    assert fast == snapshot._decode(data, "s") == state


def _outcome(data: bytes) -> Any:
    try:
        return decode_snapshot(data, path="s")
    except SnapshotError as exc:
        return (type(exc).__name__, str(exc))


BASE = {
    "queue": [{"id": "a", "payload": {"n": 1}, "attempt": 0, "status": "pending"}],
    "in_flight": {
        "b": {
            "worker_id": 1,
            "deadline_ms": 5,
            "attempt": 1,
            "job": {"id": "b", "payload": None, "attempt": 1, "status": "in_flight"},
        }
    },
    "completed": ["c"],
    "dead": ["d"],
    "last_seq": 9,
    "schema_version": 1,
    "dead_reasons": {"d": "why"},
    "failed": [],
}
DAMAGE = {
    "newer schema": lambda o: o.update(schema_version=2),
    "schema 0": lambda o: o.update(schema_version=0),
    "a job twice": lambda o: o["completed"].append("a"),
    "dead without reason": lambda o: o["dead"].append("e"),
    "reason without dead": lambda o: o["dead_reasons"].update(e="x"),
    "flight key differs": lambda o: o["in_flight"]["b"]["job"].update(id="z"),
    "unknown top key": lambda o: o.update(extra=1),
    "missing key": lambda o: o.pop("failed"),
    "bad status": lambda o: o["queue"][0].update(status="lost"),
    "negative attempt": lambda o: o["queue"][0].update(attempt=-1),
    "float attempt": lambda o: o["queue"][0].update(attempt=1.0),
    "bool priority": lambda o: o["queue"][0].update(priority=True),
    "priority 11": lambda o: o["queue"][0].update(priority=11),
    "priority 11 in flight": lambda o: o["in_flight"]["b"]["job"].update(priority=11),
    "null scheduled_at": lambda o: o["queue"][0].update(scheduled_at=None),
    "int scheduled_at": lambda o: o["queue"][0].update(scheduled_at=3),
    "null depends_on": lambda o: o["queue"][0].update(depends_on=None),
    "deps not strings": lambda o: o["queue"][0].update(depends_on=[1]),
    "empty id": lambda o: o["queue"][0].update(id=""),
    "unknown job key": lambda o: o["queue"][0].update(colour="red"),
    "completed not strings": lambda o: o["completed"].append(3),
    "flight missing key": lambda o: o["in_flight"]["b"].pop("worker_id"),
    "negative last_seq": lambda o: o.update(last_seq=-1),
    "queue not a list": lambda o: o.update(queue={}),
    "huge payload int": lambda o: o["queue"][0].update(payload=2**70),
}


@pytest.mark.parametrize("name", sorted(DAMAGE))
def test_bulk_path_agrees_or_declines_on_each_damage(name: str) -> None:
    obj = orjson.loads(orjson.dumps(BASE))
    DAMAGE[name](obj)
    data = fuzz._rechecksum(obj, CHECKSUM_MARKER)  # stdlib json: writes 2**70 too
    fast = snapshot._decode_fast(data)
    slow = _outcome(data)
    if isinstance(slow, tuple):
        assert fast is None, slow
    else:
        assert fast in (None, slow)
    if name.startswith("priority 11"):  # (once accepted, and restore died of an IndexError)
        assert isinstance(slow, tuple) and slow[1].endswith(".priority is 11, above 10")


def test_fuzz_snapshot_corpus_decodes_the_same_without_the_bulk_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cases = [fuzz.make_case(11, i, target="snapshot") for i in range(300)]
    datas = [data for c in cases for data in c.files.values()]
    with_bulk = [_outcome(d) for d in datas]
    monkeypatch.setattr(snapshot, "_decode_fast", lambda data: None)
    assert [_outcome(d) for d in datas] == with_bulk


# == the C job-array decoder (``_walcheck.decode_jobs``) against msgspec + ``_fast_job`` ==
needs_c = pytest.mark.skipif(snapshot._c_decode_jobs is None, reason="_walcheck is not built")


def _jobs_both_ways(raw: bytes) -> tuple[Any, Any]:
    """(the C decoder's answer, the msgspec path's: a list of Jobs or 'refused')."""
    from phase1.jobs import PRIORITY_MAX, Job

    assert snapshot._c_decode_jobs is not None
    with_c = snapshot._c_decode_jobs(raw, Job, orjson.loads, PRIORITY_MAX)
    try:
        slow: Any = list(map(snapshot._fast_job, snapshot._fast_jobs(raw)))
    except (ValueError, orjson.JSONDecodeError):  # msgspec.DecodeError is a ValueError
        slow = "refused"
    return with_c, slow


def _same(with_c: Any, slow: Any) -> None:
    if with_c is None:
        return  # declined: the msgspec path decides (it may accept or refuse)
    assert slow != "refused", "C accepted what the checked path refuses"
    assert with_c == slow
    # equal is not enough: 1 == 1.0 == True; the types must match field by field
    assert [[type(v) for v in job] for job in with_c] == [[type(v) for v in job] for job in slow]
    assert [type(job.payload) for job in with_c] == [type(job.payload) for job in slow]


@needs_c
@settings(max_examples=150, deadline=None)
@given(states())
def test_c_job_decoder_reads_every_written_queue_as_msgspec_does(state: CoreState) -> None:
    from phase1.jobs import job_to_dict

    raw = orjson.dumps([job_to_dict(j) for j in state.pending + state.failed])
    with_c, slow = _jobs_both_ways(raw)
    assert with_c is not None  # the writer's own shape is never declined
    _same(with_c, slow)


JOB_TEXTS = [
    b'{"id":"a","payload":{"n":1,"s":"x","l":[1,true,null,{}],"f":false},"attempt":0,'
    b'"status":"pending"}',
    b'{"id":"b","payload":null,"attempt":3,"status":"failed","priority":10,'
    b'"scheduled_at":1704103200,"depends_on":["a","c"]}',
    b'{"id":"c","payload":[1.5,-0.0,1e5,"\\u00e9"],"attempt":1,"status":"in_flight",'
    b'"priority":2,"depends_on":[]}',
    b'{"id":"d","payload":-12,"attempt":0,"status":"dead","scheduled_at":-5}',
    b'{"id":"e","payload":"text","attempt":0,"status":"completed","scheduled_at":1.25}',
    b'{"id":"f","payload":{"big":123456789012345678901234567890},"attempt":0,"status":"pending"}',
]


@needs_c
@pytest.mark.parametrize("index", range(len(JOB_TEXTS)))
def test_c_job_decoder_on_odd_jobs(index: int) -> None:
    raw = b"[" + JOB_TEXTS[index] + b"," + JOB_TEXTS[0] + b"]"
    _same(*_jobs_both_ways(raw))


@needs_c
@settings(max_examples=600, deadline=None)
@given(
    picks=st.lists(st.integers(0, len(JOB_TEXTS) - 1), max_size=4),
    edits=st.lists(
        st.tuples(st.integers(0, 10_000), st.integers(0, 2), st.binary(min_size=1, max_size=3)),
        max_size=3,
    ),
)
def test_c_job_decoder_never_disagrees_with_msgspec_on_damaged_arrays(
    picks: list[int], edits: list[tuple[int, int, bytes]]
) -> None:
    """Bytes replaced, inserted or deleted anywhere in a job array (whitespace, escapes,
    reordered or unknown keys, a bad status, cut arrays...): C declines or agrees."""
    raw = bytearray(b"[" + b",".join(JOB_TEXTS[i] for i in picks) + b"]")
    for at, kind, data in edits:
        at %= len(raw) + 1
        if kind == 0:
            raw[at : at + len(data)] = data
        elif kind == 1:
            raw[at:at] = data
        else:
            del raw[at : at + len(data)]
    _same(*_jobs_both_ways(bytes(raw)))


@needs_c
@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"[",
        b"[]",
        b"[] ",
        b" []",
        b'[{"id":"","payload":1,"attempt":0,"status":"pending"}]',
        b'[{"id":"a","payload":1,"attempt":0,"status":"running"}]',
        b'[{"id":"a","payload":1,"attempt":-1,"status":"pending"}]',
        b'[{"id":"a","payload":1,"attempt":0,"status":"pending","priority":11}]',
        b'[{"id":"a","payload":1,"attempt":0,"status":"pending","extra":1}]',
        b'[{"payload":1,"id":"a","attempt":0,"status":"pending"}]',
        b'[{"id":"a","attempt":0,"status":"pending"}]',
        b'[{"id":"a","payload":1,"attempt":0,"status":"pending"},]',
        b'[{"id":"a\\n","payload":1,"attempt":0,"status":"pending"}]',
        b'[{"id":"a","payload":{"k":1,"k":2},"attempt":0,"status":"pending"}]',
        b'[{"id":"a","payload":1,"attempt":0,"status":"pending","depends_on":null}]',
        b'[{"id":"a","payload":1,"attempt":0,"status":"pending","scheduled_at":null}]',
    ]
    + [
        b'[{"id":"a","payload":1,"attempt":0,"status":"pending","scheduled_at":%b}]' % n
        for n in (
            b"12345678901234567890",
            b"-9223372036854775809",
            b"1E400",
            b"-0",
            b"-0.0",
            b"1e-400",
            b"0.1",
            b"1.7976931348623157e308",
            b"01",
            b"1.",
            b".5",
            b"+1",
            b"1e+2",
            b"Infinity",
            b"NaN",
            b"1" * 70,
        )
    ],
)
def test_c_job_decoder_on_edge_arrays(raw: bytes) -> None:
    _same(*_jobs_both_ways(raw))
