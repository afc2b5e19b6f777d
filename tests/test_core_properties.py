"""A hypothesis state machine over ``QueueCore``: random commands, crashes and snapshots.

After every step the WAL so far (every record the commands returned) must rebuild the same
state in a fresh core, replaying it again must change nothing, and the last snapshot plus
the records after it must rebuild it too.
"""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from phase1 import core as core_module
from phase1.core import CoreState, LateAck, QueueCore, Record, SendToWorker, Step, replay
from phase1.errors import InvalidJobError
from phase1.jobs import Job, JobState

MAX_RETRY = 3
TIMEOUT_S = 3.0


def new_core() -> QueueCore:
    return QueueCore(max_retry=MAX_RETRY, task_timeout_s=TIMEOUT_S)


class QueueMachine(RuleBasedStateMachine):
    @initialize()
    def start(self) -> None:
        self.core = new_core()
        self.records: list[Record] = []
        self.now_s = 0.0
        self.next_id = 0
        self.enqueued: set[str] = set()
        self.snapshot: CoreState | None = None

    # -- helpers ---------------------------------------------------------------------------
    def run(self, step: Step) -> Step:
        expected = self.records[-1].seq + 1 if self.records else 1
        assert [r.seq for r in step.records] == list(range(expected, expected + len(step.records)))
        self.records.extend(step.records)
        return step

    def unchanged(self, before: CoreState) -> None:
        assert self.core.export() == before
        assert self.core.last_seq == before.last_seq

    # -- commands --------------------------------------------------------------------------
    @rule(data=st.data(), size=st.integers(1, 3))
    def enqueue(self, data: st.DataObject, size: int) -> None:
        batch: list[Job] = []
        for _ in range(size):
            job_id = f"j{self.next_id}"
            self.next_id += 1
            # dependencies on jobs already enqueued, or on ids a later batch may use
            candidates = [f"j{i}" for i in range(self.next_id + 3) if f"j{i}" != job_id]
            deps = data.draw(st.lists(st.sampled_from(candidates), max_size=2, unique=True))
            if data.draw(st.integers(0, 3)) > 0:
                deps = []  # most jobs have none, so plenty run
            delay_s = data.draw(st.none() | st.none() | st.floats(0.0, 10.0))
            batch.append(
                Job(
                    job_id,
                    payload={"n": self.next_id},
                    attempt=data.draw(st.sampled_from([0] * 8 + [1, MAX_RETRY])),
                    priority=data.draw(st.integers(0, 10)),
                    scheduled_at=None if delay_s is None else self.now_s + delay_s,
                    depends_on=tuple(deps),
                )
            )
        step = self.run(self.core.enqueue(batch, now_s=self.now_s))
        assert [r.type for r in step.records].count("ENQUEUE") == size
        self.enqueued.update(j.id for j in batch)

    @precondition(lambda self: self.enqueued)
    @rule(data=st.data())
    def enqueue_known_id_is_rejected_atomically(self, data: st.DataObject) -> None:
        known = data.draw(st.sampled_from(sorted(self.enqueued)))
        before = self.core.export()
        with pytest.raises(InvalidJobError):
            self.core.enqueue([Job(f"fresh{self.next_id}"), Job(known)], now_s=self.now_s)
        self.unchanged(before)

    @rule(limit=st.integers(1, 3), worker_id=st.integers(0, 3))
    def dispatch(self, limit: int, worker_id: int) -> None:
        step = self.run(self.core.dispatch(now_s=self.now_s, worker_id=worker_id, limit=limit))
        sends = [e for e in step.effects if isinstance(e, SendToWorker)]
        assert len(sends) == len(step.records) <= limit
        for send, rec in zip(sends, step.records, strict=True):
            assert rec.type == "DISPATCH" and rec.attempt == send.attempt <= MAX_RETRY
            assert send.deadline_s == pytest.approx(self.now_s + TIMEOUT_S, abs=1e-3)

    @precondition(lambda self: self.core.in_flight())
    @rule(data=st.data(), kind=st.sampled_from(["ack", "ack", "fail"]))
    def finish_current_attempt(self, data: st.DataObject, kind: str) -> None:
        flying = self.core.in_flight()
        job_id = data.draw(st.sampled_from(sorted(flying)))
        attempt = flying[job_id].attempt
        command = self.core.ack if kind == "ack" else self.core.fail
        step = self.run(command(job_id, attempt=attempt, now_s=self.now_s))
        assert step.records[0].type == kind.upper()
        assert step.records[0].attempt == attempt
        if kind == "ack":
            assert self.core.state_of(job_id) is JobState.COMPLETED
        else:
            assert step.records[1].type in ("RETRY", "DEAD")

    @rule(
        outcomes=st.lists(st.sampled_from(["ack", "ack", "fail", "hang"]), min_size=1, max_size=3)
    )
    def worker_round(self, outcomes: list[str]) -> None:
        """A worker takes jobs and reports at once: the happy path, with some failures and
        some attempts that never report (left for ``tick`` to time out)."""
        step = self.run(self.core.dispatch(now_s=self.now_s, worker_id=9, limit=len(outcomes)))
        sends = [e for e in step.effects if isinstance(e, SendToWorker)]
        for send, outcome in zip(sends, outcomes, strict=False):
            if outcome == "ack":
                done = self.run(self.core.ack(send.job.id, attempt=send.attempt, now_s=self.now_s))
                assert [r.type for r in done.records] == ["ACK"]
            elif outcome == "fail":
                failed = self.run(
                    self.core.fail(send.job.id, attempt=send.attempt, now_s=self.now_s)
                )
                assert [r.type for r in failed.records][:2] in (["FAIL", "RETRY"], ["FAIL", "DEAD"])

    @rule(data=st.data(), kind=st.sampled_from(["ack", "fail"]))
    def finish_stale_attempt(self, data: st.DataObject, kind: str) -> None:
        """An ACK/FAIL from an attempt that is not in flight: fenced off, nothing changes."""
        job_id = data.draw(st.sampled_from(sorted(self.enqueued) + ["nobody"]))
        flying = self.core.in_flight()
        current = flying[job_id].attempt if job_id in flying else None
        attempt = data.draw(st.sampled_from([a for a in range(MAX_RETRY + 2) if a != current]))
        before = self.core.export()
        command = self.core.ack if kind == "ack" else self.core.fail
        step = command(job_id, attempt=attempt, now_s=self.now_s)
        assert step.records == ()
        assert len(step.effects) == 1 and isinstance(step.effects[0], LateAck)
        self.unchanged(before)

    @rule(advance_s=st.sampled_from([0.0, 0.5, 1.0, 2.0, TIMEOUT_S, 5.0]))
    def tick(self, advance_s: float) -> None:
        self.now_s += advance_s
        step = self.run(self.core.tick(now_s=self.now_s))
        assert not self.core.in_flight() or all(
            fl.deadline_ms > round(self.now_s * 1000) for fl in self.core.in_flight().values()
        )
        assert step.records == () or step.records[0].type == "TIMEOUT"

    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        job_id = data.draw(st.sampled_from(sorted(self.enqueued) + ["nobody"]))
        was = self.core.state_of(job_id)
        step = self.run(self.core.cancel(job_id, now_s=self.now_s))
        if was is not None and was.value == "pending":
            assert step.records[0].type == "DEAD" and step.records[0].job_id == job_id
        else:
            assert step == Step()

    @rule(how=st.sampled_from(["settle", "crash", "snapshot"]))
    def restart(self, how: str) -> None:
        """``settle`` alone; a crash recovered from the WAL (replay, then settle); or a
        restart from a snapshot taken now (``export`` -> ``QueueCore.restore``)."""
        if how == "crash":
            self.core = new_core()
            assert replay(self.core, self.records) == len(self.records)
            self.core.check(settled=False)
        elif how == "snapshot":
            self.snapshot = self.core.export()
            self.core = QueueCore.restore(
                self.snapshot, max_retry=MAX_RETRY, task_timeout_s=TIMEOUT_S
            )
            assert self.core.export() == self.snapshot
            return
        self.run(self.core.settle(now_s=self.now_s))

    # -- invariants ------------------------------------------------------------------------
    @invariant()
    def check_holds(self) -> None:
        self.core.check(settled=True)

    @invariant()
    def replaying_the_wal_rebuilds_the_same_state(self) -> None:
        state = self.core.export()
        fresh = new_core()
        assert replay(fresh, self.records) == len(self.records)  # the bulk path
        assert fresh.export() == state
        if core_module._c_replay is not None:  # ... its moves in C (above), and in Python
            saved, core_module._c_replay = core_module._c_replay, None
            try:
                in_python = new_core()
                assert replay(in_python, self.records) == len(self.records)
            finally:
                core_module._c_replay = saved
            assert in_python.export() == state
            assert in_python.next_wakeup_s() == fresh.next_wakeup_s()
        fresh.check()
        one_by_one = new_core()
        assert sum(one_by_one.apply(rec) for rec in self.records) == len(self.records)
        assert one_by_one.export() == state
        # the deadline index the bulk path rebuilds once at the end
        assert fresh.next_wakeup_s() == one_by_one.next_wakeup_s()
        for rec in self.records:  # already reflected: each returns False
            assert fresh.apply(rec) is False
        assert fresh.export() == state

    @invariant()
    def last_snapshot_plus_later_records_rebuilds_the_same_state(self) -> None:
        if self.snapshot is None:
            return
        restored = QueueCore.restore(self.snapshot, max_retry=MAX_RETRY, task_timeout_s=TIMEOUT_S)
        later = [r for r in self.records if r.seq > self.snapshot.last_seq]
        assert replay(restored, self.records) == len(later)
        assert restored.export() == self.core.export()

    @invariant()
    def every_enqueued_job_is_somewhere_exactly_once(self) -> None:
        state = self.core.export()
        groups = [
            [j.id for j in state.pending],
            [j.id for j, _ in state.in_flight],
            [j.id for j in state.failed],
            state.completed,
            list(state.dead),
        ]
        everyone = [job_id for group in groups for job_id in group]
        assert state.failed == []
        assert len(everyone) == len(set(everyone)) == len(self.enqueued)
        assert set(everyone) == self.enqueued

    @invariant()
    def attempts_never_exceed_max_retry(self) -> None:
        state = self.core.export()
        assert all(j.attempt <= MAX_RETRY for j in state.pending)
        assert all(j.attempt == fl.attempt <= MAX_RETRY for j, fl in state.in_flight)
        assert all(r.attempt <= MAX_RETRY for r in self.records)


QueueMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestQueueMachine = QueueMachine.TestCase
