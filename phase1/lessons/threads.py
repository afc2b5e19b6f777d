"""Lesson 07 helpers: threads and locks made visible (the seed's Q6, decision 2, pitfalls 1-3,
bottleneck 2, goroutine-leak check and pprof section).

Owns:

* ``RacyCounter`` / ``LockedCounter`` and ``hammer`` (N threads incrementing one counter)
  plus ``race_stepper`` (the lost update, one read or write at a time, no real threads);
* ``DeadlockDemo`` (pitfall 1: calling back into a locking method while holding a
  non-reentrant lock; the inner ``acquire`` has a timeout so nothing ever hangs) and
  ``blocked_channel_table`` (pitfall 2: a full ``queue.Queue`` and its two fixes);
* ``LeakyService`` and ``leak_check`` (the seed's goroutine-leak check, for threads) and
  ``controller_leak_check`` (the same check on a real ``Controller``);
* ``profile_controller`` / ``profile_table`` (cProfile in *every* thread of a real
  controller, merged into one ``pstats.Stats``: the seed's pprof section);
* ``contention_table`` (one lock vs two locks vs the lock released around slow I/O) and
  ``workers_table`` (the seed's Q6: one worker vs several).

Must not know: queue rules.  Every thread started here is joined with a timeout before a
function returns, and no wait is unbounded, so a notebook cell can never hang.  Timings
and race counts depend on the machine: the lesson prints them under
``# NBVAL_IGNORE_OUTPUT`` and prints deterministic conclusions separately.
"""

from __future__ import annotations

import cProfile
import os
import pstats
import queue
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from phase1.config import Config
from phase1.jobs import Job
from phase1.lessons.stepper import Action, Scenario, Stepper
from phase1.runtime.controller import Controller

__all__ = [
    "JOIN_TIMEOUT_S",
    "RacyCounter",
    "LockedCounter",
    "RaceResult",
    "hammer",
    "race_trials",
    "race_stepper",
    "DeadlockDemo",
    "WouldDeadlock",
    "run_with_timeout",
    "blocked_channel_table",
    "LeakyService",
    "leak_check",
    "controller_leak_check",
    "thread_roles",
    "profile_controller",
    "profile_table",
    "contention_table",
    "workers_table",
    "in_ci",
]

JOIN_TIMEOUT_S = 30.0  # no thread started here is waited for longer than this


def in_ci() -> bool:
    """Whether ``CI`` is set (lessons shrink their workloads, not their conclusions)."""
    return bool(os.environ.get("CI"))


def _join_all(threads: Iterable[threading.Thread], timeout_s: float = JOIN_TIMEOUT_S) -> list[str]:
    """Join every thread until a shared deadline; return the names still alive."""
    deadline = time.monotonic() + timeout_s
    threads = list(threads)
    for t in threads:
        t.join(max(deadline - time.monotonic(), 0.0))
    return sorted(t.name for t in threads if t.is_alive())


# == pitfall 3: a data race ==============================================================
class RacyCounter:
    """``count++`` split into its read and its write, with a thread switch in between.

    In Python ``x += 1`` on an attribute is already several bytecodes; ``time.sleep(0)``
    between the read and the write releases the GIL there, so another thread's read sees
    the old value and one of the two writes is lost, reliably instead of once in a while.
    """

    def __init__(self) -> None:
        self.value = 0

    def read(self) -> int:
        return self.value

    def write(self, value: int) -> None:
        self.value = value

    def inc(self) -> None:
        seen = self.read()
        time.sleep(0)  # let another thread run between the read and the write
        self.write(seen + 1)


class LockedCounter(RacyCounter):
    """The seed's fix: the same read, switch and write, under a ``threading.Lock``."""

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()

    def inc(self) -> None:
        with self.lock:
            seen = self.read()
            time.sleep(0)  # another thread may run now, but cannot enter inc()
            self.write(seen + 1)


@dataclass(frozen=True)
class RaceResult:
    """What ``hammer`` measured: ``expected`` increments, ``got``, the ``lost`` ones."""

    counter: str
    threads: int
    expected: int
    got: int
    seconds: float
    stuck: tuple[str, ...] = ()

    @property
    def lost(self) -> int:
        return self.expected - self.got


def hammer(counter: RacyCounter, threads: int = 4, per_thread: int = 2500) -> RaceResult:
    """``threads`` threads each call ``counter.inc()`` ``per_thread`` times; all joined."""
    start = threading.Barrier(threads, timeout=JOIN_TIMEOUT_S)

    def work() -> None:
        start.wait()  # release every thread at once: maximal overlap
        for _ in range(per_thread):
            counter.inc()

    pool = [threading.Thread(target=work, name=f"hammer-{i}", daemon=True) for i in range(threads)]
    began = time.perf_counter()
    for t in pool:
        t.start()
    stuck = _join_all(pool)
    return RaceResult(
        type(counter).__name__,
        threads,
        threads * per_thread,
        counter.value,
        time.perf_counter() - began,
        tuple(stuck),
    )


def race_trials(trials: int = 3, threads: int = 4, per_thread: int = 2500) -> pd.DataFrame:
    """``trials`` runs of the racy and the locked counter: expected, got, lost, seconds."""
    rows = []
    for trial in range(1, trials + 1):
        for counter in (RacyCounter(), LockedCounter()):
            r = hammer(counter, threads, per_thread)
            rows.append(
                {
                    "trial": trial,
                    "counter": r.counter,
                    "expected": r.expected,
                    "got": r.got,
                    "lost": r.lost,
                    "seconds": round(r.seconds, 3),
                }
            )
    return pd.DataFrame(rows)


def race_stepper(locked: bool = False) -> Stepper:
    """Two threads A and B increment one counter, one read or write per step (scripted).

    Unlocked, the interleaving is the one the OS may pick: A reads, B reads, A writes, B
    writes: one update is lost.  ``locked=True`` plays the same two increments under a
    lock: B's attempt to take the lock waits until A released it.
    """

    def setup() -> Scenario:
        counter = RacyCounter()
        seen: dict[str, int | None] = {"A": None, "B": None}
        holder: list[str] = []
        waiting: list[str] = []

        def read(name: str) -> Callable[[], str]:
            def run() -> str:
                seen[name] = counter.read()
                return f"{name} sees {seen[name]}"

            return run

        def write(name: str) -> Callable[[], str]:
            def run() -> str:
                value = seen[name]
                assert value is not None
                counter.write(value + 1)
                return f"count = {counter.value}"

            return run

        def acquire(name: str) -> Callable[[], str]:
            def run() -> str:
                if holder:
                    waiting.append(name)
                    return f"{name} blocks: {holder[0]} holds the lock"
                holder.append(name)
                return f"{name} holds the lock"

            return run

        def release(name: str) -> Callable[[], str]:
            def run() -> str:
                holder.remove(name)
                if waiting:
                    holder.append(waiting.pop(0))
                    return f"{name} releases; {holder[0]} wakes up holding it"
                return f"{name} releases"

            return run

        if locked:
            actions = [
                Action("A: lock", acquire("A")),
                Action("B: lock", acquire("B")),
                Action("A: read count", read("A")),
                Action("A: write count+1", write("A")),
                Action("A: unlock", release("A")),
                Action("B: read count", read("B")),
                Action("B: write count+1", write("B")),
                Action("B: unlock", release("B")),
            ]
        else:
            actions = [
                Action("A: read count", read("A")),
                Action("B: read count", read("B")),
                Action("A: write count+1", write("A")),
                Action("B: write count+1", write("B")),
            ]

        def render() -> str:
            local = "  ".join(f"{k}.seen={'-' if v is None else v}" for k, v in seen.items())
            lock = f"  lock={holder[0] if holder else 'free'}" if locked else ""
            return f"count={counter.value} (2 increments expected)  {local}{lock}"

        return Scenario(actions, render, world=counter)

    title = "two increments under a lock" if locked else "two increments, no lock"
    return Stepper(setup, title=title)


# == pitfall 1: deadlock ================================================================
class WouldDeadlock(RuntimeError):
    """Raised instead of hanging: the lock is held by the very thread asking for it."""


class DeadlockDemo:
    """The seed's pitfall 1 in a few lines: ``dispatch`` takes the lock and then calls
    ``handle_result``, which takes the same (non-reentrant) lock.

    A real program would wait forever.  Here ``handle_result`` waits at most ``wait_s``
    and then raises ``WouldDeadlock``, so the demo ends and says what would have happened.
    ``dispatch_fixed`` does the seed's fix: finish the locked part, release, then call.
    """

    def __init__(self, wait_s: float = 0.2) -> None:
        self.wait_s = wait_s
        self.lock = threading.Lock()
        self.pending = ["job-1"]
        self.handled: list[str] = []

    def handle_result(self, job_id: str) -> None:
        if not self.lock.acquire(timeout=self.wait_s):
            raise WouldDeadlock(
                f"handle_result({job_id!r}) waited {self.wait_s:g} s for a lock "
                "that its own thread holds"
            )
        try:
            self.handled.append(job_id)
        finally:
            self.lock.release()

    def dispatch_buggy(self) -> None:
        with self.lock:
            job_id = self.pending.pop(0)
            self.handle_result(job_id)  # calls back into a locking method: deadlock

    def dispatch_fixed(self) -> None:
        with self.lock:
            job_id = self.pending.pop(0)
        self.handle_result(job_id)  # outside the lock


def run_with_timeout(fn: Callable[[], object], timeout_s: float = 5.0) -> str:
    """Run ``fn`` in a thread, join it with a timeout, and say how it ended (one line)."""
    outcome: list[str] = []

    def target() -> None:
        try:
            fn()
            outcome.append("ok")
        except WouldDeadlock as exc:
            outcome.append(f"would deadlock: {exc}")
        except Exception as exc:  # noqa: BLE001 - reported, not raised, in a lesson
            outcome.append(f"{type(exc).__name__}: {exc}")

    t = threading.Thread(target=target, name="deadlock-demo", daemon=True)
    t.start()
    t.join(timeout_s)
    if t.is_alive():
        return f"still blocked after {timeout_s:g} s"
    return outcome[0]


# == pitfall 2: a blocked channel ========================================================
def blocked_channel_table(wait_s: float = 0.2) -> pd.DataFrame:
    """The seed's pitfall 2 with ``queue.Queue``: a second ``put`` into a full size-1
    queue nobody reads blocks (here: for ``wait_s``, then ``queue.Full``); a buffer or a
    reader thread lets it through."""
    rows = []

    full: queue.Queue[int] = queue.Queue(maxsize=1)
    full.put(1)
    try:
        full.put(2, timeout=wait_s)
        outcome = "sent"
    except queue.Full:
        outcome = f"blocked: full after {wait_s:g} s"
    rows.append({"channel": "size 1, no reader", "second send": outcome})

    buffered: queue.Queue[int] = queue.Queue(maxsize=100)
    buffered.put(1)
    buffered.put(2, timeout=wait_s)
    rows.append({"channel": "fix 1: size 100 (a buffer)", "second send": "sent"})

    chan: queue.Queue[int | None] = queue.Queue(maxsize=1)
    got: list[int] = []

    def reader() -> None:
        while (item := chan.get(timeout=JOIN_TIMEOUT_S)) is not None:
            got.append(item)

    t = threading.Thread(target=reader, name="channel-reader", daemon=True)
    t.start()
    chan.put(1, timeout=wait_s * 10)
    chan.put(2, timeout=wait_s * 10)
    chan.put(None, timeout=wait_s * 10)
    t.join(JOIN_TIMEOUT_S)
    rows.append({"channel": "fix 2: size 1, a reader thread", "second send": f"sent; read {got}"})
    return pd.DataFrame(rows)


# == the goroutine-leak check, for threads ================================================
class LeakyService:
    """A toy with a background loop thread and a ``stop()`` that forgets to tell it.

    ``stop(fixed=True)`` sets the event the loop waits on, so the thread ends.  The loop
    waits at most ``JOIN_TIMEOUT_S`` per round and ``release()`` always ends it, so a
    leaked thread is cleaned up by the lesson instead of outliving the kernel.
    """

    def __init__(self, name: str = "toy") -> None:
        self._quit = threading.Event()
        self.ticks = 0
        self.thread = threading.Thread(target=self._loop, name=f"{name}-loop", daemon=True)

    def _loop(self) -> None:
        while not self._quit.wait(0.01):
            self.ticks += 1

    def start(self) -> LeakyService:
        self.thread.start()
        return self

    def stop(self, fixed: bool = False) -> None:
        if fixed:
            self._quit.set()  # the fix: tell the loop to end (Go: close(stopCh))
        self.thread.join(0.2)

    def release(self) -> None:
        """Clean up a leaked loop (what a process exit would do)."""
        self._quit.set()
        self.thread.join(JOIN_TIMEOUT_S)


def leak_check(started: Sequence[threading.Thread]) -> list[str]:
    """The names of ``started`` threads still alive, sorted: ``[]`` means no leak.

    The seed compares ``runtime.NumGoroutine()`` before and after; naming the threads one
    started is stricter (other libraries' threads do not blur it) and says *which* leaked.
    """
    alive = {t.ident for t in threading.enumerate()}
    return sorted(t.name for t in started if t.ident in alive and t.is_alive())


def thread_roles(ctl: Controller) -> list[str]:
    """The controller's live threads by role (``dispatcher``, ``worker0.1``, ...), sorted."""
    prefix = ctl.name + "-"
    return sorted(t.name[len(prefix) :] for t in threading.enumerate() if t.name.startswith(prefix))


def controller_leak_check(
    config: Config, jobs: Sequence[Job], timeout_s: float = JOIN_TIMEOUT_S
) -> dict[str, Any]:
    """Start a real ``Controller``, run ``jobs``, stop it; report its threads before and
    after ``stop()`` and its own ``leaked_threads``."""
    ctl = Controller(config).start()
    try:
        ctl.enqueue_jobs(jobs)
        idle = ctl.wait_until_idle(timeout_s)
        before = thread_roles(ctl)
        completed = ctl.status()["completed"]
    finally:
        ctl.stop(timeout_s=timeout_s)
    return {
        "idle": idle,
        "completed": completed,
        "threads_running": before,
        "threads_after_stop": thread_roles(ctl),
        "leaked_threads": list(ctl.leaked_threads),
    }


# == pprof, the Python way ==================================================================
@dataclass
class _ThreadProfiles:
    """One ``cProfile.Profile`` per thread started while installed (``threading.setprofile``)."""

    profiles: dict[str, cProfile.Profile] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def hook(self, frame: Any, event: str, arg: Any) -> None:
        # Runs once, as the first profile event of each new thread: replace this Python
        # hook with a C profiler of the thread's own (cProfile sees one thread only).
        profile = cProfile.Profile()
        with self.lock:
            self.profiles[threading.current_thread().name] = profile
        profile.enable()


def profile_controller(
    config: Config, jobs: Sequence[Job], timeout_s: float = JOIN_TIMEOUT_S
) -> tuple[pstats.Stats, dict[str, Any]]:
    """Run ``jobs`` on a real ``Controller`` with cProfile in every thread it starts.

    Returns the merged ``pstats.Stats`` and facts: the roles profiled (sorted), jobs
    completed and whether the run finished.
    """
    tp = _ThreadProfiles()
    main = cProfile.Profile()
    threading.setprofile(tp.hook)
    try:
        ctl = Controller(config)
        main.enable()
        try:
            ctl.start()
            ctl.enqueue_jobs(jobs)
            idle = ctl.wait_until_idle(timeout_s)
        finally:
            ctl.stop(timeout_s=timeout_s)
            main.disable()
    finally:
        threading.setprofile(None)
    stats = pstats.Stats(main)
    prefix = ctl.name + "-"
    roles = []
    for name, profile in sorted(tp.profiles.items()):
        stats.add(profile)
        if name.startswith(prefix):  # not threads other libraries started meanwhile
            roles.append(name[len(prefix) :])
    facts = {
        "idle": idle,
        "completed": ctl.status()["completed"],
        "threads_profiled": roles,
        "leaked_threads": list(ctl.leaked_threads),
    }
    return stats, facts


_METHOD_RE = re.compile(r"<method '(\w+)' of '([\w.]+)' objects>")


def _label(func: tuple[str, int, str]) -> str:
    """``durable.py:run`` for Python functions, ``posix.fsync`` / ``_thread.lock.acquire``
    for built-ins (no paths, no line numbers: they differ between Python versions)."""
    filename, _line, name = func
    if filename == "~":
        method = _METHOD_RE.fullmatch(name)
        if method:
            return f"{method.group(2)}.{method.group(1)}"
        return name.strip("<>").replace("built-in method ", "")
    return f"{os.path.basename(filename)}:{name}"


def profile_table(
    stats: pstats.Stats,
    n: int = 12,
    sort: str = "cumulative",
    include: Callable[[str], bool] | None = None,
) -> pd.DataFrame:
    """The top ``n`` functions of a profile as a DataFrame (``pprof``'s ``top``).

    Columns: function (``file.py:name``, no paths), ncalls, tottime_s (in the function
    itself), cumtime_s (with what it called; functions sharing a label are summed);
    ``sort`` is ``cumulative`` or ``tottime``;
    ``include(label)`` filters rows (e.g. only phase1's own functions).
    """
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    rows = []
    for func, (_cc, ncalls, tottime, cumtime, _callers) in raw.items():
        label = _label(func)
        if include is not None and not include(label):
            continue
        rows.append(
            {
                "function": label,
                "ncalls": ncalls,
                "tottime_s": round(tottime, 4),
                "cumtime_s": round(cumtime, 4),
            }
        )
    key = "cumtime_s" if sort == "cumulative" else "tottime_s"
    frame = pd.DataFrame(rows, columns=["function", "ncalls", "tottime_s", "cumtime_s"])
    frame = frame.groupby("function", as_index=False).sum()  # same name, other file/line
    frame = frame.sort_values([key, "function"], ascending=[False, True]).head(n)
    return frame.reset_index(drop=True)


# == bottleneck 2: lock contention ==========================================================
_VARIANTS = (
    "one lock, I/O under it",
    "two locks, I/O under them",
    "one lock, I/O outside it",
)


def _contention_run(variant: str, threads: int, ops: int, io_s: float) -> tuple[float, float]:
    """``threads`` threads each do ``ops`` updates that need ``io_s`` of slow I/O (a
    sleep: it releases the GIL like fsync does).  Returns (wall seconds, seconds spent
    waiting for locks, summed over threads)."""
    locks = [threading.Lock(), threading.Lock()]
    waited = [0.0] * threads
    start = threading.Barrier(threads, timeout=JOIN_TIMEOUT_S)

    def work(i: int) -> None:
        # thread i updates resource i % 2 (say, queue state vs metrics)
        lock = locks[0] if variant.startswith("one lock") else locks[i % 2]
        start.wait()
        for _ in range(ops):
            t0 = time.perf_counter()
            lock.acquire()
            waited[i] += time.perf_counter() - t0
            try:
                if variant != _VARIANTS[2]:
                    time.sleep(io_s)  # slow I/O while holding the lock
            finally:
                lock.release()
            if variant == _VARIANTS[2]:
                time.sleep(io_s)  # the same I/O after releasing it

    pool = [
        threading.Thread(target=work, args=(i,), name=f"contend-{i}", daemon=True)
        for i in range(threads)
    ]
    began = time.perf_counter()
    for t in pool:
        t.start()
    _join_all(pool)
    return time.perf_counter() - began, sum(waited)


def contention_table(threads: int = 4, ops: int = 25, io_s: float = 0.002) -> pd.DataFrame:
    """Wall time and total lock wait of the three variants, and the ideal serial times."""
    rows = []
    for variant in _VARIANTS:
        seconds, waited = _contention_run(variant, threads, ops, io_s)
        rows.append(
            {
                "variant": variant,
                "seconds": round(seconds, 3),
                "lock_wait_s": round(waited, 3),
                "ideal_s": round(
                    threads * ops * io_s / {0: 1, 1: 2, 2: threads}[_VARIANTS.index(variant)], 3
                ),
            }
        )
    return pd.DataFrame(rows)


# == Q6: why channels (and several workers) ================================================
def workers_table(
    make_config: Callable[[int], Config],
    worker_counts: Sequence[int] = (1, 4),
    jobs: int = 8,
    sleep_s: float = 0.1,
) -> pd.DataFrame:
    """Run ``jobs`` sleep jobs on a real ``Controller`` with each worker count: the
    controller hands work over a queue and does not wait for it, so N workers overlap."""
    rows = []
    for n in worker_counts:
        cfg = make_config(n)
        batch = [Job(f"sleep-{i:02d}", {"kind": "sleep", "seconds": sleep_s}) for i in range(jobs)]
        ctl = Controller(cfg).start()
        try:
            began = time.perf_counter()
            ctl.enqueue_jobs(batch)
            idle = ctl.wait_until_idle(JOIN_TIMEOUT_S)
            seconds = time.perf_counter() - began
            completed = ctl.status()["completed"]
        finally:
            ctl.stop(timeout_s=JOIN_TIMEOUT_S)
        rows.append(
            {
                "workers": n,
                "jobs": jobs,
                "completed": completed,
                "idle": idle,
                "seconds": round(seconds, 3),
                "serial_s": round(jobs * sleep_s, 3),
            }
        )
    return pd.DataFrame(rows)
