"""The SimPy shell: a simulated disk and clock that run the real WAL, snapshot and recovery.

``SimDisk`` keeps durable and volatile bytes apart (see ``phase1.sim.disk``); ``SimClock``
reads time from ``env.now``.  Importing this package does not import simpy: the harness
(``Simulation``, ``FaultPlan``, ``Workload``, ...) and the experiments load on first use.
"""

from __future__ import annotations

from phase1.sim.clock import SimClock
from phase1.sim.disk import Crash, DiskOp, PendingOp, SimDisk, SimDiskState

__all__ = [
    "Crash",
    "DiskOp",
    "PendingOp",
    "SimClock",
    "SimDisk",
    "SimDiskState",
    # harness (lazy)
    "Simulation",
    "FaultPlan",
    "Workload",
    "JobKind",
    "SimConfig",
    "Ledger",
    "RunResult",
    "SimulationError",
    "run_simulation",
    # experiments and scenarios (lazy)
    "sweep",
    "SerialExecutor",
    "scenario",
    "SCENARIOS",
]

_LAZY = {
    "Simulation": "phase1.sim.harness",
    "FaultPlan": "phase1.sim.harness",
    "Workload": "phase1.sim.harness",
    "JobKind": "phase1.sim.harness",
    "SimConfig": "phase1.sim.harness",
    "Ledger": "phase1.sim.harness",
    "RunResult": "phase1.sim.harness",
    "SimulationError": "phase1.sim.harness",
    "run_simulation": "phase1.sim.harness",
    "sweep": "phase1.sim.experiments",
    "SerialExecutor": "phase1.sim.experiments",
    "scenario": "phase1.sim.scenarios",
    "SCENARIOS": "phase1.sim.scenarios",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'phase1.sim' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
