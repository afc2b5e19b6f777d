"""Lesson 06 helpers: timeouts, late ACKs and fencing tokens, poison jobs.

Owns: ``NaiveQueue`` (the contrast: a dict acknowledged by job id alone, the way a first
draft would), ``late_ack_table`` (the seed's Q5 timeline run against the naive queue and
against the real ``QueueCore``), ``q5_stepper`` (the same timeline, one event at a time)
and ``poison_run`` (a job that fails every attempt until ``max_retry`` dead-letters it).

Must not know: how the real core fences (it only calls ``dispatch``/``tick``/``ack``/``fail``
and reads the returned steps).  Time is a ``ManualClock``: every number is deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from phase1.clock import ManualClock
from phase1.core import Completed, LateAck, QueueCore, Record, SendToWorker, Step
from phase1.jobs import Job, JobState
from phase1.lessons.stepper import Action, Scenario, Stepper
from phase1.lessons.views import record_line, state_text

__all__ = ["NaiveQueue", "late_ack_table", "q5_stepper", "poison_run", "effect_names"]

T0_S = 0.0  # virtual seconds: the seed's T0 is 0, T3 is 3.0


@dataclass
class NaiveQueue:
    """The contrast, not phase1: job id -> status, and ACKs that name only the job id.

    ``check_in_flight=False``: an ACK completes whatever the state (no check at all).
    ``check_in_flight=True``: the seed's ``handleAck``: complete only if the id is in flight,
    which cannot tell attempt 1's ACK from attempt 2's.
    """

    check_in_flight: bool = False
    status: dict[str, str] = field(default_factory=dict)
    completions: list[str] = field(default_factory=list)  # one entry per completion

    def enqueue(self, job_id: str) -> None:
        self.status[job_id] = "pending"

    def dispatch(self, job_id: str) -> None:
        self.status[job_id] = "in_flight"

    def timeout(self, job_id: str) -> None:
        self.status[job_id] = "pending"

    def ack(self, job_id: str) -> str:
        """What this ACK did: ``"completed"`` or ``"ignored"``."""
        if self.check_in_flight and self.status.get(job_id) != "in_flight":
            return "ignored"
        self.status[job_id] = "completed"
        self.completions.append(job_id)
        return "completed"


def effect_names(step: Step) -> str:
    """The effects of a step by class name (``"LateAck"``, ``"Completed"``...)."""
    return ", ".join(type(e).__name__ for e in step.effects) or "(none)"


def _naive_row(name: str, check: bool) -> dict[str, Any]:
    q = NaiveQueue(check_in_flight=check)
    q.enqueue("task-001")
    q.dispatch("task-001")  # attempt 1 to worker 1
    q.timeout("task-001")  # T3+: deadline passed, re-queued
    q.dispatch("task-001")  # attempt 2 to worker 2
    late = q.ack("task-001")  # T4: worker 1 finally answers
    on_time = q.ack("task-001")  # worker 2 answers
    return {
        "queue": name,
        "late ACK (attempt 1)": late,
        "ACK of attempt 2": on_time,
        "completions": len(q.completions),
        "completed by": "attempt 1" if late == "completed" else "attempt 2",
    }


def _core_row() -> dict[str, Any]:
    clock = ManualClock(T0_S)
    core = QueueCore(max_retry=3, task_timeout_s=3.0)
    core.enqueue([Job("task-001")], clock.now_s())
    first = core.dispatch(clock.now_s(), worker_id=1).effects[0]
    clock.advance(3.0)
    core.tick(clock.now_s())
    second = core.dispatch(clock.now_s(), worker_id=2).effects[0]
    assert isinstance(first, SendToWorker) and isinstance(second, SendToWorker)
    clock.advance(1.0)
    late = core.ack("task-001", first.attempt, clock.now_s())
    clock.advance(1.0)
    on_time = core.ack("task-001", second.attempt, clock.now_s())
    done = [e for e in late.effects + on_time.effects if isinstance(e, Completed)]
    return {
        "queue": "QueueCore (attempt = fencing token)",
        "late ACK (attempt 1)": effect_names(late),
        "ACK of attempt 2": effect_names(on_time),
        "completions": len(done),
        "completed by": f"attempt {done[0].attempt}" if done else "-",
    }


def late_ack_table() -> pd.DataFrame:
    """The seed's Q5 timeline (attempt 1 times out, attempt 2 runs, attempt 1's ACK arrives
    late, then attempt 2's) against three queues; one row each."""
    rows = [
        _naive_row("naive dict, ACK by id", check=False),
        _naive_row("naive dict, ACK by id if in flight (seed's handleAck)", check=True),
        _core_row(),
    ]
    return pd.DataFrame(rows)


class _Q5:
    """The world of the Q5 stepper: one core, one clock, the records so far."""

    def __init__(self, task_timeout_s: float = 3.0) -> None:
        self.clock = ManualClock(T0_S)
        self.core = QueueCore(max_retry=3, task_timeout_s=task_timeout_s)
        self.records: list[Record] = []
        self.sends: list[SendToWorker] = []

    def _take(self, step: Step) -> str:
        self.records.extend(step.records)
        self.sends.extend(e for e in step.effects if isinstance(e, SendToWorker))
        parts = [record_line(r) for r in step.records]
        parts += [f"effect {type(e).__name__}" for e in step.effects if isinstance(e, LateAck)]
        return "; ".join(parts) or "nothing changed"

    def at(self, t: float) -> None:
        self.clock.set(T0_S + t)

    def render(self) -> str:
        now = self.clock.now_s()
        return state_text(
            self.core,
            wal=self.records,
            now_s=now,
            note=f"T0+{now - T0_S:g}s",
        )

    def scenario(self) -> Scenario:
        c = self.core

        def at(t: float, fn: Any) -> Any:
            def run() -> str:
                self.at(t)
                return self._take(fn())

            return run

        actions = [
            Action("T0: enqueue task-001", at(0, lambda: c.enqueue([Job("task-001")], 0 + T0_S))),
            Action(
                "T0: dispatch to worker 1 (deadline T0+3s)",
                at(0, lambda: c.dispatch(self.clock.now_s(), worker_id=1)),
            ),
            Action("T1: timeout check: nothing expired", at(1, lambda: c.tick(self.clock.now_s()))),
            Action(
                "T3: timeout check: attempt 1 expired",
                at(3, lambda: c.tick(self.clock.now_s())),
            ),
            Action(
                "T3: dispatch again, to worker 2",
                at(3, lambda: c.dispatch(self.clock.now_s(), worker_id=2)),
            ),
            Action(
                "T4: worker 1's late ACK (attempt 1)",
                at(4, lambda: c.ack("task-001", 1, self.clock.now_s())),
            ),
            Action(
                "T5: worker 2's ACK (attempt 2)",
                at(5, lambda: c.ack("task-001", 2, self.clock.now_s())),
            ),
        ]
        return Scenario(actions, self.render, world=self)


def q5_stepper() -> Stepper:
    """The seed's Q5 timeline on the real core, one event per step."""
    return Stepper(lambda: _Q5().scenario(), title="Q5: timeout, retry, late ACK")


def poison_run(max_retry: int = 3, *, timeout: bool = False) -> list[Record]:
    """A job that fails every attempt (or, with ``timeout``, never answers) until it is
    dead-lettered; returns every record the core emitted."""
    clock = ManualClock(T0_S)
    core = QueueCore(max_retry=max_retry, task_timeout_s=3.0)
    records = list(
        core.enqueue([Job("poison", payload={"op": "always fails"})], clock.now_s()).records
    )
    while core.state_of("poison") is JobState.PENDING:
        step = core.dispatch(clock.now_s(), worker_id=1)
        records += step.records
        send = step.effects[0]
        assert isinstance(send, SendToWorker)
        if timeout:
            clock.advance(3.0)
            records += core.tick(clock.now_s()).records
        else:
            clock.advance(0.5)
            records += core.fail("poison", send.attempt, clock.now_s(), "ZeroDivisionError").records
        core.check()
    return records
