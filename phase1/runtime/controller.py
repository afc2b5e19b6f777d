"""The controller: the seed's NewController / Start / EnqueueJobs / GetStatus / Stop.

Owns: the threads of a running queue and how they talk.  Must not know any queue rule
(``QueueCore`` decides everything) or any file format (``DurableQueue`` writes the WAL and
snapshots).  The picture::

    submit() ──> DurableQueue (one lock + group commit) <──┬── dispatcher thread
                    ^          ^                           │   hands jobs to *free*
                    │          │                           │   workers' bounded inboxes
     timeout loop ──┘          └── results thread <─ results mailbox <─ worker threads (N)
     snapshot loop ─── DurableQueue.snapshot() (WAL rotation)

Invariants kept:

* One lock guards the core (``DurableQueue``'s, the seed's decision 2).  The controller's
  own ``_slots_lock`` guards only its bookkeeping of who runs what; it is never held while
  calling the durable queue, so the two locks are never nested (the seed's deadlock
  pitfall).
* Persist before acting: a job reaches a worker only after ``dispatch`` returned, i.e.
  after its DISPATCH record is acknowledged under the commit policy; ``submit`` returns
  only once the ENQUEUE records are.
* Attempts are fencing tokens: a result for an attempt no longer in flight comes back
  from the core as a ``LateAck`` effect; it is counted and logged at debug level, never
  applied.

Design choices:

* **Dispatch only to a free worker.**  Each worker has its own bounded ``Inbox`` and
  posts one token of capacity to the dispatcher's mailbox per free place (``prefetch`` at
  start, one after each result); the dispatcher takes every free token at once and
  dispatches to all of them in *one* durable step (one fsync), one inbox append per
  worker.  A shared
  task queue would let jobs wait in a channel while their DISPATCH deadline already
  runs, so a slow worker could time out jobs it never started.  ``prefetch`` (default 1)
  lets a worker hold that many tasks, like RabbitMQ's prefetch count: more jobs per fsync
  for short jobs, at the price that a queued task's deadline runs while it waits.
* **Results are applied in batches.**  The results thread drains whatever results have
  arrived and applies all ACK / FAIL commands in one step, so N workers finishing
  together cost one fsync, not N; completions reach the metrics in one call per step.
* **Cheap hand-offs** (``phase1.runtime.worker.Mailbox``): a hand-off is a deque append,
  plus a wake-up only for a consumer that sleeps; no lock is taken per job, and waiters
  of ``wait_until`` are woken once no step is in progress, not after every step.
* **Timeouts** (the seed's timeoutLoop): the loop ticks every ``timeout_check_interval``
  and earlier when ``core.next_wakeup_s()`` says a deadline falls sooner (the dispatcher
  wakes it when it hands out an earlier deadline).  For every ``TimedOut`` effect the
  attempt's context is cancelled; if the handler is still running, its worker is
  *abandoned* and a fresh thread takes its slot, so capacity is kept even when a handler
  ignores cancellation (kind ``stuck``).  The late result, if it ever comes, is fenced.
* **Cancellation** (the seed's decision 3): each task gets a ``TaskContext`` whose
  deadline is the DISPATCH deadline converted from the core's wall-clock seconds to
  ``time.monotonic()``; a cooperative handler gives up by itself at the deadline.
* **CPU-bound handlers run in threads** (see ``phase1.runtime.worker`` for the GIL
  trade-off); ``process_pool=True`` sends ``compute/*`` kinds to a process pool.
* **Stop**: ``drain=True`` stops dispatching and waits until nothing is in flight (stuck
  attempts are timed out meanwhile); ``drain=False`` cancels the running attempts and
  leaves their jobs in flight in the WAL, so recovery re-queues them (a dispatch counts as
  an attempt).  Then: loops stopped, a final snapshot (which fsyncs and rotates the WAL),
  the WAL closed, every thread joined and checked (the seed's goroutine-leak check).

>>> import tempfile, os
>>> from phase1.config import Config
>>> from phase1.jobs import Job
>>> d = tempfile.mkdtemp()
>>> cfg = Config().replace(wal_path=os.path.join(d, "wal.log"),
...                        snapshot_path=os.path.join(d, "snapshot.json"), worker_count=2)
>>> with Controller(cfg) as ctl:
...     ctl.enqueue_jobs([Job(f"j{i}", {"kind": "noop"}) for i in range(5)])
...     ctl.wait_until_idle(10)
...     ctl.status()["completed"]
5
True
5
"""

from __future__ import annotations

import itertools
import logging
import math
import multiprocessing
import queue
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Protocol

from phase1.clock import Clock, RealClock
from phase1.config import Config
from phase1.core import (
    Completed,
    DeadLettered,
    Effect,
    LateAck,
    QueueCore,
    Record,
    Retried,
    SendToWorker,
    Step,
    TimedOut,
)
from phase1.disk import Disk
from phase1.errors import QueueKitError
from phase1.jobs import Job
from phase1.recovery import RecoveryReport
from phase1.runtime.affinity import child_initializer, mask_before_pinning
from phase1.runtime.context import TaskContext
from phase1.runtime.durable import DurableQueue
from phase1.runtime.handlers import HandlerRegistry
from phase1.runtime.worker import Mailbox, Result, Task, Worker

__all__ = ["Controller", "MetricsSink", "NullMetrics"]

log = logging.getLogger("phase1.runtime.controller")

_IDS = itertools.count(1)
_RESULTS_BATCH_MAX = 1024  # results applied in one durable step, at most
_LOOP_JOIN_S = 30.0  # stop() waits this long for its own loops even past its timeout
_WORKER_TAG = "-worker"
_WAKE = -1  # on the dispatcher's mailbox: "maybe something became ready" (slots are >= 0)


def _is_worker(thread: threading.Thread) -> bool:
    return _WORKER_TAG in thread.name


class MetricsSink(Protocol):
    """What the controller calls (``phase1.runtime.metrics.QueueMetrics`` fits)."""

    def on_dispatch(self, n: int = 1) -> None: ...
    def on_complete(self, job_id: str, duration_s: float) -> None: ...
    def on_retry(self, cause: str) -> None: ...
    def on_timeout(self) -> None: ...
    def on_dead(self, reason: str) -> None: ...
    def on_late_ack(self) -> None: ...
    def on_fsync(self, latency_s: float, records: int) -> None: ...
    def set_depth(self, counts: Any) -> None: ...
    def on_recovery(self, report: Any) -> None: ...


class NullMetrics:
    """The stand-in when no metrics object is given: every call does nothing."""

    def on_dispatch(self, n: int = 1) -> None:
        pass

    def on_complete(self, job_id: str, duration_s: float) -> None:
        pass

    def on_complete_many(self, durations_s: Sequence[float]) -> None:
        pass

    def on_retry(self, cause: str) -> None:
        pass

    def on_timeout(self) -> None:
        pass

    def on_dead(self, reason: str) -> None:
        pass

    def on_late_ack(self) -> None:
        pass

    def on_fsync(self, latency_s: float, records: int) -> None:
        pass

    def set_depth(self, counts: Any) -> None:
        pass

    def on_recovery(self, report: Any) -> None:
        pass


class Controller:
    """A running durable queue: recovery, N workers, dispatcher, timeout and snapshot loops.

    Not started by the constructor: call ``start()`` (or use ``with``).  After ``stop()``
    it cannot be restarted; make a new one on the same folder (it recovers).
    """

    def __init__(
        self,
        config: Config,
        *,
        disk: Disk | None = None,
        clock: Clock | None = None,
        registry: HandlerRegistry | None = None,
        metrics: MetricsSink | None = None,
        process_pool: bool = False,
        prefetch: int = 1,
    ) -> None:
        if prefetch < 1:
            raise ValueError(f"Controller: prefetch={prefetch} must be >= 1")
        self.config = config
        self.prefetch = prefetch
        self.name = f"phase1-c{next(_IDS)}"
        self._disk = disk
        self._clock: Clock = clock if clock is not None else RealClock()
        self.registry = registry if registry is not None else HandlerRegistry(config)
        self.metrics: MetricsSink = metrics if metrics is not None else NullMetrics()
        self._metrics_on = not isinstance(self.metrics, NullMetrics)  # per-job reports
        self.process_pool = process_pool
        self.durable: DurableQueue | None = None
        self.recovery_report: RecoveryReport | None = None
        self.recovery_s = 0.0  # wall time of start()'s recovery (open + replay + settle)
        self.leaked_threads: list[str] = []
        # counters (read under _state_cond)
        self.late_acks = 0
        self.timeouts = 0
        self.retries = 0
        self.dispatched = 0
        self.abandoned_workers = 0
        # coordination
        self._state_cond = threading.Condition()  # notified after every applied step
        self._slots_lock = threading.Lock()  # who runs what; never held across a core call
        self._tick_now = threading.Event()  # wakes the timeout loop early
        self._stopping = threading.Event()  # loops: exit
        self._no_dispatch = threading.Event()  # dispatcher: stop handing out work
        # the dispatcher's mailbox: free worker tokens (slot numbers), _WAKE, None = exit
        self._to_dispatcher: Mailbox[int | None] = Mailbox()
        self._results: Mailbox[Result | None] = Mailbox()
        self._workers: dict[int, Worker] = {}
        self._running: dict[tuple[str, int], Task] = {}
        self._expired_early: set[tuple[str, int]] = set()
        self._tick_at = math.inf  # monotonic time the timeout loop sleeps until
        self._threads: list[threading.Thread] = []
        self._pool: ProcessPoolExecutor | None = None
        self._fatal: BaseException | None = None
        self._started = False
        self._stopped = False
        self._generation = itertools.count(1)
        self._workers_closed = False
        self._busy = 0  # durable steps whose effects are not performed yet

    # == lifecycle ==========================================================================
    def start(self) -> Controller:
        """Recover from the data folder, then start every thread.  Returns ``self``."""
        if self._started:
            raise QueueKitError(f"{self.name}: start() called twice")
        self._started = True
        started = time.perf_counter()
        self.durable = DurableQueue(
            self.config, disk=self._disk, clock=self._clock, on_fsync=self.metrics.on_fsync
        )
        self.recovery_s = time.perf_counter() - started
        self.recovery_report = self.durable.recovery_report
        self.metrics.on_recovery(self.recovery_report)
        self._effects(_settle_effects(self))
        if self.process_pool:
            unpinned = mask_before_pinning()  # pool processes compute where we could before
            context = multiprocessing.get_context("spawn")
            workers = self.config.worker_count
            if unpinned is None:
                self._pool = ProcessPoolExecutor(max_workers=workers, mp_context=context)
            else:
                self._pool = ProcessPoolExecutor(
                    max_workers=workers,
                    mp_context=context,
                    initializer=child_initializer,
                    initargs=(tuple(sorted(unpinned)),),
                )
        for slot in range(self.config.worker_count):
            self._spawn_worker(slot, self.prefetch)
        self._thread("dispatcher", self._dispatch_loop)
        self._thread("results", self._results_loop)
        self._thread("timeouts", self._timeout_loop)
        self._thread("snapshots", self._snapshot_loop)
        self._wake_dispatcher()
        self._update_depth()
        return self

    def stop(self, drain: bool | None = None, timeout_s: float | None = None) -> None:
        """Stop everything (idempotent); see the module docstring for what ``drain`` does.

        ``timeout_s`` bounds draining plus joining (default: ``task_timeout`` + 5 s).  A
        thread still alive afterwards is named in a warning and in ``leaked_threads``.
        """
        if not self._started or self._stopped:
            self._stopped = True
            return
        self._stopped = True
        drain = self.config.drain_on_stop if drain is None else drain
        budget = self.config.task_timeout_s + 5.0 if timeout_s is None else timeout_s
        deadline = time.monotonic() + budget
        self._no_dispatch.set()
        self._to_dispatcher.put(None)
        loops = [t for t in self._threads if not _is_worker(t)]
        self._join([t for t in loops if t.name.endswith("-dispatcher")], deadline, _LOOP_JOIN_S)
        if drain:
            try:
                self.wait_until(lambda s: s["in_flight"] == 0, max(deadline - time.monotonic(), 0))
            except QueueKitError:
                pass  # a dead thread: stop anyway, the WAL says what was durable
        with self._slots_lock:
            self._workers_closed = True
            running = list(self._running.values())
            workers = list(self._workers.values())
        for task in running:
            task.ctx.cancel("controller stopping")
        for worker in workers:
            worker.stop()
        # stuck handlers of this registry return now, so their threads can be joined
        self.registry.release_stuck()
        self._join([w.thread for w in workers], deadline)
        self._results.put(None)
        self._stopping.set()
        self._tick_now.set()
        self._join(loops, deadline, _LOOP_JOIN_S)
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        assert self.durable is not None
        try:
            if not self.durable.writer.poisoned:
                self.durable.snapshot()
        finally:
            self._update_depth()
            self.durable.close()
        self._join(self._threads, deadline, 0.2)  # released stuck handlers exit now
        started = set(self._threads)
        leaked = [t for t in threading.enumerate() if t in started]
        self.leaked_threads = [t.name for t in leaked]
        if leaked:
            log.warning(
                "%s: %d thread(s) still alive after stop(): %s (a handler that ignores its "
                "context cannot be killed; it was abandoned)",
                self.name,
                len(leaked),
                ", ".join(self.leaked_threads),
            )
        with self._state_cond:
            self._state_cond.notify_all()

    def __enter__(self) -> Controller:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # == submitting =========================================================================
    def submit(self, job: Job) -> None:
        """Enqueue one job; returns once its ENQUEUE record is acknowledged."""
        self.enqueue_jobs([job])

    def enqueue_jobs(self, jobs: Iterable[Job], *, skip_known: bool = False) -> int:
        """Enqueue a batch atomically (all or none); returns once every ENQUEUE record is
        acknowledged under the commit policy, with the number enqueued.

        ``skip_known=True`` silently leaves out ids the queue already knows (any state), so
        resubmitting a file after a crash is safe; otherwise a known id raises
        ``InvalidJobError`` and nothing is stored.
        """
        dq = self._live()
        batch = list(jobs)
        if skip_known:

            def command(core: QueueCore, now: float) -> Step:
                return core.enqueue([j for j in batch if not core.knows(j.id)], now)

        else:

            def command(core: QueueCore, now: float) -> Step:
                return core.enqueue(batch, now)

        step = self._run_step(dq, command, lambda step: self._effects(step.effects))
        self._wake_dispatcher()
        return sum(1 for r in step.records if r.type == "ENQUEUE")

    # == reading ============================================================================
    def status(self) -> dict[str, int]:
        """Counts by state (pending, in_flight, completed, dead, failed, delayed, blocked)
        plus late_acks, timeouts, retries, dispatched, abandoned_workers."""
        dq = self.durable
        if dq is None:
            raise QueueKitError(f"{self.name}: not started")
        counts = dq.counts()  # under the core's lock; works after close() too
        with self._state_cond:
            counts.update(
                late_acks=self.late_acks,
                timeouts=self.timeouts,
                retries=self.retries,
                dispatched=self.dispatched,
                abandoned_workers=self.abandoned_workers,
            )
        return counts

    def dead_reasons(self) -> dict[str, str]:
        """Dead job id -> the reason kept in its DEAD record."""
        reasons: dict[str, str] = self._read(lambda core: core.dead_reasons())
        return reasons

    def check(self) -> None:
        """``QueueCore.check()`` under the lock (the seed's Validate)."""
        self._read(lambda core: core.check())

    def workers_alive(self) -> int:
        """Worker slots whose current (not abandoned) thread is alive."""
        with self._slots_lock:
            return sum(1 for w in self._workers.values() if w.thread.is_alive())

    def wait_until_idle(self, timeout_s: float | None = None) -> bool:
        """Block until every known job is completed or dead; ``False`` on timeout.

        Raises the error that stopped a controller thread, if any (e.g. a failed fsync).
        """
        return self.wait_until(lambda s: _idle(s), timeout_s)

    def wait_until(
        self, predicate: Callable[[dict[str, int]], bool], timeout_s: float | None = None
    ) -> bool:
        """Block until ``predicate(status())`` holds, re-checked after every applied step;
        ``False`` on timeout.  No polling: waits on a condition."""
        end = None if timeout_s is None else time.monotonic() + timeout_s
        with self._state_cond:
            while True:
                if self._fatal is not None:
                    raise QueueKitError(f"{self.name} failed: {self._fatal}") from self._fatal
                if not self._busy and predicate(self.status()):
                    return True
                if self._stopped and self.durable is not None and self.durable._closed:
                    return predicate(self.status())
                left = None if end is None else end - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._state_cond.wait(left)

    # == threads ============================================================================
    def _thread(self, role: str, target: Callable[[], None]) -> threading.Thread:
        def guarded() -> None:
            try:
                target()
            except BaseException as exc:  # noqa: BLE001 - reported to every waiter
                log.exception("%s: thread %s died", self.name, role)
                self._fail_all(exc)

        t = threading.Thread(target=guarded, name=f"{self.name}-{role}", daemon=True)
        self._threads.append(t)
        t.start()
        return t

    def _spawn_worker(
        self, slot: int, tokens: int, replaces: Worker | None = None
    ) -> Worker | None:
        """Start a worker for ``slot``; a replacement takes over the tasks queued in the
        inbox of the worker it ``replaces`` (same lock as delivery: none is lost)."""
        gen = next(self._generation)
        worker = Worker(
            slot,
            gen,
            name=f"{self.name}{_WORKER_TAG}{slot}.{gen}",
            registry=self.registry,
            results=self._results,
            on_free=self._to_dispatcher.put,
            pool=self._pool,
            config=self.config,
            prefetch=self.prefetch,
            tokens=tokens,
        )
        with self._slots_lock:
            if self._workers_closed:
                return None
            if replaces is not None:
                while True:
                    try:
                        queued = replaces.inbox.get_nowait()
                    except queue.Empty:
                        break
                    if queued is not None:
                        queued.worker = worker
                        worker.inbox.put_nowait(queued)
            self._workers[slot] = worker
            self._threads.append(worker.thread)
        worker.start()
        return worker

    def _join(
        self, threads: Sequence[threading.Thread], deadline: float, floor_s: float = 0.0
    ) -> None:
        """Join ``threads`` until ``deadline``; ``floor_s`` is what each may take anyway
        (the controller's own loops never block for long, a handler may)."""
        for t in list(threads):
            if t is threading.current_thread() or not t.ident:
                continue
            t.join(max(deadline - time.monotonic(), floor_s))

    def _fail_all(self, exc: BaseException) -> None:
        with self._state_cond:
            if self._fatal is None:
                self._fatal = exc
            self._state_cond.notify_all()
        self._no_dispatch.set()
        self._wake_dispatcher()

    def _wake_dispatcher(self) -> None:
        """Tell the dispatcher that jobs may have become ready (cheap: one append)."""
        self._to_dispatcher.put(_WAKE)

    # -- dispatcher ------------------------------------------------------------------------
    def _dispatch_loop(self) -> None:
        dq = self._live()
        box = self._to_dispatcher
        free: dict[int, int] = {}  # slot -> free tokens (capacity), in order of arrival
        idle_until = 0.0  # > 0: the last attempt ran out of ready jobs; wait for a _WAKE
        while not self._no_dispatch.is_set():
            if not free:
                items = box.take()  # nothing to hand work to: wait for a free token
            elif idle_until:
                items = box.take(max(idle_until - time.monotonic(), 0.0))
            else:
                items = box.take(0.0)
            woke = not items  # a timeout: a delayed job may have come due
            for item in items:
                if item is None:
                    return
                if item == _WAKE:
                    woke = True
                else:
                    free[item] = free.get(item, 0) + 1
            if not free or (idle_until and not woke and time.monotonic() < idle_until):
                continue  # only tokens arrived, and nothing became ready meanwhile
            wanted = list(free.items())
            ran_out: list[bool] = []

            def command(
                core: QueueCore,
                now: float,
                wanted: list[tuple[int, int]] = wanted,
                ran_out: list[bool] = ran_out,
            ) -> Step:
                # one core.dispatch per free worker, for all its tokens at once
                records: list[Record] = []
                effects: list[Effect] = []
                for slot, tokens in wanted:
                    step = core.dispatch(now, slot, tokens)
                    records.extend(step.records)
                    effects.extend(step.effects)
                    if len(step.effects) < tokens:
                        ran_out.append(True)
                        break  # nothing more is ready
                return Step(tuple(records), tuple(effects))

            def deliver(step: Step, free: dict[int, int] = free) -> None:
                if step.effects:
                    self._deliver(step, free)

            self._run_step(dq, command, deliver)
            idle_until = 0.0
            if ran_out:
                wake = self._next_wakeup(dq)
                wait_s = 1.0
                if wake is not None:
                    wait_s = min(max(wake - self._clock.wall_s(), 0.002), 1.0)
                idle_until = time.monotonic() + wait_s

    def _deliver(self, step: Step, free: dict[int, int]) -> None:
        offset = time.monotonic() - self._clock.wall_s()
        earliest = math.inf
        running = self._running
        expired = self._expired_early
        batches: dict[int, list[Task | None]] = {}
        sent = 0
        with self._slots_lock:
            workers = self._workers
            for send in step.effects:
                if not isinstance(send, SendToWorker):
                    continue
                sent += 1
                slot = send.worker_id
                job = send.job
                attempt = send.attempt
                key = (job.id, attempt)
                if expired and key in expired:  # timed out before we got here: token stays
                    expired.discard(key)
                    continue
                left = free[slot] - 1
                if left:
                    free[slot] = left
                else:
                    del free[slot]
                deadline = send.deadline_s + offset
                if deadline < earliest:
                    earliest = deadline
                worker = workers[slot]
                task = Task(job, attempt, slot, TaskContext(job.id, attempt, deadline_s=deadline))
                task.worker = worker
                running[key] = task
                batch = batches.get(slot)
                if batch is None:
                    batches[slot] = [task]
                else:
                    batch.append(task)
            for slot, batch in batches.items():  # one put (and one wake-up) per worker
                workers[slot].inbox.put_many(batch)
        with self._state_cond:
            self.dispatched += sent
        self.metrics.on_dispatch(sent)
        if earliest < self._tick_at:
            self._tick_now.set()

    # -- results -----------------------------------------------------------------------------
    def _results_loop(self) -> None:
        dq = self._live()
        box = self._results
        stop = False
        while not stop:
            batch = box.take(limit=_RESULTS_BATCH_MAX)
            reported: list[Result] = []
            tasks: list[Task] = []
            for r in batch:
                if r is None:
                    stop = True
                    continue
                tasks.append(r.task)
                if not r.cancelled:
                    reported.append(r)
            if reported:

                def command(core: QueueCore, now: float, rs: list[Result] = reported) -> Step:
                    records: list[Record] = []
                    effects: list[Effect] = []
                    ack = core.ack
                    for r in rs:
                        task = r.task
                        if r.ok:
                            step = ack(task.job.id, task.attempt, now)
                        else:
                            step = core.fail(task.job.id, task.attempt, now, r.reason)
                        records.extend(step.records)
                        effects.extend(step.effects)
                    return Step(tuple(records), tuple(effects))

                def after(step: Step, rs: list[Result] = reported) -> None:
                    self._effects(step.effects, rs)

                self._run_step(dq, command, after)
                self._wake_dispatcher()
            if tasks:
                running = self._running
                with self._slots_lock:
                    for task in tasks:
                        key = (task.job.id, task.attempt)
                        if running.get(key) is task:
                            del running[key]

    # -- timeouts ----------------------------------------------------------------------------
    def _timeout_loop(self) -> None:
        dq = self._live()
        interval = self.config.timeout_check_interval_s
        while not self._stopping.is_set():
            wake = self._next_wakeup(dq)
            wait_s = interval
            if wake is not None:
                wait_s = min(interval, max(wake - self._clock.wall_s(), 0.0) + 0.001)
            self._tick_at = time.monotonic() + wait_s
            self._tick_now.wait(wait_s)
            self._tick_now.clear()
            if self._stopping.is_set():
                return
            step = self._run_step(
                dq, lambda core, now: core.tick(now), lambda step: self._effects(step.effects)
            )
            if step.records:
                self._wake_dispatcher()
            self._update_depth()

    def _abandon(self, timed_out: list[TimedOut]) -> None:
        replace: list[Worker] = []
        with self._slots_lock:
            for t in timed_out:
                key = (t.job_id, t.attempt)
                task = self._running.pop(key, None)
                if task is None:
                    self._expired_early.add(key)
                    continue
                task.ctx.cancel(f"timed out on attempt {t.attempt}")
                worker = task.worker
                if worker is None:
                    continue
                with worker.lock:  # the worker marks done and reads abandoned under it
                    if task.done or worker.abandoned:
                        continue
                    worker.abandoned = True
                replace.append(worker)
                log.info(
                    "%s: job %r attempt %d passed its deadline; abandoning %s",
                    self.name,
                    t.job_id,
                    t.attempt,
                    worker.thread.name,
                )
        for old in replace:
            # one token: the stuck task's, which the abandoned worker never returns
            self._spawn_worker(old.slot, 1, replaces=old)
        if replace:
            with self._state_cond:
                self.abandoned_workers += len(replace)

    def _next_wakeup(self, dq: DurableQueue) -> float | None:
        """``core.next_wakeup_s()`` if it lies ahead, else ``None``.

        A time already past after a dispatch or tick is a delayed job that came due and
        waits for a free worker (promoted only by the next dispatch), so waking for it
        again would be a busy loop.
        """
        wake = dq.read(lambda core: core.next_wakeup_s())
        if isinstance(wake, float) and wake > self._clock.wall_s():
            return wake
        return None

    # -- snapshots ---------------------------------------------------------------------------
    def _snapshot_loop(self) -> None:
        dq = self._live()
        while not self._stopping.wait(self.config.snapshot_interval_s):
            dq.snapshot()  # stop() joins this loop before its own final snapshot

    # == effects ============================================================================
    def _effects(self, effects: Iterable[Effect], results: Sequence[Result] = ()) -> None:
        """Count and report what a durable step did (runs outside every lock); ``results``
        are the worker results the step applied (their durations go to the metrics)."""
        timed_out: list[TimedOut] = []
        completed: list[str] = []
        late = timeouts = retries = 0
        for e in effects:
            if isinstance(e, Completed):
                completed.append(e.job_id)
            elif isinstance(e, LateAck):
                late += 1
                log.debug(
                    "%s: late %s for %r attempt %d ignored (job is %s, attempt %d)",
                    self.name,
                    e.kind,
                    e.job_id,
                    e.attempt,
                    e.state,
                    e.current_attempt,
                )
                self.metrics.on_late_ack()
            elif isinstance(e, TimedOut):
                timeouts += 1
                timed_out.append(e)
                self.metrics.on_timeout()
            elif isinstance(e, Retried):
                retries += 1
                self.metrics.on_retry(e.cause)
            elif isinstance(e, DeadLettered):
                log.info("%s: job %r is dead: %s", self.name, e.job_id, e.reason)
                self.metrics.on_dead(e.reason)
        if completed and self._metrics_on:
            self._report_completed(completed, results)
        if late or timeouts or retries:
            with self._state_cond:
                self.late_acks += late
                self.timeouts += timeouts
                self.retries += retries
        if timed_out:
            self._abandon(timed_out)

    def _report_completed(self, job_ids: list[str], results: Sequence[Result]) -> None:
        """``on_complete`` for each completed job, or one ``on_complete_many`` call when the
        sink has it (``QueueMetrics`` does: one lock round per batch, not two per job)."""
        took = {r.task.job.id: r.duration_s for r in results if r.ok}
        durations = [took.get(job_id, 0.0) for job_id in job_ids]
        many = getattr(self.metrics, "on_complete_many", None)
        if many is not None:
            many(durations)
        else:
            for job_id, duration_s in zip(job_ids, durations, strict=True):
                self.metrics.on_complete(job_id, duration_s)

    def _run_step(
        self,
        dq: DurableQueue,
        command: Callable[[QueueCore, float], Step],
        after: Callable[[Step], None],
    ) -> Step:
        """``dq.run(command)`` then ``after(step)`` (effects), counted as one step in
        progress: ``wait_until`` judges only states whose every step is durable and whose
        effects were performed (counters and metrics included), so waiters are woken only
        when the last step in progress ends."""
        with self._state_cond:
            self._busy += 1
        try:
            step = dq.run(command)
            after(step)
            return step
        finally:
            with self._state_cond:
                self._busy -= 1
                if not self._busy:
                    self._state_cond.notify_all()

    def _update_depth(self) -> None:
        dq = self.durable
        if dq is not None:
            self.metrics.set_depth(dq.counts())

    def _read(self, query: Callable[[QueueCore], Any]) -> Any:
        dq = self.durable
        if dq is None:
            raise QueueKitError(f"{self.name}: not started")
        return dq.read(query)

    def _live(self) -> DurableQueue:
        if self.durable is None or not self._started:
            raise QueueKitError(f"{self.name}: not started; call start() first")
        if self._stopped:
            raise QueueKitError(f"{self.name}: stopped; start a new Controller to continue")
        if self._fatal is not None:
            raise QueueKitError(f"{self.name} failed: {self._fatal}") from self._fatal
        return self.durable


def _idle(status: dict[str, int]) -> bool:
    return not (status["pending"] or status["in_flight"] or status["failed"])


def _settle_effects(ctl: Controller) -> tuple[Effect, ...]:
    """Recovery's RETRY/DEAD decisions as effects, so metrics count them."""
    report = ctl.recovery_report
    assert report is not None
    out: list[Effect] = []
    for rec in report.settle_records:
        if rec.type == "RETRY":
            out.append(Retried(rec.job_id, rec.attempt, "recovered"))
        elif rec.type == "DEAD":
            out.append(DeadLettered(rec.job_id, rec.reason or ""))
    return tuple(out)
