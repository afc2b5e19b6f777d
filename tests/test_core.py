"""Tests for phase1.core: the transition table, dispatch order, fencing, retries, settle,
invariant checking and snapshots of the sans-I/O ``QueueCore``."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable

import pytest

from phase1.core import (
    RECORD_TYPES,
    TRANSITIONS,
    Completed,
    DeadLettered,
    InFlight,
    LateAck,
    QueueCore,
    Record,
    Retried,
    SendToWorker,
    Step,
    TimedOut,
    replay,
)
from phase1.errors import IllegalTransition, InvalidJobError, InvariantViolation
from phase1.jobs import Job, JobState

MAX_RETRY = 3
TIMEOUT_S = 3.0


def new_core() -> QueueCore:
    return QueueCore(max_retry=MAX_RETRY, task_timeout_s=TIMEOUT_S)


class Log:
    """A core plus every record its commands returned (the WAL a shell would write)."""

    def __init__(self) -> None:
        self.core = new_core()
        self.records: list[Record] = []

    def run(self, step: Step) -> Step:
        self.records.extend(step.records)
        return step

    def enqueue(self, *jobs: Job, now_s: float = 0.0) -> Step:
        return self.run(self.core.enqueue(list(jobs), now_s=now_s))

    def dispatch(self, now_s: float = 0.0, limit: int = 1) -> list[str]:
        step = self.run(self.core.dispatch(now_s=now_s, worker_id=1, limit=limit))
        return [e.job.id for e in step.effects if isinstance(e, SendToWorker)]

    def replayed(self, upto: int | None = None) -> QueueCore:
        """A fresh core rebuilt from the first ``upto`` records (a WAL torn after them)."""
        fresh = new_core()
        replay(fresh, self.records[:upto])
        return fresh


def drain(log: Log, now_s: float = 0.0) -> list[str]:
    """Dispatch one at a time until nothing is ready; the ids in dispatch order."""
    order: list[str] = []
    while got := log.dispatch(now_s):
        order.extend(got)
    return order


def types(records: Iterable[Record]) -> list[str]:
    return [r.type for r in records]


def sent(step: Step) -> list[tuple[str, int]]:
    """(job id, attempt) of every job the step hands to a worker."""
    return [(e.job.id, e.attempt) for e in step.effects if isinstance(e, SendToWorker)]


def attempt_of(core: QueueCore, job_id: str) -> int:
    job = core.get(job_id)
    assert job is not None, f"{job_id} is not live"
    return job.attempt


# == the transition table ===================================================================
STATES: list[JobState | None] = [
    None,
    JobState.PENDING,
    JobState.IN_FLIGHT,
    JobState.FAILED,
    JobState.COMPLETED,
    JobState.DEAD,
]


def core_holding(state: JobState | None) -> QueueCore:
    """A core in which job ``x`` is in ``state``, reached through the public commands only
    (FAILED, which no finished command leaves behind, is a WAL torn right after FAIL)."""
    log = Log()
    log.enqueue(Job("bystander", priority=0), Job("dep-of-bystander"))
    if state is None:
        return log.core
    log.enqueue(Job("x", priority=9, payload={"n": 1}))
    if state is JobState.PENDING:
        return log.core
    if state is JobState.DEAD:
        log.run(log.core.cancel("x", now_s=0.0))
        return log.core
    assert log.dispatch() == ["x"]
    if state is JobState.IN_FLIGHT:
        return log.core
    if state is JobState.COMPLETED:
        log.run(log.core.ack("x", attempt=1, now_s=0.5))
        return log.core
    assert state is JobState.FAILED
    step = log.run(log.core.fail("x", attempt=1, now_s=0.5))
    assert types(step.records) == ["FAIL", "RETRY"]
    core = log.replayed(upto=len(log.records) - 1)
    core.check(settled=False)
    return core


def hand_made(core: QueueCore, rtype: str) -> Record:
    """A record of ``rtype`` about job ``x`` with the next seq, shaped as the core emits it."""
    current = core.get("x")
    attempt = current.attempt if current is not None else 0
    seq = core.last_seq + 1
    if rtype == "ENQUEUE":
        return Record(seq, rtype, "x", 1000, job=Job("x"))
    if rtype == "DISPATCH":
        return Record(seq, rtype, "x", 1000, attempt=attempt + 1, worker_id=2, deadline_ms=4000)
    return Record(seq, rtype, "x", 1000, attempt=attempt, reason="hand-made")


@pytest.mark.parametrize(
    ("rtype", "state"),
    list(itertools.product(RECORD_TYPES, STATES)),
    ids=[
        f"{t}-from-{s.value if s else 'unknown'}"
        for t, s in itertools.product(RECORD_TYPES, STATES)
    ],
)
def test_apply_follows_the_transition_table(rtype: str, state: JobState | None) -> None:
    core = core_holding(state)
    assert core.state_of("x") is state
    record = hand_made(core, rtype)
    sources, target = TRANSITIONS[rtype]
    before = core.export()
    if state in sources:
        assert core.apply(record) is True
        assert core.state_of("x") is target
        assert core.last_seq == record.seq
        core.check(settled=False)
        if target is JobState.DEAD:
            assert core.dead_reasons()["x"] == "hand-made"
        # the same record again is already reflected
        after = core.export()
        assert core.apply(record) is False
        assert core.export() == after
    else:
        with pytest.raises(IllegalTransition) as info:
            core.apply(record)
        err = info.value
        assert (err.job_id, err.record_type) == ("x", rtype)
        assert err.state == (state.value if state else None)
        assert "'x'" in str(err) and rtype in str(err) and f"seq {record.seq}" in str(err)
        assert core.export() == before
        assert core.last_seq == before.last_seq
        core.check(settled=False)


def test_transition_table_names_every_record_type_once() -> None:
    assert set(RECORD_TYPES) == {"ENQUEUE", "DISPATCH", "ACK", "FAIL", "TIMEOUT", "RETRY", "DEAD"}
    for sources, target in TRANSITIONS.values():
        assert isinstance(target, JobState)
        assert target not in sources  # every record moves a job


@pytest.mark.parametrize("gap", [2, 3, 100])
def test_apply_raises_on_a_seq_gap_and_changes_nothing(gap: int) -> None:
    core = core_holding(JobState.PENDING)
    before = core.export()
    record = Record(core.last_seq + gap, "DEAD", "x", 0, reason="r")
    with pytest.raises(IllegalTransition, match="missing"):
        core.apply(record)
    assert core.export() == before


@pytest.mark.parametrize("back", [0, 1, 3])
def test_apply_returns_false_for_an_old_seq_and_changes_nothing(back: int) -> None:
    core = core_holding(JobState.IN_FLIGHT)
    before = core.export()
    # even a record that would be illegal now is simply "already reflected"
    record = Record(core.last_seq - back, "ENQUEUE", "x", 0, job=Job("x"))
    assert core.apply(record) is False
    assert core.export() == before


def test_apply_rejects_an_unknown_record_type() -> None:
    core = core_holding(JobState.PENDING)
    before = core.export()
    with pytest.raises(IllegalTransition, match="unknown record type 'NAP'"):
        core.apply(Record(core.last_seq + 1, "NAP", "x", 0))
    assert core.export() == before


def test_apply_rejects_enqueue_without_a_job() -> None:
    core = new_core()
    with pytest.raises(IllegalTransition, match="carries no job"):
        core.apply(Record(1, "ENQUEUE", "x", 0))
    assert core.last_seq == 0 and not core.knows("x")


@pytest.mark.parametrize("attempt", [0, 2])
def test_apply_rejects_dispatch_with_a_wrong_attempt(attempt: int) -> None:
    core = core_holding(JobState.PENDING)
    before = core.export()
    with pytest.raises(IllegalTransition, match="expected 1"):
        core.apply(Record(core.last_seq + 1, "DISPATCH", "x", 0, attempt=attempt, deadline_ms=9))
    assert core.export() == before
    core.check()


@pytest.mark.parametrize("rtype", ["ACK", "FAIL", "TIMEOUT"])
def test_apply_rejects_an_attempt_end_for_an_attempt_not_in_flight(rtype: str) -> None:
    log = redispatched()  # "a" is in flight on attempt 2
    before = log.core.export()
    with pytest.raises(IllegalTransition):
        log.core.apply(Record(log.core.last_seq + 1, rtype, "a", 0, attempt=1))
    assert log.core.export() == before


def test_apply_rejects_enqueue_whose_job_has_another_id() -> None:
    core = new_core()
    with pytest.raises(IllegalTransition):
        core.apply(Record(1, "ENQUEUE", "x", 0, job=Job("y")))
    core.check()


# == dispatch order ==========================================================================
def test_dispatch_takes_high_priority_first_and_fifo_within_a_priority() -> None:
    log = Log()
    log.enqueue(
        Job("a", priority=0),
        Job("b", priority=5),
        Job("c", priority=10),
        Job("d", priority=5),
        Job("e", priority=0),
    )
    log.enqueue(Job("f", priority=5))
    assert drain(log) == ["c", "b", "d", "f", "a", "e"]


def test_dispatch_limit_hands_several_jobs_in_order() -> None:
    log = Log()
    log.enqueue(*(Job(f"j{i}", priority=i % 2) for i in range(6)))
    assert log.dispatch(limit=4) == ["j1", "j3", "j5", "j0"]
    assert log.dispatch(limit=4) == ["j2", "j4"]


@pytest.mark.parametrize("how", ["fail", "timeout"])
def test_a_retried_job_goes_behind_its_priority_queue(how: str) -> None:
    log = Log()
    log.enqueue(Job("a", priority=1), Job("b", priority=1), Job("c", priority=1), Job("z"))
    assert log.dispatch(now_s=0.0) == ["a"]
    if how == "fail":
        step = log.run(log.core.fail("a", attempt=1, now_s=1.0))
    else:
        step = log.run(log.core.tick(now_s=TIMEOUT_S))
    assert types(step.records)[-1] == "RETRY"
    assert drain(log, now_s=TIMEOUT_S) == ["b", "c", "a", "z"]


def test_delayed_job_is_not_dispatched_before_scheduled_at() -> None:
    log = Log()
    log.enqueue(Job("later", priority=10, scheduled_at=10.0), Job("now"))
    assert log.core.next_wakeup_s() == 10.0
    assert drain(log, now_s=0.0) == ["now"]
    assert log.dispatch(now_s=9.999) == []
    assert log.core.counts()["delayed"] == 1
    assert log.dispatch(now_s=10.0) == ["later"]


def test_due_delayed_job_competes_by_priority() -> None:
    log = Log()
    log.enqueue(Job("low"), Job("high", priority=7, scheduled_at=5.0), Job("low2"))
    assert log.dispatch(now_s=6.0, limit=3) == ["high", "low", "low2"]


def test_dependencies_gate_dispatch_until_all_completed() -> None:
    log = Log()
    log.enqueue(Job("c", priority=10, depends_on=("a", "b")), Job("a"), Job("b"))
    assert log.core.counts()["blocked"] == 1
    assert drain(log) == ["a", "b"]
    log.run(log.core.ack("a", attempt=1, now_s=1.0))
    assert log.dispatch(now_s=1.0) == []
    log.run(log.core.ack("b", attempt=1, now_s=1.0))
    assert log.dispatch(now_s=1.0) == ["c"]
    log.core.check()


def test_dependency_completed_before_enqueue_does_not_block() -> None:
    log = Log()
    log.enqueue(Job("a"))
    log.dispatch()
    log.run(log.core.ack("a", attempt=1, now_s=0.0))
    log.enqueue(Job("b", depends_on=("a",)))
    assert log.dispatch() == ["b"]


def test_dead_dependency_dead_letters_dependents_transitively() -> None:
    log = Log()
    log.enqueue(
        Job("a", priority=1),  # stays ahead of "free" after each RETRY
        Job("b", depends_on=("a",)),
        Job("c", depends_on=("b",)),
        Job("d", depends_on=("x", "c")),
        Job("free"),
    )
    for attempt in range(1, MAX_RETRY + 1):
        assert log.dispatch(now_s=attempt) == ["a"]
        step = log.run(log.core.fail("a", attempt=attempt, now_s=attempt, reason="boom"))
    assert types(step.records) == ["FAIL", "DEAD", "DEAD", "DEAD", "DEAD"]
    reasons = log.core.dead_reasons()
    assert "max_retry 3" in reasons["a"] and "boom" in reasons["a"]
    assert reasons["b"] == "dependency 'a' is dead"
    assert reasons["c"] == "dependency 'b' is dead"
    assert reasons["d"] == "dependency 'c' is dead"
    dead_effects = [e for e in step.effects if isinstance(e, DeadLettered)]
    assert [e.job_id for e in dead_effects] == ["a", "b", "c", "d"]
    assert drain(log, now_s=10.0) == ["free"]
    log.core.check()


def test_dependency_already_dead_at_enqueue_dead_letters_in_the_same_step() -> None:
    log = Log()
    log.enqueue(Job("a"))
    log.run(log.core.cancel("a", now_s=0.0))
    step = log.enqueue(Job("b", depends_on=("ok", "a")), Job("c", depends_on=("b",)))
    assert types(step.records) == ["ENQUEUE", "DEAD", "ENQUEUE", "DEAD"]
    assert log.core.dead_reasons()["b"] == "dependency 'a' is dead"
    assert log.core.dead_reasons()["c"] == "dependency 'b' is dead"
    log.core.check()


def test_dependency_dying_later_in_the_same_batch_kills_earlier_dependent() -> None:
    log = Log()
    step = log.enqueue(Job("b", depends_on=("a",)), Job("a", attempt=MAX_RETRY))
    assert types(step.records) == ["ENQUEUE", "ENQUEUE", "DEAD", "DEAD"]
    assert log.core.dead_reasons()["b"] == "dependency 'a' is dead"
    log.core.check()


def test_dependency_on_an_id_never_enqueued_keeps_the_job_blocked() -> None:
    log = Log()
    log.enqueue(Job("b", priority=10, depends_on=("ghost",)), Job("c"))
    assert drain(log, now_s=100.0) == ["c"]
    log.run(log.core.ack("c", attempt=1, now_s=100.0))
    assert log.core.state_of("b") is JobState.PENDING
    assert log.core.counts()["blocked"] == 1
    log.run(log.core.settle(now_s=100.0))
    assert log.core.state_of("b") is JobState.PENDING
    log.core.check()
    # the ghost shows up and completes: the job is released
    log.enqueue(Job("ghost"))
    assert log.dispatch(now_s=101.0) == ["ghost"]
    log.run(log.core.ack("ghost", attempt=1, now_s=101.0))
    assert log.dispatch(now_s=101.0) == ["b"]


# == fencing =================================================================================
def redispatched() -> Log:
    """``a`` timed out on attempt 1 and is in flight again on attempt 2."""
    log = Log()
    log.enqueue(Job("a"), Job("b"))
    assert log.dispatch(now_s=0.0) == ["a"]
    log.run(log.core.tick(now_s=TIMEOUT_S))
    assert log.dispatch(now_s=TIMEOUT_S, limit=2) == ["b", "a"]
    return log


@pytest.mark.parametrize("kind", ["ack", "fail"])
@pytest.mark.parametrize(
    ("job_id", "attempt", "state", "current"),
    [
        ("a", 1, "in_flight", 2),  # stale attempt
        ("a", 3, "in_flight", 2),  # attempt from the future
        ("nobody", 1, "unknown", 0),
    ],
)
def test_stale_ack_or_fail_is_only_a_late_ack_effect(
    kind: str, job_id: str, attempt: int, state: str, current: int
) -> None:
    log = redispatched()
    before = log.core.export()
    command = log.core.ack if kind == "ack" else log.core.fail
    step = command(job_id, attempt=attempt, now_s=4.0)
    assert step.records == ()
    assert step.effects == (LateAck(job_id, attempt, kind, state, current),)
    assert log.core.export() == before
    log.core.check()


def test_ack_for_a_completed_job_is_late() -> None:
    log = Log()
    log.enqueue(Job("a"))
    log.dispatch()
    log.run(log.core.ack("a", attempt=1, now_s=1.0))
    step = log.core.ack("a", attempt=1, now_s=1.0)
    assert step == Step((), (LateAck("a", 1, "ack", "completed", 0),))
    assert log.core.completed_ids() == ["a"]


def test_not_completed_is_the_ids_minus_the_completed_ones() -> None:
    log = Log()
    log.enqueue(Job("a"), Job("b"))
    log.dispatch()
    log.run(log.core.ack("a", attempt=1, now_s=1.0))
    ids = {"a", "b", "unknown"}
    assert log.core.not_completed(ids) == {"b", "unknown"}
    assert ids == {"a", "b", "unknown"}  # not changed


def test_seed_q5_timeline_late_ack_ignored_and_completed_exactly_once() -> None:
    log = Log()
    log.enqueue(Job("a"))
    t0 = 100.0
    send = log.run(log.core.dispatch(now_s=t0, worker_id=1)).effects[0]
    assert isinstance(send, SendToWorker)
    assert (send.attempt, send.deadline_s) == (1, t0 + TIMEOUT_S)
    assert log.core.tick(now_s=t0 + 1.0) == Step()  # T1: still working
    assert log.core.tick(now_s=t0 + 2.999) == Step()
    step = log.run(log.core.tick(now_s=t0 + TIMEOUT_S))  # T3+: controller sees the timeout
    assert types(step.records) == ["TIMEOUT", "RETRY"]
    assert step.effects == (TimedOut("a", 1), Retried("a", 1, "timeout"))
    send2 = log.run(log.core.dispatch(now_s=t0 + 3.5, worker_id=2)).effects[0]
    assert isinstance(send2, SendToWorker) and (send2.worker_id, send2.attempt) == (2, 2)
    # T4: worker 1 finishes late; its ACK is fenced off by the attempt number
    late = log.core.ack("a", attempt=1, now_s=t0 + 4.0)
    assert late == Step((), (LateAck("a", 1, "ack", "in_flight", 2),))
    assert log.core.state_of("a") is JobState.IN_FLIGHT
    done = log.run(log.core.ack("a", attempt=2, now_s=t0 + 4.5))
    assert types(done.records) == ["ACK"]
    assert done.effects == (Completed("a", 2),)
    again = log.core.ack("a", attempt=2, now_s=t0 + 5.0)
    assert again.records == () and isinstance(again.effects[0], LateAck)
    assert log.core.tick(now_s=t0 + 100.0) == Step()  # the old deadline is gone too
    assert types(log.records).count("ACK") == 1
    assert log.core.completed_ids() == ["a"]
    log.core.check()
    assert log.replayed().export() == log.core.export()


# == max_retry and settle ===================================================================
@pytest.mark.parametrize("how", ["fail", "timeout"])
def test_job_retries_until_attempt_reaches_max_retry_then_dies(how: str) -> None:
    log = Log()
    log.enqueue(Job("a"))
    now = 0.0
    dispatches = 0
    for attempt in range(1, MAX_RETRY + 1):
        send = log.run(log.core.dispatch(now_s=now)).effects
        assert [e.attempt for e in send if isinstance(e, SendToWorker)] == [attempt]
        dispatches += 1
        if how == "fail":
            step = log.run(log.core.fail("a", attempt=attempt, now_s=now, reason="boom"))
        else:
            now += TIMEOUT_S
            step = log.run(log.core.tick(now_s=now))
        if attempt < MAX_RETRY:
            assert types(step.records)[-1] == "RETRY"
            assert attempt_of(log.core, "a") == attempt
    assert types(step.records)[-1] == "DEAD"
    assert step.records[-1].attempt == MAX_RETRY
    assert log.core.state_of("a") is JobState.DEAD
    assert f"max_retry {MAX_RETRY} reached" in log.core.dead_reasons()["a"]
    assert dispatches == MAX_RETRY == types(log.records).count("DISPATCH")
    assert log.dispatch(now_s=now + 100) == []


def test_enqueue_with_attempt_at_max_retry_is_dead_at_once() -> None:
    log = Log()
    step = log.enqueue(Job("a", attempt=MAX_RETRY), Job("b", attempt=MAX_RETRY - 1))
    assert types(step.records) == ["ENQUEUE", "DEAD", "ENQUEUE"]
    assert "max_retry" in log.core.dead_reasons()["a"]
    assert sent(log.run(log.core.dispatch(now_s=0.0))) == [("b", MAX_RETRY)]


def test_settle_requeues_in_flight_jobs_keeping_their_attempt() -> None:
    log = Log()
    log.enqueue(Job("a"), Job("b"))
    log.dispatch(limit=2)
    crashed = log.replayed()  # the process died; replay the WAL
    step = crashed.settle(now_s=50.0)
    assert types(step.records) == ["RETRY", "RETRY"]
    assert step.effects == (Retried("a", 1, "recovered"), Retried("b", 1, "recovered"))
    assert attempt_of(crashed, "a") == 1
    assert crashed.tick(now_s=1000.0) == Step()  # no stale deadline survives the RETRY
    assert sent(crashed.dispatch(now_s=50.0, limit=2)) == [("a", 2), ("b", 2)]
    crashed.check()


def test_poison_job_killing_the_process_each_attempt_dies_at_max_retry() -> None:
    wal: list[Record] = []
    core = new_core()
    wal.extend(core.enqueue([Job("poison", priority=1), Job("ok")], now_s=0.0).records)
    for attempt in range(1, MAX_RETRY + 1):
        step = core.dispatch(now_s=attempt, worker_id=0)
        wal.extend(step.records)
        assert [e.attempt for e in step.effects if isinstance(e, SendToWorker)] == [attempt]
        # the worker crashes the whole process: recover from the WAL alone
        core = new_core()
        assert replay(core, wal) == len(wal)
        settled = core.settle(now_s=attempt + 0.5)
        wal.extend(settled.records)
    assert types(settled.records) == ["DEAD"]
    reason = core.dead_reasons()["poison"]
    assert f"process stopped during attempt {MAX_RETRY}" in reason and "max_retry" in reason
    assert types(wal).count("DISPATCH") == MAX_RETRY
    assert sent(core.dispatch(now_s=10.0)) == [("ok", 1)]
    core.check()


@pytest.mark.parametrize(("attempts", "last"), [(1, "RETRY"), (MAX_RETRY, "DEAD")])
def test_settle_decides_failed_jobs_left_by_a_torn_wal(attempts: int, last: str) -> None:
    log = Log()
    log.enqueue(Job("a", attempt=attempts - 1))
    log.dispatch()
    log.run(log.core.fail("a", attempt=attempts, now_s=1.0))
    crashed = log.replayed(upto=-1)  # the RETRY/DEAD after FAIL was torn off
    assert crashed.state_of("a") is JobState.FAILED
    crashed.check(settled=False)
    with pytest.raises(InvariantViolation, match="FAILED"):
        crashed.check()
    step = crashed.settle(now_s=2.0)
    assert types(step.records) == [last]
    crashed.check()


def test_settle_dead_letters_jobs_blocked_on_a_dead_dependency() -> None:
    log = Log()
    log.enqueue(Job("a"), Job("b", depends_on=("a",)), Job("c", depends_on=("b",)))
    step = log.run(log.core.cancel("a", now_s=0.0))
    assert types(step.records) == ["DEAD", "DEAD", "DEAD"]
    crashed = log.replayed(upto=-2)  # only a's DEAD reached the disk
    assert crashed.state_of("b") is JobState.PENDING
    crashed.check(settled=False)
    with pytest.raises(InvariantViolation, match="depends on dead job 'a'"):
        crashed.check()
    settled = crashed.settle(now_s=1.0)
    assert types(settled.records) == ["DEAD", "DEAD"]
    assert crashed.dead_reasons()["b"] == "dependency 'a' is dead"
    assert crashed.dead_reasons()["c"] == "dependency 'b' is dead"
    crashed.check()


def test_settle_on_a_settled_core_does_nothing() -> None:
    log = Log()
    log.enqueue(Job("a"), Job("b", depends_on=("a",)))
    assert log.core.settle(now_s=0.0) == Step()


# == enqueue is atomic ======================================================================
@pytest.mark.parametrize(
    "batch",
    [
        [Job("new1"), Job("pending")],
        [Job("new1"), Job("done")],
        [Job("new1"), Job("gone")],
        [Job("new1"), Job("new2"), Job("new1")],
    ],
    ids=["known-pending", "known-completed", "known-dead", "duplicate-in-batch"],
)
def test_enqueue_rejects_known_or_repeated_id_and_applies_nothing(batch: list[Job]) -> None:
    log = Log()
    log.enqueue(Job("done"), Job("pending"), Job("gone"))
    log.dispatch()
    log.run(log.core.ack("done", attempt=1, now_s=0.0))
    log.run(log.core.cancel("gone", now_s=0.0))
    before = log.core.export()
    with pytest.raises(InvalidJobError) as info:
        log.core.enqueue(batch, now_s=1.0)
    assert info.value.field == "id"
    assert f"job {info.value.job_id!r}: id " in str(info.value)
    assert log.core.export() == before
    assert not log.core.knows("new1")


# == cancel ==================================================================================
def test_cancel_dead_letters_a_pending_job() -> None:
    log = Log()
    log.enqueue(Job("a"), Job("b", depends_on=("z",)))
    step = log.run(log.core.cancel("a", now_s=1.0))
    assert types(step.records) == ["DEAD"]
    assert step.effects == (DeadLettered("a", "cancelled"),)
    log.run(log.core.cancel("b", now_s=1.0, reason="operator said so"))
    assert log.core.dead_reasons() == {"a": "cancelled", "b": "operator said so"}
    assert log.core.counts()["blocked"] == 0
    log.core.check()


@pytest.mark.parametrize("state", [JobState.IN_FLIGHT, JobState.COMPLETED, JobState.DEAD, None])
def test_cancel_leaves_non_pending_jobs_alone(state: JobState | None) -> None:
    core = core_holding(state)
    before = core.export()
    assert core.cancel("x", now_s=1.0) == Step()
    assert core.export() == before


# == check() catches corruption =============================================================
def corrupt_core() -> QueueCore:
    log = Log()
    log.enqueue(Job("ready"), Job("flying", priority=5), Job("blocked", depends_on=("ready",)))
    log.enqueue(Job("later", scheduled_at=50.0), Job("done"), Job("gone"))
    assert log.dispatch() == ["flying"]
    log.core.check()
    return log.core


def _bump_counts(core: QueueCore) -> None:
    core._counts[JobState.PENDING] += 1


def _complete_a_dead_job(core: QueueCore) -> None:
    core._dead["x"] = "r"
    core._completed["x"] = None


def _finish_a_live_job(core: QueueCore) -> None:
    core._completed["ready"] = None


def _drop_ready_from_heaps(core: QueueCore) -> None:
    core._ready.clear()


def _drop_delayed_from_heaps(core: QueueCore) -> None:
    core._delayed.clear()


def _unblock_silently(core: QueueCore) -> None:
    core._blocked.clear()


def _index_twice(core: QueueCore) -> None:
    fifo = next(f for f in core._ready if f)
    fifo.append(fifo[0])


def _lose_in_flight_table(core: QueueCore) -> None:
    core._in_flight.clear()


def _miscount_unmet(core: QueueCore) -> None:
    core._jobs["blocked"].unmet = 2


def _bad_attempt(core: QueueCore) -> None:
    core._jobs["flying"].attempt = 7


def _failed_without_state(core: QueueCore) -> None:
    core._failed["ready"] = None


def _lose_deadlines(core: QueueCore) -> None:
    core._deadlines.clear()


def _forget_waiters(core: QueueCore) -> None:
    core._waiters.clear()


@pytest.mark.parametrize(
    ("corrupt", "match"),
    [
        (_lose_deadlines, "would never time out"),
        (_forget_waiters, "would never unblock"),
        (_bump_counts, "state counters"),
        (_complete_a_dead_job, "both completed and dead"),
        (_finish_a_live_job, "live and finished"),
        (_drop_ready_from_heaps, "'ready' is indexed 0 times"),
        (_drop_delayed_from_heaps, "'later' is indexed 0 times"),
        (_unblock_silently, "'blocked' is indexed 0 times"),
        (_index_twice, "indexed 2 times"),
        (_lose_in_flight_table, "in-flight table"),
        (_miscount_unmet, "unmet dependencies"),
        (_bad_attempt, "wrong attempt"),
        (_failed_without_state, "failed table"),
    ],
)
def test_check_catches_corrupted_internals(
    corrupt: Callable[[QueueCore], None], match: str
) -> None:
    core = corrupt_core()
    corrupt(core)
    with pytest.raises(InvariantViolation, match=match):
        core.check(settled=False)


# == snapshots ==============================================================================
def busy_log() -> Log:
    """A core with every kind of job: priorities, delayed, blocked, in flight, done, dead."""
    log = Log()
    log.enqueue(
        Job("p0-a"),
        Job("p5-a", priority=5),
        Job("p0-b"),
        Job("p5-b", priority=5, payload={"k": [1, 2]}),
        Job("late", priority=5, scheduled_at=20.0),
        Job("blocked", priority=9, depends_on=("fly",)),
        Job("fly", priority=10),
        Job("win", priority=10),
        Job("lose", priority=10),
        Job("orphan", depends_on=("nobody",)),
    )
    assert log.dispatch(now_s=1.0, limit=3) == ["fly", "win", "lose"]
    log.run(log.core.ack("win", attempt=1, now_s=1.5))
    log.run(log.core.cancel("p0-a", now_s=1.5))
    log.run(log.core.fail("lose", attempt=1, now_s=1.5))
    log.enqueue(Job("p5-c", priority=5), now_s=2.0)
    return log


def test_export_restore_round_trip_keeps_state_and_dispatch_order() -> None:
    log = busy_log()
    state = log.core.export()
    restored = QueueCore.restore(state, max_retry=MAX_RETRY, task_timeout_s=TIMEOUT_S)
    restored.check()
    assert restored.export() == state
    assert [j.id for j in state.pending] == [
        "lose",
        "blocked",
        "p5-a",
        "p5-b",
        "late",
        "p5-c",
        "p0-b",
        "orphan",
    ]
    # both cores make the same decisions from here on, record for record
    for core in (log.core, restored):
        core.ack("fly", attempt=1, now_s=2.5)
    steps = [
        [core.dispatch(now_s=t, worker_id=3, limit=2) for t in (3.0, 4.0, 21.0, 22.0)]
        + [core.tick(now_s=30.0)]
        for core in (log.core, restored)
    ]
    assert steps[0] == steps[1]
    dispatched = [e.job.id for s in steps[0] for e in s.effects if isinstance(e, SendToWorker)]
    assert dispatched == ["lose", "blocked", "p5-a", "p5-b", "late", "p5-c", "p0-b"]
    assert restored.export() == log.core.export()


def test_restore_packs_payloads_from_the_same_job_as_restoring_one_by_one() -> None:
    """restore inlines the plain pending job; the entries must be those _restore_entry
    builds (payloads packed once ``pack_above`` jobs wait, order, copies)."""
    live = QueueCore(max_retry=MAX_RETRY, task_timeout_s=TIMEOUT_S)
    jobs = [Job(f"j{i}", {"i": i}, priority=i % 3) for i in range(6)]
    jobs.insert(3, Job("later", [1], scheduled_at=50.0))
    live.enqueue(jobs, now_s=0.0)
    state = live.export()
    restored = QueueCore.restore(state, max_retry=MAX_RETRY, task_timeout_s=TIMEOUT_S, pack_above=2)
    one_by_one = QueueCore(max_retry=MAX_RETRY, task_timeout_s=TIMEOUT_S, pack_above=2)
    for job in state.pending:
        one_by_one._restore_entry(job, JobState.PENDING)
    one_by_one.last_seq = state.last_seq

    def entries(core: QueueCore) -> list[tuple[object, ...]]:
        return [
            (k, e.job, e.state, e.attempt, e.order, e.flight, e.unmet, e.copies)
            for k, e in core._jobs.items()
        ]

    assert entries(restored) == entries(one_by_one)
    assert [type(e.job.payload) for e in restored._jobs.values()].count(bytes) == 5
    assert restored.export() == one_by_one.export() == state
    restored.check()


def test_restore_keeps_failed_and_in_flight_jobs() -> None:
    log = Log()
    log.enqueue(Job("f"), Job("i"))
    log.dispatch(limit=2)
    log.run(log.core.fail("f", attempt=1, now_s=1.0))
    torn = log.replayed(upto=-1)
    state = torn.export()
    assert [j.id for j in state.failed] == ["f"]
    assert [(j.id, fl.attempt) for j, fl in state.in_flight] == [("i", 1)]
    restored = QueueCore.restore(state, max_retry=MAX_RETRY, task_timeout_s=TIMEOUT_S)
    restored.check(settled=False)
    assert restored.export() == state
    assert restored.settle(now_s=5.0) == torn.settle(now_s=5.0)


def test_replaying_the_log_rebuilds_the_same_state_and_again_changes_nothing() -> None:
    log = busy_log()
    fresh = log.replayed()
    assert fresh.export() == log.core.export()
    assert replay(fresh, log.records) == 0
    assert fresh.export() == log.core.export()


def _replayed_both_ways(start: QueueCore | None, records: list[Record]) -> list[object]:
    """replay() of records (as Records and as plain tuples) and apply() one by one, from a
    copy of ``start``: (exception, last_seq, export) of each."""
    outcomes: list[object] = []
    for how in ("apply", "replay", "replay tuples", "replay with ids"):
        core = QueueCore(max_retry=3, task_timeout_s=1.0)
        if start is not None:
            core = QueueCore.restore(start.export(), max_retry=3, task_timeout_s=1.0)
        error = None
        try:
            if how == "apply":
                for rec in records:
                    core.apply(rec)
            elif how == "replay":
                core.replay(records)
            elif how == "replay tuples":
                core.replay([tuple(r) for r in records], to_record=lambda t: Record(*t))
            else:  # as recovery calls it: the ENQUEUEs' job ids given (as the WAL reader's)
                ids = [r.job_id for r in records if r.type == "ENQUEUE"]
                core.replay([tuple(r) for r in records], to_record=Record._make, enqueue_ids=ids)
        except IllegalTransition as exc:
            error = str(exc)
        # replay holds a DISPATCH row in place of its InFlight until it ends
        assert all(type(f) is InFlight for f in core.in_flight().values())
        core.check(settled=False)
        live = sorted(d for d in core._deadlines if core._flying(d))  # (stale ones go lazily)
        outcomes.append((error, core.last_seq, core.export(), live))
    return outcomes


@pytest.mark.parametrize(
    "story",
    [
        "re-enqueue after ack",
        "re-enqueue while pending",
        "re-enqueue a dead job",
        "known before",
        "re-enqueue while in flight",
    ],
)
def test_replay_refuses_an_enqueue_of_a_known_job_like_apply(story: str) -> None:
    """replay skips the per-ENQUEUE lookups when every ENQUEUE names a distinct unknown
    job; a log where one does not must still stop where apply() stops."""
    live = QueueCore(max_retry=1, task_timeout_s=1.0)
    start = None
    if story == "known before":
        live.enqueue([Job("a")], now_s=0.0)
        start = QueueCore.restore(live.export(), max_retry=3, task_timeout_s=1.0)
        records = list(live.enqueue([Job("b")], now_s=0.0).records)
        records.append(Record(live.last_seq + 1, "ENQUEUE", "a", 0, job=Job("a")))
    else:
        records = list(live.enqueue([Job("a"), Job("b")], now_s=0.0).records)
        if story == "re-enqueue after ack":
            records += live.dispatch(now_s=0.0).records
            records += live.ack("a", 1, now_s=0.1).records
        elif story == "re-enqueue while in flight":
            records += live.dispatch(now_s=0.0, worker_id=3, limit=2).records
        elif story == "re-enqueue a dead job":
            records += live.dispatch(now_s=0.0).records
            records += live.fail("a", 1, now_s=0.1).records
        records.append(Record(live.last_seq + 1, "ENQUEUE", "a", 0, job=Job("a")))
        records += [Record(live.last_seq + 2, "ENQUEUE", "c", 0, job=Job("c"))]
    outcomes = _replayed_both_ways(start, records)
    assert outcomes[0] == outcomes[1] == outcomes[2]
    assert outcomes[0][0] is not None  # type: ignore[index]


# == the seed's Q7 unit test =================================================================
def test_seed_q7_enqueue_100_dispatch_50_keeps_invariants() -> None:
    core = new_core()
    core.enqueue([Job(f"task-{i}") for i in range(100)], now_s=0.0)
    for i in range(50):
        (send,) = core.dispatch(now_s=0.0, worker_id=i % 4).effects
        assert isinstance(send, SendToWorker) and send.job.id == f"task-{i}"
    core.check()
    counts = core.counts()
    assert (counts["pending"], counts["in_flight"]) == (50, 50)


def test_replayed_dispatch_then_retry_keeps_fifo_order_like_the_live_core() -> None:
    # Replay applies DISPATCH without popping the job from its ready FIFO; the RETRY then
    # queues it again.  The stale older copy must not let it jump ahead of 'b'.
    live = QueueCore(max_retry=3, task_timeout_s=1.0)
    records = list(live.enqueue([Job("a"), Job("b")], now_s=0.0).records)
    records += live.dispatch(now_s=0.0).records
    records += live.fail("a", attempt=1, now_s=0.1).records
    replayed = QueueCore(max_retry=3, task_timeout_s=1.0)
    replay(replayed, records)
    replayed.check()
    assert replayed.export() == live.export()
    for core in (live, replayed):
        sent = [e.job.id for e in core.dispatch(now_s=0.2, limit=5).effects]
        assert sent == ["b", "a"]
        core.check()


def test_has_ready_is_a_query_that_takes_nothing() -> None:
    core = QueueCore(max_retry=3, task_timeout_s=1.0)
    core.enqueue([Job("a"), Job("later", scheduled_at=5.0)], now_s=0.0)
    assert core.has_ready(0.0) and core.has_ready(0.0)
    core.check()
    assert [e.job.id for e in core.dispatch(now_s=0.0, limit=5).effects] == ["a"]
    assert not core.has_ready(1.0)
    assert core.has_ready(5.0) and core.has_ready(5.0)
    core.check()
    assert [e.job.id for e in core.dispatch(now_s=5.0, limit=5).effects] == ["later"]


@pytest.mark.parametrize("pack", [False, True, "auto"])
def test_waiting_payloads_come_back_exactly_as_given(pack: bool | str) -> None:
    # With pack_payloads, pending jobs hold dict/list payloads packed; every way out unpacks.
    payload = {"n": 1, "xs": [1.5, "two", None, True], "deep": {"k": [{"a": 2**63}]}}
    core = QueueCore(max_retry=2, task_timeout_s=1.0, pack_payloads=pack)
    core.enqueue([Job("a", payload), Job("b", [1, 2]), Job("c", "text")], now_s=0.0)
    assert core.get("a").payload == payload and core.get("b").payload == [1, 2]
    assert [j.payload for j in core.pending_jobs()] == [payload, [1, 2], "text"]
    sent = core.dispatch(now_s=0.0, limit=1).effects[0]
    assert sent.job.payload == payload
    exported = core.export()
    assert exported.in_flight[0][0].payload == payload
    restored = QueueCore.restore(exported, max_retry=2, task_timeout_s=1.0, pack_payloads=pack)
    assert restored.export() == exported
    if pack is True:
        assert isinstance(core._jobs["b"].job.payload, bytes)  # held packed
    if pack == "auto":  # three jobs are far below PACK_ABOVE: nothing is packed
        assert core._jobs["b"].job.payload == [1, 2]


def test_auto_packing_starts_once_a_deep_backlog_waits() -> None:
    """pack_payloads="auto" packs a waiting payload only once pack_above jobs already wait,
    in every way a job comes to wait (enqueue, bulk replay, snapshot restore), and every way
    out still gives the payload back as it came."""
    jobs = [Job(f"j{i}", {"i": i}) for i in range(6)]
    core = QueueCore(max_retry=2, task_timeout_s=1.0, pack_above=4)
    step = core.enqueue(jobs, now_s=0.0)
    held = [type(core._jobs[j.id].job.payload) for j in jobs]
    assert held == [dict] * 4 + [bytes] * 2
    assert [j.payload for j in core.pending_jobs()] == [{"i": i} for i in range(6)]

    replayed = QueueCore(max_retry=2, task_timeout_s=1.0, pack_above=4)
    assert replayed.replay(step.records) == 6
    assert [type(replayed._jobs[j.id].job.payload) for j in jobs] == held
    assert replayed.export() == core.export()

    restored = QueueCore.restore(core.export(), max_retry=2, task_timeout_s=1.0, pack_above=4)
    assert [type(restored._jobs[j.id].job.payload) for j in jobs] == held
    assert restored.export() == core.export()
    assert [e.job.payload for e in core.dispatch(0.0, limit=6).effects] == [
        {"i": i} for i in range(6)
    ]


@pytest.mark.parametrize("bad", [1, 0, "yes", None])
def test_pack_payloads_refuses_other_values(bad: object) -> None:
    with pytest.raises(ValueError, match="pack_payloads"):
        QueueCore(pack_payloads=bad)  # type: ignore[arg-type]
