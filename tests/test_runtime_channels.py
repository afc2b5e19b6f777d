"""The runtime's hand-offs: ``Mailbox`` / ``Inbox`` (lock-free deque + wake-up gate) and the
bulk completion report to metrics.  Real threads, no sleeps as synchronisation: every wait
is a blocking ``take`` / ``get`` / ``join`` whose outcome does not depend on scheduling.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from typing import Any

import pytest

from phase1.config import Config
from phase1.jobs import Job
from phase1.runtime import Controller
from phase1.runtime.context import TaskContext
from phase1.runtime.metrics import DURATION_BUCKETS_S, QueueMetrics
from phase1.runtime.worker import Inbox, Mailbox, Task

JOIN_S = 30.0  # liveness bound only: a lost wake-up would hang the consumer past it


def _task(i: int) -> Task:
    return Task(Job(f"t{i}"), 1, 0, TaskContext(f"t{i}", 1))


# -- Mailbox --------------------------------------------------------------------------------
def test_take_returns_everything_posted_in_order() -> None:
    box: Mailbox[int] = Mailbox()
    box.put(1)
    box.put_many([2, 3])
    box.put(4)
    assert len(box) == 4
    assert box.take() == [1, 2, 3, 4]
    assert len(box) == 0


def test_take_honours_its_limit_and_leaves_the_rest() -> None:
    box: Mailbox[int] = Mailbox()
    box.put_many(range(10))
    assert box.take(limit=3) == [0, 1, 2]
    assert box.take(limit=100) == list(range(3, 10))


def test_take_without_waiting_on_an_empty_mailbox_is_empty() -> None:
    box: Mailbox[int] = Mailbox()
    assert box.take(0.0) == []
    assert box.take(-1.0) == []


def test_take_with_a_timeout_returns_empty_when_nothing_comes() -> None:
    box: Mailbox[int] = Mailbox()
    assert box.take(0.01) == []
    box.put(7)  # a later post is still delivered (the gate may have been left open)
    assert box.take(0.01) == [7]


def test_a_sleeping_consumer_is_woken_by_a_post() -> None:
    box: Mailbox[str] = Mailbox()
    got: list[list[str]] = []
    consumer = threading.Thread(target=lambda: got.append(box.take()), daemon=True)
    consumer.start()
    box.put("hello")
    consumer.join(JOIN_S)
    assert not consumer.is_alive()
    assert got == [["hello"]]


class _PostedInTheGap(deque[str]):
    """The items of a ``Mailbox`` whose consumer loses the race: a producer appends right
    after the consumer found the mailbox empty and before it announced that it sleeps, so
    the producer sees no sleeper and wakes nobody.  Until the consumer has set its flag,
    every look at the items reports them empty (stale reads of the gap)."""

    def __init__(self, box: Mailbox[str]) -> None:
        super().__init__()
        self.box = box
        self.posted = False
        self.stale = True

    def __len__(self) -> int:
        if self.stale and not self.box._sleeping:
            if not self.posted:
                self.posted = True
                self.append("late")  # the producer's append ...
                assert not self.box._sleeping  # ... sees no sleeper: no wake-up
            return 0
        self.stale = False
        return super().__len__()


def test_a_post_in_the_gap_before_sleeping_is_not_lost() -> None:
    box: Mailbox[str] = Mailbox()
    box._items = _PostedInTheGap(box)
    got: list[list[str]] = []
    consumer = threading.Thread(target=lambda: got.append(box.take()), daemon=True)
    consumer.start()
    consumer.join(JOIN_S)  # a consumer that slept without looking again would hang here
    assert not consumer.is_alive()
    assert got == [["late"]]


@pytest.mark.parametrize("producers", [1, 4])
def test_no_post_is_lost_or_reordered_under_concurrent_producers(producers: int) -> None:
    """Many producers racing one consumer that keeps going to sleep: every item arrives
    exactly once and each producer's items keep their order (a lost wake-up would leave
    the consumer asleep with items posted, and the join below would fail)."""
    per_producer = 5_000
    box: Mailbox[tuple[int, int]] = Mailbox()
    received: list[tuple[int, int]] = []

    def consume() -> None:
        while len(received) < producers * per_producer:
            received.extend(box.take(limit=97))

    def produce(p: int) -> None:
        for i in range(per_producer):
            if i % 3 == 0:
                box.put_many([(p, i)])
            else:
                box.put((p, i))

    consumer = threading.Thread(target=consume, daemon=True)
    consumer.start()
    threads = [threading.Thread(target=produce, args=(p,)) for p in range(producers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(JOIN_S)
    consumer.join(JOIN_S)
    assert not consumer.is_alive()
    assert len(received) == producers * per_producer
    for p in range(producers):
        assert [i for q, i in received if q == p] == list(range(per_producer))


# -- Inbox ----------------------------------------------------------------------------------
def test_inbox_is_fifo_and_refuses_a_batch_that_does_not_fit() -> None:
    inbox = Inbox(maxsize=3)
    a, b, c, d = (_task(i) for i in range(4))
    inbox.put_many([a, b])
    with pytest.raises(queue.Full):
        inbox.put_many([c, d])  # all or none
    assert inbox.qsize() == 2
    inbox.put_nowait(c)
    with pytest.raises(queue.Full):
        inbox.put_nowait(d)
    assert [inbox.get(), inbox.get_nowait(), inbox.get()] == [a, b, c]
    with pytest.raises(queue.Empty):
        inbox.get_nowait()


def test_inbox_close_appends_the_stop_sentinel_even_when_full() -> None:
    inbox = Inbox(maxsize=1)
    t = _task(0)
    inbox.put_nowait(t)
    inbox.close()
    assert inbox.get() is t
    assert inbox.get() is None


def test_inbox_get_waits_for_a_batch_from_another_thread() -> None:
    inbox = Inbox(maxsize=16)
    tasks = [_task(i) for i in range(16)]
    got: list[Task | None] = []

    def worker() -> None:
        while True:
            item = inbox.get()
            if item is None:
                return
            got.append(item)

    t = threading.Thread(target=worker, daemon=True)
    t.start()
    inbox.put_many(tasks[:10])
    inbox.put_many(tasks[10:])
    inbox.close()
    t.join(JOIN_S)
    assert not t.is_alive()
    assert got == tasks


# -- completions reported in bulk ---------------------------------------------------------------
def test_on_complete_many_counts_exactly_like_one_call_per_job() -> None:
    durations = [0.0, -1.0, 0.0005, 0.001, 0.001, 0.0011, 0.3, 2.5, 29.0, 31.0, 1e6]
    durations += list(DURATION_BUCKETS_S)
    one, bulk = QueueMetrics(), QueueMetrics()
    for i, d in enumerate(durations):
        one.on_complete(f"j{i}", d)
    bulk.on_complete_many(durations)
    bulk.on_complete_many([])
    a, b = one.as_dict(), bulk.as_dict()
    assert a.keys() == b.keys()
    for key, value in a.items():
        if key == "queue_job_duration_seconds_sum":
            assert b[key] == pytest.approx(value)
        else:
            assert b[key] == value, key
    assert b["queue_jobs_completed_total"] == len(durations)
    assert b["queue_job_duration_seconds_count"] == len(durations)


class _PerJobSink:
    """A metrics sink with ``on_complete`` only (no bulk method): the controller must call
    it once per completed job, with the job's id."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.completed: list[str] = []
        self.dispatched = 0

    def on_dispatch(self, n: int = 1) -> None:
        with self.lock:
            self.dispatched += n

    def on_complete(self, job_id: str, duration_s: float) -> None:
        assert duration_s >= 0.0
        with self.lock:
            self.completed.append(job_id)

    def on_retry(self, cause: str) -> None: ...
    def on_timeout(self) -> None: ...
    def on_dead(self, reason: str) -> None: ...
    def on_late_ack(self) -> None: ...
    def on_fsync(self, latency_s: float, records: int) -> None: ...
    def set_depth(self, counts: Any) -> None: ...
    def on_recovery(self, report: Any) -> None: ...


def test_a_sink_without_the_bulk_call_gets_one_call_per_completed_job(tmp_config: Config) -> None:
    sink = _PerJobSink()
    jobs = [Job(f"j{i:03d}", {"kind": "noop"}) for i in range(200)]
    with Controller(tmp_config.replace(worker_count=3), metrics=sink, prefetch=4) as ctl:
        ctl.enqueue_jobs(jobs)
        assert ctl.wait_until_idle(JOIN_S)
    assert sorted(sink.completed) == [j.id for j in jobs]
    assert sink.dispatched == 200


def test_controller_histogram_counts_every_completion(tmp_config: Config) -> None:
    m = QueueMetrics()
    with Controller(tmp_config.replace(worker_count=4), metrics=m, prefetch=8) as ctl:
        ctl.enqueue_jobs([Job(f"j{i}", {"kind": "noop"}) for i in range(500)])
        assert ctl.wait_until_idle(JOIN_S)
        assert ctl.status()["completed"] == 500
    d = m.as_dict()
    assert d["queue_jobs_completed_total"] == 500.0
    assert d["queue_job_duration_seconds_count"] == 500.0
    assert d['queue_job_duration_seconds_bucket{le="+Inf"}'] == 500.0
