"""Workers: the threads that run payload handlers, and what travels to and from them.

Owns: ``Task`` (one attempt handed to one worker slot), ``Result`` (what comes back),
``Worker`` (a thread reading its own bounded inbox, the seed's Q6 channel), the channels
themselves (``Mailbox``, and ``Inbox`` for a worker's tasks) and the optional
process-pool path for ``compute/*`` kinds.  Must not know: the WAL, the core's rules or
retries.  A worker never touches the queue: it posts a ``Result`` on the controller's one
results mailbox, and the controller decides (ACK, FAIL, or a ``LateAck`` fenced off by the
attempt number).

Why not ``queue.Queue``?  Every job crosses three hand-offs (dispatcher -> inbox, worker
-> results, worker -> dispatcher's free tokens), and ``queue.Queue`` takes a lock and
runs a condition's bookkeeping for each item on both sides; a thread that loses the GIL
while it holds that lock stalls the other side too.  A ``Mailbox`` is a ``deque`` (whose
``append`` and ``popleft`` are atomic) plus a wake-up lock touched only when its one
consumer sleeps, so a hand-off costs an append when the consumer is busy, which under
load it is.

Invariants kept:

* A worker never dies of a payload: ``HandlerRegistry.run`` raises only ``HandlerError``,
  ``SandboxViolation`` or ``Cancelled``; anything else is caught here too and reported as a
  failure.
* A ``Cancelled`` attempt reports nothing: either its deadline passed (the timeout loop
  records TIMEOUT) or the controller is stopping without draining (the job stays in flight
  in the WAL and recovery re-queues it).
* Once ``abandoned`` (its handler overran the deadline and ignored cancellation) a worker
  posts its late result, if one ever comes, and exits instead of asking for more work;
  the controller has already started a fresh worker for its slot.

Threads or processes for CPU-bound handlers?  Threads by default.  Python threads share
the GIL, so CPU-bound handlers (``compute/fibonacci``) do not run in parallel with each
other, but every built-in kind is short (fibonacci input is capped by
``fibonacci_max_input``) or blocks on I/O or a wait that releases the GIL (sleep,
write_file's fsync, http_get), and a thread costs microseconds to hand work to, which the
queue's throughput needs.  A thread cannot be killed, so a handler that ignores its
context is *abandoned*, not stopped: its slot gets a new thread and its result is fenced.
``process_pool=True`` sends ``compute/*`` kinds to a ``ProcessPoolExecutor`` (spawned
processes, real parallelism); the worker thread waits for the future only until the
attempt's deadline.  ``concurrent.futures`` cannot kill one running task either, so a pool
task past its deadline is abandoned the same way (bounded inputs keep that short).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Executor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Generic, NamedTuple, TypeVar

from phase1.config import Config
from phase1.errors import SandboxViolation
from phase1.jobs import Job
from phase1.runtime.context import Cancelled, TaskContext
from phase1.runtime.handlers import HandlerError, HandlerRegistry, job_kind

__all__ = ["Inbox", "Mailbox", "Task", "Result", "Worker", "run_in_process"]

log = logging.getLogger("phase1.runtime.worker")

T = TypeVar("T")


@dataclass(slots=True, eq=False)
class Task:
    """One attempt of one job, handed to worker slot ``slot``.

    ``done`` turns ``True`` (under the controller's slot lock) when the handler returned,
    so the timeout loop knows whether the thread is still busy with it.
    """

    job: Job
    attempt: int
    slot: int
    ctx: TaskContext
    started_s: float = 0.0  # time.monotonic() when the handler started
    done: bool = False
    worker: Worker | None = field(default=None, repr=False)

    @property
    def key(self) -> tuple[str, int]:
        return (self.job.id, self.attempt)


class Result(NamedTuple):
    """What a worker reports: ``ok``, or a failure with a one-line ``reason``; ``cancelled``
    results are not reported to the core (see the module docstring).  A tuple: one is made
    per job, and a frozen dataclass costs several times as much to build."""

    task: Task
    ok: bool
    reason: str = ""
    duration_s: float = 0.0
    cancelled: bool = False


_STOP = None  # the inbox sentinel


class Mailbox(Generic[T]):
    """Many producers, one consumer: ``put`` is a deque append (no lock) plus, only when
    the consumer sleeps, one wake-up; ``take`` returns everything posted so far.

    Built for the per-job hand-offs (results to the controller, free tokens to the
    dispatcher), where ``queue.Queue``'s lock and condition per item cost more than the
    job.  Correct under the GIL: a producer appends before it reads ``_sleeping``, the
    consumer sets ``_sleeping`` before it re-reads the items, so either the consumer sees
    the item or the producer sees the consumer asleep and opens the gate.  A stale
    wake-up only makes the consumer look once more.
    """

    __slots__ = ("_items", "_gate", "_sleeping")

    def __init__(self) -> None:
        self._items: deque[T] = deque()
        self._gate = threading.Lock()  # held while closed; a producer releases it to wake
        self._gate.acquire()
        self._sleeping = False

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: T) -> None:
        self._items.append(item)
        if self._sleeping:
            self._wake()

    def put_many(self, items: Iterable[T]) -> None:
        self._items.extend(items)
        if self._sleeping:
            self._wake()

    def _wake(self) -> None:
        self._sleeping = False
        try:
            self._gate.release()
        except RuntimeError:  # another producer opened it first
            pass

    def _sleep(self, end: float | None) -> bool:
        """Wait until an item may have been posted or ``end`` (monotonic) passed; ``False``
        on timeout.  May return ``True`` with nothing posted (a stale wake-up)."""
        self._sleeping = True
        if self._items:  # posted before the flag was visible
            self._sleeping = False
            return True
        if end is None:
            self._gate.acquire()
            woke = True
        else:
            left = end - time.monotonic()
            woke = left > 0 and self._gate.acquire(timeout=left)
        self._sleeping = False
        return woke

    def take(self, timeout: float | None = None, limit: int = 0) -> list[T]:
        """Every item posted so far (at most ``limit`` if > 0), in order; waits up to
        ``timeout`` seconds (``None``: forever) for the first.  ``[]`` on timeout.
        One consumer thread only."""
        items = self._items
        if not items:
            if timeout is not None and timeout <= 0:
                return []
            end = None if timeout is None else time.monotonic() + timeout
            while not items:
                if not self._sleep(end) and not items:
                    return []
        out: list[T] = []
        pop = items.popleft
        try:
            if limit > 0:
                for _ in range(limit):
                    out.append(pop())
            else:
                while True:
                    out.append(pop())
        except IndexError:
            pass
        return out


class Inbox(Mailbox[Task | None]):
    """A worker's bounded FIFO of tasks, a ``Mailbox`` with ``queue.Queue``-like calls:
    the dispatcher hands over a whole prefetch batch with ``put_many`` (one append, and
    one wake-up only if the worker sleeps), the worker takes one task at a time with
    ``get``, so the tasks it has not started stay here, where a replacement worker takes
    them over (``get_nowait``) if this one is abandoned.  ``put_many`` raises
    ``queue.Full`` beyond ``maxsize`` tasks (``<= 0``: unbounded), ``get_nowait``
    ``queue.Empty``; ``close`` appends the stop sentinel, which the bound leaves room for.
    """

    __slots__ = ("maxsize",)

    def __init__(self, maxsize: int = 0) -> None:
        super().__init__()
        self.maxsize = maxsize

    def qsize(self) -> int:
        return len(self._items)

    def put_nowait(self, item: Task | None) -> None:
        self.put_many((item,))

    def put_many(self, items: Iterable[Task | None]) -> None:
        """Append all of ``items`` or none (``queue.Full`` if they do not fit)."""
        batch = items if isinstance(items, (list, tuple)) else list(items)
        if 0 < self.maxsize < len(self._items) + len(batch):
            raise queue.Full
        super().put_many(batch)

    def close(self) -> None:
        """Append the stop sentinel: the worker exits when it gets there."""
        self.put(_STOP)

    def get(self) -> Task | None:
        """The oldest item, waiting for one (the inbox's worker only)."""
        items = self._items
        while not items:
            self._sleep(None)
        return items.popleft()

    def get_nowait(self) -> Task | None:
        try:
            return self._items.popleft()
        except IndexError:
            raise queue.Empty from None


class Worker:
    """One thread serving worker slot ``slot``: take a task, run it, post the result.

    ``on_free(slot)`` hands the dispatcher one token of capacity: ``tokens`` of them at
    start (``prefetch`` for a new slot, 1 for a replacement, which inherits the queued
    tasks of the worker it replaces), then one after each result unless abandoned.  The
    inbox holds at most ``prefetch`` tasks plus the stop sentinel.

    ``lock`` (this worker's own, so workers never contend for it) guards ``abandoned``
    and the ``done`` flag of the task it runs: the worker marks a task done and reads
    ``abandoned`` under it; the controller reads ``done`` and sets ``abandoned`` under it.
    """

    def __init__(
        self,
        slot: int,
        generation: int,
        *,
        name: str,
        registry: HandlerRegistry,
        results: Mailbox[Result | None],
        on_free: Callable[[int], None],
        pool: Executor | None = None,
        config: Config | None = None,
        prefetch: int = 1,
        tokens: int = 1,
    ) -> None:
        self.slot = slot
        self.generation = generation
        self.inbox = Inbox(maxsize=prefetch + 1)
        self.tokens = tokens
        self.abandoned = False
        self.lock = threading.Lock()
        self._registry = registry
        self._results = results
        self._on_free = on_free
        self._pool = pool
        self._config = config
        self.thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        """Ask the thread to exit once the tasks queued before are over (if any)."""
        self.inbox.close()

    def _loop(self) -> None:
        slot = self.slot
        on_free = self._on_free
        for _ in range(self.tokens):
            on_free(slot)
        get = self.inbox.get
        post = self._results.put
        lock = self.lock
        run = self._run
        while True:
            task = get()
            if task is _STOP:
                return
            result = run(task)
            with lock:  # see the class docstring
                task.done = True
                abandoned = self.abandoned
            post(result)
            if abandoned:
                log.debug("abandoned worker %s exits after its late result", self.thread.name)
                return
            on_free(slot)

    def _run(self, task: Task) -> Result:
        task.started_s = time.monotonic()
        try:
            if self._pool is not None and job_kind(task.job.payload).startswith("compute/"):
                self._run_pooled(task)
            else:
                self._registry.run(task.job, task.ctx)
        except Cancelled as exc:
            return Result(task, False, exc.reason, time.monotonic() - task.started_s, True)
        except HandlerError as exc:
            return Result(task, False, exc.reason, time.monotonic() - task.started_s)
        except SandboxViolation as exc:
            reason = " ".join(f"sandbox: {exc}".split())
            return Result(task, False, reason, time.monotonic() - task.started_s)
        except Exception as exc:  # a bug must fail the job, never kill the worker
            log.exception("worker %s: handler for %r raised", self.thread.name, task.job.id)
            reason = f"worker error: {type(exc).__name__}: {exc}"
            return Result(task, False, reason, time.monotonic() - task.started_s)
        return Result(task, True, "", time.monotonic() - task.started_s)

    def _run_pooled(self, task: Task) -> None:
        assert self._pool is not None and self._config is not None
        task.ctx.check()
        future = self._pool.submit(
            run_in_process, self._config, task.job, task.attempt, task.ctx.remaining_s()
        )
        try:
            status, reason = future.result(timeout=task.ctx.remaining_s())
        except FutureTimeout:
            future.cancel()
            task.ctx.check()
            raise Cancelled(f"job {task.job.id!r}: deadline exceeded in the process pool") from None
        if status == "cancelled":
            raise Cancelled(reason, reason=reason)
        if status == "sandbox":
            raise SandboxViolation(reason)
        if status != "ok":
            raise HandlerError(reason)


_PROCESS_REGISTRY: dict[Config, HandlerRegistry] = {}


def run_in_process(config: Config, job: Job, attempt: int, timeout_s: float) -> tuple[str, str]:
    """Run one job in a pool process; returns ``(status, reason)`` with status ``ok``,
    ``fail``, ``sandbox`` or ``cancelled`` (exceptions do not cross the process boundary
    reliably, plain strings do)."""
    registry = _PROCESS_REGISTRY.get(config)
    if registry is None:
        registry = _PROCESS_REGISTRY[config] = HandlerRegistry(config)
    ctx = TaskContext(job.id, attempt, timeout_s=timeout_s)
    try:
        registry.run(job, ctx)
    except Cancelled as exc:
        return "cancelled", exc.reason
    except HandlerError as exc:
        return "fail", exc.reason
    except SandboxViolation as exc:
        return "sandbox", str(exc)
    return "ok", ""
