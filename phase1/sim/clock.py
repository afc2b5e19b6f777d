"""``SimClock``: the ``phase1.clock.Clock`` protocol on a SimPy environment's ``env.now``.

Virtual time is ``env.now`` seconds (phase1's SimPy models use seconds as the time unit).
``now_s`` and ``wall_s`` are both ``env.now + epoch_s``: deterministic, and ``wall_s``
only feeds human-facing WAL timestamps.

``sleep`` raises ``RuntimeError``: a SimPy process cannot block, it waits by yielding an
event, ``yield env.timeout(seconds)``.  Code that would call ``clock.sleep`` (the threaded
runtime's loops) is not run under the simulator; the harness schedules that waiting itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import simpy

__all__ = ["SimClock"]


class SimClock:
    """Time from a ``simpy.Environment``.

    >>> import simpy
    >>> env = simpy.Environment()
    >>> clock = SimClock(env, epoch_s=100.0)
    >>> env.run(until=2.5)
    >>> clock.now_s(), clock.wall_s()
    (102.5, 102.5)
    """

    __slots__ = ("env", "epoch_s")

    def __init__(self, env: simpy.Environment, epoch_s: float = 0.0) -> None:
        self.env = env
        self.epoch_s = float(epoch_s)

    def now_s(self) -> float:
        return float(self.env.now) + self.epoch_s

    def wall_s(self) -> float:
        return float(self.env.now) + self.epoch_s

    def sleep(self, seconds: float) -> None:
        """Refused: in SimPy, wait with ``yield env.timeout(seconds)`` inside a process."""
        raise RuntimeError(
            f"SimClock.sleep({seconds!r}): a SimPy process cannot block; "
            f"use `yield env.timeout({seconds!r})` inside the process instead"
        )

    def __repr__(self) -> str:
        return f"SimClock(now_s={self.now_s()!r}, epoch_s={self.epoch_s!r})"
