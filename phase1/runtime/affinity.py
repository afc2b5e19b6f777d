"""Pin every thread of this process to a set of CPUs (the config's ``cpu_affinity``).

Why a job queue would want this: with ``commit_policy: batch`` and many producer threads,
each fsync round ends with the syncer waking the callers it released, and every hand-over
of the GIL to a thread waiting on *another* CPU costs a cross-CPU wake-up (tens of
microseconds on a VM).  On one CPU the same hand-over is a plain context switch, so 16
single-job producers get about 1.5x more jobs through (README, Benchmarks: the
``durable.threads16_pinned`` row).  The fsyncs themselves wait in the kernel with the GIL
released, so pinning loses no disk parallelism; it does give up running Python on two
cores at once, which only ``compute/*`` handlers in the process pool (separate processes,
restored to the old mask by :func:`child_initializer`) could use anyway.

Linux semantics: ``sched_setaffinity(0, ...)`` sets the *calling thread's* mask, and a new
thread inherits its creator's.  :func:`pin_process` therefore sets the mask of every thread
already running (``/proc/self/task``) as well as the caller's, so threads started before or
after the call all end up on ``cpus``.

>>> import os
>>> if hasattr(os, "sched_getaffinity"):
...     before = pin_process([min(os.sched_getaffinity(0))])
...     assert os.sched_getaffinity(0) == {min(before)}
...     restore(before)
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from phase1.errors import ConfigError

__all__ = [
    "available_cpus",
    "child_initializer",
    "mask_before_pinning",
    "pin_process",
    "restore",
]

_TASKS = "/proc/self/task"
_before: frozenset[int] | None = None  # the mask before the first pin_process, until restore


def _supported() -> bool:
    return hasattr(os, "sched_setaffinity") and hasattr(os, "sched_getaffinity")


def available_cpus() -> frozenset[int]:
    """The CPUs this process may run on now (every CPU where affinity is not supported)."""
    if not _supported():
        return frozenset(range(os.cpu_count() or 1))
    return frozenset(os.sched_getaffinity(0))


def _thread_ids() -> list[int]:
    try:
        return [int(name) for name in os.listdir(_TASKS)]
    except OSError:  # no /proc: only the calling thread can be reached
        return [0]


def _set_all(cpus: frozenset[int]) -> None:
    for tid in _thread_ids():
        try:
            os.sched_setaffinity(tid, cpus)
        except ProcessLookupError:  # that thread ended meanwhile
            continue
    os.sched_setaffinity(0, cpus)


def pin_process(cpus: Iterable[int], *, where: str = "cpu_affinity") -> frozenset[int]:
    """Restrict every thread of this process to ``cpus``; returns the mask before.

    Raises ``ConfigError`` (one line, naming ``where``) when the platform cannot pin or a
    CPU is not one this process may use; then nothing has changed.
    """
    wanted = frozenset(cpus)
    if not wanted:
        raise ConfigError(f"{where}: an empty CPU list would leave no CPU to run on")
    if not _supported():
        raise ConfigError(f"{where}: this platform cannot pin threads to CPUs (Linux only)")
    before = available_cpus()
    missing = sorted(wanted - before)
    if missing:
        raise ConfigError(
            f"{where}: CPU(s) {missing} not available to this process (it may use {sorted(before)})"
        )
    global _before
    _set_all(wanted)
    if _before is None:
        _before = before
    return before


def mask_before_pinning() -> frozenset[int] | None:
    """The CPUs this process could use before ``pin_process`` (None: not pinned)."""
    return _before


def restore(mask: Iterable[int]) -> None:
    """Give every thread of this process the mask ``mask`` (what ``pin_process`` returned)."""
    global _before
    if _supported():
        _set_all(frozenset(mask))
    _before = None


def child_initializer(mask: tuple[int, ...]) -> None:
    """``ProcessPoolExecutor(initializer=...)``: a pool process leaves the pinned CPUs and
    runs where the process could before pinning (it inherited the pinned mask)."""
    if _supported():
        os.sched_setaffinity(0, mask)
