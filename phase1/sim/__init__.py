"""The SimPy shell: a simulated disk and clock that run the real WAL, snapshot and recovery.

``SimDisk`` keeps durable and volatile bytes apart (see ``phase1.sim.disk``); ``SimClock``
reads time from ``env.now``.  Importing this package does not import simpy.
"""

from __future__ import annotations

from phase1.sim.clock import SimClock
from phase1.sim.disk import Crash, DiskOp, PendingOp, SimDisk, SimDiskState

__all__ = ["Crash", "DiskOp", "PendingOp", "SimClock", "SimDisk", "SimDiskState"]
