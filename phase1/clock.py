"""Where time comes from: the ``Clock`` protocol, ``RealClock`` and ``ManualClock``.

The pure modules never read a clock; a shell reads one and passes ``now_s`` in.  Two
readings exist and must not be mixed:

* ``now_s()`` is monotonic seconds within one run (``time.monotonic`` on a real clock).
  Deadlines, timeouts and batch intervals use it; it never jumps when NTP steps the
  wall clock, and it means nothing across processes or restarts.
* ``wall_s()`` is seconds since the Unix epoch (``time.time``).  Only the human-facing
  ``timestamp`` field of WAL records comes from it.

``ManualClock`` is for tests and notebooks: time moves only when told to, ``sleep``
advances virtual time instead of blocking, and ``wall_s`` equals ``now_s`` so that every
output is deterministic.  (The SimPy shell has its own clock on ``env.now``.)
"""

from __future__ import annotations

import time
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "RealClock", "ManualClock"]


@runtime_checkable
class Clock(Protocol):
    def now_s(self) -> float:
        """Monotonic seconds within a run (never goes backwards)."""
        ...

    def wall_s(self) -> float:
        """Seconds since the Unix epoch, for human-facing timestamps only."""
        ...

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` (a negative value waits zero)."""
        ...


class RealClock:
    """The machine's clocks: ``time.monotonic`` for ``now_s``, ``time.time`` for ``wall_s``."""

    __slots__ = ()

    def now_s(self) -> float:
        return time.monotonic()

    def wall_s(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)

    def __repr__(self) -> str:
        return "RealClock()"


class ManualClock:
    """A clock that moves only when told to (not thread-safe: one driver at a time).

    >>> clock = ManualClock(start_s=10.0)
    >>> clock.sleep(0.5)
    >>> clock.advance(1.5)
    >>> clock.now_s(), clock.wall_s()
    (12.0, 12.0)
    """

    __slots__ = ("_now_s",)

    def __init__(self, start_s: float = 0.0) -> None:
        self._now_s = float(start_s)

    def now_s(self) -> float:
        return self._now_s

    def wall_s(self) -> float:
        return self._now_s

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._now_s += seconds

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``; a negative step is refused (time is monotonic)."""
        if seconds < 0:
            raise ValueError(f"ManualClock.advance({seconds!r}): time cannot go backwards")
        self._now_s += seconds

    def set(self, seconds: float) -> None:
        """Jump to ``seconds``; an earlier time than now is refused (time is monotonic)."""
        if seconds < self._now_s:
            raise ValueError(
                f"ManualClock.set({seconds!r}): time cannot go backwards from {self._now_s!r}"
            )
        self._now_s = float(seconds)

    def __repr__(self) -> str:
        return f"ManualClock(start_s={self._now_s!r})"
