"""A hypothesis state machine over DurableQueue on SimDisk, crashing and recovering at random.

Invariants after every step: ``check()``; every acknowledged job is known and every
acknowledged completion is still completed (across any number of crashes); replaying the
WAL into a fresh core rebuilds the live state exactly, and replaying it again changes
nothing; ``recover(truncate=False)`` on a copy of the disk gives the live state settled.
"""

from __future__ import annotations

import random

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from phase1.clock import ManualClock
from phase1.config import Config
from phase1.core import Completed, CoreState, QueueCore, SendToWorker
from phase1.jobs import Job, JobState
from phase1.recovery import recover
from phase1.runtime.durable import DurableQueue
from phase1.sim.disk import DiskOp, SimDisk
from phase1.snapshot import load_snapshot
from phase1.wal import read_wal

WAL = "data/wal.log"
SNAP = "data/snapshot.json"
T0_S = 1_704_103_200.0


def comparable(state: CoreState) -> CoreState:
    """``state`` as compared between the live core and one rebuilt from the files (kept as a
    seam: everything is compared, including which dependency a cascaded DEAD names)."""
    return state


class CrashNow(Exception):
    """The process dies inside a disk call (raised from SimDisk's op hook)."""


class DurableQueueMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.disk = SimDisk()
        self.disk.makedirs("data")
        self.clock = ManualClock(T0_S)
        self.next_id = 0
        self.acked: set[str] = set()  # ids whose submit returned
        self.completed: set[str] = set()  # ids whose ack returned Completed
        self.handed_out: list[tuple[str, int]] = []  # (job, attempt) sent; many go stale
        self.recoveries = 0

    # -- life cycle ------------------------------------------------------------------------
    @initialize(policy=st.sampled_from(["always", "batch"]), max_retry=st.integers(1, 3))
    def start(self, policy: str, max_retry: int) -> None:
        self.config = Config().replace(
            wal_path=WAL,
            snapshot_path=SNAP,
            commit_policy=policy,
            max_retry=max_retry,
            task_timeout_s=5.0,
            snapshots_kept=2,
        )
        self.q = DurableQueue(self.config, disk=self.disk, clock=self.clock)

    def restart(self) -> None:
        self.disk.on_op = None
        self.q = DurableQueue(self.config, disk=self.disk, clock=self.clock)
        self.recoveries += 1

    def new_core(self, state: CoreState | None = None) -> QueueCore:
        if state is None:
            return QueueCore(
                max_retry=self.config.max_retry, task_timeout_s=self.config.task_timeout_s
            )
        return QueueCore.restore(
            state, max_retry=self.config.max_retry, task_timeout_s=self.config.task_timeout_s
        )

    # -- commands -------------------------------------------------------------------------------
    def draw_jobs(self, data: st.DataObject, count: int) -> list[Job]:
        known = sorted(self.acked)
        jobs = []
        for _ in range(count):
            self.next_id += 1
            delay_s = data.draw(st.sampled_from([None, None, None, 0.0, 3.0, 30.0]))
            deps = (
                data.draw(st.lists(st.sampled_from(known), max_size=2, unique=True))
                if known
                else []
            )
            jobs.append(
                Job(
                    f"j{self.next_id}",
                    {"n": self.next_id},
                    priority=data.draw(st.integers(0, 10)),
                    scheduled_at=None if delay_s is None else self.clock.wall_s() + delay_s,
                    depends_on=tuple(deps),
                )
            )
        return jobs

    @rule(data=st.data(), count=st.integers(1, 3))
    def enqueue(self, data: st.DataObject, count: int) -> None:
        jobs = self.draw_jobs(data, count)
        self.q.submit(jobs)
        self.acked.update(job.id for job in jobs)

    @rule(limit=st.integers(1, 3), worker_id=st.integers(0, 3))
    def dispatch(self, limit: int, worker_id: int) -> None:
        for effect in self.q.dispatch(worker_id=worker_id, limit=limit).effects:
            assert isinstance(effect, SendToWorker)
            self.handed_out.append((effect.job.id, effect.attempt))

    @precondition(lambda self: self.handed_out)
    @rule(data=st.data(), skew=st.sampled_from([0, 0, 0, -1, 1]))
    def ack(self, data: st.DataObject, skew: int) -> None:
        job_id, attempt = data.draw(st.sampled_from(self.handed_out))
        step = self.q.ack(job_id, attempt + skew)
        if any(isinstance(e, Completed) for e in step.effects):  # attempt + skew was current
            self.completed.add(job_id)

    @precondition(lambda self: self.handed_out)
    @rule(data=st.data(), skew=st.sampled_from([0, 0, -1]))
    def fail(self, data: st.DataObject, skew: int) -> None:
        job_id, attempt = data.draw(st.sampled_from(self.handed_out))
        self.q.fail(job_id, attempt + skew, "handler raised")

    @rule(seconds=st.sampled_from([0.5, 2.0, 6.0, 40.0]))
    def tick(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.q.tick()

    @rule()
    def snapshot(self) -> None:
        self.q.snapshot()

    # -- crashes ----------------------------------------------------------------------------------
    @rule(kind=st.sampled_from(["process", "power"]))
    def crash_and_recover(self, kind: str) -> None:
        self.disk.crash(kind)  # type: ignore[arg-type]
        self.restart()

    @rule(after_ops=st.integers(0, 12), kind=st.sampled_from(["process", "power"]))
    def crash_during_snapshot(self, after_ops: int, kind: str) -> None:
        start = len(self.disk.op_log)

        def die(op: DiskOp) -> None:
            if op.index == start + after_ops:
                raise CrashNow(op)

        self.disk.on_op = die
        try:
            self.q.snapshot()
        except CrashNow:
            pass
        self.disk.on_op = None
        self.disk.crash(kind)  # type: ignore[arg-type]
        self.restart()

    @rule(
        data=st.data(), seed=st.integers(0, 2**32 - 1), kind=st.sampled_from(["process", "power"])
    )
    def crash_during_submit(self, data: st.DataObject, seed: int, kind: str) -> None:
        """The process dies after the WAL append, before the fsync: the submit is never
        acknowledged; a power loss keeps any prefix of its bytes (a torn tail)."""

        def die(op: DiskOp) -> None:
            if op.kind in ("append", "write_at") and op.path == WAL:
                raise CrashNow(op)

        jobs = self.draw_jobs(data, data.draw(st.integers(1, 3)))
        self.disk.on_op = die
        try:
            self.q.submit(jobs)
            raise AssertionError("the submit should have died in its append")
        except CrashNow:
            pass
        self.disk.on_op = None
        self.disk.crash(kind, random.Random(seed))  # type: ignore[arg-type]
        self.restart()

    # -- invariants ------------------------------------------------------------------------------
    @invariant()
    def core_is_consistent(self) -> None:
        self.q.core.check()

    @invariant()
    def acknowledged_facts_survive(self) -> None:
        core = self.q.core
        missing = sorted(j for j in self.acked if not core.knows(j))
        assert not missing, f"acknowledged jobs lost after {self.recoveries} recoveries: {missing}"
        for job_id in self.completed:
            assert core.state_of(job_id) is JobState.COMPLETED, job_id

    @invariant()
    def replaying_the_wal_rebuilds_the_same_state(self) -> None:
        live = self.q.core.export()
        copy = self.disk.copy()
        files = copy.snapshot_files()
        loaded = load_snapshot(copy, SNAP, keep=self.config.snapshots_kept)
        core = self.new_core(loaded.state)
        read = read_wal(copy, WAL, after_seq=core.last_seq)
        assert read.torn is None
        for rec in read.records:
            assert core.apply(rec) is True
        assert core.export() == live
        for rec in read_wal(copy, WAL).records:  # every segment still on disk, again
            assert core.apply(rec) is False
        assert core.export() == live

        recovered, report = recover(copy, self.config, now_s=self.clock.wall_s(), truncate=False)
        expected = self.new_core(live)
        expected.settle(self.clock.wall_s())
        assert comparable(recovered.export()) == comparable(expected.export())
        assert report.torn is None and report.snapshot_damaged == ()
        assert copy.snapshot_files() == files  # truncate=False changed nothing


DurableQueueMachine.TestCase.settings = settings(
    max_examples=60, stateful_step_count=30, deadline=None
)
TestDurableQueueMachine = DurableQueueMachine.TestCase
