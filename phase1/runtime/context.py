"""``TaskContext``: what a handler gets instead of ``time.sleep`` (the seed's decision 3).

The seed's workers use Go's ``context.WithTimeout``, not ``time.After``: work can be
cancelled from outside, a deadline is part of the context, and a child context made with a
shorter timeout is cancelled when its parent is.  This module is that idea in ~150 lines.

Owns: the deadline (``time.monotonic()`` seconds), the cancel event, the first cancel
reason, and the parent -> child propagation of ``cancel``.  Must not know: jobs, queues,
handlers or the WAL.

Invariants kept:

* ``cancelled()`` never goes back to ``False``: an event once set stays set and a deadline
  once passed stays passed.
* A child's deadline is never later than its parent's; cancelling the parent cancels every
  live child (``cancel`` reaches a child's ``wait`` at once; setting ``parent.cancel_event``
  by hand reaches it within ``PARENT_POLL_S``).  Cancelling a child leaves the parent alone.
* The first reason wins; every method may be called from any thread.

>>> ctx = TaskContext("task-0001", attempt=1, timeout_s=5)
>>> child = ctx.with_timeout(0.5)
>>> child.deadline_s <= ctx.deadline_s
True
>>> ctx.cancel("worker stopping")
>>> child.cancelled(), child.reason
(True, 'worker stopping')
>>> child.wait(10)   # returns at once: already cancelled
True
"""

from __future__ import annotations

import math
import threading
import time
import weakref

__all__ = ["Cancelled", "TaskContext", "DEADLINE_EXCEEDED", "PARENT_POLL_S"]

DEADLINE_EXCEEDED = "deadline exceeded"
PARENT_POLL_S = 0.05  # how often a child's wait() looks at a parent whose event was set by hand
_MAKE_LOCK = threading.Lock()  # makes a context's lazy event / lock exactly once


class Cancelled(Exception):
    """A handler gave up because its context was cancelled or its deadline passed.

    Not a ``QueueKitError``: it is expected weather for the worker, which reports the
    attempt as failed (or lets the timeout loop expire it) without logging a traceback.
    """

    def __init__(self, message: str, *, reason: str = "cancelled"):
        super().__init__(message)
        self.reason = reason


class TaskContext:
    """Deadline + cancel event for one attempt of one job.  Thread-safe.

    ``deadline_s`` is on the ``time.monotonic()`` clock (``math.inf`` = none); give either
    ``timeout_s`` (from now) or ``deadline_s``, not both.  ``cancel_event`` may be shared
    with the code that wants to cancel (a worker's stop event, say).
    """

    __slots__ = (
        "job_id",
        "attempt",
        "deadline_s",
        "_event",
        "_parent",
        "_children",
        "_lock",
        "_reason",
        "__weakref__",
    )

    def __init__(
        self,
        job_id: str = "",
        attempt: int = 1,
        *,
        timeout_s: float | None = None,
        deadline_s: float | None = None,
        cancel_event: threading.Event | None = None,
    ) -> None:
        if timeout_s is not None and deadline_s is not None:
            raise ValueError("TaskContext: give timeout_s or deadline_s, not both")
        if timeout_s is not None:
            if math.isnan(timeout_s):
                raise ValueError("TaskContext: timeout_s is NaN")
            deadline_s = time.monotonic() + max(timeout_s, 0.0)
        self.job_id = job_id
        self.attempt = attempt
        self.deadline_s: float = math.inf if deadline_s is None else float(deadline_s)
        # The event, the lock and the child set are made on first use (see ``_make``): most
        # contexts are never cancelled, waited on or derived from, and building the three
        # for every task was a third of the dispatcher's cost.
        self._event: threading.Event | None = cancel_event
        self._parent: TaskContext | None = None
        self._children: weakref.WeakSet[TaskContext] | None = None
        self._lock: threading.Lock | None = None
        self._reason: str | None = None  # written only under ``_lock`` (so None until it exists)

    @property
    def cancel_event(self) -> threading.Event:
        """The event that cancels this context when set (made on first use)."""
        event = self._event
        if event is None:
            with _MAKE_LOCK:
                if self._event is None:
                    self._event = threading.Event()
                event = self._event
        return event

    def _get_lock(self) -> threading.Lock:
        lock = self._lock
        if lock is None:
            with _MAKE_LOCK:
                if self._lock is None:
                    self._lock = threading.Lock()
                lock = self._lock
        return lock

    # -- deriving ------------------------------------------------------------------------
    def with_timeout(self, seconds: float) -> TaskContext:
        """A child whose deadline is ``min(now + seconds, self.deadline_s)`` (Go's
        ``context.WithTimeout``).  Cancelling ``self`` cancels the child, not the reverse."""
        deadline = min(time.monotonic() + max(seconds, 0.0), self.deadline_s)
        child = TaskContext(self.job_id, self.attempt, deadline_s=deadline)
        child._parent = self
        with self._get_lock():
            if self._children is None:
                self._children = weakref.WeakSet()
            self._children.add(child)
            reason = self._reason
        if reason is None and self._is_set():
            reason = self.reason
        if reason is not None:
            child.cancel(reason)
        return child

    # -- asking ----------------------------------------------------------------------------
    def cancelled(self) -> bool:
        """True once ``cancel`` was called (here or on a parent), the event was set, or the
        deadline passed."""
        ctx: TaskContext | None = self
        now = time.monotonic()
        while ctx is not None:
            event = ctx._event
            if (event is not None and event.is_set()) or now >= ctx.deadline_s:
                return True
            ctx = ctx._parent
        return False

    def remaining_s(self) -> float:
        """Seconds left before the deadline (``0.0`` when cancelled, ``math.inf`` if none)."""
        if self.cancelled():
            return 0.0
        return max(self.deadline_s - time.monotonic(), 0.0)

    @property
    def reason(self) -> str | None:
        """Why it is cancelled (the first ``cancel`` reason, or ``"deadline exceeded"``);
        ``None`` while it is not."""
        ctx: TaskContext | None = self
        now = time.monotonic()
        while ctx is not None:
            lock = ctx._lock
            if lock is not None:  # no lock yet: no reason was ever written
                with lock:
                    if ctx._reason is not None:
                        return ctx._reason
            if ctx._is_set():
                return "cancelled"
            if now >= ctx.deadline_s:
                return DEADLINE_EXCEEDED
            ctx = ctx._parent
        return None

    def check(self) -> None:
        """Raise ``Cancelled`` if cancelled; handlers call it between steps."""
        if self.cancelled():
            reason = self.reason or "cancelled"
            raise Cancelled(f"job {self.job_id!r} attempt {self.attempt}: {reason}", reason=reason)

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds`` (never past the deadline); return ``True`` if cancelled
        (then the caller should stop), ``False`` if the time simply elapsed."""
        end = time.monotonic() + max(seconds, 0.0)
        while True:
            if self.cancelled():
                return True
            now = time.monotonic()
            if now >= end:
                return False
            span = min(end, self.deadline_s) - now
            if self._parent is not None:
                span = min(span, PARENT_POLL_S)
            if self.cancel_event.wait(max(span, 0.0)):
                return True

    # -- cancelling -------------------------------------------------------------------------
    def cancel(self, reason: str = "cancelled") -> None:
        """Cancel this context and its children; the first reason is kept.  Idempotent."""
        earlier = self.reason if self.cancelled() else None  # a passed deadline stays the why
        with self._get_lock():
            if self._reason is None:
                self._reason = earlier or reason
            children = list(self._children) if self._children is not None else []
        self.cancel_event.set()
        for child in children:
            child.cancel(reason)

    def _is_set(self) -> bool:
        event = self._event
        return event is not None and event.is_set()

    def __repr__(self) -> str:
        left = self.remaining_s()
        state = f"cancelled: {self.reason}" if self.cancelled() else f"{left:.3f}s left"
        return f"TaskContext(job_id={self.job_id!r}, attempt={self.attempt}, {state})"
