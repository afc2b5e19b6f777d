"""The C replay (``_replay.replay_rows``) against ``QueueCore.replay``'s Python loop.

The C path exists for speed only: on every log ``QueueCore.replay`` must end in the same
state with it as without it (``core._c_replay = None``): the same export, ``last_seq``,
deadline index, counts and next wake-up, or the same exception with the core holding the
same records.  Checked on generated workloads of every command (priorities, delays,
dependencies, failures, timeouts, cancels), replayed whole, after a snapshot, as recovery's
plain rows and as Records, with payload packing starting part way, and with gaps, repeats
and forged records that replay must refuse.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phase1 import core as core_module
from phase1 import wal
from phase1.core import QueueCore, Record
from phase1.errors import IllegalTransition
from phase1.jobs import Job

pytestmark = pytest.mark.skipif(core_module._c_replay is None, reason="phase1._replay is not built")

MAX_RETRY = 2
TIMEOUT_S = 1.0


def test_the_replay_accelerator_is_built_wherever_the_wal_one_is() -> None:
    # Both come from setup.py's optional extensions: one without the other means a broken
    # build, which the skip above would otherwise hide.
    assert (wal._c_decode is None) == (core_module._c_replay is None)


def workload(seed: int, steps: int, *, deps: bool = True) -> tuple[list[Record], list[int]]:
    """The records of a seeded random run of every command, and the seqs at which a
    snapshot could have been taken (after each command)."""
    rng = random.Random(seed)
    core = QueueCore(max_retry=MAX_RETRY, task_timeout_s=TIMEOUT_S)
    records: list[Record] = []
    cuts: list[int] = []
    ids: list[str] = []
    now = 0.0
    for _ in range(steps):
        now += rng.choice([0.0, 0.1, 0.4, 1.5])
        roll = rng.random()
        if roll < 0.35:
            batch = []
            for _ in range(rng.randint(1, 4)):
                job_id = f"j{len(ids)}"
                kw: dict[str, Any] = {"priority": rng.randint(0, 10)}
                if rng.random() < 0.15:
                    kw["scheduled_at"] = now + rng.choice([0.5, 3.0])
                if deps and ids and rng.random() < 0.15:
                    kw["depends_on"] = (rng.choice(ids + ["nobody"]),)
                payload = rng.choice([None, {"n": len(ids)}, [1, 2], "text"])
                batch.append(Job(job_id, payload, **kw))
                ids.append(job_id)
            step = core.enqueue(batch, now)
        elif roll < 0.6:
            step = core.dispatch(now, worker_id=rng.randint(0, 3), limit=rng.randint(1, 3))
        elif roll < 0.85 and core.in_flight():
            job_id, flight = rng.choice(sorted(core.in_flight().items()))
            if rng.random() < 0.75:
                step = core.ack(job_id, flight.attempt, now)
            else:
                step = core.fail(job_id, flight.attempt, now)
        elif roll < 0.93:
            step = core.tick(now)
        elif ids:
            step = core.cancel(rng.choice(ids), now)
        else:
            continue
        records.extend(step.records)
        cuts.append(core.last_seq)
    return records, cuts


def outcome(core: QueueCore, records: list[Any], **kw: Any) -> tuple[Any, ...]:
    error = None
    try:
        changed = core.replay(records, **kw)
    except Exception as exc:  # noqa: BLE001 - compared between the two paths
        error, changed = f"{type(exc).__name__}: {exc}", None
    live = sorted(d for d in core._deadlines if core._flying(d))
    entries = {  # the bookkeeping export() does not show
        job_id: (e.job, e.state, e.attempt, e.order, e.flight, e.unmet, e.copies)
        for job_id, e in core._jobs.items()
    }
    fifos = [[(e.job.id, e.order) for e in fifo] for fifo in core._ready]
    return (
        entries,
        fifos,
        sorted(core._blocked),
        sorted(core._in_flight),
        error,
        changed,
        core.last_seq,
        core.export(),
        core.counts(),
        live,
        core.next_wakeup_s(),
        core._next_order,
    )


def both_ways(
    records: list[Record], *, start: QueueCore | None = None, rows: bool = True, **core_kw: Any
) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """(with the C path, without it), each replaying ``records`` into a copy of ``start``
    (as recovery does: plain rows, ``to_record``, the ENQUEUEs' ids; or as Records)."""
    results = []
    for c in (True, False):
        core = QueueCore(max_retry=MAX_RETRY, task_timeout_s=TIMEOUT_S, **core_kw)
        if start is not None:
            core = QueueCore.restore(
                start.export(), max_retry=MAX_RETRY, task_timeout_s=TIMEOUT_S, **core_kw
            )
        if rows:
            given_rows: list[Any] = [tuple(r) for r in records]
            ids = [r.job_id for r in records if r.type == "ENQUEUE"]
            kw: dict[str, Any] = {"to_record": Record._make, "enqueue_ids": ids}
        else:
            given_rows, kw = list(records), {}
        saved = core_module._c_replay
        if not c:
            core_module._c_replay = None
        try:
            results.append(outcome(core, given_rows, **kw))
        finally:
            core_module._c_replay = saved
        core.check(settled=False)
    return results[0], results[1]


@settings(max_examples=60)
@given(seed=st.integers(0, 2**32 - 1), rows=st.booleans(), deps=st.booleans())
def test_replaying_a_workload_in_c_ends_where_python_does(
    seed: int, rows: bool, deps: bool
) -> None:
    records, _ = workload(seed, 60, deps=deps)
    with_c, without = both_ways(records, rows=rows)
    assert with_c == without
    assert with_c[4] is None and with_c[6] == len(records)


@settings(max_examples=40)
@given(seed=st.integers(0, 2**32 - 1), where=st.floats(0, 1))
def test_replaying_after_a_snapshot_in_c_ends_where_python_does(seed: int, where: float) -> None:
    """A snapshot restored first (jobs already known, in flight, blocked), then the whole
    log: the records it covers are skipped, the rest applied."""
    records, cuts = workload(seed, 50)
    cut = cuts[int(where * (len(cuts) - 1))] if cuts else 0
    start = QueueCore(max_retry=MAX_RETRY, task_timeout_s=TIMEOUT_S)
    start.replay(records[:cut])
    start.settle(0.0)  # as recover() leaves a restored core: in-flight jobs back in line
    later = [r._replace(seq=start.last_seq + 1 + i) for i, r in enumerate(records[cut:])]
    for log in (records, later):
        with_c, without = both_ways(log, start=start)
        assert with_c == without


@settings(max_examples=40)
@given(
    seed=st.integers(0, 2**32 - 1),
    at=st.floats(0, 1),
    how=st.sampled_from(["gap", "repeat", "forge", "skip-attempt", "re-enqueue", "drop-enqueue"]),
)
def test_a_log_replay_must_refuse_stops_at_the_same_record_with_c(
    seed: int, at: float, how: str
) -> None:
    records, _ = workload(seed, 40, deps=False)
    if len(records) < 3:
        return
    i = 1 + int(at * (len(records) - 2))
    bad = list(records)
    if how == "gap":
        del bad[i]
    elif how == "repeat":
        bad.insert(i, bad[i - 1])  # seq <= last: already reflected, skipped by both
    elif how == "forge":  # an ACK of an attempt that was never dispatched
        bad[i] = Record(bad[i].seq, "ACK", bad[i].job_id, bad[i].timestamp_ms, attempt=99)
    elif how == "skip-attempt":  # a DISPATCH whose attempt is not the next one
        dispatches = [k for k, r in enumerate(bad) if r.type == "DISPATCH"]
        if not dispatches:
            return
        k = dispatches[int(at * (len(dispatches) - 1))]
        bad[k] = bad[k]._replace(attempt=bad[k].attempt + 1)
    elif how == "re-enqueue":  # a job known by then (pending, in flight, done or dead)
        known = records[0].job_id
        bad[i] = Record(bad[i].seq, "ENQUEUE", known, bad[i].timestamp_ms, job=Job(known))
    else:
        enqueues = [k for k, r in enumerate(bad) if r.type == "ENQUEUE"]
        k = enqueues[int(at * (len(enqueues) - 1))]
        bad[k] = Record(bad[k].seq, "ENQUEUE", "other", bad[k].timestamp_ms, job=Job("other"))
    with_c, without = both_ways(bad)
    assert with_c == without


def test_a_forged_dispatch_of_a_blocked_job_is_applied_as_apply_does() -> None:
    """A DISPATCH the live core never writes (its job waits on a dependency) is still a
    legal move for ``apply`` (PENDING -> IN_FLIGHT), which unblocks it: C leaves every
    DISPATCH to ``apply`` while anything is blocked."""
    core = QueueCore(max_retry=MAX_RETRY, task_timeout_s=TIMEOUT_S)
    records = list(core.enqueue([Job("w", depends_on=("nobody",)), Job("a")], 0.0).records)
    records.append(Record(3, "DISPATCH", "w", 0, attempt=1, worker_id=2, deadline_ms=900))
    records.append(Record(4, "DISPATCH", "a", 0, attempt=1, worker_id=2, deadline_ms=800))
    with_c, without = both_ways(records)
    assert with_c == without and with_c[4] is None
    assert with_c[2] == [] and with_c[3] == ["a", "w"]


def test_a_busy_log_replays_in_c_like_the_fixture_recovery_measures() -> None:
    """Blocks of 100 ENQUEUE, DISPATCH, ACK (the benchmark's shape), all in C."""
    core = QueueCore(max_retry=MAX_RETRY, task_timeout_s=TIMEOUT_S)
    records: list[Record] = []
    for block in range(30):
        jobs = [Job(f"b{block}-{k}", {"k": k}, priority=k % 11) for k in range(100)]
        records += core.enqueue(jobs, 0.0).records
        records += core.dispatch(0.0, worker_id=1, limit=100).records
        for r in records[-100:]:
            if block % 3 or r.job_id[-1] != "7":  # some stay in flight
                records += core.ack(r.job_id, r.attempt, 0.0).records
    with_c, without = both_ways(records)
    assert with_c == without and with_c[4] is None
    assert with_c[7] == core.export()


@pytest.mark.parametrize("pack_above", [0, 5, 40])
def test_payload_packing_starts_at_the_same_job_in_c(pack_above: int) -> None:
    records, _ = workload(7, 80, deps=False)
    with_c, without = both_ways(records, pack_above=pack_above)
    assert with_c == without
    core = QueueCore(max_retry=MAX_RETRY, task_timeout_s=TIMEOUT_S, pack_above=pack_above)
    core.replay([tuple(r) for r in records], to_record=Record._make)
    packed = [e.job.payload for e in core._jobs.values() if isinstance(e.job.payload, bytes)]
    assert packed or pack_above > 0  # pack_above=0 packs every dict/list payload held


class Hostile(str):
    """A job id whose comparison raises (only a forged Job could carry one)."""

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("compared")

    __hash__ = str.__hash__


def test_an_exception_inside_the_c_loop_leaves_the_core_as_python_does() -> None:
    records, _ = workload(3, 30, deps=False)
    enqueues = [k for k, r in enumerate(records) if r.type == "ENQUEUE"]
    k = enqueues[len(enqueues) // 2]
    r = records[k]
    assert r.job is not None
    records[k] = r._replace(job=r.job._replace(id=Hostile(r.job_id)))
    with_c, without = both_ways(records)
    assert with_c == without
    assert with_c[4] == "RuntimeError: compared" and with_c[6] == r.seq - 1


def test_replay_rows_refuses_wrong_arguments_in_one_line() -> None:
    replay_rows = core_module._c_replay
    assert replay_rows is not None
    with pytest.raises(TypeError, match=r"replay_rows\(rows: list"):
        replay_rows((), 0, [0, 0, 0, 0, 0], ())
    ctx = ({}, {}, {}, {}, {}, {}, (), dict, None, None, None, False)
    with pytest.raises(TypeError, match="no plain slot job"):
        replay_rows([], 0, [0, 0, 0, 0, 0], ctx)
    with pytest.raises(TypeError, match="five ints"):
        replay_rows([], 0, [0, 0, 0, 0, "x"], ctx[:7] + (core_module._Entry,) + ctx[8:])
    with pytest.raises(IllegalTransition):  # and the core's own error for a bad record
        QueueCore().replay([Record(2, "ACK", "a", 0)])
